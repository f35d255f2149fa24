r"""Coverage: how much of a reference's mass lies where the flow never puts a sample.

Importance weights can only reweight what the proposal visits. A flow that never visits half of the
target's mass gives ESS 1.0 on what it does visit and log Ẑ off by log 2; the weights, the ESS and
the standard error cannot see it. Against reference samples of the target (MD, MCMC) this module
measures the reference mass in regions without a single flow sample:

* :func:`cell_coverage`: the reference's share in grid cells (e.g. 20° × 20° Ramachandran cells, or
  any grid of a low-dimensional quantity) that hold at least ``min_share`` of the reference and no
  flow sample;
* :func:`quantile_coverage`: for a scalar quantity (energy, pair distances), the reference share in
  equal-mass bins of the reference (:data:`QUANTILE_BINS` bins) without a flow sample, with the
  reference's 1 % / 99 % quantiles beside the flow's weighted ones.

The missed share is a lower bound of what the flow misses (a cell with one flow sample counts as
covered).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from molsample.errors import ShapeError

__all__ = ["CELL_MIN_SHARE", "MISSED_WARN", "QUANTILE_BINS", "Coverage", "cell_coverage", "quantile_coverage",
           "weighted_quantiles"]

#: cells holding less than this share of the reference are not counted as missed (noise)
CELL_MIN_SHARE = 0.005
#: equal-mass bins of the reference in :func:`quantile_coverage` (2 % of the reference each)
QUANTILE_BINS = 50
#: a missed share above this gives a warning
MISSED_WARN = 0.01


@dataclass
class Coverage:
    """What the flow misses of the reference.

    Attributes:
        missed_share: the reference's share (in [0, 1]) in cells/bins without a flow sample.
        what: the quantity, e.g. ``"Ramachandran 20° cells"`` or ``"energy"``.
        n_missed: cells/bins missed; n_cells: cells/bins holding at least the minimum share.
        details: further numbers (quantiles, basin populations), JSON-safe.
    """

    missed_share: float
    what: str
    n_missed: int
    n_cells: int
    details: dict[str, Any] = field(default_factory=dict)

    def warning(self) -> str | None:
        """The loud line when more than :data:`MISSED_WARN` of the reference is missed, else None."""
        if not self.missed_share > MISSED_WARN:
            return None
        return (f"the flow misses {100 * self.missed_share:.1f} % of the reference's mass: {self.n_missed} of "
                f"{self.n_cells} {self.what} regions that hold reference samples have no flow sample; the ESS "
                "cannot see it (log Z and reweighted averages lack that mass)")


def _points(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be (n,) or (n, k) points, got shape {arr.shape}")
    return arr


def cell_coverage(reference: Any, flow: Any, *, cell: float | tuple[float, ...], what: str = "cells",
                  ref_weights: Any = None, min_share: float = CELL_MIN_SHARE) -> Coverage:
    """Reference share in grid cells that hold ≥ ``min_share`` of the reference and no flow sample.

    Args:
        reference: ``(n, k)`` or ``(n,)`` reference points; flow: ``(m, k)`` flow points (unweighted:
            a sample visits its cell whatever its weight).
        cell: cell width per coordinate (one number for all), in the points' unit (degrees for angles).
        ref_weights: optional ``(n,)`` weights of the reference (default equal).
    """
    ref, flo = _points(reference, "reference"), _points(flow, "flow")
    if ref.shape[1] != flo.shape[1]:
        raise ShapeError(f"reference has {ref.shape[1]} coordinates per point, flow {flo.shape[1]}")
    width = np.broadcast_to(np.asarray(cell, dtype=np.float64), (ref.shape[1],))
    w = np.ones(len(ref)) if ref_weights is None else np.asarray(ref_weights, dtype=np.float64)
    ok = np.isfinite(ref).all(1) & np.isfinite(w)
    ref, w = ref[ok], w[ok] / w[ok].sum()
    ref_cells = np.floor(ref / width).astype(np.int64)
    flow_cells = np.floor(flo[np.isfinite(flo).all(1)] / width).astype(np.int64)
    keys, inverse = np.unique(ref_cells, axis=0, return_inverse=True)
    share = np.bincount(inverse.reshape(-1), weights=w, minlength=len(keys))
    visited = {tuple(c) for c in flow_cells.tolist()}
    held = share >= min_share
    missed = held & np.array([tuple(k) not in visited for k in keys.tolist()], dtype=bool)
    return Coverage(float(share[missed].sum()), what, int(missed.sum()), int(held.sum()))


def weighted_quantiles(values: Any, qs: Any, weights: Any = None) -> np.ndarray:
    """Quantiles ``qs`` of ``values (n,)`` under ``weights (n,)`` (default equal; non-finite values and
    weights dropped), by the inverse of the weighted empirical CDF."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    if not ok.any():
        return np.full(len(np.atleast_1d(qs)), math.nan)
    order = np.argsort(v[ok])
    vs, cdf = v[ok][order], np.cumsum(w[ok][order])
    idx = np.searchsorted(cdf / cdf[-1], np.atleast_1d(qs), side="left")
    return vs[np.clip(idx, 0, len(vs) - 1)]


def quantile_coverage(reference: Any, flow: Any, *, what: str, flow_weights: Any = None,
                      bins: int = QUANTILE_BINS) -> Coverage:
    """Reference share in the reference's ``bins`` equal-mass bins of a scalar quantity that hold no
    flow sample; ``details`` has the reference 1 % / 99 % quantiles and the flow's weighted ones."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    flo = np.asarray(flow, dtype=np.float64).reshape(-1)
    ref, flo_ok = ref[np.isfinite(ref)], flo[np.isfinite(flo)]
    if len(ref) < bins:
        raise ShapeError(f"{len(ref)} finite reference values of {what}: need at least {bins} for the coverage bins")
    edges = np.quantile(ref, np.linspace(0.0, 1.0, bins + 1))
    ref_bin = np.clip(np.searchsorted(edges, ref, side="right") - 1, 0, bins - 1)
    flow_bin = np.searchsorted(edges, flo_ok, side="right") - 1
    visited = np.zeros(bins, dtype=bool)
    visited[flow_bin[(flow_bin >= 0) & (flow_bin < bins)]] = True
    visited[bins - 1] |= bool((flo_ok == edges[-1]).any())
    share = np.bincount(ref_bin, minlength=bins) / len(ref)
    missed = ~visited
    details = {"reference_q01": float(np.quantile(ref, 0.01)), "reference_q99": float(np.quantile(ref, 0.99))}
    q = weighted_quantiles(flo, [0.01, 0.99], flow_weights)
    details.update(flow_q01=float(q[0]), flow_q99=float(q[1]))
    return Coverage(float(share[missed].sum()), what, int(missed.sum()), bins, details)
