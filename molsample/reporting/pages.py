"""The report pages: ``report.md`` and ``report.html`` from the headline, warnings, figures and notes."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from molsample.reporting.headline import fmt

TIMING_HEADER = ("stage", "CPU [s]", "wall [s]", "share of wall")


@dataclass
class Page:
    """Everything a page shows."""

    title: str
    run_path: Path
    headline: dict[str, Any]
    warnings: list[str]
    timing: list[tuple[str, str, str, str]]
    figures: dict[str, Path]
    captions: dict[str, str]
    notes: list[str]
    config_text: str


def markdown(p: Page) -> str:
    """The Markdown page."""
    lines = [f"# {p.title}", "", f"Run file: `{p.run_path}`", ""]
    lines += [f"> **WARNING:** {w}" for w in p.warnings]
    if p.warnings:
        lines.append("")
    lines += ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in p.headline.items()]
    lines.append("")
    for note in p.notes:
        lines.append(f"> Note: {note}")
    if p.timing:
        lines += ["", "## Where the time goes", "", "| " + " | ".join(TIMING_HEADER) + " |",
                  "| --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(r) + " |" for r in p.timing]
    for name, path in p.figures.items():
        lines += ["", f"## {name.capitalize()}", "", p.captions.get(name, ""), "", f"![{name}]({path.name})"]
    if p.config_text:
        lines += ["", "## Run configuration", "", "```toml", p.config_text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .8em;text-align:left}
th{background:#f4f4f4}figure{margin:2em 0}img{max-width:100%}figcaption{color:#555;font-size:.95em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.4em 0}
.warning{background:#fde0dc;border-left:6px solid #c62828;padding:.5em .9em;margin:.4em 0;font-weight:600}
pre{background:#f6f6f6;padding:1em;overflow:auto}"""


def html_page(p: Page) -> str:
    """The HTML page (self-contained; figures are sibling PNG files)."""
    e = html.escape
    rows = "\n".join(f"<tr><th>{e(str(k))}</th><td>{e(fmt(v))}</td></tr>" for k, v in p.headline.items())
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(p.title)}</title><style>{_CSS}</style></head><body>',
        f"<h1>{e(p.title)}</h1>",
        f"<p>Run file: <code>{e(str(p.run_path))}</code></p>",
    ]
    parts += [f'<p class="warning">WARNING: {e(w)}</p>' for w in p.warnings]
    parts.append(f"<table>{rows}</table>")
    parts += [f'<p class="note">{e(n)}</p>' for n in p.notes]
    if p.timing:
        head = "".join(f"<th>{e(h)}</th>" for h in TIMING_HEADER)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in p.timing)
        parts.append(f"<h2>Where the time goes</h2><table><tr>{head}</tr>{body}</table>")
    for name, path in p.figures.items():
        parts.append(
            f'<figure><h2>{e(name.capitalize())}</h2><img src="{e(path.name)}" alt="{e(name)}">'
            f"<figcaption>{e(p.captions.get(name, ''))}</figcaption></figure>"
        )
    if p.config_text:
        parts.append(f"<details><summary>Run configuration (TOML)</summary><pre>{e(p.config_text)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
