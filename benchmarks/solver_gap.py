"""The solver gap of log q for the solvers the shipped presets use, on one model.

For each solver (``METHOD:STEPS``) draws ``--n`` fresh base samples and prints, in nats:

* the discrete-map gap log q_solver − (log p0(x0) − log|det ∂Φ_h/∂x0|), the exact density of the
  samples the solver drew (fixed-step solvers, flows of at most 100 coordinates;
  :func:`molsample.flows.solver_check.discrete_gap`);
* the shift of log q when the same samples are re-integrated backwards with rk4 × ``--fine-steps``
  (any solver, dopri5 included; :func:`molsample.flows.solver_check.fine_log_q`).

A mean gap g biases every log-weight by −g and log Ẑ by about −g; its spread adds weight noise.
The presets' final-sample solvers: smoke euler × 10, demo and default midpoint × 20, paper
dopri5 × 100 (tilt rk4 × 50), ring2d's default euler × 50::

    python benchmarks/solver_gap.py --system lj13 --model package:lj13-demo.pt \\
        --solvers euler:10 midpoint:10 midpoint:20 midpoint:40 rk4:50 dopri5:100
    python benchmarks/solver_gap.py --system aldp --model runs/aldp-internal/model.pt --solvers midpoint:20 rk4:40
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from molsample.flows.flow import load_flow
from molsample.flows.ode import integrate
from molsample.flows.solver_check import MAX_JACOBIAN_DIM, discrete_gap, fine_log_q
from molsample.runtime.resources import package_file
from molsample.systems.cards import load_system

FIXED_STEP = ("euler", "midpoint", "rk4")


def _stats(v: torch.Tensor) -> dict[str, float]:
    return {"mean": float(v.mean()), "sd": float(v.std(correction=1)) if v.numel() > 1 else float("nan")}


def measure(flow, method: str, steps: int, n: int, fine_steps: int, seed: int) -> dict:
    """Gap and shift of one solver on ``n`` fresh base samples (float64)."""
    field64 = flow.field.to(torch.float64)
    dim = flow.base.sample(1, dtype=torch.float64)[0].numel()
    out: dict = {"solver": f"{method} x {steps}", "n": n}
    c0 = time.process_time()
    if method in FIXED_STEP and dim <= MAX_JACOBIAN_DIM:
        g = torch.Generator().manual_seed(seed)
        out["discrete_gap"] = _stats(discrete_gap(field64, flow.base, n, method=method, steps=steps, generator=g).gap)
    g = torch.Generator().manual_seed(seed)
    x0 = flow.base.sample(n, generator=g, dtype=torch.float64)
    res = integrate(field64, x0, logp0=flow.base.log_prob(x0).double(), method=method, steps=steps, with_logq=True)
    fine = fine_log_q(field64, flow.base, res.x1.detach(), method="rk4", steps=fine_steps)
    out[f"shift_vs_rk4x{fine_steps}"] = _stats(fine - res.logq.double().detach())
    out["cpu_s"] = round(time.process_time() - c0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", default="lj13")
    ap.add_argument("--model", default="package:lj13-demo.pt", help="a model.pt (package:NAME for a shipped one)")
    ap.add_argument("--solvers", nargs="+", default=["euler:10", "midpoint:20", "rk4:50", "dopri5:100"],
                    help="METHOD:STEPS")
    ap.add_argument("--n", type=int, default=12, help="fresh base samples per solver")
    ap.add_argument("--fine-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    flow, _ = load_flow(package_file(args.model), load_system(args.system))
    for spec in args.solvers:
        method, steps = spec.split(":")
        print(json.dumps(measure(flow, method, int(steps), args.n, args.fine_steps, args.seed)), flush=True)


if __name__ == "__main__":
    main()
