"""The report's figures, each one registered function ``(RunData) -> FigureOut | None``.

A figure function returns the matplotlib figure with its caption, or ``None`` when it does not
apply to the run (no history, 2-D toy, no backbone, ...). :func:`make_report` draws every
registered figure in registration order; adding a figure is one decorated function here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

from molsample.molecules.bonds import bond_groups, bond_index, bond_lengths
from molsample.reporting import plots
from molsample.reporting.plots import Series
from molsample.reporting.plots_training import plot_annealing, plot_losses
from molsample.reporting.plots_weights import plot_weights
from molsample.reporting.run_data import RunData


@dataclasses.dataclass
class FigureOut:
    """A drawn figure and the caption printed under it."""

    figure: Figure
    caption: str


FigureFn = Callable[[RunData], "FigureOut | None"]
#: Registered figures by name (the PNG is ``<name>.png``), in drawing order.
FIGURES: dict[str, FigureFn] = {}


def register_figure(name: str) -> Callable[[FigureFn], FigureFn]:
    """Decorator: register ``fn(run_data) -> FigureOut | None`` as the report figure ``name``."""
    def deco(fn: FigureFn) -> FigureFn:
        if name in FIGURES:
            raise ValueError(f"report figure {name!r} is registered twice")
        FIGURES[name] = fn
        return fn
    return deco


@register_figure("weights")
def weights_figure(d: RunData) -> FigureOut | None:
    if d.flow.logw is None or d.diag is None:
        return None
    fig = plot_weights(d.flow.logw, d.diag)
    if fig is None:
        return None
    verdict = ("The weights are degenerate (see the warning above): reweighted estimates rest on "
               f"{d.diag.ess_samples:.1f} effective samples. " if d.diag.degenerate else "")
    return FigureOut(fig, verdict + "Left: histogram of the log importance weights relative to the largest; a "
                     "long left tail with a few samples at 0 means a few samples carry the weight. Right: ESS of "
                     "the first k samples against k; healthy weights grow about linearly (slope = ESS fraction), "
                     "degenerate ones jump when a heavy sample arrives and then stay flat.")


@register_figure("annealing")
def annealing_figure(d: RunData) -> FigureOut | None:
    if not d.history:
        return None
    a = d.history.get("a")
    final = (float(a[-1]) if a is not None and len(a) else 1.0, d.diag.ess) if d.diag is not None else None
    fig = plot_annealing(d.history, d.flow.energy_unit, final_ess=final, n_samples=d.shape[0])
    if fig is None:
        return None
    return FigureOut(fig, "Top left: ESS of the full importance weights on the levels where the tilt computed it "
                     "(log axis), the final samples' ESS (star) and the 1/n floor that one dominant sample gives. "
                     "Top right: the incremental ESS of exp(h·r) per level, which only controls the step size; "
                     "a value near 1 says the step was small, not that the samples are good. Then the step h "
                     "and the mean reward/energy of the level samples across the tilt levels a.")


@register_figure("loss")
def loss_figure(d: RunData) -> FigureOut | None:
    fig = plot_losses(d.history, d.pretrain_history)
    if fig is None:
        return None
    pre = "the flow-matching pretraining loss per gradient step (from pretrained.pt) and " if d.pretrain_history else ""
    return FigureOut(fig, f"Training losses: {pre}the tilt losses from the run history.")


@register_figure("energy")
def energy_figure(d: RunData) -> FigureOut | None:
    flow = d.flow
    if flow.energy is None:
        return None
    es = [Series(d.main_label, flow.energy, None, "flow")]
    if d.weights is not None:
        es.append(Series("reweighted", flow.energy, d.weights, "reweighted"))
    es += [Series(s.label, s.energy, None, role) for s, role in d.extras if s.energy is not None]
    ref = d.ref
    if ref is not None and ref.energy is not None and (not ref.energy_unit or ref.energy_unit == flow.energy_unit):
        es.append(Series(ref.label, ref.energy, None, "reference"))
    fig = plots.plot_energy(es, flow.energy_unit)
    two = len(fig.axes) > 1
    return FigureOut(fig, "Energy histograms of the flow samples, the same samples reweighted by their importance "
                     "weights, and the reference; the legend gives the share of each set outside the plotted range. "
                     + ("The right panel shows every finite energy on a symlog axis, so samples far from the "
                        "reference are visible. " if two else "")
                     + "Bins: about 2·n^(1/3) for the smallest set (8 to 70).")


@register_figure("distances")
def distances_figure(d: RunData) -> FigureOut | None:
    n, n_particles, _ = d.shape
    if n_particles < 2:
        return None
    idx = d.subset(n)
    ds = [Series(d.main_label, d.flow.x[idx], None, "flow")]
    if d.weights is not None:
        ds.append(Series("reweighted", d.flow.x[idx], d.weights[idx], "reweighted"))
    for s, role in d.extras:
        ds.append(Series(s.label, s.x[d.subset(s.x.shape[0])], None, role))
    if d.ref is not None:
        ds.append(Series(d.ref.label, d.ref.x[d.subset(d.ref.x.shape[0])], None, "reference"))
    caption = "Histogram of all interparticle distances, pooled over pairs and samples."
    if d.flow.length_unit == "reduced":
        caption += " Lengths in reduced LJ units (r_m = 1)."
    return FigureOut(plots.plot_distances(ds, d.flow.length_unit), caption)


@register_figure("bonds")
def bonds_figure(d: RunData) -> FigureOut | None:
    bonds = bond_index(d.flow.topology)
    if d.shape[2] != 3 or bonds.shape[0] == 0:
        return None
    flow = bond_lengths(d.flow.x, bonds)  # (n, n_bonds), also the reweighted set's
    sets = [Series(d.main_label, flow, None, "flow")]
    if d.weights is not None:
        sets.append(Series("reweighted", flow, d.weights, "reweighted"))
    sets += [Series(s.label, bond_lengths(s.x, bonds), None, role) for s, role in d.extras]
    if d.ref is not None:
        sets.append(Series(d.ref.label, bond_lengths(d.ref.x, bonds), None, "reference"))
    groups = {name: [Series(s.label, s.values[:, idx], s.weights, s.role) for s in sets]
              for name, idx in bond_groups(d.flow.topology).items()}
    caption = ("Bond lengths by the elements they join, pooled over the bonds of each group and all samples; "
               "a flow that resolves the bonds matches the reference's peaks in place and width.")
    comp = d.bond_comparison
    if comp is not None:
        caption += (f" Bond RMSD from the reference's mean bond lengths: flow {comp.flow:.4g} "
                    f"({comp.ratio:.2f}× the reference's own {comp.thermal:.4g})"
                    + (f", reweighted {comp.reweighted:.4g}" if comp.reweighted is not None else "")
                    + f" {d.flow.length_unit}.")
    return FigureOut(plots.plot_bond_lengths(groups, d.flow.length_unit), caption)


def _phi_psi(x: np.ndarray, topology) -> np.ndarray | None:
    """``(n, 2)`` backbone (φ, ψ) in radians of the first residue pair, or None without a backbone."""
    import mdtraj

    if topology is None or x.shape[2] != 3:
        return None
    traj = mdtraj.Trajectory(xyz=x.astype(np.float32), topology=topology)
    _, phi = mdtraj.compute_phi(traj)
    _, psi = mdtraj.compute_psi(traj)
    if phi.shape[1] == 0 or psi.shape[1] == 0:
        return None
    return np.stack([phi[:, 0], psi[:, 0]], axis=1)


@register_figure("ramachandran")
def ramachandran_figure(d: RunData) -> FigureOut | None:
    n, _, dim = d.shape
    if dim != 3 or d.flow.topology is None or d.flow.topology.n_residues < 2:
        return None
    idx = d.subset(n)
    pp = _phi_psi(d.flow.x[idx], d.flow.topology)
    if pp is None:
        return None
    rs = [Series(d.main_label, pp, None, "flow")]
    if d.weights is not None:
        rs.append(Series("reweighted", pp, d.weights[idx], "reweighted"))
    if d.ref is not None:
        rpp = _phi_psi(d.ref.x[d.subset(d.ref.x.shape[0])], d.ref.topology or d.flow.topology)
        if rpp is not None:
            rs.append(Series(d.ref.label, rpp, None, "reference"))
    return FigureOut(plots.plot_ramachandran(rs), "Ramachandran plot (backbone φ/ψ of the first residue) of the "
                     "flow samples, reweighted samples and the reference; log colour scale.")


@register_figure("density2d")
def density2d_figure(d: RunData) -> FigureOut | None:
    _, n_particles, dim = d.shape
    if n_particles != 1 or dim != 2:
        return None
    ps = [Series(d.main_label, d.flow.x[:, 0, :], None, "flow")]
    if d.weights is not None:
        ps.append(Series("reweighted (importance weights)", d.flow.x[:, 0, :], d.weights, "reweighted"))
    if d.ref is not None:
        ps.append(Series(f"target: {d.ref.label}", d.ref.x[:, 0, :], None, "reference"))
    return FigureOut(plots.plot_density2d(ps, d.flow.length_unit),
                     "2-D densities of the samples next to the target, on one log colour scale.")
