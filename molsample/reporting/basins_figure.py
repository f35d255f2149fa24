"""Ramachandran panels with basin populations and ΔF: flow, reweighted flow, reference side by side.

:func:`basins_figure` returns ``(Figure, caption)`` (or None for a system without backbone
dihedrals), for the report's figure registry; it draws with matplotlib's object API (no pyplot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from molsample.molecules.basins import BASIN_LABELS, BASINS, BasinStats, basin_populations, phi_psi
from molsample.reporting.figures import FigureOut, register_figure
from molsample.reporting.run_data import RunData

__all__ = ["basins_figure", "basins_report_figure"]


def _panel_text(st: BasinStats) -> str:
    lines = [f"{BASIN_LABELS[b]}: {st.populations[b]:.3f} ± {st.se[b]:.3f}" for b in BASINS]
    lines.append(f"ΔF(β−αR) = {st.delta_f_kT:.2f} ± {st.delta_f_se_kT:.2f} kT")
    lines.append(f"n = {st.n}, n_eff = {st.n_eff:.0f}")
    return "\n".join(lines)


def _boundaries(ax: Any) -> None:
    """The basin edges of :mod:`molsample.molecules.basins`: φ = 0, and ψ = 0 / −150 for φ < 0."""
    kw = {"color": "#444444", "linewidth": 0.8, "linestyle": ":"}
    ax.axvline(0.0, **kw)
    ax.plot([-180, 0], [0, 0], **kw)
    ax.plot([-180, 0], [-150, -150], **kw)


def basins_figure(
    system: Any,
    flow_x: Any,
    reference_x: Any,
    *,
    flow_logw: Any = None,
    reference_is_time_series: bool = True,
    bins: int = 60,
) -> tuple[Figure, str] | None:
    """Ramachandran (φ, ψ) histograms of flow samples, reweighted flow samples and a reference.

    Args:
        system: the molsample System (its card's ``dihedrals`` give φ and ψ).
        flow_x: ``(n, n_atoms, 3)`` flow samples in nm (after the chirality fix).
        reference_x: ``(m, n_atoms, 3)`` reference samples (MD / REMD frames), or None.
        flow_logw: ``(n,)`` log importance weights of the flow samples; without them the
            reweighted panel is left out.
        reference_is_time_series: error bars of the reference from τ_int (consecutive frames).
    Returns:
        ``(Figure, caption)``, or None when the system has no ``dihedrals`` with ``phi`` and ``psi``.
    """
    dih = (getattr(system, "card", None) or {}).get("dihedrals") or {}
    if "phi" not in dih or "psi" not in dih:
        return None
    panels: list[tuple[str, np.ndarray, np.ndarray | None, BasinStats]] = []
    a_flow = phi_psi(flow_x, system)
    panels.append(("flow", a_flow, None, basin_populations(a_flow)))
    if flow_logw is not None:
        lw = np.asarray(flow_logw.detach().cpu() if hasattr(flow_logw, "detach") else flow_logw, dtype=np.float64)
        finite = np.isfinite(lw)
        w = np.where(finite, np.exp(lw - (lw[finite].max() if finite.any() else 0.0)), 0.0)
        panels.append(("reweighted flow", a_flow, w, basin_populations(a_flow, lw)))
    if reference_x is not None:
        a_ref = phi_psi(reference_x, system)
        panels.append(("reference", a_ref, None, basin_populations(a_ref, time_series=reference_is_time_series)))
    fig = Figure(figsize=(4.2 * len(panels), 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    edges = np.linspace(-180, 180, bins + 1)
    for ax, (title, a, w, st) in zip(axes, panels):
        h, _, _ = np.histogram2d(a[:, 0], a[:, 1], bins=[edges, edges], weights=w, density=True)
        positive = h[h > 0]
        if positive.size:
            ax.pcolormesh(edges, edges, np.where(h > 0, h, np.nan).T, cmap="viridis",
                          norm=LogNorm(vmin=max(positive.min(), positive.max() * 1e-4), vmax=positive.max()))
        _boundaries(ax)
        ax.set_title(title)
        ax.set_xlabel("φ (degrees)")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.text(0.02, 0.02, _panel_text(st), transform=ax.transAxes, fontsize=7, va="bottom",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    axes[0].set_ylabel("ψ (degrees)")
    caption = ("Ramachandran plots (log density) of " + ", ".join(p[0] for p in panels)
               + ". Basin populations ± standard error (reweighted flow: from the importance weights; reference: "
               "τ_int of the frames) and ΔF = −ln(p_β/p_αR) in kT. Dotted lines: basin edges "
               "(φ = 0; ψ = 0 and −150° for φ < 0).")
    return fig, caption


@register_figure("basins")
def basins_report_figure(d: RunData) -> FigureOut | None:
    """The report's basin figure: for systems whose card names the φ/ψ dihedrals (molecules)."""
    from molsample.errors import MolsampleError
    from molsample.systems.cards import load_system

    name = d.attrs.get("system")
    if not name or d.shape[2] != 3:
        return None
    try:
        system = load_system(str(name))
    except MolsampleError:
        return None
    out = basins_figure(system, d.flow.x, None if d.ref is None else d.ref.x, flow_logw=d.flow.logw)
    return None if out is None else FigureOut(*out)
