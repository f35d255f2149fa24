"""Report figures drawn with matplotlib's object API on the Agg canvas.

No pyplot and no global backend switch: each ``plot_*`` function builds and returns a
``matplotlib.figure.Figure`` with ``layout="constrained"`` (no clipped labels);
:func:`save_figure` writes it as a PNG atomically.
Colours are fixed across figures: flow samples blue, reweighted orange, MCMC-corrected green,
reference black.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from molsample.io.atomic import atomic_path
from molsample.reporting.stats import pair_distances, weighted_histogram

#: Line colours by role.
COLORS = {"flow": "#1f77b4", "reweighted": "#ff7f0e", "mcmc": "#2ca02c", "refined": "#9467bd", "reference": "#222222"}
DPI = 120


@dataclass
class Series:
    """One sample set in a figure: ``values`` with optional ``weights``, a ``label`` and a ``role``
    (``flow | reweighted | mcmc | reference``, which picks colour and line style)."""

    label: str
    values: np.ndarray
    weights: np.ndarray | None = None
    role: str = "flow"


def unit_label(unit: str) -> str:
    """Axis-label unit text: ``"reduced"`` → ``"reduced units"``."""
    return "reduced units" if unit in ("reduced", "", None) else unit


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return path


def _style(role: str) -> dict:
    return {
        "color": COLORS.get(role, "#7f7f7f"),
        "linestyle": "--" if role == "reference" else "-",
        "linewidth": 2.0 if role == "reference" else 1.6,
    }


def _finite_range(series: Sequence[Series], lo_q: float = 0.005, hi_q: float = 0.995) -> tuple[float, float] | None:
    """A plotting range: the reference's 0.1–99.9 % range widened by 10 % when there is one,
    else the union of the other sets' lo_q–hi_q quantile ranges (flow samples can have far
    outliers — clashes at 1e6 — that would flatten every histogram)."""
    refs = [s for s in series if s.role == "reference"]
    pool = refs or list(series)
    lo, hi = math.inf, -math.inf
    for s in pool:
        v = np.asarray(s.values, dtype=np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        a, b = np.quantile(v, [0.001, 0.999] if refs else [lo_q, hi_q])
        lo, hi = min(lo, a), max(hi, b)
    if not math.isfinite(lo) or not math.isfinite(hi):
        return None
    pad = 0.1 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def _outside_fraction(s: Series, rng: tuple[float, float]) -> float:
    v = np.asarray(s.values, dtype=np.float64).reshape(-1)
    w = np.ones_like(v)
    if s.weights is not None:
        w = np.broadcast_to(np.asarray(s.weights, dtype=np.float64).reshape(-1), v.shape)
    ok = np.isfinite(w) & (w > 0)
    if not ok.any():
        return 0.0
    out = ~np.isfinite(v) | (v < rng[0]) | (v > rng[1])
    return float(w[ok & out].sum() / w[ok].sum())


def auto_bins(series: Sequence[Series], most: int = 70, least: int = 8) -> int:
    """Histogram bins for the smallest set: about 2·n^(1/3) (Rice rule), within [least, most]."""
    sizes = [np.isfinite(np.asarray(s.values, dtype=np.float64)).sum() for s in series]
    n = min([k for k in sizes if k > 0], default=0)
    return int(np.clip(round(2 * n ** (1 / 3)), least, most))


def histogram_panel(ax, series: Sequence[Series], xlabel: str, bins: int | None = None,
                    rng: tuple[float, float] | None = None, log_x: bool = False) -> None:
    """Draw weighted density histograms of several series as step lines on ``ax``.

    ``bins`` defaults to :func:`auto_bins`. ``log_x`` spaces the bins evenly on a symlog axis and
    draws the share of each set's weight per bin on a log axis instead of a density (for sets
    spread over orders of magnitude, e.g. energies of clashing flow samples).
    """
    rng = rng or _finite_range(series)
    if rng is None:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        return
    bins = bins or auto_bins(series)
    if log_x:
        edges = _symlog_inv(np.linspace(_symlog(rng[0]), _symlog(rng[1]), bins + 1))
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("log")
    else:
        edges = np.linspace(rng[0], rng[1], bins + 1)
    for s in series:
        dens, _ = weighted_histogram(s.values, s.weights, bins=edges)
        label = s.label
        frac = _outside_fraction(s, rng)
        if frac >= 0.001:
            label += f" ({100 * frac:.1f}% outside)"
        ax.stairs(dens * np.diff(edges) if log_x else dens, edges, label=label, **_style(s.role))
    if log_x:  # down to a third of one sample of the largest set: smaller shares are reweighting dust
        n_max = max(np.isfinite(np.asarray(s.values, dtype=np.float64)).sum() for s in series)
        ax.set_ylim(bottom=1.0 / (3 * max(n_max, 1)), top=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of the set per bin (log axis)" if log_x else "density")
    ax.set_xlim(*rng)
    ax.legend(fontsize="small")


def _symlog(v):
    return np.sign(v) * np.log10(1 + np.abs(v))


def _symlog_inv(u):
    return np.sign(u) * (10 ** np.abs(u) - 1)


def _full_range(series: Sequence[Series]) -> tuple[float, float] | None:
    """Smallest and largest finite value over all sets, widened by 3 % on the symlog scale, or None."""
    vals = [np.asarray(s.values, dtype=np.float64).reshape(-1) for s in series]
    v = np.concatenate([x[np.isfinite(x)] for x in vals]) if vals else np.empty(0)
    if v.size == 0:
        return None
    lo, hi = _symlog(float(v.min())), _symlog(float(v.max()))
    pad = 0.03 * max(hi - lo, 1.0)
    return float(_symlog_inv(lo - pad)), float(_symlog_inv(hi + pad))


def plot_energy(series: Sequence[Series], energy_unit: str, title: str = "Energy distribution") -> Figure:
    """Energy histograms (flow, reweighted, MCMC, reference). When any set has more than 0.1 % of
    its mass outside the zoomed range (around the reference), a second panel shows every finite
    energy on a symlog axis, so flow samples far from the reference stay visible."""
    zoom = _finite_range(series)
    full = _full_range(series)
    far = zoom is not None and any(_outside_fraction(s, zoom) >= 0.001 for s in series)
    fig = Figure(figsize=(11.6 if far else 6.4, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if far else 1, squeeze=False).ravel()
    xlabel = f"energy [{unit_label(energy_unit)}]"
    histogram_panel(axes[0], series, xlabel, rng=zoom)
    axes[0].set_title(title + (" (zoom on the reference)" if far and any(s.role == "reference" for s in series)
                               else ""))
    if far and full is not None:
        histogram_panel(axes[1], series, xlabel + ", symlog axis", bins=40, rng=full, log_x=True)
        axes[1].set_title("All finite energies (symlog axis)")
    return fig


def plot_distances(series: Sequence[Series], length_unit: str) -> Figure:
    """Histogram of all interparticle distances; ``series.values`` are positions ``(n, particles, dim)``
    and ``series.weights`` per-sample weights (repeated over the pairs)."""
    dist_series = []
    for s in series:
        d = pair_distances(s.values)
        w = None if s.weights is None else np.repeat(np.asarray(s.weights, dtype=np.float64), d.shape[1])
        dist_series.append(Series(s.label, d.reshape(-1), w, s.role))
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    unit = "nm" if length_unit == "nm" else unit_label(length_unit)
    histogram_panel(ax, dist_series, f"interparticle distance [{unit}]")
    ax.set_title("Interparticle distances (all pairs)")
    return fig


def plot_bond_lengths(groups: dict[str, Sequence[Series]], length_unit: str, columns: int = 3) -> Figure:
    """Bond-length histograms, one panel per bond group (e.g. element pair ``"C–H"``); each
    group's ``Series.values`` are its lengths ``(n, n_bonds_in_group)`` with per-sample weights."""
    names = list(groups)
    cols = min(columns, max(len(names), 1))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(3.9 * cols + 0.4, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    unit = "nm" if length_unit == "nm" else unit_label(length_unit)
    for ax, name in zip(axes, names):
        flat = []
        for s in groups[name]:
            v = np.asarray(s.values, dtype=np.float64)
            w = None if s.weights is None else np.repeat(np.asarray(s.weights, dtype=np.float64), v.shape[1])
            flat.append(Series(s.label, v.reshape(-1), w, s.role))
        histogram_panel(ax, flat, f"bond length [{unit}]")
        ax.set_title(f"{name} bonds ({np.asarray(groups[name][0].values).shape[1]})")
        if ax is not axes[0]:
            legend = ax.get_legend()
            if legend is not None and all("outside" not in t.get_text() for t in legend.get_texts()):
                legend.remove()  # one legend is enough unless this panel names shares outside its range
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return fig


def _hist2d_panels(fig: Figure, panels: Sequence[Series], extent: tuple[float, float, float, float],
                   bins: int, xlabel: str, ylabel: str, cbar_label: str) -> None:
    axes = fig.subplots(1, len(panels), squeeze=False, sharex=True, sharey=True).ravel()
    grids, vmax, vmin = [], 0.0, math.inf
    for s in panels:
        xy = np.asarray(s.values, dtype=np.float64)
        w = None if s.weights is None else np.asarray(s.weights, dtype=np.float64)
        ok = np.isfinite(xy).all(axis=1) & (True if w is None else (np.isfinite(w) & (w > 0)))
        ww = None if w is None else w[ok]
        h, xe, ye = np.histogram2d(xy[ok, 0], xy[ok, 1], bins=bins, range=[extent[:2], extent[2:]], weights=ww,
                                   density=False)
        total = (ww.sum() if ww is not None else ok.sum()) or 1.0
        h = h / (total * np.diff(xe)[0] * np.diff(ye)[0])
        grids.append((h, xe, ye))
        if (h > 0).any():
            vmax, vmin = max(vmax, h.max()), min(vmin, h[h > 0].min())
    vmin = max(vmin, vmax * 1e-4) if vmax > 0 else 1e-6
    norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))
    mesh = None
    for ax, s, (h, xe, ye) in zip(axes, panels, grids):
        hm = np.ma.masked_less_equal(h.T, 0)
        mesh = ax.pcolormesh(xe, ye, hm, norm=norm, cmap="viridis", shading="flat")
        ax.set_title(s.label)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes), label=cbar_label)


