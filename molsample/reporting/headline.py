"""The report's numbers: a display table (``headline``), machine fields (``summary.json``),
loud warnings about the weights, and the "where the time goes" table."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from molsample.errors import MolsampleError
from molsample.flows.weights import unusable_note
from molsample.reporting.cost import sampling_cost
from molsample.reporting.coverage import coverage_rows
from molsample.reporting.plots import unit_label
from molsample.reporting.run_data import RunData, stage_times

#: Root attrs shown in the headline when present: attr → display label.
ATTR_LABELS = {
    "energy_evals": "energy evaluations", "n_energy_evals": "energy evaluations", "mode": "mode",
    "divergence": "divergence", "mcmc_acceptance": "MCMC acceptance",
    "chirality_reference_fraction": "reference-handed fraction (before fix)",
    "chirality_mirror_fraction": "mirror-image fraction (before fix)",
    "chirality_reflected": "samples mirrored to the reference handedness",
    "chirality_dropped": "mirror-image samples given weight 0", "seed": "seed", "created": "created",
    "refined_log_z": "log Z, SMC-refined", "refined_log_z_se": "log Z standard error, SMC-refined",
    "refined_unique_ancestors": "unique ancestors, SMC-refined",
}
#: bond RMSD / thermal above which the report warns that the flow does not resolve the bonds
BOND_RATIO_WARN = 2.0


def fmt(v: Any, digits: int = 4) -> str:
    """Display text of a headline value (``—`` for None/NaN, 4 significant digits for floats)."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def fmt_time(seconds: float | None) -> str | None:
    """``"12.5 s"`` below a minute, else ``"h:mm:ss (h:mm:ss)"``; ``None`` when not finite."""
    if seconds is None or not math.isfinite(seconds):
        return None
    s = int(round(seconds))
    return f"{seconds:.1f} s" if seconds < 60 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d} (h:mm:ss)"


def _energy_w2(e: np.ndarray, e_ref: np.ndarray, w: np.ndarray | None) -> float:
    """1-D energy W2 (:func:`molsample.analysis.metrics.energy_w2`); NaN when a side has no finite energy."""
    from molsample.analysis.metrics import energy_w2

    try:
        return energy_w2(e, e_ref, w, None)
    except MolsampleError:
        return float("nan")


def _marked(value: Any, note: str) -> Any:
    """A reweighted headline value, as display text with ``note`` appended when the note is not empty."""
    return f"{fmt(value)}{note}" if note else value


