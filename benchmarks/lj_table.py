"""The Tilt Matching comparison on LJ-13: ITM / ETM / WFM / RAM × annealing step h, one pretrained field.

Every row tilts the *same* pretrained field (a finished run's ``base_data.pt`` and
``pretrained.pt`` are copied into the row's run folder, so its base-data and pretraining stages
are cache hits) with one loss and one step rule, then draws the same number of final samples
with exact log-weights:

    python benchmarks/lj_table.py --source runs/lj13-demo-model --out runs/benchmarks/lj-table \\
        --methods itm etm wfm ram --h adaptive 0.1 0.01 --n-samples 2000 \\
        --json docs/benchmarks/lj-table.json

Budget per row. ``adaptive``: the source run's tilt settings (512 endpoints and 30 gradient steps
per level, h from the incremental-weight ESS target). A fixed h gets the same *total* budget as
10 levels of the adaptive settings (``--budget-steps`` gradient steps, ``--budget-endpoints``
endpoint draws), spread over its 1/h levels: ``steps_per_level = round(steps / levels)`` and
``n_endpoints = round(endpoints / levels)``, floored at 1 step and one minibatch of endpoints
(``endpoints_per_step``) per level. With h = 0.1 that is the adaptive settings exactly; with h = 0.01
and 0.001 the floors bind, and the table's evaluation and CPU columns show what the row really spent.

Metrics per row (against the run's reference set, the cached MALA samples at kT = 1): ESS of the
exact log-weights with a bootstrap 90 % interval (resampling the final samples), log Z, energy-W2
of the raw flow, of the reweighted flow, and of ``--n-resampled`` samples drawn by systematic
resampling; interatomic-distance W1 raw and reweighted; levels, energy evaluations, CPU seconds of
the tilt and of the final samples (from the run's stage timings).

Rows already finished in ``--out`` are read, not rerun (the script resumes a row that was cut).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import torch

from molsample.analysis.metrics import distance_w1, energy_w2
from molsample.flows.weights import ess
from molsample.io.toml_writer import dumps_toml
from molsample.reporting.export import systematic_resample
from molsample.reporting.run_data import load_run_data

COPIED = ("base_data.pt", "pretrained.pt")


def row_name(method: str, h: str) -> str:
    return f"{method}-h{h}"


def row_tilt(tilt: dict, h: str, budget_steps: int, budget_endpoints: int) -> dict:
    """The ``[tilt]`` table of one row: the source's for ``adaptive``, the budget spread over 1/h levels else."""
    out = dict(tilt)
    out.pop("h", None)
    if h == "adaptive":
        return out
    step = float(h)
    levels = math.ceil(1.0 / step - 1e-9)
    out["h"] = step
    out["max_levels"] = levels
    out["steps_per_level"] = max(1, round(budget_steps / levels))
    out["n_endpoints"] = max(int(tilt["endpoints_per_step"]), round(budget_endpoints / levels))
    out["full_ess_every"] = 0  # exact-likelihood probes would cost more than a small-h level itself
    return out


def write_row_config(source_cfg: dict, method: str, h: str, args: argparse.Namespace, path: Path) -> None:
    cfg = {k: v for k, v in source_cfg.items() if k not in ("start",)}
    cfg["tilt"] = row_tilt(source_cfg["tilt"], h, args.budget_steps, args.budget_endpoints)
    cfg["tilt"]["method"] = method
    cfg["final"] = dict(source_cfg["final"], n_samples=args.n_samples, ode_steps=args.final_ode_steps,
                        batch_size=min(args.n_samples, 1000))
    cfg["report"] = True
    path.write_text(dumps_toml(cfg))


def run_row(source: Path, row: Path, system: str, threads: int, log: Path) -> None:
    row.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if not (row / name).exists():
            shutil.copy2(source / name, row / name)
    cmd = [sys.executable, "-m", "molsample", "--threads", str(threads), "tilt", "--system", system,
           "--config", str(row / "row.toml"), "--out", str(row), "--resume", "--no-progress"]
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)


