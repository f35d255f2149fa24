"""``molsample report``: figures and a one-page summary (HTML + Markdown + ``summary.json``) of a run.

:func:`make_report` reads the run once (:func:`molsample.reporting.run_data.load_run_data`),
computes the headline numbers and weight warnings (:mod:`molsample.reporting.headline`), draws
every registered figure that applies (:data:`molsample.reporting.figures.FIGURES`) and writes
the pages (:mod:`molsample.reporting.pages`). See docs/report.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from molsample.errors import RunFileError
from molsample.io.atomic import check_writable, write_text_atomic
from molsample.reporting.figures import FIGURES
from molsample.reporting.headline import build_headline, timing_rows
from molsample.reporting.pages import Page, html_page, markdown
from molsample.reporting.plots import save_figure
from molsample.reporting.run_data import (  # noqa: F401 - re-exported for callers of the old module
    SampleSet,
    default_out_dir,
    load_reference,
    load_run_data,
)


@dataclasses.dataclass
class Report:
    """What :func:`make_report` wrote.

    Attributes:
        out_dir: folder of the report.
        html: the HTML page; markdown: the Markdown page; summary_json: the machine-readable numbers.
        figures: figure name → PNG path (only the figures that apply to the run).
        headline: display label → value (the table on the page).
        notes: remarks shown on the page (skipped figures, unit mismatches, ...).
        warnings: loud warnings (degenerate weights), also at the top of the pages and in summary.json.
        timing: rows (stage, CPU s, wall s, share) of "where the time goes"; empty without stage times.
        summary: the fields of summary.json.
    """

    out_dir: Path
    html: Path
    markdown: Path
    summary_json: Path
    figures: dict[str, Path]
    headline: dict[str, Any]
    notes: list[str]
    warnings: list[str] = dataclasses.field(default_factory=list)
    timing: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


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
        out: output folder (default :func:`~molsample.reporting.run_data.default_out_dir`:
            ``<run folder>/report``, or ``<folder>/<stem>-report`` for a run file not named samples.h5).
        max_frames: frames used for the distance and Ramachandran histograms (a seeded random
            subset keeps the weighted estimates unbiased up to normalization).
        seed: seed of that subset.
    """
    out_dir = check_writable(Path(out) if out is not None else default_out_dir(run))
    data = load_run_data(run, reference, max_frames=max_frames, seed=seed)
    if data.shape[0] == 0:
        raise RunFileError(
            f"run {data.path} holds 0 samples, so there is nothing to report; draw some with "
            f"`molsample sample {data.path.parent} --n 1000`, or finish the run with `molsample tilt ... --resume`"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    head, summary, warnings = build_headline(data)

    figures: dict[str, Path] = {}
    captions: dict[str, str] = {}
    for name, draw in FIGURES.items():
        drawn = draw(data)
        if drawn is not None:
            figures[name] = save_figure(drawn.figure, out_dir / f"{name}.png")
            captions[name] = drawn.caption
    if not figures:
        data.notes.append("nothing to plot: the run has no history, energies or multi-particle positions")

    timing = timing_rows(data)
    page = Page(f"molsample report — {data.attrs.get('system') or data.path.parent.name}", data.path, head, warnings,
                timing, figures, captions, data.notes, data.config_text)
    summary = {"run": str(data.path), **summary, "figures": sorted(p.name for p in figures.values()),
               "notes": data.notes}
    summary_path = out_dir / "summary.json"
    write_text_atomic(summary_path, json.dumps(summary, indent=2, default=str, ensure_ascii=False) + "\n")
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_text_atomic(md_path, markdown(page))
    write_text_atomic(html_path, html_page(page))
    return Report(out_dir, html_path, md_path, summary_path, figures, head, data.notes, warnings, timing, summary)
