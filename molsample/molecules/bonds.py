r"""Bond lengths of molecular samples: per-bond lengths, groups by element pair, and the bond RMSD.

A flow that does not resolve the covalent bonds has energies hundreds of kJ/mol too high, and no
reweighting can repair it; the bond-length RMSD against a reference says how far off it is in a
unit a chemist reads directly. With ``d_ib`` the length of bond b in sample i and ``m_b`` the
reference mean of bond b,

    RMSD = sqrt( Σ_i w_i · mean_b (d_ib − m_b)² )       (w: normalized sample weights, uniform by default)

The same number for the reference samples themselves is the thermal spread of the bonds
("thermal RMSD"); a flow at the thermal value has bonds as tight as the Boltzmann density's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from molsample.errors import ShapeError

__all__ = ["bond_index", "bond_lengths", "bond_groups", "bond_rmsd", "BondComparison", "compare_bonds"]


def bond_index(topology: Any) -> np.ndarray:
    """``(n_bonds, 2)`` atom indices of the bonds of an mdtraj topology (empty ``(0, 2)`` without bonds)."""
    if topology is None:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = [(b[0].index, b[1].index) for b in topology.bonds]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def bond_lengths(x: Any, bonds: np.ndarray) -> np.ndarray:
    """Bond lengths ``(batch, n_bonds)`` in the unit of ``x``.

    ``x``: ``(batch, n_atoms, 3)`` positions (array or tensor); ``bonds``: ``(n_bonds, 2)`` indices.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if x.ndim != 3:
        raise ShapeError(f"positions have shape {x.shape}; expected (batch, n_atoms, dim)")
    if bonds.size and (bonds.min() < 0 or bonds.max() >= x.shape[1]):
        raise ShapeError(f"bond indices reach atom {int(bonds.max())} but the samples have {x.shape[1]} atoms; "
                         "pass the topology these samples were drawn for")
    return np.linalg.norm(x[:, bonds[:, 0]] - x[:, bonds[:, 1]], axis=-1)


def bond_groups(topology: Any) -> dict[str, np.ndarray]:
    """Bonds grouped by the element pair of their atoms: ``{"C–H": bond numbers, ...}``.

    Keys list the two element symbols sorted alphabetically (``"C–N"``, never ``"N–C"``); values
    index the rows of :func:`bond_index`. Groups come largest first, then alphabetically.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for k, b in enumerate(topology.bonds if topology is not None else ()):
        el = sorted(a.element.symbol if a.element is not None else a.name for a in (b[0], b[1]))
        groups["–".join(el)].append(k)
    order = sorted(groups, key=lambda g: (-len(groups[g]), g))
    return {g: np.asarray(groups[g], dtype=np.int64) for g in order}


def bond_rmsd(lengths: np.ndarray, mean: np.ndarray, weights: np.ndarray | None = None) -> float:
    """RMS of (bond length − ``mean``) over bonds and samples, weighted per sample.

    ``lengths``: ``(batch, n_bonds)``; ``mean``: ``(n_bonds,)``; ``weights``: ``(batch,)``, need not be
    normalized; samples with a non-finite length or a weight that is not finite and positive are left
    out. NaN when nothing is left.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    w = np.ones(lengths.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != lengths.shape[0]:
        raise ShapeError(f"{w.shape[0]} weights for {lengths.shape[0]} samples; pass one weight per sample")
    sq = ((lengths - np.asarray(mean, dtype=np.float64)[None]) ** 2).mean(axis=1)
    ok = np.isfinite(sq) & np.isfinite(w) & (w > 0)
    if not ok.any():
        return float("nan")
    return float(np.sqrt((w[ok] * sq[ok]).sum() / w[ok].sum()))


@dataclass
class BondComparison:
    """Bond RMSDs [length unit] against the reference's mean bond lengths.

    ``flow``: the flow samples; ``reweighted``: the same weighted by their importance weights
    (``None`` without weights); ``thermal``: the reference samples' own (their thermal spread).
    """

    flow: float
    reweighted: float | None
    thermal: float

    @property
    def ratio(self) -> float:
        """``flow / thermal``: 1 means bonds as tight as the reference's."""
        return self.flow / self.thermal if self.thermal > 0 else float("nan")


def compare_bonds(x: Any, x_ref: Any, bonds: np.ndarray, weights: np.ndarray | None = None) -> BondComparison:
    """Bond RMSD of flow samples ``x`` (and reweighted, with ``weights``) and the thermal RMSD of
    the reference ``x_ref``, all against the reference's mean bond lengths.

    ``x``: ``(batch, n_atoms, 3)``; ``x_ref``: ``(n_ref, n_atoms, 3)``, same unit; ``bonds``: ``(n_bonds, 2)``.
    """
    d_ref = bond_lengths(x_ref, bonds)
    d_ref = d_ref[np.isfinite(d_ref).all(axis=1)]
    if d_ref.shape[0] == 0:
        raise ShapeError("the reference has no sample with finite bond lengths; check the reference positions")
    mean = d_ref.mean(axis=0)
    d = bond_lengths(x, bonds)
    return BondComparison(flow=bond_rmsd(d, mean), reweighted=None if weights is None else bond_rmsd(d, mean, weights),
                          thermal=bond_rmsd(d_ref, mean))