def bootstrap_ess(logw: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """5th and 95th percentiles of the ESS over bootstrap resamples of the samples."""
    rng = np.random.default_rng(seed)
    lw = torch.as_tensor(logw, dtype=torch.float64)
    idx = torch.as_tensor(rng.integers(0, len(logw), size=(n_boot, len(logw))))
    vals = [ess(lw[i]) for i in idx]
    return float(np.percentile(vals, 5)), float(np.percentile(vals, 95))


def measure_row(row: Path, n_resampled: int, n_boot: int) -> dict:
    d = load_run_data(row)
    if d.ref is None or d.flow.energy is None or d.flow.logw is None:
        raise SystemExit(f"{row}: the run has no reference set, energies or log-weights")
    summary = json.loads((row / "report" / "summary.json").read_text())
    logw, e, x = d.flow.logw, d.flow.energy, d.flow.x
    w = d.weights
    idx = systematic_resample(logw, n_resampled, 0)
    hist = d.history
    cpu = summary.get("stage_cpu_s", {})
    lo, hi = bootstrap_ess(logw, n_boot, 0)
    return {
        "n_samples": int(len(logw)),
        "ess": float(summary["ess"]),
        "ess_90": [lo, hi],
        "log_z": float(summary["log_z"]), "log_z_se": float(summary["log_z_se"]),
        "energy_w2_raw": energy_w2(e, d.ref.energy),
        "energy_w2_reweighted": energy_w2(e, d.ref.energy, w_a=w),
        "energy_w2_resampled": energy_w2(e[idx], d.ref.energy),
        "distance_w1_raw": distance_w1(x, d.ref.x),
        "distance_w1_reweighted": distance_w1(x, d.ref.x, w_a=w),
        "levels": int(len(hist.get("level", []))),
        "h_min": float(np.min(hist["h"])) if len(hist.get("h", [])) else float("nan"),
        "h_max": float(np.max(hist["h"])) if len(hist.get("h", [])) else float("nan"),
        "energy_evals": int(summary["energy_evals"]),
        "cpu_tilt_s": float(cpu.get("tilt", float("nan"))),
        "cpu_final_s": float(cpu.get("final", float("nan"))),
        "max_weight_share": float(summary["max_weight_share"]),
    }


def print_table(rows: list[dict]) -> None:
    print("| method | h | levels | ESS (90 % bootstrap) | log Z | energy-W2 raw / reweighted / resampled "
          "| distance-W1 raw / reweighted | energy evals | CPU s tilt / final |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["metrics"]
        h = "adaptive" if r["h"] == "adaptive" else r["h"]
        if r["h"] == "adaptive":
            h += f" ({m['h_min']:.3g}–{m['h_max']:.3g})"
        print(f"| {r['method'].upper()} | {h} | {m['levels']} | {m['ess']:.3f} ({m['ess_90'][0]:.3f}–{m['ess_90'][1]:.3f}) "
              f"| {m['log_z']:.2f} ± {m['log_z_se']:.2f} "
              f"| {m['energy_w2_raw']:.3g} / {m['energy_w2_reweighted']:.3g} / {m['energy_w2_resampled']:.3g} "
              f"| {m['distance_w1_raw']:.3f} / {m['distance_w1_reweighted']:.3f} | {m['energy_evals']:,} "
              f"| {m['cpu_tilt_s']:.0f} / {m['cpu_final_s']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="a finished tilt run of lj13 (its base data and pretrained field are reused)")
    ap.add_argument("--out", type=Path, default=Path("runs/benchmarks/lj-table"))
    ap.add_argument("--methods", nargs="+", default=["itm", "etm", "wfm", "ram"])
    ap.add_argument("--h", nargs="+", default=["adaptive", "0.1", "0.01", "0.001"], dest="hs")
    ap.add_argument("--n-samples", type=int, default=2000)
    ap.add_argument("--final-ode-steps", type=int, default=10)
    ap.add_argument("--budget-steps", type=int, default=300, help="gradient steps of a fixed-h tilt, all levels")
    ap.add_argument("--budget-endpoints", type=int, default=5120, help="endpoint draws of a fixed-h tilt, all levels")
    ap.add_argument("--n-resampled", type=int, default=1000)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--measure-only", action="store_true", help="read finished rows, run nothing")
    args = ap.parse_args()
    for h in args.hs:
        if h != "adaptive" and not 0.0 < float(h) <= 1.0:
            raise SystemExit(f"--h {h}: a fixed step must lie in (0, 1], or say 'adaptive'")
    source_cfg = tomllib.loads((args.source / "config.toml").read_text())
    system = source_cfg["system"]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for h in args.hs:
        for method in args.methods:
            row = args.out / row_name(method, h)
            if not (row / "report" / "summary.json").exists():
                if args.measure_only:
                    continue
                row.mkdir(parents=True, exist_ok=True)
                write_row_config(source_cfg, method, h, args, row / "row.toml")
                print(f"running {row.name} ...", flush=True)
                run_row(args.source, row, system, args.threads, args.out / "runs.log")
            rows.append({"method": method, "h": h, "run": str(row), "metrics": measure_row(row, args.n_resampled, args.n_boot)})
            m = rows[-1]["metrics"]
            print(f"{row.name}: ESS {m['ess']:.3f}, levels {m['levels']}, energy-W2 reweighted "
                  f"{m['energy_w2_reweighted']:.3g}, CPU tilt {m['cpu_tilt_s']:.0f} s", flush=True)
    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"source": str(args.source), "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
