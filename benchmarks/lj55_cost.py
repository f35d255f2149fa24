"""Per-stage CPU cost of LJ-55 against LJ-13 (default EGNN 64 × 4, one thread, float32).

``--systems`` and ``--hidden/--layers`` measure other systems and nets the same way (the
equivariant-ot step is skipped for systems with typed atoms, which it cannot pair), e.g. the
paper-preset nets: ``--systems lj55,aldp --hidden 128 --layers 5``; ratios are to the first system.

Measures, for each system: CPU seconds per flow-matching step (batch 256, independent and
equivariant-ot coupling), per sample of a plain midpoint × 20 sampling pass, per sample of the
exact-log-likelihood pass (measured on midpoint × 2 and scaled ×10 to midpoint × 20: the
cost is linear in the number of field evaluations), and per energy + force evaluation (the MALA
step). Prints the LJ-55 / LJ-13 ratios and writes JSON.

    python benchmarks/lj55_cost.py --json runs/benchmarks/lj55_cost.json    # about 3 CPU-minutes
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from molsample.flows.distributions import base_distribution
from molsample.flows.ode import integrate
from molsample.flows.paths import get_path
from molsample.nets import build_net, default_net_spec
from molsample.systems.cards import load_system
from molsample.training.coupling import couple
from molsample.training.flow_matching import flow_matching_loss


def _cpu(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t) / repeats


def measure(name: str, batch: int, repeats: int, hidden: int = 64, layers: int = 4) -> dict:
    system = load_system(name)
    base = base_distribution(system)
    torch.manual_seed(0)
    spec = default_net_spec(system, None, hidden=hidden, n_layers=layers)
    field = build_net(spec)
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    path = get_path("linear")
    g = torch.Generator().manual_seed(0)
    x1 = 1.2 * base.sample(batch, generator=g)  # stands in for data: the cost does not depend on it

    def fm_step(kind: str):
        def step():
            x0 = base.sample(batch, generator=g)
            a, b = couple(kind, x0, x1)
            loss = flow_matching_loss(field, path, a, b, torch.rand(batch, generator=g))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    n_s, n_l = 64, 8
    xs, xl = base.sample(n_s, generator=g), base.sample(n_l, generator=g)
    field.eval()
    sample_cpu = _cpu(lambda: integrate(field, xs, method="midpoint", steps=20), 1) / n_s
    logq_cpu = 10 * _cpu(lambda: integrate(field, xl, method="midpoint", steps=2, with_logq=True), 1) / n_l
    xe = base.sample(256, generator=g).double()

    def energy_force():
        x = xe.clone().requires_grad_(True)
        e = system.energy.energy(x)
        torch.autograd.grad(e.sum(), x)

    field.train()
    return {
        "system": name,
        "n_particles": system.n_particles,
        "parameters": sum(p.numel() for p in field.parameters()),
        "fm_step_cpu_s": _cpu(fm_step("independent"), repeats),
        "fm_step_equivariant_ot_cpu_s": (float("nan") if spec.get("atom_types") is not None
                                         else _cpu(fm_step("equivariant-ot"), repeats)),
        "sample_midpoint20_cpu_s_per_sample": sample_cpu,
        "logq_midpoint20_cpu_s_per_sample": logq_cpu,
        "energy_force_cpu_s_per_eval": _cpu(energy_force, repeats * 4) / 256,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--systems", default="lj13,lj55", help="comma-separated system names")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.systems.split(",")
    rows = [measure(n, args.batch, args.repeats, args.hidden, args.layers) for n in names]
    keys = [k for k in rows[0] if k.endswith("_s") or k.endswith("_per_sample") or k.endswith("_per_eval")]
    ratios = {k: [row[k] / rows[0][k] for row in rows[1:]] for k in keys}
    print(f"net: egnn hidden {args.hidden}, {args.layers} layers; " +
          ", ".join(f"{r['system']} {r['parameters']} parameters" for r in rows))
    for k in keys:
        print(f"{k:40s} " + "  ".join(f"{row['system']} {row[k]:.3e}" for row in rows)
              + "".join(f"  ratio {q:.1f}" for q in ratios[k]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
