"""Pretraining speed with 1 vs 2 torch threads while another process competes for the cores.

    python benchmarks/thread_default.py [--steps 40] [--no-competitor]

Runs a short LJ-13 flow-matching pretraining (EGNN 64 × 4, batch 256) in a fresh process per thread
count, with a busy-looping competitor process started alongside unless ``--no-competitor``; prints
wall and CPU seconds (user + system of the child) per step. The CLI's default thread count
(``molsample --threads``) is chosen from this measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CHILD = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from molsample import load_system
from molsample.flows.distributions import base_distribution
from molsample.nets import build_net, default_net_spec
from molsample.training.flow_matching import FlowMatchingConfig, train_flow_matching
system = load_system("lj13")
torch.manual_seed(0)
field = build_net(default_net_spec(system))
data = torch.randn(2048, 13, 3)
t0 = time.perf_counter()
train_flow_matching(field, data, base_distribution(system), FlowMatchingConfig(steps=int(sys.argv[2])), progress=False)
print(time.perf_counter() - t0)
"""


def run(threads: int, steps: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps)], env=env, check=True,
                         capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"threads": threads, "train_wall_s_per_step": float(out.stdout.split()[-1]) / steps,
            "process_cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--no-competitor", action="store_true")
    args = ap.parse_args()
    competitor = None if args.no_competitor else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        rows = [run(t, args.steps) for t in (1, 2, 1, 2)]
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    print(json.dumps({"cores": os.cpu_count(), "competitor": competitor is not None, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
