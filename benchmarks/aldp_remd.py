"""Replica-exchange MD ground truth for alanine dipeptide at 300 K (cached in runs/cache/reference).

Six replicas, geometric 300–600 K, 500 steps of 1 fs between swap attempts, a frame every two
attempts (1 ps). Prints the swap rates, round trips, τ_int, CPU time and the basin populations
with their τ_int error bars (molsample.molecules.basins):

    python benchmarks/aldp_remd.py --frames 10000
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from molsample.mcmc.reference import load_or_generate_remd
from molsample.systems.cards import load_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--replicas", type=int, default=6)
    ap.add_argument("--t-max", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    system = load_system("aldp")
    t0 = time.process_time()
    ref = load_or_generate_remd(system, args.frames, t_max_K=args.t_max, n_replicas=args.replicas, seed=args.seed,
                                progress=False)
    d = ref.diagnostics
    print(json.dumps({k: d.get(k) for k in ("cache", "path", "swap_rates", "round_trips", "tau_int", "n_effective",
                                             "n_energy_evals", "cpu_time_s", "wall_time_s", "energy_mean")}, indent=1))
    print(f"CPU time of this call: {time.process_time() - t0:.0f} s")
    try:
        from molsample.molecules.basins import basin_report

        print(basin_report(system, ref.samples.numpy(), kT=system.kT, kind="md"))
    except ImportError:
        pass


if __name__ == "__main__":
    main()
