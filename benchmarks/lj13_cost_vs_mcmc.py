"""What an effective sample of LJ-13 at kT = 1 costs: the flow (every stage counted) against MALA and PT.

For each finished tilt run given with ``--run``: effective samples (ESS × n of its final samples),
energy evaluations of the tilt and the final samples, the base data's evaluations and CPU
seconds (the run file's ``base_data_cost``; for a run made before that was recorded, the same base
data are sampled again here with the run's settings and timed), pretraining / tilt / final CPU
seconds from the run's stage timings, and the amortised price of further samples from the trained
model (final-sample CPU and one evaluation per sample). MALA and PT produce 10,000 reference
samples at kT = 1 with the default settings of ``molsample reference`` in this process (one
thread); their effective samples are n / τ_int of the energy, with burn-in and lattice relaxation
counted, and their "further samples" price leaves the burn-in out.

    python benchmarks/lj13_cost_vs_mcmc.py --run runs/lj13-aligned-5k --run runs/lj13-aligned-10k \\
        --json docs/benchmarks/lj13-cost.json --figure docs/figures/lj13-cost.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
import tomllib
from pathlib import Path

import torch

from molsample.io.hdf5 import open_run
from molsample.mcmc.reference import generate_reference
from molsample.reporting.cost import sampling_cost
from molsample.stages.data import base_data_cost
from molsample.systems.cards import load_system


def mcmc_rows(system, method: str, n: int, seed: int) -> list[dict]:
    c0 = time.process_time()
    r = generate_reference(system, n, method=method, seed=seed, progress=False)
    cpu = time.process_time() - c0
    d = r.diagnostics
    s = d["settings"]
    steps_total = s["burn_in"] + math.ceil(n / d["n_chains"]) * s["thin"]
    share = (steps_total - s["burn_in"]) / steps_total  # production steps: what further samples cost
    if d.get("n_effective") is None:
        raise SystemExit(f"{method}: no autocorrelation time from {n} samples of {d['n_chains']} chains "
                         "(fewer than 8 per chain); raise --n")
    eff, evals = float(d["n_effective"]), int(d["n_energy_evals"])
    name = f"{method.upper()} (kT = 1, default settings)"
    return [
        {"sampler": f"{name}: burn-in counted", "effective": eff, "energy_evals": evals, "cpu_s": cpu,
         "per_1000_evals": 1000 * eff / evals, "per_cpu_s": eff / cpu, "tau_int_samples": d["tau_int"]},
        {"sampler": f"{name}: further samples", "effective": eff, "energy_evals": round(evals * share),
         "cpu_s": cpu * share, "per_1000_evals": 1000 * eff / (evals * share), "per_cpu_s": eff / (cpu * share)},
    ]


def flow_rows(run: Path) -> list[dict]:
    with open_run(run) as rf:
        attrs = dict(rf.attrs)
        cfg = tomllib.loads(rf.config_text())
        n = rf.read_samples()["x"].shape[0]
    cost = sampling_cost(attrs, float(attrs["ess"]), n)
    if cost is None:
        raise SystemExit(f"{run}: not a tilt run with stage timings")
    note = "recorded in the run file"
    if cost.base_data is None or cost.base_data.get("cpu_time_s") is None:
        # made before the run file kept it: sample the same base data again (same settings and seed) and time it
        system = load_system(cfg["system"])
        kT0 = system.kT * cfg["temperature_factor"]
        settings = {k: v for k, v in (("n_steps", cfg["data"].get("steps")), ("burn_in", cfg["data"].get("burn_in"))) if v}
        c0 = time.process_time()
        r = generate_reference(system, cfg["data"]["n"], kT=kT0, method=cfg["data"].get("method", "auto"),
                               seed=cfg.get("seed", 0), progress=False, **settings)
        r.diagnostics["cpu_time_s"] = time.process_time() - c0
        cost.base_data = base_data_cost(r.diagnostics, kT0)
        cost.stage_cpu_s["base_data"] = max(cost.stage_cpu_s.get("base_data", 0.0), r.diagnostics["cpu_time_s"])
        note = "sampled again here with the run's settings"
    d = cost.to_dict()
    eff, cpu = cost.effective, cost.stage_cpu_s
    tilt_final = cpu.get("tilt", 0.0) + cpu.get("final", 0.0)
    name = f"flow {run.name}"
    return [
        {"sampler": f"{name}: all stages", "effective": eff, "energy_evals": cost.flow_evals + cost.base_evals,
         "cpu_s": cost.total_cpu_s, "per_1000_evals": d["effective_per_1000_evals_with_base_data"],
         "per_cpu_s": eff / cost.total_cpu_s, "stage_cpu_s": cpu, "base_data": cost.base_data,
         "base_data_note": note, "n_samples": n, "ess": float(attrs["ess"])},
        {"sampler": f"{name}: tilt + final samples", "effective": eff, "energy_evals": cost.flow_evals,
         "cpu_s": tilt_final, "per_1000_evals": d["effective_per_1000_evals"], "per_cpu_s": eff / tilt_final},
        {"sampler": f"{name}: further samples", "effective": eff, "energy_evals": n, "cpu_s": cpu["final"],
         "per_1000_evals": 1000 * eff / n, "per_cpu_s": eff / cpu["final"]},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, action="append", required=True)
    ap.add_argument("--n", type=int, default=10_000, help="reference samples of MALA and PT")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--figure", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    system = load_system("lj13")
    rows = []
    for run in args.run:
        rows += flow_rows(run)
    for method in ("mala", "pt"):
        rows += mcmc_rows(system, method, args.n, args.seed)

    print("| sampler | effective samples | energy evaluations | CPU s | effective / 1,000 evaluations "
          "| effective / CPU-s | CPU-s per 10,000 effective |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['effective']:,.0f} | {r['energy_evals']:,} | {r['cpu_s']:,.0f} "
              f"| {r['per_1000_evals']:.3g} | {r['per_cpu_s']:.3g} | {1e4 / r['per_cpu_s']:,.0f} |")
    for r in rows:
        if "stage_cpu_s" in r:
            print(f"{r['sampler']}: stage CPU s {json.dumps({k: round(v, 1) for k, v in r['stage_cpu_s'].items()})}; "
                  f"base data {r['base_data']['n_energy_evals']:,} evaluations ({r['base_data_note']})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1, default=float))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.6), constrained_layout=True)
        labels = [r["sampler"] for r in rows]
        colors = ["#4c72b0" if r["sampler"].startswith("flow") else "#dd8452" for r in rows]
        for ax, key, title in ((axes[0], "per_1000_evals", "effective samples per 1,000 energy evaluations"),
                               (axes[1], "per_cpu_s", "effective samples per CPU-second")):
            vals = [r[key] for r in rows]
            ax.barh(range(len(rows)), vals, color=colors)
            ax.set_xscale("log")
            ax.set_yticks(range(len(rows)), labels if ax is axes[0] else [""] * len(rows), fontsize=8)
            ax.invert_yaxis()
            ax.set_title(title, fontsize=10)
            for i, v in enumerate(vals):
                ax.text(v, i, f" {v:.3g}", va="center", fontsize=8)
        fig.suptitle("LJ-13 at kT = 1, one CPU thread: flow (blue, every stage or tilt + final only) against MCMC (orange)",
                     fontsize=10)
        fig.savefig(args.figure, dpi=110)
        print(f"figure written to {args.figure}")


if __name__ == "__main__":
    main()