def _json_num(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


@dataclasses.dataclass
class _Headline:
    """What :func:`build_headline` fills in, in display order: label → value, key → number, warning lines."""

    head: dict[str, Any]
    summary: dict[str, Any]
    warnings: list[str] = dataclasses.field(default_factory=list)


def _identity(d: RunData) -> _Headline:
    """System, kind, method and the shape of the samples."""
    n, n_particles, dim = d.shape
    head = {"system": d.attrs.get("system"), "kind": d.attrs.get("kind"), "method": d.attrs.get("method"),
            "samples": n, "particles × dim": f"{n_particles} × {dim}"}
    summary = {"system": d.attrs.get("system"), "kind": d.attrs.get("kind"), "method": d.attrs.get("method"),
               "n_samples": n, "n_particles": n_particles, "dim": dim,
               "energy_unit": d.flow.energy_unit, "length_unit": d.flow.length_unit}
    return _Headline(head, summary)


def _add_weights(h: _Headline, d: RunData, unusable: str) -> None:
    """ESS, log Z and the weight diagnostics; a note when mirror images explain non-finite weights."""
    g = d.diag
    if g is None:
        return
    h.head["ESS (fraction)"] = g.ess
    h.head["ESS (samples)"] = g.ess_samples
    h.head["log Z"] = g.log_z_text()
    h.head["largest weight share"] = f"{100 * g.max_share:.3g}%" if math.isfinite(g.max_share) else None
    h.head["samples carrying half the weight"] = g.n_half
    h.head["non-finite weights"] = g.n_nonfinite
    gd = g.to_dict()
    h.warnings += gd.pop("warnings")
    h.summary.update({k: gd[k] for k in ("ess", "ess_samples", "log_z", "log_z_se", "log_z_se_method",
                                         "log_z_reliable", "max_weight_share", "n_half_weight")})
    h.summary.update(n_nonfinite_weights=gd["n_nonfinite"], degenerate_weights=gd["degenerate"])
    h.summary["reweighted_usable"] = not unusable
    dropped = int(d.attrs.get("chirality_dropped") or 0)
    if dropped and g.n_nonfinite:
        d.notes.append(f"{min(dropped, g.n_nonfinite)} of the {g.n_nonfinite} samples with a non-finite log-weight "
                       "are mirror images given weight 0 by the chirality fix, not failed energies")


def _add_energies(h: _Headline, d: RunData) -> None:
    """How many flow samples have a non-finite energy."""
    if d.flow.energy is not None:
        nonfinite_e = int((~np.isfinite(d.flow.energy)).sum())
        if nonfinite_e:
            h.head["non-finite energies"] = nonfinite_e
        h.summary["n_nonfinite_energies"] = nonfinite_e


def _add_reference(h: _Headline, d: RunData, unusable: str) -> None:
    """The reference's source and size, and the energy W2 of every sample set to it."""
    ref = d.ref
    if ref is None:
        return
    h.head["reference"] = d.reference_source
    h.head["reference samples"] = ref.x.shape[0]
    h.summary.update(reference=d.reference_source, n_reference=ref.x.shape[0])
    if d.flow.energy is None or ref.energy is None:
        return
    if ref.energy_unit and ref.energy_unit != d.flow.energy_unit:
        d.notes.append(f"reference energies are in {ref.energy_unit}, the run's in {d.flow.energy_unit}; no W2")
        return
    u = unit_label(d.flow.energy_unit)
    w2 = {"flow": _energy_w2(d.flow.energy, ref.energy, None)}
    h.head[f"energy W2 to reference, flow [{u}]"] = w2["flow"]
    if d.weights is not None:
        w2["reweighted"] = _energy_w2(d.flow.energy, ref.energy, d.weights)
        h.head[f"energy W2 to reference, reweighted [{u}]"] = _marked(w2["reweighted"], unusable)
    for s, role in d.extras:
        if s.energy is not None:
            w2[role] = h.head[f"energy W2 to reference, {s.label} [{u}]"] = _energy_w2(s.energy, ref.energy, None)
    h.summary["energy_w2"] = {k: _json_num(v) for k, v in w2.items()}


def _add_bonds(h: _Headline, d: RunData, unusable: str) -> None:
    """Bond RMSDs to the reference's mean bond lengths; a warning when the flow does not resolve the bonds."""
    bonds = d.bond_comparison
    if bonds is None:
        return
    u = d.flow.length_unit
    h.head[f"bond RMSD to reference mean bonds, flow [{u}]"] = f"{fmt(bonds.flow)} ({bonds.ratio:.2f}× thermal)"
    if bonds.reweighted is not None:
        h.head[f"bond RMSD to reference mean bonds, reweighted [{u}]"] = _marked(bonds.reweighted, unusable)
    h.head[f"bond RMSD of the reference itself (thermal) [{u}]"] = bonds.thermal
    h.summary["bond_rmsd"] = {"flow": _json_num(bonds.flow), "reweighted": _json_num(bonds.reweighted),
                              "thermal": _json_num(bonds.thermal), "flow_over_thermal": _json_num(bonds.ratio)}
    if bonds.ratio > BOND_RATIO_WARN:
        h.warnings.append(f"the flow's bond lengths scatter {bonds.ratio:.1f}× more around the reference's mean "
                          "bond lengths than the reference's own (thermal) scatter: the flow does not resolve the "
                          "covalent bonds, so expect energies far above the reference's and weights near the 1/n "
                          "floor; train the flow longer or on a bond-aware prior")


def _add_run_attrs(h: _Headline, d: RunData) -> None:
    """kT, wall time, the root attributes of :data:`ATTR_LABELS` and the stage times."""
    kT = d.attrs.get("kT")
    if kT is not None:
        reduced = d.flow.energy_unit in ("reduced", "")
        h.head["kT"] = f"{fmt(float(kT))} " + ("(reduced units)" if reduced else d.flow.energy_unit)
        h.summary["kT"] = float(kT)
    wall = d.attrs.get("wall_time_s")
    if isinstance(wall, (int, float, np.number)) and fmt_time(float(wall)):
        h.head["wall time"] = fmt_time(float(wall))
        h.summary["wall_time_s"] = float(wall)
    for key, label in ATTR_LABELS.items():
        if d.attrs.get(key) is not None and label not in h.head:
            h.head[label] = d.attrs[key]
            h.summary[key] = _json_num(d.attrs[key])
    times = stage_times(d.attrs)
    if times:
        h.summary["stage_cpu_s"] = {s: c for s, c, _ in times if c is not None}
        h.summary["stage_wall_s"] = {s: w for s, _, w in times if w is not None}


def _add_checks_and_cost(h: _Headline, d: RunData) -> None:
    """The solver check, the reference coverage and the sampling cost."""
    n = d.shape[0]
    for rows, part, warned, key in (solver_check_rows(d.attrs, d.diag.log_z_se if d.diag is not None else math.nan),
                                    coverage_rows(d)):
        h.head.update(rows)
        h.warnings += warned
        if part:
            h.summary[key] = part
    cost = sampling_cost(d.attrs, d.diag.ess, n) if d.diag is not None else None
    if cost is not None:
        h.head.update(cost.rows())
        h.summary["cost"] = cost.to_dict()


def build_headline(d: RunData) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """``(headline, summary, warnings)``: display label → value, machine key → number, warning lines."""
    unusable = unusable_note(d.diag.ess, d.shape[0]) if d.diag is not None else ""
    h = _identity(d)
    _add_weights(h, d, unusable)
    _add_energies(h, d)
    _add_reference(h, d, unusable)
    _add_bonds(h, d, unusable)
    _add_run_attrs(h, d)
    _add_checks_and_cost(h, d)
    summary = {k: _json_num(v) for k, v in h.summary.items()}
    summary["warnings"] = h.warnings
    return h.head, summary, h.warnings


def solver_check_rows(attrs: dict[str, Any], log_z_se: float) -> tuple[dict[str, str], dict, list[str], str]:
    """Headline rows and warnings from the ``check_*`` attributes of ``molsample check`` (nothing
    when the run was not checked): the shift of log q by a finer solver, the shift of log Z it implies,
    and the discrete-map gap; a warning when either moves log Z by more than its standard error.
    Returns ``(rows, summary.json entry, warnings, "solver_check")``."""
    if attrs.get("check_shift_mean") is None:
        return {}, {}, [], "solver_check"
    a = {k: attrs.get(f"check_{k}") for k in ("method", "steps", "fine_method", "fine_steps", "n", "shift_mean",
                                              "shift_std", "log_z_shift", "discrete_n", "discrete_gap_mean",
                                              "discrete_gap_std")}
    rows = {f"solver check: log q shift, {a['fine_method']} × {a['fine_steps']} − {a['method']} × {a['steps']}":
            f"{float(a['shift_mean']):+.3g} ± {float(a['shift_std']):.2g} (sd over {a['n']} samples)",
            "solver check: log Z shift (subset)": f"{float(a['log_z_shift']):+.3g}"}
    gap = float(a["discrete_gap_mean"]) if a["discrete_gap_mean"] is not None else math.nan
    if a["discrete_n"] and math.isfinite(gap):
        rows["solver check: discrete-map gap of log q"] = (f"{gap:+.3g} ± {float(a['discrete_gap_std']):.2g} "
                                                           f"({a['discrete_n']} fresh samples)")
    worst = max(abs(float(a["log_z_shift"])), abs(gap) if math.isfinite(gap) else 0.0)
    warned = []
    se = log_z_se if math.isfinite(log_z_se) else 0.0
    if worst > se:
        warned.append(f"the ODE solver ({a['method']} × {a['steps']}) moves log q by about {worst:.2g} nats, more than "
                      f"log Z's standard error ({se:.2g}): a bias the error bar does not cover; draw samples with more "
                      f"steps (`molsample sample RUN --n N --ode-steps {2 * int(a['steps'])}`)")
    part = {k[len("check_"):]: _json_num(v) for k, v in attrs.items() if k.startswith("check_")}
    return rows, part, warned, "solver_check"


def timing_rows(d: RunData) -> list[tuple[str, str, str, str]]:
    """Rows ``(stage, CPU s, wall s, share of wall)`` of the "where the time goes" table, with a
    total row; ``[]`` when the run file has no stage times."""
    times = stage_times(d.attrs)
    if not times:
        return []
    total_wall = sum(w for _, _, w in times if w is not None)
    total_cpu = sum(c for _, c, _ in times if c is not None)

    def cell(v: float | None) -> str:
        return "—" if v is None else f"{v:.1f}"

    rows = [(s, cell(c), cell(w), f"{100 * w / total_wall:.0f}%" if w is not None and total_wall > 0 else "—")
            for s, c, w in times]
    rows.append(("total", cell(total_cpu), cell(total_wall), "100%" if total_wall > 0 else "—"))
    return rows
