"""The report's coverage check: the reference mass where the flow puts no sample
(:mod:`molsample.analysis.coverage`), per run.

Molecules whose card names the backbone ``dihedrals`` phi and psi: 20° × 20° Ramachandran cells and the
basin populations (:mod:`molsample.molecules.basins`). Other systems: the energy and, for several
particles, the pooled pair distances, in equal-mass bins of the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from molsample.analysis.coverage import Coverage, cell_coverage, quantile_coverage
from molsample.errors import MolsampleError
from molsample.reporting.run_data import RunData

__all__ = ["RAMACHANDRAN_CELL_DEG", "coverage_rows", "run_coverage"]

#: width of the Ramachandran cells (degrees)
RAMACHANDRAN_CELL_DEG = 20.0


def _card(name: Any) -> dict:
    from molsample.systems.cards import load_system

    try:
        return load_system(str(name)).card if name else {}
    except MolsampleError:
        return {}


def _ramachandran(d: RunData, dihedrals: dict) -> Coverage:
    from molsample.molecules.basins import basin_populations, dihedrals_deg

    def angles(x: np.ndarray) -> np.ndarray:
        return np.stack([dihedrals_deg(x, tuple(dihedrals["phi"])), dihedrals_deg(x, tuple(dihedrals["psi"]))], 1)

    ref, flow = angles(d.ref.x), angles(d.flow.x)
    c = cell_coverage(ref + 180.0, flow + 180.0, cell=RAMACHANDRAN_CELL_DEG,
                      what=f"Ramachandran {RAMACHANDRAN_CELL_DEG:g}° × {RAMACHANDRAN_CELL_DEG:g}° cells")
    c.details["reference_basins"] = basin_populations(ref).populations
    if d.flow.logw is not None and np.isfinite(d.flow.logw).any():
        c.details["flow_basins_reweighted"] = basin_populations(flow, d.flow.logw).populations
    return c


def run_coverage(d: RunData) -> list[Coverage]:
    """What the flow samples of a run miss of its reference (``[]`` without a reference)."""
    if d.ref is None:
        return []
    dihedrals = _card(d.attrs.get("system")).get("dihedrals") or {}
    if "phi" in dihedrals and "psi" in dihedrals and d.shape[2] == 3:
        return [_ramachandran(d, dihedrals)]
    out = []
    if d.flow.energy is not None and d.ref.energy is not None and len(d.ref.energy) >= 50:
        out.append(quantile_coverage(d.ref.energy, d.flow.energy, what="energy", flow_weights=d.weights))
    if d.shape[1] > 1 and len(d.ref.x) >= 50:
        from molsample.analysis.metrics import interatomic_distances

        ri, fi = d.subset(len(d.ref.x)), d.subset(len(d.flow.x))
        ref_d, flow_d = interatomic_distances(d.ref.x[ri]).numpy(), interatomic_distances(d.flow.x[fi]).numpy()
        w = None if d.weights is None else np.repeat(d.weights[fi], flow_d.shape[1])
        out.append(quantile_coverage(ref_d, flow_d, what="pair distance", flow_weights=w))
    return out


def coverage_rows(d: RunData) -> tuple[dict[str, str], dict[str, Any], list[str], str]:
    """``(headline rows, summary.json entry, warnings, "coverage")`` of :func:`run_coverage`."""
    rows: dict[str, str] = {}
    summary: dict[str, Any] = {}
    warnings: list[str] = []
    for c in run_coverage(d):
        rows[f"reference mass the flow never visits ({c.what})"] = (f"{100 * c.missed_share:.3g}% "
                                                                    f"({c.n_missed} of {c.n_cells})")
        summary[c.what] = {"missed_share": c.missed_share, "n_missed": c.n_missed, "n_cells": c.n_cells,
                           **c.details}
        if c.warning():
            warnings.append(c.warning())
    return rows, summary, warnings, "coverage"
