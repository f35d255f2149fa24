"""Where the shipped files are: system cards, presets and models, in a checkout or when installed.

In a source checkout the cards live in the top-level ``systems/`` (with ``potentials/``) and the
presets in ``runs/presets/``; an installed package carries the same files as package data
(``molsample/cards``, ``molsample/potentials``, ``molsample/presets``, mapped from those folders
by ``setup.py``) and the demo model under ``molsample/data/models/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["cards_dir", "models_dir", "package_file", "presets_dir"]

_ROOT = Path(__file__).resolve().parent.parent  # the molsample package


def _first_dir(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def _packaged(name: str) -> Path:
    try:
        return Path(str(resources.files(f"molsample.{name}")))
    except (ModuleNotFoundError, TypeError):
        return _ROOT / name


def cards_dir() -> Path:
    """The folder of the shipped system cards (``systems/`` in a checkout, ``molsample/cards`` installed)."""
    return _first_dir(_ROOT.parent / "systems", _ROOT / "cards", _packaged("cards"))


def presets_dir() -> Path:
    """The folder of the run presets (``runs/presets/`` in a checkout, ``molsample/presets`` installed)."""
    return _first_dir(_ROOT.parent / "runs" / "presets", _ROOT / "presets", _packaged("presets"))


def models_dir() -> Path:
    """The folder of shipped models (``molsample/data/models``)."""
    return _ROOT / "data" / "models"


def package_file(ref: str) -> Path:
    """Resolve ``"package:NAME"`` to a shipped model file, any other string to a path."""
    if ref.startswith("package:"):
        return models_dir() / ref[len("package:"):]
    return Path(ref)
