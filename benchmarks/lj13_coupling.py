"""Flow-matching couplings on LJ-13: pretrain the default EGNN with each coupling on the same data.

``train``: flow matching of the default net (EGNN 64 × 4) on the kT0 = 1.25 base data of the
default preset (a ``base_data.pt`` of a run folder, or fresh MALA samples), same seed, steps
and batch for every coupling; writes ``<out>/<coupling>/pretrained.pt`` (plus snapshots every
``--snapshot`` steps) and ``train.json`` with the CPU seconds of the training steps and of the
coupling alone. ``evaluate`` lives in ``benchmarks/lj13_flow_quality.py``.

    python benchmarks/lj13_coupling.py train --coupling equivariant-ot --steps 2500 \\
        --data runs/lj13-itm-default/base_data.pt --out runs/benchmarks/lj13-coupling
    python benchmarks/lj13_coupling.py cost          # CPU time of each coupling per batch of 256
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from molsample.flows.distributions import base_distribution
from molsample.nets import build_net, default_net_spec, save_model
from molsample.systems.cards import load_system
from molsample.training import coupling as cp
from molsample.training.flow_matching import FlowMatchingConfig, train_flow_matching


def load_data(path: str | None, n: int = 10_000, seed: int = 0) -> torch.Tensor:
    """``(n, 13, 3)`` float64 samples of LJ-13 at kT0 = 1.25: a run's ``base_data.pt`` or MALA."""
    if path:
        return torch.as_tensor(torch.load(path, weights_only=False)["x"], dtype=torch.float64)
    from molsample.mcmc.reference import load_or_generate_reference

    ref = load_or_generate_reference(load_system("lj13"), n, method="mala", kT=1.25, seed=seed, progress=False)
    return torch.as_tensor(ref.samples, dtype=torch.float64)


class _TimedCoupling:
    """Wraps :func:`coupling.couple` to add up its CPU seconds."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.calls = 0
        self._couple = cp.couple

    def __call__(self, kind, x0, x1, **kw):
        t = time.process_time()
        out = self._couple(kind, x0, x1, **kw)
        self.cpu_s += time.process_time() - t
        self.calls += 1
        return out


def train(args: argparse.Namespace) -> None:
    system = load_system("lj13")
    base = base_distribution(system)
    data = load_data(args.data).float()
    out = Path(args.out) / args.coupling
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    field = build_net(default_net_spec(system, None, hidden=args.hidden, n_layers=args.layers))
    fm = FlowMatchingConfig(steps=args.steps, batch_size=args.batch, lr=1e-3, seed=args.seed, coupling=args.coupling,
                            checkpoint_every=500)
    import molsample.training.flow_matching as fmmod

    timer = _TimedCoupling()
    fmmod.couple = timer  # count the coupling's CPU time inside the training loop

    def snapshot(step: int, loss: float) -> None:
        if args.snapshot and step % args.snapshot == 0 and step < args.steps:
            save_model(out / f"pretrained-{step}.pt", field, step=step, coupling=args.coupling)

    cpu0 = time.process_time()
    hist = train_flow_matching(field, data, base, fm, checkpoint_path=out / "checkpoint.pt", progress=False,
                               callback=snapshot)
    cpu = time.process_time() - cpu0
    save_model(out / "pretrained.pt", field, step=args.steps, coupling=args.coupling)
    k = max(1, len(hist["loss"]) // 10)
    info = {"coupling": args.coupling, "steps": args.steps, "batch": args.batch, "cpu_s": cpu,
            "coupling_cpu_s": timer.cpu_s, "coupling_calls": timer.calls,
            "cpu_s_per_step": cpu / max(args.steps, 1), "final_loss_mean_last10pct": sum(hist["loss"][-k:]) / k}
    (out / "train.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))


def cost(args: argparse.Namespace) -> None:
    """CPU seconds of each coupling on one batch and the mean squared transport distance it gives."""
    base = base_distribution(load_system("lj13"))
    data = load_data(args.data).float()
    g = torch.Generator().manual_seed(args.seed)
    rows = []
    for kind, bc in [("independent", "radial"), ("ot", "radial"), ("aligned", "radial"),
                     ("equivariant-ot", "radial"), ("equivariant-ot", "aligned")]:
        cpu, dist = 0.0, 0.0
        for _ in range(args.repeats):
            x1 = data[torch.randint(0, len(data), (args.batch,), generator=g)]
            x1 = x1 - x1.mean(1, keepdim=True)
            x0 = base.sample(args.batch, generator=g)
            cp.couple(kind, x0[:2], x1[:2], batch_cost=bc)  # imports outside the timing
            t = time.process_time()
            a, b = cp.couple(kind, x0, x1, batch_cost=bc)
            cpu += time.process_time() - t
            dist += float(cp.transport_cost(a, b).mean())
        rows.append({"coupling": kind, "batch_cost": bc if kind == "equivariant-ot" else None,
                     "cpu_s_per_batch": cpu / args.repeats, "mean_sq_distance": dist / args.repeats})
        print(f"{kind:15s} {bc if kind == 'equivariant-ot' else '':8s} cpu/batch {cpu / args.repeats:7.3f} s   "
              f"E|x0 - x1|^2 {dist / args.repeats:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--coupling", choices=cp.COUPLINGS, required=True)
    t.add_argument("--steps", type=int, default=5000)
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument("--layers", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--snapshot", type=int, default=0, help="save the field every this many steps")
    t.add_argument("--data", default=None, help="base_data.pt of a default-preset run (default: MALA at kT0)")
    t.add_argument("--out", default="runs/benchmarks/lj13-coupling")
    c = sub.add_parser("cost")
    c.add_argument("--batch", type=int, default=256)
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--data", default=None)
    c.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"train": train, "cost": cost}[args.cmd](args)


if __name__ == "__main__":
    main()
