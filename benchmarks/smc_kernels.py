"""MALA against HMC as the move of SMC (LJ-13) and as a relaxation kernel (alanine dipeptide), per energy evaluation.

``--system lj13``: the demo model's flow samples (as in ``benchmarks/lj13_smc.py``, cached in ``--cache``)
refined by :func:`~molsample.flows.smc.smc_refine` with each kernel at the same number of energy
evaluations: MALA with ``--steps`` per level and ``--final-steps`` at kT, HMC with L leapfrog steps
(each of ``--leapfrog``) and ``--steps / L``, ``--final-steps / L`` moves. Prints energy-W2 of the
refined set against the reference energies (``--ref``), unique ancestors, energy evaluations, CPU
seconds, log Z ± se and the final acceptance, one JSON line per run.

``--system aldp``: ``--n`` frames of a 300 K MD trajectory (the cached reference of
``molsample.stages.data.reference_samples``, method md), perturbed by Gaussian noise of ``--noise`` nm
per coordinate, stand in for flow samples with uniform weights; each kernel then moves them at kT
(step adapted toward its target acceptance after every step, as in SMC) for ``--evals`` energy
evaluations per sample. Prints the median energy and the bond RMSD against the MD frames' mean bond
lengths after each number of evaluations in ``--report-at``.

    OMP_NUM_THREADS=1 python benchmarks/smc_kernels.py --system lj13 --seeds 3 --leapfrog 5,10
    OMP_NUM_THREADS=1 python benchmarks/smc_kernels.py --system aldp --evals 300 --leapfrog 5,10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from molsample.flows.smc import smc_refine
from molsample.mcmc.kernels import KERNELS
from molsample.systems.cards import load_system


def kernels(leapfrog: list[int]) -> list[tuple[str, int]]:
    """``(name, evaluations per step)``: MALA, then HMC with each L."""
    return [("mala", 1)] + [("hmc", L) for L in leapfrog]


def lj13(args: argparse.Namespace) -> list[dict]:
    from lj13_smc import flow_samples

    from molsample.analysis.metrics import energy_w2
    from molsample.flows.weights import normalized_weights
    from molsample.mcmc.reference import read_reference

    system = load_system("lj13")
    energy = system.energy.to(torch.float64)
    e_ref = torch.as_tensor(read_reference(args.ref).energies, dtype=torch.float64)
    flow = flow_samples(system, args.n_samples, args.seed, Path(args.cache))
    rows = []
    for name, L in kernels(args.leapfrog):
        if args.steps % L or args.final_steps % L:
            raise SystemExit(f"--steps {args.steps} and --final-steps {args.final_steps} must be multiples of L = {L}")
        for s in range(args.seed, args.seed + args.seeds):
            res = smc_refine(flow["x"], flow["logq"], energy, system.kT, kT_start="auto", mcmc_steps=args.steps // L,
                             final_steps=args.final_steps // L, groups=args.groups, kernel=name,
                             kernel_options={"leapfrog_steps": L} if name == "hmc" else None,
                             generator=torch.Generator().manual_seed(1000 + s), remove_com=system.remove_com)
            row = {"kernel": name, "L": L, "seed": s, "energy_w2": energy_w2(res.energies, e_ref,
                                                                            w_a=normalized_weights(res.logw)),
                   "unique_ancestors": res.unique_ancestors, "energy_evals": res.n_energy_evals,
                   "cpu_s": res.cpu_s, "log_z": res.log_z, "log_z_se": res.log_z_se, "levels": res.n_levels,
                   "final_acceptance": res.history["acceptance"][-1], "final_step": res.history["step_size"][-1]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def aldp_frames(n: int, noise: float, seed: int) -> tuple[object, torch.Tensor, torch.Tensor]:
    """The system, ``n`` MD frames at 300 K ``(n, 22, 3)`` nm and the same frames plus noise (zero CoM)."""
    from molsample.stages.config import DataConfig
    from molsample.stages.data import reference_samples

    system = load_system("aldp")
    ref = reference_samples(system, DataConfig(n=n, method="md"), system.kT, seed=0, progress=False)
    x_md = torch.as_tensor(ref.samples, dtype=torch.float64)[:n]
    g = torch.Generator().manual_seed(seed)
    x = x_md + noise * torch.randn(x_md.shape, generator=g, dtype=torch.float64)
    if system.remove_com:
        x = x - x.mean(1, keepdim=True)
    return system, x_md, x


def relax(kernel, x: torch.Tensor, beta: float, evals: int, report_at: list[int], measure) -> list[dict]:
    """Move ``x`` with ``kernel`` for ``evals`` evaluations per sample, adapting one step h toward the
    kernel's target acceptance after every step; ``measure(x, e)`` at each of ``report_at``."""
    per_step = getattr(kernel, "leapfrog_steps", 1)
    e, f = kernel.evaluate(x)
    h = kernel.initial_step(x, f, beta)
    t0, used, out, acc = time.process_time(), 0, [], []
    marks = sorted(report_at)
    while True:
        while marks and used >= marks[0]:
            out.append({"evals": used, **measure(x, e), "acceptance": float(np.mean(acc[-5:])) if acc else None,
                        "h": h, "cpu_s": time.process_time() - t0})
            marks.pop(0)
        if used + per_step > evals:
            return out
        step = kernel.step(x, e, f, beta, h)
        x, e, f = step.x, step.energy, step.force
        a = float(step.accept_prob.mean())
        acc.append(a)
        h *= float(np.exp(a - kernel.target_accept))
        used += per_step


