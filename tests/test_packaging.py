"""Cards, presets, potentials and shipped models are package data: found by an installed copy."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from molsample.runtime.resources import cards_dir, package_file, presets_dir
from molsample.stages.config import PRESETS, resolve_config

ROOT = Path(__file__).resolve().parent.parent


def test_source_tree_folders_are_found():
    assert cards_dir() == ROOT / "systems" and presets_dir() == ROOT / "runs" / "presets"
    assert {"smoke", "default", "paper", "demo"} <= set(PRESETS)
    assert package_file("package:lj13-demo.pt") == ROOT / "molsample" / "data" / "models" / "lj13-demo.pt"
    assert package_file("x/model.pt") == Path("x/model.pt")


def test_demo_preset_starts_from_the_shipped_model():
    cfg = resolve_config("lj13", preset="demo")
    assert cfg.start.model == "package:lj13-demo.pt"
    assert cfg.final.n_samples >= 1000 and cfg.reference.n > 0
    assert resolve_config("gauss2d", preset="demo").start.model is None


@pytest.mark.slow
def test_a_built_wheel_finds_cards_and_presets_outside_the_source_tree(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("molsample-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("molsample/cards/lj13.toml", "molsample/cards/aldp.pdb", "molsample/presets/demo.toml",
                 "molsample/potentials/aldp_vacuum_amber99sbildn.xml", "molsample/data/models/README.md"):
        assert name in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import molsample, molsample.runtime.resources as r; "
            "from molsample.stages.config import PRESETS, resolve_config; "
            "from molsample.systems.cards import load_system; "
            "print(molsample.__file__); print(r.cards_dir()); print(','.join(PRESETS)); "
            "print(load_system('lj13').name, resolve_config('lj13', preset='smoke').final.n_samples)")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split("\n")
    assert out[0].startswith(str(site)) and out[1] == str(site / "molsample" / "cards")
    assert "demo" in out[2].split(",") and out[3] == "lj13 256"
