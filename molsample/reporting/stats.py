"""Weighted statistics for reports: weighted histograms and pair distances.

ESS and log Z come from :func:`molsample.flows.weights.summarize`, energy W2 from
:func:`molsample.analysis.metrics.energy_w2`.

All functions take NumPy arrays. Weights are importance weights from log-weights ``logw``;
samples whose log-weight (or value) is not finite get weight 0 and are counted apart.
"""

from __future__ import annotations

import numpy as np



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
