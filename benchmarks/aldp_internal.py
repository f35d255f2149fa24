"""Alanine dipeptide in internal coordinates: how good is a flow-matched flow on bonds, angles, torsions?

Fits the internal-coordinate transform (molsample.flows.internal) to MD frames at ``--data-temperature-factor``
× 300 K (cached in runs/cache/reference, as `molsample tilt` makes them), trains the residual MLP
(molsample.nets.internal_mlp) by flow matching, draws samples with exact log q and prints, at 300 K:
ESS, log Z ± se, the bond RMSD against 300 K MD frames (÷ the frames' own = "thermal"), the median
energy, the φ > 0 population (flow and reweighted), the share of L-alanine and the CPU seconds:

    python benchmarks/aldp_internal.py --steps 20000 --hidden 256 --samples 2000
    python benchmarks/aldp_internal.py --steps 20000 --hidden 256 --samples 2000 --data-temperature-factor 1.0
    python benchmarks/aldp_internal.py --data-method remd --data-temperature-factor 1.0 --data-frames 40000 \
        --data-subset 20000 --samples 5000

``--ml-steps N`` fine-tunes the flow-matched field by maximum likelihood on the same data
(molsample.training.likelihood) before sampling. ``--save FILE`` writes the flow
(molsample.flows.flow.save_flow) for `molsample tilt --model FILE`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from molsample.flows.flow import Flow, base_for, save_flow
from molsample.flows.internal import InternalCoordinates
from molsample.molecules.basins import phi_psi
from molsample.molecules.bonds import bond_index, compare_bonds
from molsample.molecules.rotor_symmetry import augment_system_frames
from molsample.molecules.chirality import chiral_centers_for_system, chirality_fractions
from molsample.molecules.zmatrix import zmatrix_for_system
from molsample.nets import build_net
from molsample.stages.config import DataConfig
from molsample.stages.data import reference_samples
from molsample.systems.cards import load_system
from molsample.training.flow_matching import FlowMatchingConfig, train_flow_matching
from molsample.training.likelihood import LikelihoodConfig, finetune_likelihood
from molsample.training.rewards import make_reward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--ode-method", default="midpoint")
    ap.add_argument("--ode-steps", type=int, default=20)
    ap.add_argument("--data-temperature-factor", type=float, default=1.25)
    ap.add_argument("--data-frames", type=int, default=10000)
    ap.add_argument("--data-method", default="auto", help="reference sampler of the data: auto (MD) | md | remd")
    ap.add_argument("--data-subset", type=int, default=0,
                    help="train on the first N of the --data-frames frames (0: all): a data-scaling curve from one run")
    ap.add_argument("--circular-threshold", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rotor-augment", action="store_true",
                    help="train on every cyclic relabelling of the methyl hydrogens (molsample.molecules.rotor_symmetry)")
    ap.add_argument("--ml-steps", type=int, default=0,
                    help="maximum-likelihood fine-tuning steps after flow matching (molsample.training.likelihood)")
    ap.add_argument("--ml-lr", type=float, default=1e-4)
    ap.add_argument("--ml-batch-size", type=int, default=256)
    ap.add_argument("--ml-ode-steps", type=int, default=10)
    ap.add_argument("--save", default=None)
    ap.add_argument("--checkpoint", default=None, help="flow-matching checkpoint (resumable, extendable)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    system = load_system("aldp")
    c0 = time.process_time()
    data = reference_samples(system, DataConfig(n=args.data_frames, method=args.data_method),
                             args.data_temperature_factor * system.kT, seed=0, progress=False)
    frames = torch.as_tensor(data.samples, dtype=torch.float64)
    if args.data_subset:
        frames = frames[:args.data_subset]
    if args.rotor_augment:
        frames = augment_system_frames(system, frames)[0]
    transform = InternalCoordinates.fit(zmatrix_for_system(system), frames, circular_threshold=args.circular_threshold)
    base = base_for(system, transform)
    z_data = transform.inverse(frames)[0].float()
    torch.manual_seed(args.seed)
    field = build_net({"name": "internal-mlp", "dim": transform.event_shape[0],
                       "periodic": [bool(p) for p in transform.periodic], "hidden": args.hidden,
                       "n_layers": args.layers})
    fm = FlowMatchingConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema,
                            lr_schedule=args.lr_schedule, seed=args.seed, checkpoint_every=1000)
    c1 = time.process_time()
    train_flow_matching(field, z_data, base, fm, progress=False, checkpoint_path=args.checkpoint)
    c2 = time.process_time()
    ml = {}
    if args.ml_steps:
        lcfg = LikelihoodConfig(steps=args.ml_steps, batch_size=args.ml_batch_size, lr=args.ml_lr,
                                ode_steps=args.ml_ode_steps, seed=args.seed)
        nll = finetune_likelihood(field, z_data, base, lcfg, progress=True)["nll"]
        ml = {"ml_steps": args.ml_steps, "ml_lr": args.ml_lr, "nll_first100": float(np.mean(nll[:100])),
              "nll_last100": float(np.mean(nll[-100:])), "cpu_ml_s": time.process_time() - c2}
        c2 = time.process_time()
    if args.save:
        save_flow(args.save, field, transform, system=system.name, a=0.0, mode="temperature",
                  kT0=args.data_temperature_factor * system.kT)
    # the weights use the target −E/kT only; kT0 (> kT) is the data's, or a hair above kT for 300 K data
    reward = make_reward(system, "temperature", kT0=max(args.data_temperature_factor, 1.0 + 1e-6) * system.kT)
    flow = Flow(field, base, transform, method=args.ode_method, steps=args.ode_steps)
    ws = flow.sampler(reward).sample(args.samples, batch_size=500, generator=torch.Generator().manual_seed(1))
    c3 = time.process_time()
    md = reference_samples(system, DataConfig(n=2000), system.kT, seed=0, progress=False).samples
    bonds = bond_index(system.topology)
    w = torch.softmax(ws.logw, 0).numpy()
    cmp = compare_bonds(ws.x.numpy(), md, bonds, weights=w)
    kT0 = args.data_temperature_factor * system.kT
    logw0 = ws.logw + ws.energy / system.kT - ws.energy / kT0  # the same samples weighted at the data's kT0
    ess0 = float(torch.exp(2 * torch.logsumexp(logw0, 0) - torch.logsumexp(2 * logw0, 0)) / len(logw0))
    phi = phi_psi(ws.x.numpy(), system)[:, 0]
    frac = chirality_fractions(ws.x.float(), chiral_centers_for_system(system))
    e_md = system.energy.energy(torch.as_tensor(md[:500], dtype=torch.float64))
    out = {
        "steps": args.steps, "hidden": args.hidden, "layers": args.layers, "frames": len(frames), "data_method": args.data_method,
        "data_T_K": 300 * args.data_temperature_factor, "samples": args.samples,
        "solver": f"{args.ode_method} x {args.ode_steps}", "circular_torsions": int(transform.periodic.sum()),
        "ess": ws.summary.ess, "log_z": ws.summary.log_z, "log_z_se": ws.summary.log_z_se,
        "n_nonfinite": ws.summary.n_nonfinite,
        "ess_at_data_kT": ess0,
        "bond_ratio_flow": cmp.ratio, "bond_ratio_reweighted": cmp.reweighted / cmp.thermal,
        "median_energy_flow": float(ws.energy.median()), "median_energy_md300": float(e_md.median()),
        "phi_pos_flow": float((phi > 0).mean()), "phi_pos_reweighted": float(w[phi > 0].sum()),
        "L_fraction": float(frac["reference"]),
        "cpu_data_s": c1 - c0, "cpu_train_s": c2 - c1 - ml.get("cpu_ml_s", 0.0), "cpu_sample_s": c3 - c2, **ml,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
