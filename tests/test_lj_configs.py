"""The LJ-55 run configs (runs/lj55.toml for a GPU, runs/lj55-cpu.toml for a CPU workstation, and
their smoke twin) load, validate and run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from molsample.config import resolve_config

RUNS = Path(__file__).resolve().parents[1] / "runs"


def test_lj55_config_validates():
    cfg = resolve_config("lj55", preset="default", config_file=RUNS / "lj55.toml")
    assert cfg.pretrain.steps == 5000 and cfg.final.batch_size == 250 and cfg.temperature_factor == 1.25


def test_lj55_cpu_config_validates():
    cfg = resolve_config("lj55", preset="default", config_file=RUNS / "lj55-cpu.toml")
    assert (cfg.net.hidden, cfg.net.n_layers) == (32, 3) and cfg.pretrain.coupling == "aligned"
    assert cfg.pretrain.steps == 3000 and cfg.final.ode_steps == 10 and cfg.tilt.h is None


def test_lj55_smoke_twin_validates():
    cfg = resolve_config("lj55", preset="smoke", config_file=RUNS / "lj55-smoke.toml")
    assert cfg.pretrain.steps == 20 and cfg.final.n_samples == 32 and cfg.tilt.max_levels == 2
    assert cfg.pretrain.coupling == "aligned"  # the CPU config's coupling, on 55 particles


@pytest.mark.slow
def test_lj55_smoke_twin_runs(tmp_path):
    out = tmp_path / "lj55-smoke"
    proc = subprocess.run(
        [sys.executable, "-m", "molsample", "--threads", "1", "tilt", "--system", "lj55", "--preset", "smoke",
         "--config", str(RUNS / "lj55-smoke.toml"), "--out", str(out), "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "samples.h5").is_file()
