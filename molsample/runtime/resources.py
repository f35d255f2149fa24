"""Where the shipped files are: every file molsample ships lives under ``molsample/data/``.

::

    molsample/data/
      systems/     system cards (*.toml) and their structures (*.pdb)
      potentials/  serialized OpenMM Systems (*.xml) named by the cards
      presets/     run presets (*.toml)
      models/      tilted models (*.pt), named ``package:NAME``

The folders are found with :mod:`importlib.resources` from the ``molsample.data`` package, the
same way in a source checkout and in an installed copy. A card names its structure and XML
relative to its own folder (``structure = "aldp.pdb"``,
``system_xml = "../potentials/aldp_vacuum_amber99sbildn.xml"``). The files the wheel carries are
declared in ``pyproject.toml`` (``[tool.setuptools.package-data]``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from molsample.errors import ConfigError, MissingFileError

__all__ = ["DATA_KINDS", "cards_dir", "data_dir", "models_dir", "package_file", "potentials_dir", "presets_dir"]

#: The sub-folders of ``molsample/data/``.
DATA_KINDS = ("systems", "potentials", "presets", "models")


def data_dir(kind: str) -> Path:
    """The folder ``molsample/data/<kind>`` of the imported package (``kind`` in :data:`DATA_KINDS`)."""
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown kind of shipped data {kind!r}; use one of {', '.join(DATA_KINDS)}")
    root = resources.files("molsample.data")
    if not isinstance(root, Path):
        raise MissingFileError(
            f"molsample's data ({root}) is not a folder on disk; install molsample unpacked (pip install), "
            "not as a zip archive"
        )
    return root / kind


def cards_dir() -> Path:
    """The folder of the shipped system cards and structures (``molsample/data/systems``)."""
    return data_dir("systems")


def potentials_dir() -> Path:
    """The folder of the shipped serialized OpenMM Systems (``molsample/data/potentials``)."""
    return data_dir("potentials")


def presets_dir() -> Path:
    """The folder of the run presets (``molsample/data/presets``)."""
    return data_dir("presets")


def models_dir() -> Path:
    """The folder of the shipped models (``molsample/data/models``)."""
    return data_dir("models")


def package_file(ref: str) -> Path:
    """Resolve ``"package:NAME"`` to a shipped model file, any other string to a path."""
    if ref.startswith("package:"):
        return models_dir() / ref[len("package:"):]
    return Path(ref)
