"""Every shipped run config (runs/*.toml) loads and validates for its system (the file name's prefix)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from molsample.flows.distributions import HarmonicPrior, base_distribution
from molsample.runtime.resources import presets_dir
from molsample.stages.config import resolve_config
from molsample.stages.config_files import read_config_file
from molsample.systems.cards import load_system

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUNS = Path(__file__).resolve().parents[2] / "runs"
CONFIGS = sorted(RUNS.glob("*.toml"))


DOCS = [RUNS.parent / "README.md", *sorted((RUNS.parent / "docs").rglob("*.md"))]


def _leaves(table: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key → value of every leaf of a TOML table."""
    out: dict[str, object] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _value(cfg: object, dotted: str) -> object:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_every_config_the_docs_name_exists():
    named = {m for doc in DOCS for m in re.findall(r"runs/([\w.-]+\.toml)", doc.read_text(encoding="utf-8"))}
    named -= {"<name>.toml", "my.toml"}
    assert named, "the docs name no run config; the pattern above is out of date"
    missing = sorted(n for n in named if not (RUNS / n).is_file() and not (presets_dir() / n).is_file())
    assert not missing, f"docs name run configs that do not exist: {missing}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_setting_of_a_config_reaches_the_resolved_config(path: Path):
    """The file's settings override the preset's, none dropped or changed on the way."""
    system = path.stem.split("-")[0]
    cfg = resolve_config(system, preset="default", config_file=path)
    assert cfg.system == system
    with path.open("rb") as fh:
        own = tomllib.load(fh)
    leaves = _leaves(read_config_file(path))
    assert leaves and set(own) - {"extends"}, f"{path.name} sets nothing"
    assert set(_leaves({k: v for k, v in own.items() if k != "extends"})) <= set(leaves)
    for key, value in leaves.items():
        got = _value(cfg, key)
        assert got == value or (isinstance(got, tuple) and list(got) == value), (key, value, got)


@pytest.mark.parametrize("name", ["aldp-harmonic", "aldp-paper"])
def test_aldp_recipes_carry_the_bond_graph_prior(name: str):
    cfg = resolve_config("aldp", preset="default", config_file=RUNS / f"{name}.toml")
    prior = base_distribution(load_system("aldp"), cfg.base.table())
    assert isinstance(prior, HarmonicPrior) and prior.bond_std == 0.15 and len(prior.bonds) == 21