def plot_density2d(panels: Sequence[Series], length_unit: str, bins: int = 100) -> Figure:
    """2-D densities of ``(n, 2)`` samples side by side on one colour scale → PNG."""
    pts = np.concatenate([np.asarray(s.values)[np.isfinite(s.values).all(axis=1)] for s in panels])
    lo, hi = np.quantile(pts, 0.001, axis=0), np.quantile(pts, 0.999, axis=0)
    c, half = 0.5 * (lo + hi), 0.55 * float(np.max(hi - lo)) + 1e-9
    extent = (c[0] - half, c[0] + half, c[1] - half, c[1] + half)
    fig = Figure(figsize=(3.4 * len(panels) + 1.6, 4.0), layout="constrained")  # ~square panels
    u = unit_label(length_unit)
    _hist2d_panels(fig, panels, extent, bins, f"$x_1$ [{u}]", f"$x_2$ [{u}]", "density")
    return fig


def plot_ramachandran(panels: Sequence[Series], bins: int = 60) -> Figure:
    """Ramachandran plots; ``values`` are ``(n, 2)`` (φ, ψ) in radians → PNG (axes in degrees)."""
    deg = [Series(s.label, np.degrees(np.asarray(s.values, dtype=np.float64)), s.weights, s.role) for s in panels]
    fig = Figure(figsize=(3.4 * len(panels) + 1.6, 4.0), layout="constrained")  # ~square panels
    _hist2d_panels(fig, deg, (-180.0, 180.0, -180.0, 180.0), bins, "φ [degrees]", "ψ [degrees]",
                   "density [1/degree²]")
    for ax in fig.axes[: len(panels)]:
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_yticks([-180, -90, 0, 90, 180])
    return fig
