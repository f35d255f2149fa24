r"""Importance weights of model samples for a Boltzmann target π ∝ exp(−E/kT).

For samples x ~ q with model log-density log q(x):

    log w = −E(x)/kT − log q(x)
    ESS   = (Σ w)² / (n Σ w²)                 (a fraction in [1/n, 1])
    log Ẑ = logsumexp(log w) − log n           (Ẑ estimates Z = ∫ exp(−E/kT))

The standard error of log Ẑ is the larger of two estimates (:func:`log_z_with_se`): the delta
method, sd(w)/(√n · mean w), which rests on the sample variance of the weights and is far too
small for heavy-tailed weights (the rare large weights that dominate the variance are mostly
missing from the sample), and the batch estimate: the samples are i.i.d., so the spread of log Ẑ_b
over B contiguous batches measures the error directly, se = sd(Ẑ_b)/(√B · mean Ẑ_b)
(:func:`log_partition` over the batches, also the group error bar of :mod:`molsample.flows.smc`).

Samples with a non-finite energy or log-density get weight 0 (log w = −∞); they stay in n and
are counted in :class:`WeightSummary`. All reductions are done in float64 after subtracting
the largest log-weight, so they never overflow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from molsample.errors import EnergyError, ShapeError

__all__ = ["SE_BATCHES", "log_weights", "ess", "log_partition", "batch_log_z_se", "log_z_with_se",
           "normalized_weights", "WeightSummary", "summarize", "resample"]

#: contiguous batches of the batch standard error of log Ẑ (:func:`batch_log_z_se`)
SE_BATCHES = 10


def _as_1d(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 1:
        raise ShapeError(f"{name} must be a (batch,) tensor, got shape {tuple(x.shape)}")
    return x


def log_weights(reduced_energy: Tensor, logq: Tensor) -> Tensor:
    """log w = −E/kT − log q, ``(batch,)`` float64; non-finite inputs or results give −∞.

    Args:
        reduced_energy: ``(batch,)`` E(x)/kT of the samples (e.g. ``system.reduced_energy(x)``).
        logq: ``(batch,)`` model log-density of the same samples.
    """
    u = _as_1d(reduced_energy, "reduced_energy").to(torch.float64)
    lq = _as_1d(logq, "logq").to(device=u.device, dtype=torch.float64)
    if u.shape != lq.shape:
        raise ShapeError(f"reduced_energy {tuple(u.shape)} and logq {tuple(lq.shape)} must have the same shape")
    logw = -u - lq
    bad = ~(torch.isfinite(u) & torch.isfinite(lq) & torch.isfinite(logw))
    return logw.masked_fill(bad, -math.inf)


def _clean(logw: Tensor) -> Tensor:
    """float64 copy with every non-finite entry (NaN, ±∞) set to −∞ (weight 0)."""
    lw = _as_1d(logw, "logw").to(torch.float64)
    return lw.masked_fill(~torch.isfinite(lw), -math.inf)


def _normalized(lw: Tensor) -> Tensor:
    """w / max w for a cleaned log-weight vector with at least one finite entry."""
    return torch.exp(lw - lw.max())


def normalized_weights(logw: Tensor | Any) -> Tensor:
    """Self-normalized importance weights ``(n,)`` float64 summing to 1; non-finite log-weights get 0.

    Args:
        logw: ``(n,)`` log-weights (a tensor or anything ``torch.as_tensor`` takes, e.g. a NumPy array).

    Raises:
        EnergyError: no sample has a finite log-weight.
    """
    lw = _clean(torch.as_tensor(logw))
    if not torch.isfinite(lw).any():
        raise EnergyError(
            f"all {lw.numel()} log-weights are non-finite (NaN/inf energies or densities); "
            "check the energies and log-densities of the samples"
        )
    w = _normalized(lw)
    return w / w.sum()


def ess(logw: Tensor) -> float:
    """Normalized effective sample size (Σw)²/(n Σw²) in [1/n, 1]; 0.0 when every weight is 0."""
    lw = _clean(logw)
    n = lw.numel()
    if n == 0 or not torch.isfinite(lw).any():
        return 0.0
    w = _normalized(lw)
    return float(w.sum() ** 2 / (n * (w * w).sum()))


def log_partition(logw: Tensor) -> tuple[float, float]:
    """``(log Ẑ, se)``: log Ẑ = logsumexp(log w) − log n and its standard error. Given the logs of G
    independent estimates Ẑ_g instead of weights, the same is log of their mean and its error bar.

    The standard error uses the delta method, se(log Ẑ) ≈ sd(w) / (√n · mean(w)) with the
    sample standard deviation (n − 1). Returns ``(−inf, inf)`` when every weight is 0 and
    ``(log Ẑ, inf)`` for a single sample.
    """
    lw = _clean(logw)
    n = lw.numel()
    if n == 0 or not torch.isfinite(lw).any():
        return -math.inf, math.inf
    m = lw.max()
    w = torch.exp(lw - m)
    log_z = float(m + torch.log(w.sum()) - math.log(n))
    if n < 2:
        return log_z, math.inf
    se = float(w.std(correction=1) / (math.sqrt(n) * w.mean()))
    return log_z, se


def batch_log_z_se(logw: Tensor, batches: int = SE_BATCHES) -> float:
    """Standard error of log Ẑ from the spread of log Ẑ_b over ``batches`` contiguous batches of the
    i.i.d. samples ``logw (n,)`` (:func:`log_partition` of the batch estimates); ``inf`` with fewer than 2 samples per batch."""
    lw = _clean(logw)
    if batches < 2 or lw.numel() < 2 * batches:
        return math.inf
    per = torch.stack([torch.logsumexp(b, 0) - math.log(b.numel()) for b in torch.tensor_split(lw, batches)])
    return log_partition(per)[1]


def log_z_with_se(logw: Tensor, batches: int = SE_BATCHES) -> tuple[float, float, str]:
    """``(log Ẑ, se, method)``: se the larger of the delta-method and the batch estimate
    (:func:`log_partition`, :func:`batch_log_z_se`), method ``"delta"`` or ``"batch"`` (which one);
    the delta method alone with fewer than 2 samples per batch."""
    log_z, delta = log_partition(logw)
    batch = batch_log_z_se(logw, batches)
    if math.isfinite(batch) and not batch <= delta:
        return log_z, batch, "batch"
    return log_z, delta, "delta"


@dataclass
class WeightSummary:
    """Diagnostics of a set of log-weights.

    Attributes:
        n: number of samples (including zero-weight ones).
        n_nonfinite: samples whose log-weight was not finite (non-finite energy or log q).
        ess: normalized effective sample size in [1/n, 1] (0 if all weights are 0).
        log_z: log Ẑ = logsumexp(log w) − log n.
        log_z_se: its standard error, the larger of the delta-method and the batch estimate.
        log_z_se_method: which of the two it is, ``"delta"`` or ``"batch"`` (:func:`log_z_with_se`).
    """

    n: int
    n_nonfinite: int
    ess: float
    log_z: float
    log_z_se: float
    log_z_se_method: str = "delta"

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(logw: Tensor) -> WeightSummary:
    """ESS, log Ẑ ± se (the larger of delta-method and batch se) and the count of non-finite log-weights."""
    lw = _as_1d(logw, "logw").to(torch.float64)
    log_z, se, method = log_z_with_se(lw)
    return WeightSummary(n=lw.numel(), n_nonfinite=int((~torch.isfinite(lw)).sum()), ess=ess(lw),
                         log_z=log_z, log_z_se=se, log_z_se_method=method)


def resample(logw: Tensor, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Indices of ``n`` draws proportional to the weights, by systematic resampling, ``(n,)`` int64.

    Systematic resampling uses one uniform u and the points (u + k)/n, k < n; each sample i is
    drawn ⌊n w_i⌋ or ⌈n w_i⌉ times (normalized weights w_i). Zero-weight samples are never drawn.

    Raises:
        EnergyError: every weight is zero (no finite log-weight).
    """
    lw = _clean(logw)
    if n < 0:
        raise ShapeError(f"n must be >= 0, got {n}")
    if lw.numel() == 0 or not torch.isfinite(lw).any():
        raise EnergyError("cannot resample: every weight is zero (all log-weights are non-finite: −inf or NaN); "
                          "check the energies and log-densities of the samples")
    w = _normalized(lw)
    cdf = torch.cumsum(w / w.sum(), 0)
    last = int(torch.nonzero(w > 0).max())
    cdf[last:] = 1.0  # rounding must not let a trailing zero-weight sample be drawn
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand((), generator=generator, dtype=torch.float64, device=gdev).to(cdf.device)
    points = (u + torch.arange(n, dtype=torch.float64, device=cdf.device)) / max(n, 1)
    idx = torch.searchsorted(cdf, points, right=True)
    return idx.clamp_(max=lw.numel() - 1).to(torch.int64)


#: Fewer effective samples (ESS count n · ESS) than this make a reweighted estimate unusable; the
#: same threshold marks weights as degenerate in :mod:`molsample.flows.diagnostics`.
MIN_EFFECTIVE_SAMPLES = 50


def usable(ess_fraction: float, n: int) -> bool:
    """Whether reweighted estimates from ``n`` samples with ESS fraction ``ess_fraction`` mean anything
    (at least :data:`MIN_EFFECTIVE_SAMPLES` effective samples)."""
    count = float(ess_fraction) * int(n)
    return count == count and count >= MIN_EFFECTIVE_SAMPLES  # count == count: not NaN


def unusable_note(ess_fraction: float, n: int) -> str:
    """``""`` for usable weights, else ``" (unusable: k effective samples)"`` to append to a reweighted number."""
    if usable(ess_fraction, n):
        return ""
    count = float(ess_fraction) * int(n)
    k = f"{count:.2g}" if count == count else "no"
    return f" (unusable: {k} effective sample{'' if k == '1' else 's'})"
