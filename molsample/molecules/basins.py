r"""Ramachandran basins of alanine dipeptide: populations and free-energy differences with error bars.

Backbone dihedrals φ = C–N–CA–C and ψ = N–CA–C–N (the card's ``dihedrals``, atom indices
(4, 6, 8, 14) and (6, 8, 14, 16) for the shipped ``aldp.pdb``), in degrees in [−180, 180), with
mdtraj's sign convention. The basins partition the torus (boundaries in degrees, half-open):

==================  =========================================  ====================================
basin               region                                     holds
==================  =========================================  ====================================
``beta_c7eq``       φ < 0 and (ψ ≥ 0 or ψ < −150)              C7eq (ψ ≈ 60) and C5/β (ψ ≈ 160)
``alpha_r``         φ < 0 and −150 ≤ ψ < 0                     αR (ψ ≈ −40)
``phi_positive``    φ ≥ 0                                      C7ax and αL
==================  =========================================  ====================================

In vacuum (amber99sb-ildn, 300 K) C7eq holds most of the mass and its lower flank reaches ψ ≈ −30,
so the ψ = 0 boundary is where the C7eq side ends by convention, not a density minimum; a REMD
histogram of ψ for φ < 0 is empty between −150 and −40 (docs/benchmarks/aldp.md).

ΔF = F(β/C7eq) − F(αR) = −kT ln(p_β/p_αR). Error bars come from the delta method on
ln p_β − ln p_αR:

* a time series (MD, REMD): g_t = 1_β(t)/p_β − 1_αR(t)/p_αR, se² = Var(g)·τ_int(g)/n with
  molsample's integrated autocorrelation time
  (:func:`~molsample.analysis.autocorrelation.integrated_autocorrelation_time`);
* independent weighted samples (a flow with importance weights w): g_i = w_i (1_β/P_β − 1_αR/P_αR)
  with P_k = mean(w·1_k), se² = Var(g)/n — for weights that do not depend on the basin this is the
  binomial error with n replaced by the ESS. Below 10 effective samples the ΔF error bar is NaN:
  with one sample carrying the weight, the estimate is not a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from molsample.analysis.autocorrelation import integrated_autocorrelation_time
from molsample.errors import ShapeError

__all__ = ["BASINS", "BasinStats", "dihedrals_deg", "phi_psi", "basin_labels", "basin_populations", "basin_report"]

BASINS = ("beta_c7eq", "alpha_r", "phi_positive")
#: printable names
BASIN_LABELS = {"beta_c7eq": "β/C7eq", "alpha_r": "αR", "phi_positive": "φ>0 (C7ax/αL)"}
PHI_ALDP, PSI_ALDP = (4, 6, 8, 14), (6, 8, 14, 16)
#: weighted samples with a smaller ESS·n get no ΔF error bar (NaN)
MIN_EFFECTIVE = 10.0


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def dihedrals_deg(x: Any, indices: tuple[int, int, int, int]) -> np.ndarray:
    """Dihedral angle of atoms ``indices`` per configuration, ``(batch,)`` degrees in [−180, 180).

    ``x``: ``(batch, n_atoms, 3)`` positions (array or tensor). Same convention as
    ``mdtraj.compute_dihedrals``.
    """
    x = _np(x)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ShapeError(f"positions must have shape (batch, n_atoms, 3), got {x.shape}")
    p0, p1, p2, p3 = (x[:, i] for i in indices)
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    m = np.cross(n1, b1 / np.linalg.norm(b1, axis=-1, keepdims=True))
    ang = -np.degrees(np.arctan2((m * n2).sum(-1), (n1 * n2).sum(-1)))
    return np.where(ang >= 180.0, ang - 360.0, ang)


def phi_psi(x: Any, system: Any = None) -> np.ndarray:
    """``(batch, 2)`` (φ, ψ) in degrees; the atoms from ``system.card["dihedrals"]`` (default ALDP's)."""
    dih = ((getattr(system, "card", None) or {}).get("dihedrals") or {}) if system is not None else {}
    phi_idx = tuple(dih.get("phi", PHI_ALDP))
    psi_idx = tuple(dih.get("psi", PSI_ALDP))
    return np.stack([dihedrals_deg(x, phi_idx), dihedrals_deg(x, psi_idx)], axis=1)


def basin_labels(angles: Any) -> np.ndarray:
    """``(batch,)`` int index into :data:`BASINS` for ``(batch, 2)`` (φ, ψ) in degrees."""
    a = _np(angles)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ShapeError(f"angles must have shape (batch, 2) = (phi, psi) in degrees, got {a.shape}")
    phi, psi = a[:, 0], a[:, 1]
    alpha = (phi < 0) & (psi >= -150.0) & (psi < 0.0)
    return np.where(phi >= 0, 2, np.where(alpha, 1, 0)).astype(np.int64)


@dataclass
class BasinStats:
    """Basin populations and ΔF(β/C7eq − αR).

    Attributes:
        populations: basin name → (weighted) fraction.
        se: basin name → its standard error.
        delta_f_kT: −ln(p_β/p_αR) (in kT; inf when a basin is empty).
        delta_f_se_kT: its standard error in kT.
        n: samples; n_eff: effective samples (n/τ_int for time series, the ESS for weighted samples).
        kind: ``"time series"``, ``"independent"`` or ``"weighted"``.
    """

    populations: dict[str, float]
    se: dict[str, float]
    delta_f_kT: float
    delta_f_se_kT: float
    n: int
    n_eff: float
    kind: str
    extra: dict[str, float] = field(default_factory=dict)

    def line(self, kT: float | None = None) -> str:
        """One line: populations ± se and ΔF ± se (in kT, and kJ/mol when ``kT`` is given)."""
        pops = ", ".join(f"{BASIN_LABELS[b]} {self.populations[b]:.4f} ± {self.se[b]:.4f}" for b in BASINS)
        df = f"ΔF(β−αR) = {self.delta_f_kT:.2f} ± {self.delta_f_se_kT:.2f} kT"
        if kT is not None:
            df += f" ({self.delta_f_kT * kT:.2f} ± {self.delta_f_se_kT * kT:.2f} kJ/mol)"
        return f"{pops}; {df}; n = {self.n}, n_eff = {self.n_eff:.0f} ({self.kind})"


def _tau(series: np.ndarray) -> float:
    tau = integrated_autocorrelation_time(series) if series.std() > 0 else 1.0
    return max(1.0, tau) if math.isfinite(tau) else 1.0


def basin_populations(angles: Any, logw: Any = None, *, time_series: bool = False) -> BasinStats:
    """Populations and ΔF with error bars (module docstring).

    Args:
        angles: ``(batch, 2)`` (φ, ψ) in degrees (:func:`phi_psi`).
        logw: optional ``(batch,)`` log importance weights (−inf = weight 0); None = equal weights.
        time_series: the samples are consecutive frames of one chain (MD, REMD at one temperature):
            error bars use τ_int. Ignored when ``logw`` is given (weighted samples are independent).
    """
    lab = basin_labels(angles)
    n = lab.shape[0]
    ind = np.stack([lab == k for k in range(len(BASINS))], axis=1).astype(np.float64)  # (n, 3)
    if logw is not None:
        lw = _np(logw).reshape(-1)
        if lw.shape[0] != n:
            raise ShapeError(f"logw has {lw.shape[0]} entries for {n} samples")
        finite = np.isfinite(lw)
        w = np.zeros(n)
        if finite.any():
            w[finite] = np.exp(lw[finite] - lw[finite].max())
        kind, n_eff = "weighted", (w.sum() ** 2 / max((w**2).sum(), 1e-300))
    else:
        w, kind = np.ones(n), ("time series" if time_series else "independent")
        n_eff = float(n)
    mean_w = w.mean()
    big_p = (w[:, None] * ind).mean(axis=0)  # (3,) mean(w·1_k)
    p = big_p / mean_w if mean_w > 0 else np.full(3, np.nan)
    se, taus = {}, {}
    for k, b in enumerate(BASINS):
        g = w * (ind[:, k] - p[k]) / mean_w if mean_w > 0 else np.zeros(n)
        tau = _tau(g) if kind == "time series" else 1.0
        taus[b] = tau
        se[b] = float(math.sqrt(g.var() * tau / n)) if n > 1 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        if big_p[0] > 0 and big_p[1] > 0:
            df = float(-math.log(big_p[0] / big_p[1]))
        else:  # an empty basin: ΔF is ±inf, or undefined when both are empty
            df = math.nan if big_p[0] == big_p[1] == 0 else (math.inf if big_p[1] == 0 else -math.inf)
    if math.isfinite(df) and kind == "weighted" and n_eff < MIN_EFFECTIVE:
        df_se = math.nan  # the delta method means nothing when a few samples carry all the weight
    elif math.isfinite(df):
        g = w * (ind[:, 0] / big_p[0] - ind[:, 1] / big_p[1])
        tau = _tau(g) if kind == "time series" else 1.0
        df_se = float(math.sqrt(g.var() * tau / n))
        if kind == "time series":
            n_eff = n / tau
    else:
        df_se = math.nan
    return BasinStats(populations={b: float(p[k]) for k, b in enumerate(BASINS)}, se=se, delta_f_kT=df,
                      delta_f_se_kT=df_se, n=n, n_eff=float(n_eff), kind=kind,
                      extra={f"tau_{b}": t for b, t in taus.items()})


def basin_report(system: Any, x: Any, *, kT: float | None = None, kind: str = "md", logw: Any = None) -> str:
    """One line of :meth:`BasinStats.line` for samples ``x`` of ``system`` (kind ``"md"`` = a time series)."""
    stats = basin_populations(phi_psi(x, system), logw, time_series=(kind == "md"))
    return stats.line(kT)
