"""log Ẑ of one model under several solvers and sampling seeds: do the error bars and the solver gap
explain the spread?

For each solver (``METHOD:STEPS``) and seed, draws ``--n`` weighted samples from the model (exact
divergence) and prints ESS, log Ẑ, its delta-method and batch standard errors
(:func:`molsample.flows.weights.log_partition`, :func:`~molsample.flows.weights.batch_log_z_se`) and
the se the project reports (the larger). The solver gap (benchmarks/solver_gap.py) biases log Ẑ by
about −(mean gap): subtract it to compare solvers::

    python benchmarks/log_z_solvers.py --system lj13 --model package:lj13-demo.pt \\
        --solvers midpoint:10 midpoint:20 midpoint:40 --seeds 0 1 --n 2000
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from molsample.flows.flow import load_flow
from molsample.flows.weights import batch_log_z_se, log_partition
from molsample.runtime.resources import package_file
from molsample.systems.cards import load_system
from molsample.training.rewards import make_reward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", default="lj13")
    ap.add_argument("--model", default="package:lj13-demo.pt", help="a model.pt (package:NAME for a shipped one)")
    ap.add_argument("--solvers", nargs="+", default=["midpoint:10", "midpoint:20", "midpoint:40"], help="METHOD:STEPS")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    system = load_system(args.system)
    for spec in args.solvers:
        method, steps = spec.split(":")
        flow, payload = load_flow(package_file(args.model), system, method=method, steps=int(steps))
        reward = make_reward(system, payload.get("mode", "temperature"),
                             kT0=float(payload.get("kT0") or 1.25 * system.kT))
        for seed in args.seeds:
            c0 = time.process_time()
            ws = flow.sampler(reward).sample(args.n, batch_size=args.batch_size,
                                             generator=torch.Generator().manual_seed(seed))
            s = ws.summary
            _, delta = log_partition(ws.logw.double())
            print(json.dumps({"solver": f"{method} x {steps}", "seed": seed, "n": args.n, "ess": s.ess,
                              "log_z": s.log_z, "se": s.log_z_se, "se_method": s.log_z_se_method,
                              "se_delta": delta, "se_batch": batch_log_z_se(ws.logw.double()),
                              "cpu_s": round(time.process_time() - c0, 1)}), flush=True)


if __name__ == "__main__":
    main()
