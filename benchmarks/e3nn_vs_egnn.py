"""EGNN vs E3NNVelocity on alanine dipeptide (22 particles): training and likelihood cost.

Two pairs of nets at about the same parameter count:

* ``default``: ``EGNN(hidden=64, n_layers=4)`` (the default particle net) vs
  ``E3NNVelocity(hidden=48, n_layers=3)``;
* ``small``: ``EGNN(hidden=32, n_layers=4)`` vs ``E3NNVelocity()`` (its defaults: hidden 16, 3 layers).

For each net, on random CoM-free configurations of ALDP's size:

* *train step*: forward + backward of ‖b(t, x)‖² at batch ``--batch`` (what flow matching and the
  tilt loop do per gradient step);
* *likelihood pass*: ``FlowSampler(..., divergence="exact").draw_with_logq(n)``
  at batch ``--lik-batch`` with the same solver and steps for both nets (the EGNN computes its
  divergence with its own forward-mode code, and so does E3NNVelocity; ``--generic-divergence``
  times E3NNVelocity through the ODE module's generic vmapped JVPs instead).

Every time is the best of ``--repeats`` rounds after one warm-up, the two nets timed alternately
within each round (robust to a changing machine load); ratios are E3NN ÷ EGNN. Run from
the project root::

    python benchmarks/e3nn_vs_egnn.py --threads 1 --json e3nn_vs_egnn.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform as platform_module
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from molsample.flows.distributions import CoMFreeGaussian  # noqa: E402
from molsample.flows.sampler import FlowSampler  # noqa: E402
from molsample.nets.e3nn_net import E3NNVelocity  # noqa: E402
from molsample.nets.egnn import EGNN  # noqa: E402

N_PARTICLES = 22  # alanine dipeptide

PAIRS: dict[str, tuple[dict, dict]] = {
    "default": ({"hidden": 64, "n_layers": 4}, {"hidden": 48, "n_layers": 3}),
    "small": ({"hidden": 32, "n_layers": 4}, {}),
}


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time (s) of each function over ``repeats`` rounds, after one warm-up call each.

    The functions run alternately within every round, so that a change of machine load affects
    all of them alike and the ratios stay meaningful on a shared machine.
    """
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


class GenericDivergence(torch.nn.Module):
    """The same field without its own ``velocity_and_divergence``: the ODE falls back to vmapped JVPs."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return self.net(t, x)


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def bench_pair(nets: dict[str, torch.nn.Module], args: argparse.Namespace, dtype: torch.dtype) -> dict:
    """Train-step and likelihood-pass times of each net on the same inputs."""
    g = torch.Generator().manual_seed(0)
    base = CoMFreeGaussian(N_PARTICLES, 3)
    x = base.sample(args.batch, generator=g, dtype=dtype)
    t = torch.rand(args.batch, generator=g, dtype=dtype)

    def train_step(net: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            net.zero_grad(set_to_none=True)
            net(t, x).pow(2).sum().backward()
        return run

    def likelihood(net: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            sampler = FlowSampler(net, base, method=args.method, steps=args.steps, divergence="exact", dtype=dtype)
            sampler.draw_with_logq(args.lik_batch, generator=torch.Generator().manual_seed(1))
        return run

    train = best_times({k: train_step(v) for k, v in nets.items()}, args.repeats)
    lik = best_times({k: likelihood(v) for k, v in nets.items()}, args.lik_repeats)
    return {k: {"params": n_params(v), "train_step_s": train[k], "likelihood_s": lik[k]} for k, v in nets.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64, help="batch of the train step")
    p.add_argument("--lik-batch", type=int, default=8, help="batch of the likelihood pass")
    p.add_argument("--method", default="midpoint", help="ODE solver of the likelihood pass")
    p.add_argument("--steps", type=int, default=5, help="ODE steps of the likelihood pass")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--lik-repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--pairs", nargs="+", choices=tuple(PAIRS), default=list(PAIRS))
    p.add_argument("--generic-divergence", action="store_true",
                   help="time E3NNVelocity's likelihood with the generic vmapped-JVP divergence instead of its own")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    rows = []
    for name in args.pairs:
        egnn_kw, e3nn_kw = PAIRS[name]
        torch.manual_seed(0)
        egnn = EGNN(N_PARTICLES, **egnn_kw).to(dtype)
        torch.manual_seed(0)
        e3 = E3NNVelocity(N_PARTICLES, **e3nn_kw).to(dtype)
        if args.generic_divergence:
            e3 = GenericDivergence(e3)
        res = bench_pair({"egnn": egnn, "e3nn": e3}, args, dtype)
        r_egnn, r_e3nn = res["egnn"], res["e3nn"]
        rows.append({"pair": name, "egnn": {**egnn_kw, **r_egnn}, "e3nn": {**e3nn_kw, **r_e3nn},
                     "train_ratio": r_e3nn["train_step_s"] / r_egnn["train_step_s"],
                     "likelihood_ratio": r_e3nn["likelihood_s"] / r_egnn["likelihood_s"]})

    div = "generic vmapped JVPs for e3nn" if args.generic_divergence else "each net's own"
    print(f"ALDP ({N_PARTICLES} particles), {args.dtype}, {args.threads} thread(s); train step = forward+backward at "
          f"batch {args.batch}; likelihood = FlowSampler.draw_with_logq (exact divergence: {div}), {args.method} x "
          f"{args.steps} steps, batch {args.lik_batch}")
    print(f"{'pair':8} {'net':6} {'params':>8} {'train step s':>13} {'likelihood s':>13}")
    for r in rows:
        for net in ("egnn", "e3nn"):
            d = r[net]
            print(f"{r['pair']:8} {net:6} {d['params']:>8,} {d['train_step_s']:>13.4f} {d['likelihood_s']:>13.3f}")
        print(f"{r['pair']:8} {'ratio':6} {'':>8} {r['train_ratio']:>13.2f} {r['likelihood_ratio']:>13.2f}")

    result = {
        "benchmark": "e3nn_vs_egnn",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"platform": platform_module.platform(), "torch": torch.__version__,
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "rows": rows,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=args.json.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(result, fh, indent=2)
        os.replace(tmp, args.json)
    return result


if __name__ == "__main__":
    main()
