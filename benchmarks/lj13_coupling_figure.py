"""Energy histograms of LJ-13 flows (no reweighting) against the kT0 data: docs/figures/lj13-coupling-energy.png.

    python benchmarks/lj13_coupling_figure.py --data runs/lj13-itm-default/base_data.pt \\
        --model independent=... --model equivariant-ot=... --out docs/figures/lj13-coupling-energy.png
"""

from __future__ import annotations

import argparse

import torch

from molsample.flows.distributions import base_distribution
from molsample.flows.ode import integrate
from molsample.systems.cards import load_system

from lj13_flow_quality import load_field  # noqa: E402  (benchmarks/ is the script's directory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default="docs/figures/lj13-coupling-energy.png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    system = load_system("lj13")
    x0 = base_distribution(system).sample(args.n, generator=torch.Generator().manual_seed(args.seed))
    data = torch.as_tensor(torch.load(args.data, weights_only=False)["x"], dtype=torch.float64)
    curves = {"kT0 = 1.25 data (MALA)": system.energy.energy(data)}
    for item in args.model:
        name, path = item.split("=", 1)
        field = load_field(path, system).float().eval()
        x1 = integrate(field, x0, method="midpoint", steps=args.steps).x1
        curves[f"flow: {name}"] = system.energy.energy(x1.double())
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = torch.linspace(-70, 20, 91)
    for label, e in curves.items():
        e = e[torch.isfinite(e)].clamp(-70, 20)
        ax.hist(e.numpy(), bins=bins.numpy(), density=True, histtype="step", label=label, linewidth=1.4)
        print(f"{label:32s} above -16: {float((e > -16).double().mean()):.3f}")
    ax.set_xlabel("energy (reduced LJ units; clamped to [-70, 20])")
    ax.set_ylabel("density")
    ax.set_title(f"LJ-13, 1,000 flow-matching steps, midpoint x {args.steps}, {args.n} samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
