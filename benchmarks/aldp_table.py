"""One row of the ALDP table (docs/benchmarks/aldp.md) from a pretrained flow and the REMD reference.

Draws ``--samples`` flow samples with exact log-likelihoods (midpoint x 20), mirrors the D samples
(molsample.flows.reflection.reflect_and_reweight, which recomputes their energies when the force
field is not reflection-invariant), weights them against the 300 K Boltzmann density and prints:
bond RMSD (from the REMD frames' mean bond lengths) and its ratio to the REMD frames' own value,
median energy, ESS, reweighted energy-W2 against the REMD energies, basin populations and
ΔF(β/C7eq − αR) with error bars for flow, reweighted flow and reference, and the CPU time. Reweighted
numbers from fewer than 50 effective samples are marked "(unusable: k effective samples)".
Models come from benchmarks/aldp_pretrain.py --save; the reference from benchmarks/aldp_remd.py:

    python benchmarks/aldp_table.py MODEL.pt --prior harmonic --bond-std 0.15 --samples 500 --figure rama.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from molsample.analysis.metrics import energy_w2
from molsample.flows.distributions import base_distribution
from molsample.flows.ode import sample
from molsample.flows.reflection import reflect_and_reweight
from molsample.flows.weights import summarize, unusable_note
from molsample.mcmc.reference import load_or_generate_remd
from molsample.molecules.basins import basin_populations, phi_psi
from molsample.molecules.bonds import bond_index, compare_bonds
from molsample.molecules.chirality import chiral_centers_for_system
from molsample.nets import load_model
from molsample.systems.cards import load_system


def _marked(value: float, note: str) -> float | str:
    """``value``, or its text with ``note`` (``" (unusable: k effective samples)"``) when there is one."""
    return f"{value:.4g}{note}" if note else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--prior", default="isotropic", choices=["isotropic", "harmonic"])
    ap.add_argument("--bond-std", type=float, default=0.15)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--ref-frames", type=int, default=10000)
    ap.add_argument("--figure", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--run-file", default=None,
                    help="also write the samples (with log-weights and energies) and the REMD frames as the "
                         "'reference' set to this run file, for `molsample report` (bond lengths, energies, ...)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu0 = time.process_time()
    system = load_system("aldp")
    ref = load_or_generate_remd(system, args.ref_frames)  # keyed by the card: load it before the prior is set
    how = ("read from the cache" if ref.diagnostics.get("cache") == "hit" else
           f"not in the cache: generated now ({ref.diagnostics.get('cpu_time_s', float('nan')):.0f} CPU-s), "
           "so it is a new REMD run, not the one earlier tables compared with")
    print(f"REMD reference ({ref.n} frames at 300 K) {how}: {ref.diagnostics.get('path')}", flush=True)
    if args.prior == "harmonic":
        system = dataclasses.replace(system, card={**system.card, "base": {"kind": "harmonic",
                                                                            "bond_std": args.bond_std}})
    base = base_distribution(system)
    field, _ = load_model(args.model)
    xr = ref.samples.numpy()
    bonds = bond_index(system.topology)
    gen = torch.Generator().manual_seed(args.seed)
    xs, lqs = [], []
    for k in range(0, args.samples, args.batch):
        res = sample(field, base, min(args.batch, args.samples - k), generator=gen, method="midpoint", steps=20,
                     with_logq=True)
        xs.append(res.x1.detach().double())
        lqs.append(res.logq.detach().double())
    x, logq = torch.cat(xs), torch.cat(lqs)
    centers = chiral_centers_for_system(system)
    out = reflect_and_reweight(x, logq, system.energy.energy, system.kT, centers)
    xf, e, logw = out.x.numpy(), out.energy.numpy(), out.logw
    s = summarize(logw)
    w = torch.softmax(torch.nan_to_num(logw, neginf=-1e300), 0).numpy()
    bc = compare_bonds(xf, xr, bonds)
    thermal, rmsd = bc.thermal, bc.flow
    a_flow, a_ref = phi_psi(xf, system), phi_psi(xr, system)
    unusable = unusable_note(s.ess, len(xf))  # "" when the weights carry >= 50 effective samples
    stats = {"flow": basin_populations(a_flow), f"reweighted flow{unusable}": basin_populations(a_flow, logw.numpy()),
             "reference (REMD)": basin_populations(a_ref, time_series=True)}
    finite = np.isfinite(e)
    row = {
        "model": args.model, "prior": repr(base), "samples": len(xf), "mirrored": out.n_reflected,
        "bond RMSD [nm]": rmsd, "bond RMSD / thermal": rmsd / thermal, "thermal [nm]": thermal,
        "median E flow [kJ/mol]": float(np.median(e)), "median E REMD [kJ/mol]": float(np.median(ref.energies)),
        "ESS": s.ess, "effective samples": s.ess * len(xf),
        "energy W2 reweighted [kJ/mol]": _marked(energy_w2(e[finite], ref.energies.numpy(), w[finite]), unusable),
        "energy W2 flow [kJ/mol]": energy_w2(e[finite], ref.energies.numpy()),
        "CPU s (this script)": time.process_time() - cpu0,
    }
    print(json.dumps(row, indent=1))
    for name, st in stats.items():
        print(f"{name:>18}: {st.line(system.kT)}")
    if args.run_file:
        from molsample.io.hdf5 import RunFile

        with RunFile(args.run_file, "w") as rf:
            rf.write_samples(xf, logw=logw.numpy(), energy=e, energy_unit="kJ/mol", length_unit="nm",
                             topology=system.topology, kT=float(system.kT))
            rf.write_samples(xr, energy=ref.energies.numpy(), energy_unit="kJ/mol", length_unit="nm",
                             topology=system.topology, kT=float(system.kT), name="reference")
            rf.set_attrs(system="aldp", kind="flow", method="pretrained", model=str(args.model), seed=args.seed)
        print(f"run file {args.run_file}: `molsample report {args.run_file}` draws its figures")
    if args.figure:
        from molsample.reporting.basins_figure import basins_figure

        fig, caption = basins_figure(system, xf, xr, flow_logw=logw)
        fig.savefig(args.figure, dpi=120)
        print(f"figure {args.figure}: {caption}")


if __name__ == "__main__":
    main()
