"""Every relative link of the README and the docs resolves: the file exists and, for ``file.md#anchor``,
the anchor is one of that file's headings (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _docs import DOCS, FENCE, where

LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    body = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", body, re.M)}


def _links() -> list[tuple[str, Path, str]]:
    out = []
    for doc in DOCS:
        body = FENCE.sub("", doc.read_text(encoding="utf-8"))
        for target in LINK.findall(body):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            out.append((where(doc, target), doc, target))
    return out


LINKS = _links()


def test_the_docs_have_links():
    assert len(LINKS) >= 50, "the link pattern above no longer finds the docs' links"


@pytest.mark.parametrize("where, doc, target", LINKS, ids=[w for w, _, _ in LINKS])
def test_a_link_resolves(where, doc, target):
    path, _, anchor = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    assert dest.exists(), f"{where}: no such file"
    if anchor and dest.suffix == ".md":
        assert anchor in anchors(dest), f"{where}: no heading with anchor #{anchor} in {dest.name}"
