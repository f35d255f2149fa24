"""Importance-weight figures: the log-weight histogram and the ESS against the number of samples."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from molsample.flows.diagnostics import MIN_EFFECTIVE_SAMPLES, WeightDiagnostics, ess_curve


def plot_weights(logw: np.ndarray, diag: WeightDiagnostics) -> Figure | None:
    """Two panels from log-weights ``(n,)``: a histogram of log w − max log w (a wide spread, or one
    sample far right of the rest, means degenerate weights) with the diagnostics in a box, and the
    ESS count of the first k samples against k beside the ideal line k (equal weights).
    ``None`` when no log-weight is finite."""
    lw = np.asarray(logw, dtype=np.float64).reshape(-1)
    finite = lw[np.isfinite(lw)]
    if finite.size == 0:
        return None
    rel = finite - finite.max()
    fig = Figure(figsize=(11.6, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    bins = int(np.clip(round(2 * rel.size ** (1 / 3)), 8, 80))
    ax.hist(rel, bins=bins, color="#ff7f0e", alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("log w − max log w")
    ax.set_ylabel("samples (log axis)")
    ax.set_title("Log importance weights")
    box = (f"ESS {diag.ess:.3g} ({diag.ess_samples:.1f} of {diag.n} samples)\n"
           f"largest weight: {100 * diag.max_share:.1f}% of the total\n"
           f"half the weight on {diag.n_half} sample{'s' if diag.n_half != 1 else ''}")
    if diag.n_nonfinite:
        box += f"\n{diag.n_nonfinite} non-finite (weight 0, not drawn)"
    color = "#fde0dc" if diag.degenerate else "#eef5e9"
    ax.text(0.02, 0.97, ("DEGENERATE WEIGHTS\n" if diag.degenerate else "") + box, transform=ax.transAxes,
            va="top", ha="left", fontsize="small", bbox={"boxstyle": "round", "facecolor": color, "alpha": 0.9})
    curve = ess_curve(lw).numpy()
    k = np.arange(1, curve.size + 1)
    bx.plot(k, k, ":", color="#7f7f7f", label="equal weights (ESS = k)")
    bx.plot(k, curve, color="#1f77b4", label="ESS of the first k samples")
    bx.axhline(MIN_EFFECTIVE_SAMPLES, color="#d62728", linestyle="--", linewidth=1,
               label=f"{MIN_EFFECTIVE_SAMPLES} effective samples (warning threshold)")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("number of samples k (in stored order)")
    bx.set_ylabel("effective samples")
    bx.set_title("ESS against the number of samples")
    bx.grid(alpha=0.3, which="both")
    bx.legend(fontsize="small")
    return fig
