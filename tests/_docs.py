"""The README's and the docs' Markdown files, for the tests that check what they show."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: README.md, every docs/*.md and the top-level folders' README.md files
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted(ROOT.glob("*/README.md"))]
FENCE = re.compile(r"```.*?```", re.S)


def where(doc: Path, text: str) -> str:
    """``"docs/x.md: text"``, a test id naming the file."""
    return f"{doc.relative_to(ROOT)}: {text}"