def aldp(args: argparse.Namespace) -> list[dict]:
    from molsample.molecules.bonds import bond_index, bond_lengths, bond_rmsd

    system, x_md, x0 = aldp_frames(args.n, args.noise, args.seed)
    energy = system.energy.to(torch.float64)
    bonds = bond_index(system.topology)
    mean = bond_lengths(x_md, bonds).mean(axis=0)

    def measure(x: torch.Tensor, e: torch.Tensor) -> dict:
        return {"median_energy": float(e.median()), "bond_rmsd": bond_rmsd(bond_lengths(x, bonds), mean)}

    e_md = energy.energy(x_md)
    print(json.dumps({"md_frames": {"median_energy": float(e_md.median()),
                                    "bond_rmsd": bond_rmsd(bond_lengths(x_md, bonds), mean), "kT": system.kT}}))
    rows = []
    for name, L in kernels(args.leapfrog):
        opts = {"leapfrog_steps": L} if name == "hmc" else {}
        k = KERNELS[name](energy, remove_com=system.remove_com, generator=torch.Generator().manual_seed(args.seed),
                          **opts)
        for r in relax(k, x0.clone(), 1.0 / system.kT, args.evals, args.report_at, measure):
            row = {"kernel": name, "L": L, **r}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", choices=["lj13", "aldp"], default="lj13")
    ap.add_argument("--leapfrog", type=lambda s: [int(v) for v in s.split(",")], default=[5, 10],
                    help="HMC leapfrog steps L to compare (comma-separated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=3, help="lj13: SMC seeds")
    ap.add_argument("--n-samples", type=int, default=2000, help="lj13: flow samples")
    ap.add_argument("--steps", type=int, default=10, help="lj13: MALA steps (energy evaluations) per level")
    ap.add_argument("--final-steps", type=int, default=300, help="lj13: MALA steps at kT at the end")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--ref", default="runs/smc/lj13-ref.h5", help="lj13: reference run file")
    ap.add_argument("--cache", default="runs/smc", help="lj13: where the flow samples are cached")
    ap.add_argument("--n", type=int, default=1000, help="aldp: MD frames")
    ap.add_argument("--noise", type=float, default=0.01, help="aldp: Gaussian noise per coordinate (nm)")
    ap.add_argument("--evals", type=int, default=300, help="aldp: energy evaluations per sample")
    ap.add_argument("--report-at", type=lambda s: [int(v) for v in s.split(",")],
                    default=[0, 10, 20, 50, 100, 200, 300], help="aldp: evaluations per sample to report at")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = lj13(args) if args.system == "lj13" else aldp(args)
    print(json.dumps({"system": args.system, "rows": rows}, indent=1), flush=True)


if __name__ == "__main__":
    main()
