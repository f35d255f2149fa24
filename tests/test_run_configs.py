"""Every shipped run config (runs/*.toml) loads and validates for its system (the file name's prefix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from molsample.config import resolve_config
from molsample.distributions import HarmonicPrior, base_distribution
from molsample.systems import load_system

RUNS = Path(__file__).resolve().parents[1] / "runs"
CONFIGS = sorted(RUNS.glob("*.toml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path: Path):
    system = path.stem.split("-")[0]
    cfg = resolve_config(system, preset="default", config_file=path)
    assert cfg.system == system


@pytest.mark.parametrize("name", ["aldp-harmonic", "aldp-paper"])
def test_aldp_recipes_carry_the_bond_graph_prior(name: str):
    cfg = resolve_config("aldp", preset="default", config_file=RUNS / f"{name}.toml")
    prior = base_distribution(load_system("aldp"), cfg.base.table())
    assert isinstance(prior, HarmonicPrior) and prior.bond_std == 0.15 and len(prior.bonds) == 21
