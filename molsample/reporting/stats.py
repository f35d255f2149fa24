"""Weighted statistics for reports: ESS, log Z, weighted histograms, pair distances.

Energy W2 comes from :func:`molsample.metrics.energy_w2`.

All functions take NumPy arrays. Weights are importance weights from log-weights ``logw``;
samples whose log-weight (or value) is not finite get weight 0 and are counted apart.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from molsample.io.export import normalized_weights


@dataclasses.dataclass
class WeightSummary:
    """Importance-sampling summary of ``n`` log-weights.

    Attributes:
        n: number of samples.
        n_nonfinite: samples with non-finite log-weight (weight 0).
        ess: effective sample size fraction (Σw)²/(n Σw²) ∈ [1/n, 1].
        log_z: logsumexp(logw) − log n (non-finite terms count as w = 0).
        log_z_se: delta-method standard error of ``log_z``: sqrt((1/ess − 1)/n).
    """

    n: int
    n_nonfinite: int
    ess: float
    log_z: float
    log_z_se: float


def summarize_weights(logw: np.ndarray) -> WeightSummary:
    """ESS fraction, log Z and its standard error from log-weights ``(n,)``."""
    logw = np.asarray(logw, dtype=np.float64).reshape(-1)
    n = logw.size
    finite = np.isfinite(logw)
    if not finite.any():
        return WeightSummary(n, n, float("nan"), float("nan"), float("nan"))
    w = normalized_weights(logw)
    ess = float(1.0 / (n * np.sum(w**2)))
    m = logw[finite].max()
    log_z = float(m + math.log(np.exp(logw[finite] - m).sum()) - math.log(n))
    se = float(math.sqrt(max(1.0 / ess - 1.0, 0.0) / n))
    return WeightSummary(n, int(n - finite.sum()), ess, log_z, se)


def _clean(values: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != values.shape:
        raise ValueError(f"weights have shape {w.shape}, values {values.shape}; pass one weight per value")
    ok = np.isfinite(values) & np.isfinite(w) & (w > 0)
    return values[ok], w[ok]


def weighted_histogram(
    values: np.ndarray, weights: np.ndarray | None = None, bins: int | np.ndarray = 60,
    range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A density histogram with weights: ``(density (bins,), edges (bins+1,))``.

    The density is normalized by the total weight of *all* finite samples, so mass outside
    ``range`` lowers the curve rather than being spread over the shown bins.
    """
    v, w = _clean(values, weights)
    edges = np.histogram_bin_edges(v if v.size else [0.0, 1.0], bins=bins, range=range)
    if v.size == 0:
        return np.zeros(edges.size - 1), edges
    counts, _ = np.histogram(v, bins=edges, weights=w)
    return counts / (w.sum() * np.diff(edges)), edges


def pair_distances(x: np.ndarray) -> np.ndarray:
    """All unique interparticle distances, ``(n, n_particles·(n_particles−1)/2)``."""
    x = np.asarray(x, dtype=np.float64)
    i, j = np.triu_indices(x.shape[1], k=1)
    return np.linalg.norm(x[:, i, :] - x[:, j, :], axis=-1)
