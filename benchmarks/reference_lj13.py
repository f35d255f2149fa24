"""Reference-sampler baseline on LJ-13 at kT = 1 (benchmark convention, molsample/data/systems/lj13.toml).

Measures, for MALA and for parallel tempering (PT) with the reference generator's default
settings:

1. production: wall time and energy evaluations to produce 10,000 reference samples, and the
   energy autocorrelation time / effective sample count of that run;
2. mixing: the integrated autocorrelation time τ of the energy from long chains (in MCMC steps
   of one chain), and effective samples per 1,000 energy evaluations = 1000 / (τ · replicas per
   target chain), the figure a flow sampler has to beat.

Runs on one CPU thread (torch.set_num_threads(1)) so the numbers do not depend on how many
cores happen to be free. Prints a table and writes JSON.

    python benchmarks/reference_lj13.py                 # about 5 minutes on one core
    python benchmarks/reference_lj13.py --quick         # a smoke run (seconds; numbers meaningless)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from molsample.mcmc.mala import geometric_ladder, integrated_autocorrelation_time, mala, parallel_tempering
from molsample.mcmc.reference import default_settings, generate_reference, initial_configurations
from molsample.systems.cards import load_system


def production(system, method: str, n: int, seed: int) -> dict:
    r = generate_reference(system, n, method=method, seed=seed, progress=False)
    d = r.diagnostics
    thin = d["settings"]["thin"]
    per_chain = d["n_energy_evals"] / d["n_chains"]
    return {
        "method": method,
        "n_samples": n,
        "wall_time_s": d["wall_time_s"],
        "n_energy_evals": d["n_energy_evals"],
        "chains": d["n_chains"],
        "replicas_per_chain": len(d.get("kT_ladder", [1.0])),
        "thin": thin,
        "burn_in": d["settings"]["burn_in"],
        "acceptance": d["acceptance"],
        "swap_rates": d.get("swap_rates"),
        "tau_int_samples": d["tau_int"],
        "n_effective": d["n_effective"],
        "effective_per_1000_evals": d["effective_per_1000_evals"],
        "energy_mean": d["energy_mean"],
        "energy_std": d["energy_std"],
        "energy_evals_per_chain": per_chain,
    }


def mixing(system, method: str, chains: int, n_steps: int, burn_in: int, thin: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    cfg = default_settings(system, method, 1)
    x0, _ = initial_configurations(system, chains, relax_steps=cfg["relax_steps"], generator=g)
    t0 = time.perf_counter()
    if method == "mala":
        r = mala(system.energy, system.kT, x0, n_steps=n_steps, burn_in=burn_in, thin=thin, generator=g)
        replicas = 1
    else:
        kts = geometric_ladder(system.kT, system.kT * cfg["kT_max_factor"], cfg["n_temps"])
        r = parallel_tempering(system.energy, kts, x0, n_steps=n_steps, burn_in=burn_in, thin=thin, generator=g)
        replicas = len(kts)
    wall = time.perf_counter() - t0
    trace = r.energy_trace  # (n_kept, chains)
    tau_sokal = integrated_autocorrelation_time(trace) * thin
    tau_geyer = integrated_autocorrelation_time(trace, method="geyer") * thin
    # the Sokal window is reliable when the chains are much longer than τ
    reliable = n_steps > 50 * tau_sokal
    half = trace.shape[0] // 2
    return {
        "method": method,
        "chains": chains,
        "replicas_per_chain": replicas,
        "n_steps": n_steps,
        "burn_in": burn_in,
        "thin": thin,
        "wall_time_s": wall,
        "acceptance": r.acceptance,
        "swap_rates": r.swap_rates,
        "tau_int_steps_sokal": tau_sokal,
        "tau_int_steps_geyer": tau_geyer,
        "chain_length_over_tau": n_steps / tau_sokal,
        "tau_reliable": bool(reliable),
        "effective_per_1000_evals": 1000.0 / (tau_sokal * replicas),
        "energy_mean_first_half": float(trace[:half].mean()),
        "energy_mean_second_half": float(trace[half:].mean()),
        "energy_std": float(trace.std()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny budgets (smoke test of the script)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=Path("runs/benchmarks/reference_lj13.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    system = load_system("lj13")
    n = 500 if args.quick else 10_000
    steps = {"mala": 2_000 if args.quick else 60_000, "pt": 1_000 if args.quick else 20_000}
    burn = 500 if args.quick else 5_000

    results = {"system": "lj13", "kT": system.kT, "torch_threads": 1, "python": platform.python_version(),
               "torch": torch.__version__, "production": [], "mixing": []}
    for method in ("mala", "pt"):
        results["production"].append(production(system, method, n, args.seed))
    results["mixing"].append(mixing(system, "mala", 16, steps["mala"], burn, 10, args.seed))
    results["mixing"].append(mixing(system, "pt", 8, steps["pt"], burn, 10, args.seed))

    print(f"LJ-13, kT = {system.kT} (benchmark convention), 1 CPU thread")
    print(f"\n1. producing {n} reference samples with the default settings of `molsample reference`")
    print(f"{'method':<6} {'wall s':>8} {'energy evals':>13} {'accept':>7} {'tau (samples)':>14} {'ESS':>8} "
          f"{'ESS/1k evals':>13} {'<E> ± std':>16}")
    for r in results["production"]:
        tau = r["tau_int_samples"]
        ess = r["n_effective"]
        print(f"{r['method']:<6} {r['wall_time_s']:>8.1f} {r['n_energy_evals']:>13,d} {r['acceptance']:>7.3f} "
              f"{(f'{tau:.1f}' if tau else 'n/a'):>14} {(f'{ess:.0f}' if ess else 'n/a'):>8} "
              f"{(r['effective_per_1000_evals'] or float('nan')):>13.3f} "
              f"{r['energy_mean']:>8.2f} ± {r['energy_std']:.2f}")
        if r["swap_rates"]:
            print(f"       swap rates {', '.join(f'{s:.2f}' for s in r['swap_rates'])}")
    print("\n2. mixing from long chains (tau in MCMC steps of one chain)")
    print(f"{'method':<6} {'chains':>6} {'steps':>7} {'wall s':>7} {'tau Sokal':>10} {'tau Geyer':>10} {'len/tau':>8} "
          f"{'ESS/1k evals':>13} {'<E> 1st/2nd half':>18}")
    for r in results["mixing"]:
        print(f"{r['method']:<6} {r['chains']:>6} {r['n_steps']:>7} {r['wall_time_s']:>7.1f} "
              f"{r['tau_int_steps_sokal']:>10.0f} {r['tau_int_steps_geyer']:>10.0f} {r['chain_length_over_tau']:>8.1f} "
              f"{r['effective_per_1000_evals']:>13.3f} {r['energy_mean_first_half']:>8.2f}/{r['energy_mean_second_half']:.2f}"
              + ("" if r["tau_reliable"] else "  (chains < 50 tau: tau is a lower bound)"))
    m, t = results["mixing"]
    ratio = t["effective_per_1000_evals"] / m["effective_per_1000_evals"]
    results["pt_over_mala_effective_per_eval"] = ratio
    best = max(m["effective_per_1000_evals"], t["effective_per_1000_evals"])
    results["baseline_effective_per_1000_evals"] = best
    print(f"\nPT / MALA effective samples per energy evaluation: {ratio:.2f}")
    print(f"baseline to beat by 10x: {best:.3f} effective samples per 1,000 energy evaluations "
          f"(a flow must reach {10 * best:.2f})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v)))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
