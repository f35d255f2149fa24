"""Pretrained-only + SMC vs tilted + SMC vs MALA from scratch on LJ-13, at equal energy evaluations and CPU.

Draws ``--n-samples`` samples with their exact log q from two flows of the same net (EGNN 64 x 4,
midpoint x 20): the tilted demo model (``--tilted``, default ``package:lj13-demo.pt``) and a
pretrained-only model (``--pretrained``, e.g. ``molsample pretrain --system lj13 ...``, see
docs/benchmarks.md), refines each by :func:`~molsample.flows.smc.smc_refine` (auto start kT,
``--steps`` MALA steps per level, ``--final-steps`` at kT, ``--groups`` groups) for ``--seeds`` seeds,
and runs MALA from scratch (:func:`molsample.mcmc.mala.mala`, chains started from the flows' base
distribution, the CoM-free Gaussian) with (a) the energy evaluations and (b) the CPU seconds of the
tilted flow + SMC (flow sampling included), as ``--n-samples`` chains that keep their last state and
as ``--mala-chains`` long chains that keep the thinned second half. Energy-W2 of every set against
held-out MALA reference energies (``--ref``). One thread, float64 moves. Prints JSON lines and a
Markdown table:

    OMP_NUM_THREADS=1 python benchmarks/lj13_smc_table.py --pretrained runs/smc/lj13-pretrained/model.pt \\
        --ref runs/smc/lj13-ref.h5 > runs/smc/lj13_smc_table.log
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from molsample.analysis.metrics import energy_w2
from molsample.flows.smc import smc_refine
from molsample.flows.weights import normalized_weights, summarize
from molsample.systems.cards import load_system


def flow_samples(system, model: str, tag: str, n: int, seed: int, cache: Path) -> dict:
    """``{x, logq, energy, logw, cpu_s}`` of ``n`` samples of ``model`` (midpoint x 20), log w at kT; cached."""
    path = cache / f"lj13-{tag}-flow-n{n}-seed{seed}.pt"
    if path.is_file():
        blob = torch.load(path, weights_only=False)
    else:
        from molsample.flows.distributions import base_distribution
        from molsample.flows.sampler import FlowSampler
        from molsample.io.atomic import save_torch_atomic
        from molsample.nets import load_model
        from molsample.runtime.resources import package_file
        from molsample.training.rewards import make_reward

        field, _ = load_model(package_file(model) if model.startswith("package:") else model)
        target = make_reward(system, "temperature", kT0=1.25 * system.kT)
        sampler = FlowSampler(field, base_distribution(system), target, method="midpoint", steps=20)
        t = time.process_time()
        ws = sampler.sample(n, batch_size=500, generator=torch.Generator().manual_seed(seed))
        blob = {"x": ws.x.double(), "logq": ws.logq.double(), "energy": ws.energy.double(),
                "logw": ws.logw.double(), "cpu_s": time.process_time() - t}
        save_torch_atomic(blob, path)
    blob["logw"] = -blob["energy"] / system.kT - blob["logq"]  # weights against exp(-E/kT), whatever the cache held
    return blob


def flow_row(name: str, flow: dict, e_ref: torch.Tensor) -> dict:
    ok = torch.isfinite(flow["logw"])
    return {"row": name, "ess": summarize(flow["logw"]).ess, "energy_evals": len(flow["logw"]),
            "cpu_s": flow["cpu_s"],
            "energy_w2": energy_w2(flow["energy"][ok], e_ref, w_a=normalized_weights(flow["logw"][ok]))}


def smc_rows(name: str, flow: dict, system, args, e_ref: torch.Tensor) -> list[dict]:
    rows = []
    for s in range(args.seeds):
        res = smc_refine(flow["x"], flow["logq"], system.energy.to(torch.float64), system.kT, kT_start="auto",
                         target_cess=args.target_cess, mcmc_steps=args.steps, final_steps=args.final_steps,
                         groups=args.groups, generator=torch.Generator().manual_seed(1000 + s),
                         remove_com=system.remove_com)
        rows.append({"row": name, "seed": s, "energy_w2": energy_w2(res.energies, e_ref,
                                                                     w_a=normalized_weights(res.logw)),
                     "energy_evals": len(flow["x"]) + res.n_energy_evals, "cpu_s": flow["cpu_s"] + res.cpu_s,
                     "smc_cpu_s": res.cpu_s, "kT_start": res.kT_start, "levels": res.n_levels,
                     "unique_ancestors": res.unique_ancestors, "log_z": res.log_z, "log_z_se": res.log_z_se,
                     "start_ess": res.start_ess})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def mala_row(name: str, system, budget_evals: int, chains: int, keep_last: bool, seed: int, n_keep: int,
             e_ref: torch.Tensor) -> dict:
    """MALA from the base distribution with ``budget_evals`` energy+force evaluations in ``chains`` chains."""
    from molsample.flows.distributions import base_distribution
    from molsample.mcmc.mala import mala

    g = torch.Generator().manual_seed(2000 + seed)
    x0 = base_distribution(system).sample(chains, generator=g, dtype=torch.float64)
    steps = max(2, budget_evals // chains)
    burn = steps - 1 if keep_last else steps // 2
    thin = 1 if keep_last else max(1, (steps - burn) * chains // n_keep)
    t = time.process_time()
    res = mala(system.energy.to(torch.float64), system.kT, x0, n_steps=steps - burn, burn_in=burn, thin=thin,
               generator=g, remove_com=system.remove_com)
    cpu = time.process_time() - t
    row = {"row": name, "seed": seed, "chains": chains, "steps": steps, "burn_in": burn, "thin": thin,
           "kept": len(res.energies), "energy_evals": res.n_energy_evals, "cpu_s": cpu,
           "acceptance": res.acceptance, "energy_w2": energy_w2(res.energies, e_ref)}
    print(json.dumps(row), flush=True)
    return row


def markdown(rows: list[dict]) -> str:
    """One line per row name: energy-W2 of each seed, energy evaluations and CPU (ranges over seeds)."""
    out = ["| | energy W2 to the reference | energy evaluations | CPU s |", "|---|---|---|---|"]
    names = list(dict.fromkeys(r["row"] for r in rows))
    for name in names:
        rs = [r for r in rows if r["row"] == name]
        w2 = ", ".join(f"{r['energy_w2']:.2f}" for r in rs)
        ev = sorted({r["energy_evals"] for r in rs})
        cpu = [r["cpu_s"] for r in rs]
        evs = f"{ev[0]:,}" if len(ev) == 1 else f"{ev[0]:,}–{ev[-1]:,}"
        cps = f"{min(cpu):.0f}" if max(cpu) - min(cpu) < 1 else f"{min(cpu):.0f}–{max(cpu):.0f}"
        out.append(f"| {name} | {w2} | {evs} | {cps} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrained", default=None,
                    help="model.pt of `molsample pretrain` (same net as --tilted); without it, no pretrained rows")
    ap.add_argument("--tilted", default="package:lj13-demo.pt")
    ap.add_argument("--n-samples", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--final-steps", type=int, default=600)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--target-cess", type=float, default=0.95)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--mala-chains", type=int, default=128)
    ap.add_argument("--ref", default="runs/smc/lj13-ref.h5")
    ap.add_argument("--cache", default="runs/smc")
    ap.add_argument("--no-mala", action="store_true", help="skip the MALA rows (the flows and SMC only)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from molsample.mcmc.reference import read_reference

    system = load_system("lj13")
    e_ref = torch.as_tensor(read_reference(args.ref).energies, dtype=torch.float64)
    cache = Path(args.cache)
    tilted = flow_samples(system, args.tilted, "demo", args.n_samples, 0, cache)
    pre = flow_samples(system, args.pretrained, "pretrained", args.n_samples, 0, cache) if args.pretrained else None
    rows = [flow_row("pretrained flow, reweighted", pre, e_ref)] if pre is not None else []
    rows.append(flow_row("tilted flow, reweighted", tilted, e_ref))
    for r in rows:
        print(json.dumps(r), flush=True)
    if pre is not None:
        rows += smc_rows("pretrained + SMC", pre, system, args, e_ref)
    tilted_smc = smc_rows("tilted + SMC", tilted, system, args, e_ref)
    rows += tilted_smc
    evals = round(sum(r["energy_evals"] for r in tilted_smc) / len(tilted_smc))
    cpu = sum(r["cpu_s"] for r in tilted_smc) / len(tilted_smc)
    variants = ((f"{args.n_samples} chains", args.n_samples, True), (f"{args.mala_chains} chains", args.mala_chains, False))
    budget = {"energy_evals": evals, "cpu_s": cpu}
    for label, chains, keep_last in () if args.no_mala else variants:
        runs = [mala_row(f"MALA from scratch, {label}, equal evals", system, evals, chains, keep_last, s,
                         args.n_samples, e_ref) for s in range(args.seeds)]
        rows += runs
        per_eval = sum(r["cpu_s"] for r in runs) / sum(r["energy_evals"] for r in runs)  # this variant's cost
        cpu_evals = int(cpu / per_eval)
        budget[label] = {"cpu_per_eval_us": per_eval * 1e6, "equal_cpu_evals": cpu_evals}
        rows += [mala_row(f"MALA from scratch, {label}, equal CPU", system, cpu_evals, chains, keep_last, s,
                          args.n_samples, e_ref) for s in range(args.seeds)]
    print(json.dumps({"budget": budget}), flush=True)
    print(markdown(rows), flush=True)


if __name__ == "__main__":
    main()
