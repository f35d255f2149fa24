r"""Diagnostics of importance weights: is the weighted sample usable, and how far can one trust it?

From log-weights ``log w`` ``(n,)`` (see :mod:`molsample.flows.weights`):

    ESS fraction   (Σw)² / (n Σw²)        ESS count  n · ESS = (Σw)² / Σw²
    max share      max w / Σw             n_half     fewest samples whose weights sum to ≥ ½ Σw

The weights are called **degenerate** (a loud warning in the run summary, the report and
``summary.json``) when any of these holds:

    ESS count < :data:`MIN_EFFECTIVE_SAMPLES` (50)   — estimates rest on a handful of samples
    ESS fraction < :data:`MIN_ESS_FRACTION` (0.01)    — fewer than 1 % of the samples count
    max share > :data:`MAX_WEIGHT_SHARE` (0.1)        — one sample carries over a tenth of the weight

``log Ẑ ± se`` is only shown with its standard error (the larger of the delta-method and the batch
estimate, :func:`~molsample.flows.weights.log_z_with_se`) when the ESS count is at least
:data:`MIN_EFFECTIVE_SAMPLES`; below that the se itself is estimated from a few samples and looks
far more precise than it is, so the text reads e.g. ``log Z 21.07 (unreliable: 1 effective sample)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from molsample.flows.weights import MIN_EFFECTIVE_SAMPLES, _clean, log_z_with_se

__all__ = [
    "MAX_WEIGHT_SHARE",
    "MIN_EFFECTIVE_SAMPLES",
    "MIN_ESS_FRACTION",
    "WeightDiagnostics",
    "ess_curve",
    "weight_diagnostics",
]

#: Below this many effective samples (:data:`molsample.flows.weights.MIN_EFFECTIVE_SAMPLES`, 50) the
#: weights are degenerate and log Ẑ has no ± se.
#: Below this ESS fraction the weights are degenerate.
MIN_ESS_FRACTION = 0.01
#: Above this share of the total weight on one sample the weights are degenerate.
MAX_WEIGHT_SHARE = 0.1


def _plural(k: float, word: str) -> str:
    return f"{k:g} {word}" + ("" if k == 1 else "s")


@dataclass(frozen=True)
class WeightDiagnostics:
    """What a set of log-weights says about the weighted sample.

    Attributes:
        n: samples, including zero-weight ones.
        n_nonfinite: samples whose log-weight is not finite (weight 0).
        ess: ESS fraction in [1/n, 1] (0.0 when every weight is 0).
        ess_samples: ESS count n · ess.
        max_share: largest weight / total weight (NaN when every weight is 0).
        n_half: fewest samples carrying at least half the total weight (0 when every weight is 0).
        log_z: log Ẑ = logsumexp(log w) − log n; log_z_se: its standard error, the larger of the
            delta-method and the batch estimate; log_z_se_method: which (``"delta"`` or ``"batch"``).
    """

    n: int
    n_nonfinite: int
    ess: float
    ess_samples: float
    max_share: float
    n_half: int
    log_z: float
    log_z_se: float
    log_z_se_method: str = "delta"

    @property
    def log_z_reliable(self) -> bool:
        """Whether log Ẑ's standard error means anything (ESS count ≥ :data:`MIN_EFFECTIVE_SAMPLES`)."""
        return self.ess_samples >= MIN_EFFECTIVE_SAMPLES and math.isfinite(self.log_z_se)

    @property
    def degenerate(self) -> bool:
        """True when one of the thresholds of the module docstring is crossed."""
        return (self.ess_samples < MIN_EFFECTIVE_SAMPLES or self.ess < MIN_ESS_FRACTION
                or not self.max_share <= MAX_WEIGHT_SHARE)

    def log_z_text(self) -> str:
        """``"21.07 ± 0.03"``, or ``"21.07 (unreliable: 1 effective sample)"`` for degenerate weights."""
        if not math.isfinite(self.log_z):
            return "undefined (every weight is 0)"
        if self.log_z_reliable:
            return f"{self.log_z:.4g} ± {self.log_z_se:.2g}"
        return f"{self.log_z:.4g} (unreliable: {_plural(round(self.ess_samples, 1), 'effective sample')})"

    def warnings(self) -> list[str]:
        """One line per problem found, loudest first; empty when the weights look usable."""
        out: list[str] = []
        if self.n == 0:
            return ["NO SAMPLES: the set holds 0 samples; nothing can be estimated (draw some with "
                    "`molsample sample RUN --n 1000`)"]
        if self.n_nonfinite == self.n:
            return [f"DEGENERATE WEIGHTS: all {self.n} log-weights are non-finite; nothing can be reweighted"]
        if self.degenerate:
            out.append(
                f"DEGENERATE WEIGHTS: ESS {self.ess:.3g} = {_plural(round(self.ess_samples, 1), 'effective sample')} "
                f"of {self.n}; reweighted estimates (log Z, reweighted histograms, resampled frames) rest on "
                f"{'it' if self.n_half == 1 else 'a handful of samples'}"
            )
            out.append(f"the largest weight carries {100 * self.max_share:.1f}% of the total; "
                       f"{_plural(self.n_half, 'sample')} {'carries' if self.n_half == 1 else 'carry'} half of it")
        if self.n_nonfinite:
            out.append(f"{self.n_nonfinite} of {self.n} samples have a non-finite log-weight (weight 0)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable fields (JSON-safe: non-finite floats become ``None``)."""
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "n": self.n, "n_nonfinite": self.n_nonfinite, "ess": num(self.ess), "ess_samples": num(self.ess_samples),
            "max_weight_share": num(self.max_share), "n_half_weight": self.n_half, "log_z": num(self.log_z),
            "log_z_se": num(self.log_z_se), "log_z_se_method": self.log_z_se_method, "log_z_reliable": self.log_z_reliable, "degenerate": self.degenerate,
            "warnings": self.warnings(),
        }


def weight_diagnostics(logw: Tensor | Any) -> WeightDiagnostics:
    """Diagnostics of log-weights ``(n,)`` (tensor or array; non-finite entries get weight 0)."""
    lw = _clean(torch.as_tensor(logw))
    n = lw.numel()
    n_nonfinite = int((~torch.isfinite(lw)).sum())
    log_z, se, method = log_z_with_se(lw)
    if n == n_nonfinite:
        return WeightDiagnostics(n, n_nonfinite, 0.0, 0.0, math.nan, 0, log_z, se, method)
    w = torch.exp(lw - lw.max())
    total = w.sum()
    ess_samples = float(total**2 / (w * w).sum())
    share = torch.sort(w, descending=True).values / total
    n_half = int(torch.searchsorted(torch.cumsum(share, 0), torch.tensor(0.5 - 1e-12, dtype=share.dtype))) + 1
    return WeightDiagnostics(n, n_nonfinite, ess_samples / n, ess_samples, float(share[0]), min(n_half, n), log_z, se, method)


def ess_curve(logw: Tensor | Any) -> Tensor:
    """ESS count of the first k samples for k = 1..n, ``(n,)`` float64 (0 while all weights are 0).

    Computed as exp(2·logcumsumexp(log w) − logcumsumexp(2 log w)), so no prefix over- or underflows.
    For i.i.d. samples it grows about linearly, with slope the ESS fraction; a curve that jumps
    and then stays flat means one sample dominates.
    """
    lw = _clean(torch.as_tensor(logw))
    if lw.numel() == 0:
        return lw
    out = torch.exp(2 * torch.logcumsumexp(lw, 0) - torch.logcumsumexp(2 * lw, 0))
    return torch.nan_to_num(out, nan=0.0)
