"""``molsample report``: figures and a one-page summary (HTML + Markdown) of a run.

:func:`make_report` reads a run file (and optionally a reference run), computes the headline
numbers (ESS, log Z ± se, energy W2 to the reference, sample counts, wall time) and draws the
figures that apply to the system: annealing diagnostics and losses (from ``/history``), energy
and interparticle-distance histograms (flow, reweighted, MCMC-corrected, reference), a
Ramachandran plot for peptides and 2-D densities for 2-D toys. See docs/report.md.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molsample.errors import ConfigError, MissingFileError, MolsampleError
from molsample.io.atomic import write_text_atomic
from molsample.sampling.weights import normalized_weights as _nw


def normalized_weights(logw):  # temporary shim until the report loop lands
    return _nw(logw).numpy()
from molsample.io.hdf5 import RunFile, open_run
from molsample.reporting import plots
from molsample.reporting.plots import Series
from molsample.sampling.weights import summarize

#: Sample sets besides "samples" that the report draws when present, with their role.
EXTRA_SETS = {"mcmc_corrected": ("MCMC-corrected", "mcmc")}


@dataclasses.dataclass
class SampleSet:
    """Positions and energies of one set, as the report uses them."""

    label: str
    x: np.ndarray
    energy: np.ndarray | None
    logw: np.ndarray | None
    energy_unit: str
    length_unit: str
    topology: Any = None


@dataclasses.dataclass
class Report:
    """What :func:`make_report` wrote.

    Attributes:
        out_dir: folder of the report.
        html: the HTML page; markdown: the Markdown page; summary_json: the headline numbers.
        figures: figure name → PNG path (only the figures that apply to the run).
        headline: the headline values (also in ``summary.json``).
        notes: remarks shown on the page (skipped figures, unit mismatches, ...).
    """

    out_dir: Path
    html: Path
    markdown: Path
    summary_json: Path
    figures: dict[str, Path]
    headline: dict[str, Any]
    notes: list[str]


def _set_from_run(rf: RunFile, name: str, label: str) -> SampleSet:
    s = rf.read_samples(name)
    return SampleSet(label, s["x"], s["energy"], s["logw"], s["energy_unit"], s["length_unit"], rf.read_topology(name))


def load_reference(reference: str | os.PathLike, system_name: str | None = None) -> SampleSet:
    """Reference samples from a run folder/file (its ``samples`` set, or its ``reference`` set when it
    has no ``samples``) or a ``.npy`` array ``(n, n_particles, dim)``.

    For ``.npy`` input the energies are computed with the run's system when it can be loaded.
    """
    p = Path(reference)
    if p.suffix == ".npy":
        if not p.is_file():
            raise MissingFileError(f"reference file {p} does not exist; pass a reference run or a .npy of positions")
        x = np.load(p)
        if x.ndim != 3:
            raise ConfigError(f"reference array {p} has shape {x.shape}; it must be (n, n_particles, dim)")
        energy, eunit, lunit = None, "", "nm"
        if system_name:
            energy, eunit, lunit = _energies_from_system(x, system_name)
        return SampleSet("reference", x, energy, None, eunit, lunit)
    with open_run(p) as rf:
        name = "samples" if "samples" in rf.sample_sets() else "reference"
        method = rf.attrs.get("method")
        label = f"reference ({method})" if method else "reference"
        return _set_from_run(rf, name, label)


def _energies_from_system(x: np.ndarray, system_name: str) -> tuple[np.ndarray | None, str, str]:
    try:
        import torch

        from molsample.systems import load_system

        system = load_system(system_name)
        energy = system.energy.double()
        xt = torch.as_tensor(x, dtype=torch.float64)
        with torch.no_grad():
            e = torch.cat([energy.energy(xt[i : i + 4096]) for i in range(0, xt.shape[0], 4096)])
        return e.numpy(), system.energy_unit, system.length_unit
    except (MolsampleError, ImportError, RuntimeError):
        return None, "", "nm"


def _energy_w2(e: np.ndarray, e_ref: np.ndarray, w: np.ndarray | None) -> float:
    """1-D energy W2 (:func:`molsample.metrics.energy_w2`); NaN when a side has no finite energy."""
    from molsample.metrics import energy_w2

    try:
        return energy_w2(e, e_ref, w, None)
    except MolsampleError:
        return float("nan")


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.{digits}g}"
    return str(v)


def _fmt_time(seconds: float | None) -> str | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    s = int(round(seconds))
    return f"{seconds:.1f} s" if seconds < 60 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d} (h:mm:ss)"


def _subset(n: int, max_frames: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= max_frames else np.sort(rng.choice(n, size=max_frames, replace=False))


def _phi_psi(x: np.ndarray, topology: Any) -> np.ndarray | None:
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


def make_report(
    run: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    max_frames: int = 5000,
    seed: int = 0,
) -> Report:
    """Write the figures, ``report.html``, ``report.md`` and ``summary.json`` of a run.

    Args:
        run: run folder or run file.
        reference: reference run (folder/file) or ``.npy`` positions; default: the run's own
            ``reference`` sample set when it has one.
        out: output folder (default ``<run folder>/report``).
        max_frames: frames used for the distance and Ramachandran histograms (a seeded random
            subset keeps the weighted estimates unbiased up to normalization).
        seed: seed of that subset.
    """
    notes: list[str] = []
    with open_run(run) as rf:
        path = rf.path
        attrs = dict(rf.attrs)
        history = rf.read_history()
        config_text = rf.config_text()
        flow = _set_from_run(rf, "samples", "flow samples")
        sets = rf.sample_sets()
        extras = [(_set_from_run(rf, n, lbl), role) for n, (lbl, role) in EXTRA_SETS.items() if n in sets]
        ref = None
        if reference is None and "reference" in sets:
            ref = _set_from_run(rf, "reference", "reference")
    if reference is not None:
        ref = load_reference(reference, attrs.get("system"))
    if ref is not None and flow.x.shape[1:] != ref.x.shape[1:]:
        notes.append(f"reference has shape {ref.x.shape[1:]} per sample, the run {flow.x.shape[1:]}; reference ignored")
        ref = None

    out_dir = Path(out) if out is not None else path.parent / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n, n_particles, dim = flow.x.shape
    main_label = "flow samples"
    if attrs.get("kind") == "reference":  # a run of `molsample reference`: MD/MCMC samples, no flow
        main_label = f"samples ({attrs['method']})" if attrs.get("method") else "samples"
    w = normalized_weights(flow.logw) if flow.logw is not None and np.isfinite(flow.logw).any() else None

    # ---------------------------------------------------------------- headline
    head: dict[str, Any] = {
        "system": attrs.get("system"),
        "kind": attrs.get("kind"),
        "method": attrs.get("method"),
        "samples": n,
        "particles × dim": f"{n_particles} × {dim}",
    }
    ws = None
    if flow.logw is not None:
        ws = summarize(torch.as_tensor(flow.logw))
        head["ESS (fraction)"] = ws.ess
        head["ESS (samples)"] = ws.ess * n if math.isfinite(ws.ess) else float("nan")
        head["log Z"] = f"{_fmt(ws.log_z, 6)} ± {_fmt(ws.log_z_se, 2)}"
        head["non-finite weights"] = ws.n_nonfinite
        if attrs.get("divergence") in ("hutchinson",):
            notes.append("log-densities from the Hutchinson trace estimator: ESS and log Z are biased")
    else:
        notes.append("the run has no /logw: no ESS, log Z or reweighted curves")
    if flow.energy is not None:
        nonfinite_e = int((~np.isfinite(flow.energy)).sum())
        if nonfinite_e:
            head["non-finite energies"] = nonfinite_e
    if ref is not None:
        head["reference"] = str(reference) if reference is not None else "the run's 'reference' set"
        head["reference samples"] = ref.x.shape[0]
        if flow.energy is not None and ref.energy is not None:
            if ref.energy_unit and ref.energy_unit != flow.energy_unit:
                notes.append(f"reference energies are in {ref.energy_unit}, the run's in {flow.energy_unit}; no W2")
            else:
                u = plots.unit_label(flow.energy_unit)
                head[f"energy W2 to reference, flow [{u}]"] = _energy_w2(flow.energy, ref.energy, None)
                if w is not None:
                    head[f"energy W2 to reference, reweighted [{u}]"] = _energy_w2(flow.energy, ref.energy, w)
                for s, _ in extras:
                    if s.energy is not None:
                        head[f"energy W2 to reference, {s.label} [{u}]"] = _energy_w2(s.energy, ref.energy, None)
    kT = attrs.get("kT")
    if kT is not None:
        reduced = flow.energy_unit in ("reduced", "")
        head["kT"] = f"{_fmt(float(kT))} " + ("(reduced units)" if reduced else flow.energy_unit)
    for key, label in (("wall_time_s", "wall time"),):
        t = _fmt_time(float(attrs[key])) if isinstance(attrs.get(key), (int, float)) else None
        if t:
            head[label] = t
    for key, label in (("energy_evals", "energy evaluations"), ("n_energy_evals", "energy evaluations"),
                       ("mode", "mode"), ("divergence", "divergence"), ("mcmc_acceptance", "MCMC acceptance"),
                       ("chirality_reference_fraction", "reference-handed fraction (before fix)"),
                       ("chirality_mirror_fraction", "mirror-image fraction (before fix)"),
                       ("chirality_reflected", "samples mirrored to the reference handedness"),
                       ("chirality_dropped", "mirror-image samples given weight 0"),
                       ("seed", "seed"), ("created", "created")):
        if attrs.get(key) is not None and label not in head:
            head[label] = attrs[key]

    # ---------------------------------------------------------------- figures
    figs: dict[str, Path] = {}
    captions: dict[str, str] = {}
    if history:
        p = plots.plot_annealing(history, out_dir / "annealing.png", flow.energy_unit)
        if p:
            figs["annealing"] = p
            captions["annealing"] = ("Effective sample size of the final importance weights (where computed) and of "
                                     "the incremental weights exp(h·r) per level; step h and mean reward/energy of "
                                     "the level samples across the tilt levels a.")
        p = plots.plot_losses(history, out_dir / "loss.png")
        if p:
            figs["loss"] = p
            captions["loss"] = "Training losses from the run history."
    if flow.energy is not None:
        es = [Series(main_label, flow.energy, None, "flow")]
        if w is not None:
            es.append(Series("reweighted", flow.energy, w, "reweighted"))
        es += [Series(s.label, s.energy, None, role) for s, role in extras if s.energy is not None]
        if ref is not None and ref.energy is not None and (not ref.energy_unit or ref.energy_unit == flow.energy_unit):
            es.append(Series(ref.label, ref.energy, None, "reference"))
        figs["energy"] = plots.plot_energy(es, flow.energy_unit, out_dir / "energy.png")
        captions["energy"] = ("Energy histograms of the flow samples, the same samples reweighted by their "
                              "importance weights, and the reference; the legend gives the share of each set "
                              "outside the plotted range.")
    if n_particles > 1:
        idx = _subset(n, max_frames, rng)
        ds = [Series(main_label, flow.x[idx], None, "flow")]
        if w is not None:
            ds.append(Series("reweighted", flow.x[idx], w[idx], "reweighted"))
        for s, role in extras:
            ds.append(Series(s.label, s.x[_subset(s.x.shape[0], max_frames, rng)], None, role))
        if ref is not None:
            ds.append(Series(ref.label, ref.x[_subset(ref.x.shape[0], max_frames, rng)], None, "reference"))
        figs["distances"] = plots.plot_distances(ds, flow.length_unit, out_dir / "distances.png")
        captions["distances"] = "Histogram of all interparticle distances, pooled over pairs and samples."
        if flow.length_unit == "reduced":
            captions["distances"] += " Lengths in reduced LJ units (r_m = 1)."
    if dim == 3 and flow.topology is not None and flow.topology.n_residues > 1:
        idx = _subset(n, max_frames, rng)
        pp = _phi_psi(flow.x[idx], flow.topology)
        if pp is not None:
            rs = [Series(main_label, pp, None, "flow")]
            if w is not None:
                rs.append(Series("reweighted", pp, w[idx], "reweighted"))
            if ref is not None:
                ridx = _subset(ref.x.shape[0], max_frames, rng)
                rpp = _phi_psi(ref.x[ridx], ref.topology or flow.topology)
                if rpp is not None:
                    rs.append(Series(ref.label, rpp, None, "reference"))
            figs["ramachandran"] = plots.plot_ramachandran(rs, out_dir / "ramachandran.png")
            captions["ramachandran"] = ("Ramachandran plot (backbone φ/ψ of the first residue) of the flow samples, "
                                        "reweighted samples and the reference; log colour scale.")
    if n_particles == 1 and dim == 2:
        ps = [Series(main_label, flow.x[:, 0, :], None, "flow")]
        if w is not None:
            ps.append(Series("reweighted (importance weights)", flow.x[:, 0, :], w, "reweighted"))
        if ref is not None:
            ps.append(Series(f"target: {ref.label}", ref.x[:, 0, :], None, "reference"))
        figs["density2d"] = plots.plot_density2d(ps, flow.length_unit, out_dir / "density2d.png")
        captions["density2d"] = "2-D densities of the samples next to the target, on one log colour scale."
    if not figs:
        notes.append("nothing to plot: the run has no history, energies or multi-particle positions")

    title = f"molsample report — {attrs.get('system') or path.parent.name}"
    summary = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in head.items()}
    if ws is not None:  # numbers also as plain fields for scripts
        summary.update(ess=ws.ess, log_z=ws.log_z, log_z_se=ws.log_z_se)
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    summary_path = out_dir / "summary.json"
    text = json.dumps({"run": str(path), **summary, "figures": sorted(p.name for p in figs.values()), "notes": notes},
                      indent=2, default=str, ensure_ascii=False)
    write_text_atomic(summary_path, text + "\n")
    md_path = out_dir / "report.md"
    write_text_atomic(md_path, _markdown(title, path, head, figs, captions, notes, config_text))
    html_path = out_dir / "report.html"
    write_text_atomic(html_path, _html(title, path, head, figs, captions, notes, config_text))
    return Report(out_dir, html_path, md_path, summary_path, figs, head, notes)


def _markdown(title, path, head, figs, captions, notes, config_text) -> str:
    lines = [f"# {title}", "", f"Run file: `{path}`", "", "| quantity | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in head.items()]
    lines.append("")
    for note in notes:
        lines.append(f"> Note: {note}")
    for name, p in figs.items():
        lines += ["", f"## {name.capitalize()}", "", captions.get(name, ""), "", f"![{name}]({p.name})"]
    if config_text:
        lines += ["", "## Run configuration", "", "```toml", config_text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .8em;text-align:left}
th{background:#f4f4f4}figure{margin:2em 0}img{max-width:100%}figcaption{color:#555;font-size:.95em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.4em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto}"""


def _html(title, path, head, figs, captions, notes, config_text) -> str:
    e = html.escape
    rows = "\n".join(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in head.items())
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head><body>',
        f"<h1>{e(title)}</h1>",
        f"<p>Run file: <code>{e(str(path))}</code></p>",
        f"<table>{rows}</table>",
    ]
    parts += [f'<p class="note">{e(n)}</p>' for n in notes]
    for name, p in figs.items():
        parts.append(
            f'<figure><h2>{e(name.capitalize())}</h2><img src="{e(p.name)}" alt="{e(name)}">'
            f"<figcaption>{e(captions.get(name, ''))}</figcaption></figure>"
        )
    if config_text:
        parts.append(f"<details><summary>Run configuration (TOML)</summary><pre>{e(config_text)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
