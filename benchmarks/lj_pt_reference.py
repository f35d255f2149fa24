"""Long parallel-tempering ground truth for LJ-13 or LJ-55 at kT = 1 (benchmark convention), cached.

Draws ``--n`` samples of ``--system`` (lj13, lj55) with PT (32 chains × the default temperature ladder, thin 20, burn-in
5,000 steps), stores them in ``runs/cache/reference`` through
:func:`molsample.mcmc.reference.load_or_generate_reference` (a second run is a cache hit),
and prints τ_int of the energy, the effective sample size, energy evaluations and CPU time as JSON.

    python benchmarks/lj_pt_reference.py --n 100000                 # LJ-13: about 4 CPU-minutes on one core
    python benchmarks/lj_pt_reference.py --system lj55 --n 10000
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from molsample.mcmc.reference import load_or_generate_reference
from molsample.systems.cards import load_system

SETTINGS = {"chains": 32, "thin": 20, "burn_in": 5000}


def pt_reference(n: int = 100_000, seed: int = 1, progress: bool = False, system: str = "lj13"):
    """The cached PT reference of ``system`` at kT = 1: a ReferenceResult with ``n`` samples (n, N, 3)."""
    return load_or_generate_reference(load_system(system), n, method="pt", seed=seed, progress=progress, **SETTINGS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", default="lj13", choices=["lj13", "lj55"])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the JSON summary here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu0 = time.process_time()
    r = pt_reference(args.n, args.seed, progress=False, system=args.system)
    d = r.diagnostics
    e = r.energies if getattr(r, "energies", None) is not None else None
    summary = {k: d.get(k) for k in ("cache", "path", "n_chains", "acceptance", "swap_rates", "tau_int",
                                      "n_effective", "n_energy_evals", "wall_time_s", "energy_mean",
                                      "energy_std", "effective_per_1000_evals", "kT_ladder")}
    summary["settings"] = {**SETTINGS, "system": args.system, "seed": args.seed, "n": args.n}
    summary["cpu_s_this_process"] = time.process_time() - cpu0
    if e is not None:
        e = torch.as_tensor(e, dtype=torch.float64)
        summary["energy_quantiles_1_50_99"] = [float(q) for q in torch.quantile(e, torch.tensor(
            [0.01, 0.5, 0.99], dtype=torch.float64))]
        if args.system == "lj13":
            summary["frac_above_-16"] = float((e > -16).double().mean())
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    if args.out:
        from pathlib import Path
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
