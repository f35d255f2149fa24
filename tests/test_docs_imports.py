"""Every ``from molsample... import ...`` in the README's and the docs' code blocks imports: a renamed
or moved name breaks the docs' examples, and this test names the file and the line."""

from __future__ import annotations

import importlib
import re

import pytest

from _docs import DOCS, where

BLOCK = re.compile(r"```(?:python|pycon|py)\n(.*?)```", re.S)
FROM = re.compile(r"^\s*(?:>>> )?from (molsample[\w.]*) import \(?([\w ,]+)\)?\s*$")


def _imports() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in BLOCK.findall(doc.read_text(encoding="utf-8")):
            for line in block.splitlines():
                m = FROM.match(line)
                if m:
                    names = [n.split(" as ")[0].strip() for n in m.group(2).split(",") if n.strip()]
                    found.append((where(doc, line.strip()), m.group(1), names))
    return found


IMPORTS = _imports()


def test_the_docs_show_imports():
    assert len(IMPORTS) >= 10, "the pattern above no longer finds the docs' imports"


@pytest.mark.parametrize("where, module, names", IMPORTS, ids=[w for w, _, _ in IMPORTS])
def test_a_documented_import_works(where, module, names):
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n) and not _is_submodule(module, n)]
    assert not missing, f"{where}: {module} has no {', '.join(missing)}"


def _is_submodule(module: str, name: str) -> bool:
    try:
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return False
    return True
