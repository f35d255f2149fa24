"""Shipped files: every card, structure, OpenMM XML, preset and model lives under molsample/data/,
is found by importlib.resources, is declared as package data and loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib import resources as importlib_resources
from pathlib import Path

import pytest

import molsample
from molsample.errors import ConfigError
from molsample.io.toml import read_toml
from molsample.runtime import resources
from molsample.stages.config import PRESETS, resolve_config
from molsample.systems.cards import available_systems, load_system

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(molsample.__file__).resolve().parent / "data"
SHIPPED_SYSTEMS = {"lj13", "lj55", "dw4", "ring2d", "gauss2d", "aldp", "ala3"}


def _declared_globs() -> list[str]:
    """The package-data patterns of ``molsample.data`` in pyproject.toml (relative to molsample/data)."""
    return read_toml(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]["molsample.data"]


def _declared_files() -> set[Path]:
    return {p for g in _declared_globs() for p in DATA.glob(g)}


def _data_files() -> set[Path]:
    """Every file under molsample/data/ but the package's own code."""
    return {p for p in DATA.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"}


def test_data_folders_are_found_by_importlib_resources():
    root = Path(str(importlib_resources.files("molsample.data")))
    assert root == DATA
    for kind in resources.DATA_KINDS:
        assert resources.data_dir(kind) == root / kind and (root / kind).is_dir()
    assert resources.cards_dir() == root / "systems" and resources.potentials_dir() == root / "potentials"
    assert resources.presets_dir() == root / "presets" and resources.models_dir() == root / "models"
    with pytest.raises(ConfigError, match="use one of systems, potentials, presets, models"):
        resources.data_dir("cards")


def test_package_data_declares_every_shipped_file_and_nothing_else():
    declared = _declared_files()
    assert declared == _data_files(), "pyproject.toml's [tool.setuptools.package-data] and molsample/data/ differ"
    for g in _declared_globs():
        assert list(DATA.glob(g)), f"package-data pattern {g!r} matches no file"
    assert {p.parent.name for p in declared} == set(resources.DATA_KINDS)


def test_every_shipped_card_loads_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cards = sorted(resources.cards_dir().glob("*.toml"))
    assert {c.stem for c in cards} == SHIPPED_SYSTEMS
    for card in cards:
        s = load_system(card.stem)
        assert s.card_path == card and s.n_particles >= 1 and s.kT > 0


@pytest.mark.parametrize("name", ["aldp", "ala3"])
def test_molecule_cards_name_shipped_files_relative_to_their_folder(name):
    card = resources.cards_dir() / f"{name}.toml"
    table = read_toml(card)["energy"]
    declared = _declared_files()
    for key, folder in (("structure", "systems"), ("system_xml", "potentials")):
        path = (card.parent / table[key]).resolve()
        assert path.is_file() and path in declared and path.parent == resources.data_dir(folder)
    s = load_system(name)
    assert s.topology.n_atoms == s.n_particles == {"aldp": 22, "ala3": 32}[name]


def test_every_preset_resolves_and_its_models_are_shipped():
    assert set(PRESETS) == {p.stem for p in resources.presets_dir().glob("*.toml")}
    assert {"smoke", "default", "paper", "demo"} <= set(PRESETS)
    for preset in PRESETS:
        model = resolve_config("lj13", preset=preset).start.model
        if model is not None and model.startswith("package:"):
            assert resources.package_file(model).is_file(), f"preset {preset} names a missing model {model}"
    assert resources.package_file("package:lj13-demo.pt") == resources.models_dir() / "lj13-demo.pt"
    assert resources.package_file("x/model.pt") == Path("x/model.pt")


def test_demo_preset_starts_from_the_shipped_model():
    cfg = resolve_config("lj13", preset="demo")
    assert cfg.start.model == "package:lj13-demo.pt"
    assert cfg.final.n_samples >= 1000 and cfg.reference.n > 0
    assert resolve_config("gauss2d", preset="demo").start.model is None


def test_cards_in_the_working_directory_are_found_by_name_first(tmp_path, monkeypatch):
    (tmp_path / "systems").mkdir()
    (tmp_path / "systems" / "mine.toml").write_text('kT = 2.0\n[energy]\ntype = "double_well"\n')
    (tmp_path / "systems" / "lj13.toml").write_text('kT = 3.0\n[energy]\ntype = "lennard_jones"\nn_particles = 7\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOLSAMPLE_SYSTEMS_PATH", raising=False)
    known = available_systems()
    assert SHIPPED_SYSTEMS | {"mine"} == set(known)
    assert load_system("mine").kT == 2.0
    local = load_system("lj13")
    assert (local.n_particles, local.kT) == (7, 3.0) and local.card_path == tmp_path / "systems" / "lj13.toml"
    assert known["aldp"] == resources.cards_dir() / "aldp.toml"


@pytest.mark.slow
def test_a_built_wheel_carries_the_data_and_finds_it_outside_the_source_tree(tmp_path):
    src = tmp_path / "src"  # a copy of what the build reads, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT / "molsample", src / "molsample", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("molsample-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(DATA.parent.parent).as_posix() for p in _data_files()}
    assert shipped <= names and "molsample/data/systems/aldp.toml" in shipped
    assert not any(n.startswith(("molsample/cards/", "molsample/presets/", "molsample/potentials/")) for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import molsample, molsample.runtime.resources as r; "
            "from molsample.stages.config import PRESETS, resolve_config; "
            "from molsample.systems.cards import available_systems, load_system; "
            "print(molsample.__file__); print(r.cards_dir()); print(','.join(PRESETS)); "
            "print(','.join(sorted(available_systems()))); "
            "print(load_system('aldp').n_particles, resolve_config('lj13', preset='smoke').final.n_samples)")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split("\n")
    assert out[0].startswith(str(site)) and out[1] == str(site / "molsample" / "data" / "systems")
    assert "demo" in out[2].split(",") and set(out[3].split(",")) == SHIPPED_SYSTEMS
    assert out[4] == "22 256"
