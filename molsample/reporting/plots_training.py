"""Training figures: annealing diagnostics across tilt levels and the loss curves (pretraining + tilt).

Each function returns a ``matplotlib.figure.Figure`` (or ``None`` when there is nothing to draw).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from molsample.reporting.plots import unit_label

FULL_COLOR, INC_COLOR, FINAL_COLOR = "#1f77b4", "#9467bd", "#d62728"


def _xaxis(history: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, str]:
    a = history.get("a")
    if a is not None and len(a) == n:
        return np.asarray(a, dtype=float), "tilt level a"
    return np.arange(n, dtype=float), "annealing level"


def _plain_y(ax) -> None:
    """Plain tick labels: no '1e-3' multiplier and no '+0.0625' offset on near-constant data."""
    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    ax.yaxis.set_major_formatter(fmt)


def _full_ess_panel(ax, history: Mapping[str, np.ndarray], final: tuple[float, float] | None,
                    n_samples: int | None) -> None:
    y = np.asarray(history.get("ess", []), dtype=float)
    x, _ = _xaxis(history, len(y))
    ok = np.isfinite(y) & (y > 0)
    if ok.any():
        ax.plot(x[ok], y[ok], "o-", color=FULL_COLOR, markersize=4, label="full ESS of the importance weights")
    if final is not None and final[1] > 0:
        ax.plot([final[0]], [final[1]], "*", color=FINAL_COLOR, markersize=12, label=f"final samples: {final[1]:.3g}")
    if n_samples:
        ax.axhline(1.0 / n_samples, color="#7f7f7f", linestyle=":", label=f"1/n floor (one sample of {n_samples})")
    if not ok.any() and final is None:
        ax.text(0.5, 0.5, "full ESS not computed during the tilt", ha="center", va="center", transform=ax.transAxes)
    ax.set_yscale("log")
    ax.set_ylim(top=1.5)
    ax.set_ylabel("ESS (fraction of samples, log axis)")
    ax.set_title("Sample quality: ESS of the full weights")
    ax.legend(fontsize="small")


def plot_annealing(history: Mapping[str, np.ndarray], energy_unit: str = "reduced", *,
                   final_ess: tuple[float, float] | None = None, n_samples: int | None = None) -> Figure | None:
    """Panels across the tilt levels: the full ESS (where computed, log axis, with the final
    samples' ESS ``final_ess = (a, ess)`` and the 1/n floor), the incremental ESS of exp(h·r)
    (the step-size control, not a sample-quality measure), the step h and the mean reward/energy."""
    panels = []
    if ("ess" in history and np.isfinite(history["ess"]).any()) or final_ess is not None:
        panels.append("ess")
    if "ess_incremental" in history and np.isfinite(history["ess_incremental"]).any():
        panels.append("ess_incremental")
    if "h" in history and len(history["h"]):
        panels.append("h")
    panels += [k for k in ("mean_reward", "mean_energy") if k in history and np.isfinite(history[k]).any()]
    if not panels:
        return None
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5.4 * ncols, 3.7 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    xl = "tilt level a"
    for ax, panel in zip(axes, panels):
        if panel == "ess":
            _full_ess_panel(ax, history, final_ess, n_samples)
        else:
            y = np.asarray(history[panel], dtype=float)
            x, xl = _xaxis(history, len(y))
            ok = np.isfinite(y)
            if panel == "ess_incremental":
                ax.plot(x[ok], y[ok], "o-", color=INC_COLOR, markersize=3.5)
                ax.set_ylim(0, 1.05)
                ax.set_ylabel("incremental ESS of $e^{h\\,r}$")
                ax.set_title("Step control: incremental ESS per level\n(not the ESS of the samples)")
            elif panel == "h":
                ax.plot(x[ok], y[ok], "o-", color="#8c564b", markersize=3.5)
                lo, hi = (float(y[ok].min()), float(y[ok].max())) if ok.any() else (0.0, 1.0)
                if hi - lo <= 1e-9 * max(abs(hi), 1e-300):  # constant h: a readable band around it
                    ax.set_ylim(lo * 0.5 if lo > 0 else lo - 1, hi * 1.5 if hi > 0 else hi + 1)
                _plain_y(ax)
                ax.set_ylabel("step h")
                ax.set_title("Annealing step per level")
            else:
                ax.plot(x[ok], y[ok], "o-", color="#17becf", markersize=3.5)
                ax.set_ylabel(f"mean energy [{unit_label(energy_unit)}]" if panel == "mean_energy" else "mean reward")
                ax.set_title(panel.replace("_", " ").capitalize() + " of level samples")
        ax.set_xlabel(xl)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def plot_losses(history: Mapping[str, np.ndarray], pretrain: Mapping[str, np.ndarray] | None = None) -> Figure | None:
    """Loss curves: the flow-matching pretraining loss per gradient step (when given) and every
    history key containing ``loss`` (per tilt level against a, or per step). ``None`` if no loss."""
    keys = [k for k in history if "loss" in k.lower() and np.isfinite(np.asarray(history[k], dtype=float)).any()]
    groups: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    if pretrain is not None and len(pretrain.get("loss", ())):
        groups["pretraining step"] = [("flow-matching loss (pretraining)", np.asarray(pretrain["step"], dtype=float),
                                       np.asarray(pretrain["loss"], dtype=float))]
    for k in sorted(keys):
        y = np.asarray(history[k], dtype=float)
        x, xl = _xaxis(history, len(y))
        if xl == "annealing level" and "a" in history:
            xl = "tilt step"
        groups.setdefault(xl, []).append((k.replace("_", " ") + " (tilt)", x, y))
    if not groups:
        return None
    fig = Figure(figsize=(6.0 * len(groups) if len(groups) > 1 else 6.4, 4.0), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False).ravel()
    for ax, (xl, curves) in zip(axes, groups.items()):
        positive = True
        for label, x, y in curves:
            ok = np.isfinite(y)
            positive &= bool((y[ok] > 0).all())
            ax.plot(x[ok], y[ok], marker="o" if ok.sum() <= 60 else None, markersize=3, label=label)
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("loss")
        ax.set_title("Pretraining (flow matching)" if xl == "pretraining step"
                     else "Tilt loss" + (" per level" if xl == "tilt level a" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig
