"""Integrated autocorrelation time of MCMC/MD series (Sokal's automatic window or Geyer's sequence)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from molsample.errors import ConfigError, ShapeError


def integrated_autocorrelation_time(
    series: Tensor | np.ndarray, *, method: str = "sokal", c: float = 5.0
) -> float:
    """Integrated autocorrelation time τ = 1 + 2 Σ_{t≥1} ρ(t) of a (multi-chain) series.

    Args:
        series: ``(n_steps,)`` or ``(n_steps, chains)``; the autocovariance is averaged over
            chains around the grand mean (so chains stuck in different states show up as a
            long τ rather than being hidden).
        method: ``"sokal"`` (automatic window: the smallest M with M ≥ c·τ(M)) or ``"geyer"``
            (initial positive, monotone sequence of paired autocorrelations).
        c: Sokal's window constant.
    Returns:
        τ in steps of the series (1 for independent samples); NaN for a constant series or one of
        fewer than 4 steps. Short series give no usable τ: the autocorrelations of a centred series
        sum to zero over all lags, so with a few steps Sokal's window stops where τ(M) ≈ 0 (returned
        as 1e-12), as it does for anti-correlated series (use ``"geyer"`` there). molsample's samplers
        report no τ (``None``) under 8 kept states per chain.
    """
    a = series.detach().cpu().numpy() if isinstance(series, Tensor) else np.asarray(series)
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ShapeError(f"series must be (n_steps,) or (n_steps, chains), got shape {a.shape}")
    n = a.shape[0]
    if n < 4 or not np.all(np.isfinite(a)):
        return float("nan")
    a = a - a.mean()
    size = 1 << int(2 * n - 1).bit_length()
    f = np.fft.rfft(a, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n].mean(axis=1) / n
    if not acov[0] > 0:
        return float("nan")
    rho = acov / acov[0]
    if method == "sokal":
        taus = 2.0 * np.cumsum(rho) - 1.0
        ok = np.arange(n) >= c * taus
        m = int(np.argmax(ok)) if ok.any() else n - 1
        return float(max(taus[m], 1e-12))
    if method == "geyer":
        n_pairs = n // 2
        gam = rho[0 : 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]
        neg = np.nonzero(gam <= 0)[0]
        k = int(neg[0]) if neg.size else n_pairs
        gam = np.minimum.accumulate(gam[:k]) if k > 0 else gam[:1]
        return float(max(-1.0 + 2.0 * gam.sum(), 1e-12))
    raise ConfigError(f"unknown autocorrelation method '{method}'; use 'sokal' or 'geyer'")
