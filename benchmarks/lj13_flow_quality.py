"""Quality of LJ-13 flows: exact-likelihood ESS, high-energy tail, path straightness, solver steps.

For each model file (``save_model`` format) and each number of midpoint steps: ``--n`` samples
from the same seeded base draws with exact log q; their ESS against exp(−E/kT) (``--kT``: 1.25
for a pretrained field, 1 for a tilted one), the fraction above E = −16, energy-W2 of the raw
and of ``--n`` resampled samples against reference energies, and the CPU seconds. Then on the
same base draws (no log q, midpoint × 20): path length Σ|Δx| of the whole configuration, chord
|x1 − x0| and straightness chord/length (1: straight). ``--gap`` also measures the log q gap
of the final-sample solver (midpoint × 20) against rk4 × 200 on the same x0.

    python benchmarks/lj13_flow_quality.py --kT 1.25 --ref runs/lj13-data/base_data.pt \\
        --model independent=runs/.../pretrained.pt --model equivariant-ot=runs/.../pretrained.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from molsample.analysis.metrics import energy_w2
from molsample.flows.distributions import base_distribution
from molsample.flows.ode import integrate
from molsample.flows.weights import ess, log_weights, resample
from molsample.nets import load_model
from molsample.systems.cards import load_system

TAIL = -16.0


def reference_energies(path: str, system) -> torch.Tensor:
    """Energies of reference samples: a ``base_data.pt`` (key ``x``) or a reference ``.h5`` file."""
    if path.endswith(".pt"):
        x = torch.as_tensor(torch.load(path, weights_only=False)["x"], dtype=torch.float64)
        return system.energy.energy(x)
    from molsample.mcmc.reference import read_reference

    return torch.as_tensor(read_reference(path).energies, dtype=torch.float64)


def load_field(path: str, system):
    """A saved field (``save_model`` file) or the field of a flow-matching checkpoint (default EGNN)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if "field" in blob and "spec" not in blob:
        from molsample.nets import build_net, default_net_spec

        net = build_net(default_net_spec(system, None, hidden=64, n_layers=4))
        net.load_state_dict(blob["field"])
        return net.eval()
    return load_model(path)[0]


def weighted_stats(field, system, x0: torch.Tensor, kT: float, method: str, steps: int,
                   e_ref: torch.Tensor, seed: int) -> dict:
    """Exact log q samples from ``x0`` and their importance-weight statistics."""
    base = base_distribution(system)
    t = time.process_time()
    res = integrate(field, x0, logp0=base.log_prob(x0), method=method, steps=steps, with_logq=True)
    cpu = time.process_time() - t
    e = system.energy.energy(res.x1.double())
    logw = log_weights(e / kT, res.logq)
    ok = torch.isfinite(e)
    idx = resample(logw, len(logw), generator=torch.Generator().manual_seed(seed))
    return {"method": method, "steps": steps, "n": len(x0), "cpu_s": cpu, "ess": ess(logw),
            "frac_above_-16": float((e > TAIL).double().mean()),
            "energy_w2_raw": energy_w2(e[ok], e_ref), "energy_w2_resampled": energy_w2(e[idx], e_ref),
            "median_energy": float(e[ok].median()), "logq": res.logq.double(), "x1": res.x1}


@torch.no_grad()
def path_stats(field, x0: torch.Tensor, steps: int = 20) -> dict:
    """Length Σ_k |x_{k+1} − x_k|, chord |x_K − x_0| and straightness of midpoint paths."""
    x, length, h = x0.clone(), torch.zeros(len(x0), dtype=torch.float64), 1.0 / steps
    for k in range(steps):
        t = torch.tensor(k * h, dtype=x.dtype)
        xm = x + 0.5 * h * field(t, x)
        xn = x + h * field(t + 0.5 * h, xm)
        length += (xn - x).flatten(1).norm(dim=1).double()
        x = xn
    chord = (x - x0).flatten(1).norm(dim=1).double()
    return {"path_length": float(length.mean()), "chord": float(chord.mean()),
            "straightness": float((chord / length).mean()), "mean_sq_displacement": float((chord**2).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH of a saved field (repeatable)")
    ap.add_argument("--kT", type=float, default=1.25)
    ap.add_argument("--ref", required=True, help="reference samples at kT: base_data.pt or a reference .h5")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, nargs="*", default=[5, 10, 20])
    ap.add_argument("--gap", type=int, default=0, help="samples for the midpoint×20 vs rk4 log q gap")
    ap.add_argument("--gap-steps", type=int, default=200, help="rk4 steps of the fine solver of --gap")
    ap.add_argument("--no-paths", action="store_true", help="skip the path-length pass")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    system = load_system("lj13")
    base = base_distribution(system)
    e_ref = reference_energies(args.ref, system)
    print(f"reference: {len(e_ref)} energies, fraction above {TAIL:g}: {float((e_ref > TAIL).double().mean()):.4f}")
    x0 = base.sample(args.n, generator=torch.Generator().manual_seed(args.seed))
    out = {"kT": args.kT, "n": args.n, "ref": args.ref, "ref_frac_above_-16": float((e_ref > TAIL).double().mean()),
           "models": {}}
    for item in args.model:
        name, path = item.split("=", 1)
        field = load_field(path, system).float().eval()
        rows = []
        for k in args.steps:
            r = weighted_stats(field, system, x0, args.kT, "midpoint", k, e_ref, args.seed)
            r.pop("logq"), r.pop("x1")
            rows.append(r)
            print(f"{name:16s} midpoint×{k:<3d} ESS {r['ess']:.4f}  above -16 {r['frac_above_-16']:.3f}  "
                  f"W2 raw {r['energy_w2_raw']:.3g} resampled {r['energy_w2_resampled']:.3g}  cpu {r['cpu_s']:.1f}s",
                  flush=True)
        entry = {"path": path, "solvers": rows}
        if not args.no_paths:
            paths = entry["paths"] = path_stats(field, x0)
            print(f"{name:16s} path length {paths['path_length']:.3f} chord {paths['chord']:.3f} "
                  f"straightness {paths['straightness']:.4f}", flush=True)
        if args.gap:
            xg = x0[: args.gap]
            fine = weighted_stats(field, system, xg, args.kT, "rk4", args.gap_steps, e_ref, args.seed)
            coarse = weighted_stats(field, system, xg, args.kT, "midpoint", 20, e_ref, args.seed)
            d = (fine["logq"] - coarse["logq"]).abs()
            dx = (fine["x1"] - coarse["x1"]).flatten(1).norm(dim=1)
            entry["logq_gap"] = {"n": args.gap, "fine": f"rk4x{args.gap_steps}", "mean_abs_dlogq": float(d.mean()),
                                 "max_abs_dlogq": float(d.max()),
                                 "mean_dx1": float(dx.mean()), "ess_midpoint20": coarse["ess"],
                                 "ess_fine": fine["ess"], "cpu_s_fine": fine["cpu_s"],
                                 "cpu_s_midpoint20": coarse["cpu_s"]}
            print(f"{name:16s} log q gap midpoint×20 vs rk4×{args.gap_steps}: mean |Δlog q| {float(d.mean()):.4f} "
                  f"(max {float(d.max()):.3f}), mean |Δx1| {float(dx.mean()):.2e}; ESS {coarse['ess']:.4f} vs "
                  f"{fine['ess']:.4f}", flush=True)
        out["models"][name] = entry
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
