"""EGNN vs the chiral e3nn net on alanine dipeptide after the tilt: ESS and chirality, from run folders.

Make the runs first (same data, pretraining, tilt and final-sampling settings; about equal
parameter counts):

    molsample --threads 1 tilt --system aldp --config runs/aldp-egnn.toml --out runs/aldp-egnn
    molsample --threads 1 tilt --system aldp --config runs/aldp-e3nn.toml --out runs/aldp-e3nn

then tabulate them:

    python benchmarks/aldp_nets.py runs/aldp-egnn runs/aldp-e3nn

Columns: the reference-handed (L) fraction of the flow's samples before the chirality fix; ESS
against the target folded onto L (docs/chirality.md: E(3) samples mirrored, e3nn mirror images
at weight 0); the median energy of the flow samples against that of the MD reference at the
target temperature; the RMS deviation of the 21 bond lengths from their MD means (the MD samples'
own value is the thermal floor); pretraining wall time per step; total wall time.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from molsample.io.hdf5 import RunFile
from molsample.molecules.bonds import bond_index, compare_bonds
from molsample.nets import load_model
from molsample.systems.cards import load_system


def row(run: Path) -> dict:
    with RunFile(run / "samples.h5") as rf:
        flow = rf.read_samples()
        ref = rf.read_samples("reference")
        attrs = dict(rf.attrs)
        hist = rf.read_history()
    net, meta = load_model(run / "pretrained.pt")
    system = load_system("aldp")
    bonds = compare_bonds(flow["x"], ref["x"], bond_index(system.topology))
    pre = meta.get("history", {})
    summary_file = run / "report" / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    n = len(flow["logw"])
    levels = len(hist.get("a", []))
    return {
        "run": run.name,
        "net": net.spec["name"],
        "params": sum(p.numel() for p in net.parameters()),
        "pretrain steps": len(pre.get("loss", [])),
        "levels": levels,
        "samples": n,
        "L fraction (before fix)": attrs.get("chirality_reference_fraction", math.nan),
        "ESS": attrs.get("ess", math.nan),
        "effective samples": attrs.get("ess", math.nan) * n,
        "median E flow [kJ/mol]": float(np.median(flow["energy"])),
        "median E MD [kJ/mol]": float(np.median(ref["energy"])),
        "bond RMSD flow [nm]": bonds.flow,
        "bond RMSD MD [nm]": bonds.thermal,
        "energy W2 reweighted": next((v for k, v in summary.items() if "reweighted" in k and "W2" in k), math.nan),
        "wall time [min]": attrs.get("wall_time_s", math.nan) / 60,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders written by `molsample tilt`")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = [row(r) for r in args.runs]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = [f"{v:,}" if isinstance(v, int) else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
