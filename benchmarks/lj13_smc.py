"""SMC after the flow on LJ-13: energy-W2 of the refined set against the reweighted flow, cost, log Z.

Draws ``--n-samples`` weighted samples from the shipped demo model (``molsample/data/models/lj13-demo.pt``,
midpoint × 20, the demo preset's solver; cached in ``--cache``), then for each of ``--seeds`` SMC
seeds runs :func:`~molsample.flows.smc.smc_refine` (kT_start auto, ``--steps`` MALA steps per
level, ``--final-steps`` at kT, ``--groups`` groups) and measures energy-W2 of the weighted set
against held-out MCMC reference energies (``--ref``: a reference ``.h5`` such as
``molsample reference --system lj13 --n 10000 --out runs/smc/lj13-ref.h5``), energy evaluations,
CPU seconds, log Z ± se and unique ancestors. Prints one JSON object:

    OMP_NUM_THREADS=1 python benchmarks/lj13_smc.py --n-samples 2000 --steps 10 --seed 0 \\
        --ref runs/smc/lj13-ref.h5 > runs/smc/lj13_smc.log
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

#: Reported energy-W2 of 2,000 reweighted flow samples of the demo model and of an independent MCMC set.
KNOWN = {"flow_reweighted": 0.98, "floor": 0.49}


def flow_samples(system, n: int, seed: int, cache: Path) -> dict:
    """``{x, logq, energy, logw, cpu_s}`` of ``n`` demo-model samples (cached by n and seed)."""
    path = cache / f"lj13-demo-flow-n{n}-seed{seed}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    from molsample.flows.distributions import base_distribution
    from molsample.flows.sampler import FlowSampler
    from molsample.io.atomic import save_torch_atomic
    from molsample.nets import load_model
    from molsample.runtime.resources import package_file
    from molsample.training.rewards import make_reward

    field, _ = load_model(package_file("package:lj13-demo.pt"))
    target = make_reward(system, "temperature", kT0=1.25 * system.kT)
    sampler = FlowSampler(field, base_distribution(system), target, method="midpoint", steps=20)
    t = time.process_time()
    ws = sampler.sample(n, batch_size=500, generator=torch.Generator().manual_seed(seed))
    out = {"x": ws.x.double(), "logq": ws.logq.double(), "energy": ws.energy.double(), "logw": ws.logw.double(),
           "cpu_s": time.process_time() - t}
    save_torch_atomic(out, path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=10, help="MALA steps per annealing level")
    ap.add_argument("--final-steps", type=int, default=100, help="MALA steps at kT at the end")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--target-cess", type=float, default=0.95)
    ap.add_argument("--start-kT", default="auto")
    ap.add_argument("--seed", type=int, default=0, help="seed of the flow samples; SMC seeds are seed..seed+seeds-1")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ref", default="runs/smc/lj13-ref.h5")
    ap.add_argument("--cache", default="runs/smc")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from molsample.mcmc.reference import read_reference

    system = load_system("lj13")
    energy = system.energy.to(torch.float64)
    e_ref = torch.as_tensor(read_reference(args.ref).energies, dtype=torch.float64)
    flow = flow_samples(system, args.n_samples, args.seed, Path(args.cache))
    fs = summarize(flow["logw"])
    ok = torch.isfinite(flow["logw"])
    out = {"n_samples": args.n_samples, "steps": args.steps, "final_steps": args.final_steps, "groups": args.groups,
           "target_cess": args.target_cess, "n_ref": len(e_ref), "known": KNOWN,
           "flow": {"ess": fs.ess, "log_z": fs.log_z, "log_z_se": fs.log_z_se, "cpu_s": flow["cpu_s"],
                    "energy_evals": args.n_samples,
                    "energy_w2_reweighted": energy_w2(flow["energy"][ok], e_ref,
                                                      w_a=normalized_weights(flow["logw"][ok])),
                    "energy_w2_raw": energy_w2(flow["energy"][ok], e_ref)},
           "smc": []}
    print(json.dumps({"flow": out["flow"]}), flush=True)
    kT_start = args.start_kT if args.start_kT == "auto" else float(args.start_kT)
    for s in range(args.seed, args.seed + args.seeds):
        res = smc_refine(flow["x"], flow["logq"], energy, system.kT, kT_start=kT_start, target_cess=args.target_cess,
                         mcmc_steps=args.steps, final_steps=args.final_steps, groups=args.groups,
                         generator=torch.Generator().manual_seed(1000 + s), remove_com=system.remove_com)
        row = {"seed": s, "energy_w2": energy_w2(res.energies, e_ref, w_a=normalized_weights(res.logw)),
               "log_z": res.log_z, "log_z_se": res.log_z_se, "levels": res.n_levels, "kT_start": res.kT_start,
               "unique_ancestors": res.unique_ancestors, "resamplings": res.n_resamplings,
               "energy_evals": res.n_energy_evals, "cpu_s": res.cpu_s, "start_ess": res.start_ess,
               "final_acceptance": res.history["acceptance"][-1], "final_step": res.history["step_size"][-1],
               "warnings": res.warnings}
        out["smc"].append(row)
        print(json.dumps({"smc": row}), flush=True)
    print(json.dumps(out, indent=1), flush=True)


if __name__ == "__main__":
    main()
