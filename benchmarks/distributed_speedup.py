"""Speed-up of a run on K processes (torch.distributed, gloo) against one process, per stage.

Runs the same LJ-13 job (the default preset's network; pretraining, tilt and final samples cut to
minutes) three ways on this machine and prints wall and CPU seconds per stage from the run
files' ``stage_wall_s`` / ``stage_cpu_s``:

    1 process × T threads,   1 process × K·T threads,   K processes × T threads

The base data are made once first and reused from the cache by all three runs, so they time the
stages that K processes share (pretraining, tilt, final samples).

    python benchmarks/distributed_speedup.py --nproc 2 --threads 1 --out runs/bench-distributed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py

CONFIG = """
temperature_factor = 1.25
report = false
[net]
hidden = 64
n_layers = 4
[data]
n = 2000
[reference]
n = 0
[pretrain]
steps = {steps}
batch_size = 256
coupling = "aligned"
[tilt]
n_endpoints = 512
endpoints_per_step = 64
draws_per_endpoint = 4
steps_per_level = 30
h = 0.25
max_levels = 4
ode_method = "midpoint"
ode_steps = 20
[final]
n_samples = 1000
ode_method = "midpoint"
ode_steps = 20
batch_size = 250
"""

#: the same job at a toy size (``--smoke``): it checks that the script runs, its timings mean nothing
SMOKE_CONFIG = """
temperature_factor = 1.25
report = false
[net]
hidden = 8
n_layers = 1
[data]
n = 64
burn_in = 20
steps = 20
[reference]
n = 0
[pretrain]
steps = {steps}
batch_size = 16
coupling = "aligned"
[tilt]
n_endpoints = 16
endpoints_per_step = 8
draws_per_endpoint = 2
steps_per_level = 1
h = 0.5
max_levels = 2
ode_method = "euler"
ode_steps = 2
[final]
n_samples = 16
ode_method = "euler"
ode_steps = 2
batch_size = 8
"""

STAGES = ("pretrain", "tilt", "final")


def run(out: Path, threads: int, nproc: int | None, config: Path) -> dict:
    """One run of the job; returns its stage wall and CPU seconds."""
    cmd = [sys.executable, "-m", "molsample", "--threads", str(threads), "tilt", "--system", "lj13",
           "--config", str(config), "--out", str(out), "--no-progress"]
    if nproc:
        cmd += ["--nproc", str(nproc)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with h5py.File(out / "samples.h5", "r") as f:
        return {"wall": json.loads(f.attrs["stage_wall_s"]), "cpu": json.loads(f.attrs["stage_cpu_s"]),
                "ess": float(f.attrs["ess"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--steps", type=int, default=300, help="pretraining steps")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-distributed"))
    ap.add_argument("--smoke", action="store_true", help="a toy-sized job (net 8 x 1, 64 data, 16 final samples)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    config = args.out / "config.toml"
    config.write_text((SMOKE_CONFIG if args.smoke else CONFIG).format(steps=args.steps))
    k, t = args.nproc, args.threads
    variants = {f"1 proc x {t} thr": (t, None), f"1 proc x {k * t} thr": (k * t, None),
                f"{k} proc x {t} thr": (t, k)}
    results = {}
    for i, (name, (threads, nproc)) in enumerate(variants.items()):
        results[name] = run(args.out / f"run{i}", threads, nproc, config)
        print(f"done: {name}", file=sys.stderr)
    base = results[f"1 proc x {t} thr"]
    print(f"{'stage':<10}" + "".join(f"{name:>32}" for name in results))
    for stage in STAGES + ("total",):
        cells = []
        for res in results.values():
            wall = sum(res["wall"].get(s, 0.0) for s in STAGES) if stage == "total" else res["wall"].get(stage, 0.0)
            cpu = sum(res["cpu"].get(s, 0.0) for s in STAGES) if stage == "total" else res["cpu"].get(stage, 0.0)
            b = sum(base["wall"].get(s, 0.0) for s in STAGES) if stage == "total" else base["wall"].get(stage, 0.0)
            cells.append(f"{wall:8.1f} s wall {cpu:7.1f} s CPU x{b / wall:4.2f}")
        print(f"{stage:<10}" + "".join(f"{c:>32}" for c in cells))
    print("ESS: " + ", ".join(f"{name} {res['ess']:.4f}" for name, res in results.items()))


if __name__ == "__main__":
    main()
