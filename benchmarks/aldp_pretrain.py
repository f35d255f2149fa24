"""Pretraining settings on alanine dipeptide: how close the flow's samples come to the molecule.

Trains an EGNN (hidden 64, 4 layers, the 22 atom types) by flow matching on 10,000 MD frames at
375 K (kT0 = 1.25 kT, the frames `molsample tilt --system aldp` uses, cached in
runs/cache/reference), draws samples (midpoint × 20), and prints their median energy and the RMS
deviation of the 21 bond lengths from the minimized structure's. Used for the length-scale and
learning-rate-schedule numbers in docs/flows.md:

    python benchmarks/aldp_pretrain.py --length-scale 0.17 --steps 1500 --batch-size 256
    python benchmarks/aldp_pretrain.py --length-scale 1 --steps 1500 --batch-size 256
    python benchmarks/aldp_pretrain.py --steps 3000 --batch-size 128 --ema 0.999
    python benchmarks/aldp_pretrain.py --steps 3000 --batch-size 128 --ema 0.999 --lr-schedule cosine

The prior (molsample.flows.distributions.base_distribution, card table ``[base]``) and the table of
docs/benchmarks/aldp.md; "thermal" is the bond RMSD of 300 K MD frames (``--thermal-frames``, 2,000, cached
too):

    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior isotropic
    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior harmonic --bond-std 0.15

The bond graph as edge features of the EGNN (``[net] bond_edges = true``):

    python benchmarks/aldp_pretrain.py --steps 500 --batch-size 128 --ema 0.999 --prior harmonic --bond-edges

The temperature and amount of the MD training data (``[data]`` of a run config):

    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior harmonic --data-temperature-factor 1.0
    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior harmonic --data-frames 2500

Equivariant OT flow matching for a molecule (rotations only: the atoms are not interchangeable):

    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior harmonic --coupling equivariant-ot
    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior harmonic --coupling aligned

The endpoint parametrisation (``[net] parametrisation``) and the loss weighting over t
(``[pretrain] time_weighting``):

    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior harmonic --parametrisation endpoint
    python benchmarks/aldp_pretrain.py --steps 1500 --batch-size 128 --ema 0.999 --prior harmonic --time-weighting endpoint
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from molsample.flows.distributions import base_distribution
from molsample.flows.sampler import FlowSampler
from molsample.molecules.bonds import bond_index, bond_lengths, bond_rmsd
from molsample.nets import build_net, default_net_spec
from molsample.stages.config import DataConfig
from molsample.stages.data import reference_samples
from molsample.systems.cards import load_system
from molsample.training.flow_matching import FlowMatchingConfig, train_flow_matching


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length-scale", type=float, default=None, help="override the card's (0.17 nm)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--ema", type=float, default=None)
    ap.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prior", default="isotropic", choices=["isotropic", "harmonic"])
    ap.add_argument("--bond-std", type=float, default=0.15, help="harmonic prior: sigma_b in nm")
    ap.add_argument("--bond-edges", action="store_true", help="the bond graph as EGNN edge features")
    ap.add_argument("--parametrisation", default="velocity", choices=["velocity", "endpoint"],
                    help="the net predicts the velocity or the displacement to x1 (molsample.nets.endpoint)")
    ap.add_argument("--time-weighting", default="uniform", choices=["uniform", "endpoint"],
                    help="loss weight over t (endpoint: (1 - t)^2, the error of the predicted x1)")
    ap.add_argument("--data-temperature-factor", type=float, default=1.25,
                    help="MD frames for training at this multiple of 300 K (default 1.25: 375 K, as molsample tilt)")
    ap.add_argument("--data-frames", type=int, default=10000, help="MD frames for training (500 MD steps apart)")
    ap.add_argument("--thermal-frames", type=int, default=2000, help="300 K MD frames of the thermal bond RMSD")
    ap.add_argument("--coupling", default="independent", choices=["independent", "ot", "equivariant-ot", "aligned"],
                    help="pairing of base and data samples (molecules: the symmetry-aware ones rotate only)")
    ap.add_argument("--save", default=None, help="write the trained field here (molsample.nets.save_model)")
    ap.add_argument("--checkpoint", default=None,
                    help="checkpoint file (every 500 steps); a rerun resumes from it, also with more --steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu0 = time.process_time()

    system = load_system("aldp")
    if args.length_scale is not None:
        system = dataclasses.replace(system, length_scale=args.length_scale)
    if args.prior == "harmonic":
        system = dataclasses.replace(system, card={**system.card, "base": {"kind": "harmonic",
                                                                            "bond_std": args.bond_std}})
    data = reference_samples(system, DataConfig(n=args.data_frames), args.data_temperature_factor * system.kT, seed=0,
                             progress=False)
    x = torch.as_tensor(data.samples, dtype=torch.float32)
    base = base_distribution(system)
    torch.manual_seed(0)
    field = build_net(default_net_spec(system, bond_edges=args.bond_edges, parametrisation=args.parametrisation))
    fm = FlowMatchingConfig(steps=args.steps, batch_size=args.batch_size, ema_decay=args.ema,
                            lr_schedule=args.lr_schedule, seed=0, checkpoint_every=500,
                            time_weighting=args.time_weighting, coupling=args.coupling)
    t0, c0 = time.perf_counter(), time.process_time()
    train_flow_matching(field, x, base, fm, progress=False, checkpoint_path=args.checkpoint)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    if args.save:
        from molsample.nets import save_model

        save_model(args.save, field, system=system.name, prior=repr(base))
    xs = FlowSampler(field, base, method="midpoint", steps=20).draw(
        args.samples, generator=torch.Generator().manual_seed(1)).double()
    e = system.energy.energy(xs)
    bonds = bond_index(system.topology)
    d0 = bond_lengths(np.asarray(system.energy.positions)[None], bonds)[0]  # the minimized structure's bonds
    rmsd = bond_rmsd(bond_lengths(xs, bonds), d0)
    md = reference_samples(system, DataConfig(n=args.thermal_frames), system.kT, seed=0, progress=False).samples
    thermal = bond_rmsd(bond_lengths(md, bonds), d0)
    print(f"prior {base!r}; parametrisation {args.parametrisation}, time weighting {args.time_weighting}; "
          f"{args.data_frames} MD frames at {args.data_temperature_factor * 300:g} K; coupling {args.coupling}")
    print(f"length_scale {system.length_scale:g} nm, {args.steps} steps x {args.batch_size}, ema {args.ema}, "
          f"lr {args.lr_schedule}: median E {float(e.median()):.0f} kJ/mol, "
          f"bond RMSD {rmsd:.4f} nm = {rmsd / thermal:.2f}x thermal ({thermal:.4f} nm, 300 K MD) "
          f"({args.samples} samples; training {train_s:.0f} s wall, {train_cpu:.0f} s CPU; "
          f"whole script {time.process_time() - cpu0:.0f} s CPU)")


if __name__ == "__main__":
    main()
