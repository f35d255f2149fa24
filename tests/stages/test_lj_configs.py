"""The LJ-55 run configs (runs/lj55.toml for a GPU, runs/lj55-cpu.toml for a CPU workstation, and
their smoke twin) load, validate and run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from molsample.stages.config import resolve_config

RUNS = Path(__file__).resolve().parents[2] / "runs"


def _cfg(name: str, preset: str = "default"):
    return resolve_config("lj55", preset=preset, config_file=RUNS / f"{name}.toml")


def test_lj55_cpu_config_is_a_smaller_job_than_the_gpu_config():
    """The CPU config is what its comment promises: the GPU recipe with a smaller net and budget,
    and aligned pairs (which the tilt can reweight)."""
    gpu, cpu = _cfg("lj55"), _cfg("lj55-cpu")
    for key in ("pretrain.steps", "data.n", "final.n_samples", "tilt.max_levels", "final.ode_steps"):
        a, b = key.split(".")
        assert getattr(getattr(cpu, a), b) < getattr(getattr(gpu, a), b), key
    assert cpu.net.hidden * cpu.net.n_layers < gpu.net.hidden * gpu.net.n_layers
    assert cpu.pretrain.coupling == "aligned" and cpu.temperature_factor == gpu.temperature_factor


def test_lj55_smoke_twin_runs_the_cpu_recipe_at_a_tiny_budget():
    """The smoke twin checks the CPU recipe's code path: the same coupling, net, reward mode and tilt
    loss, every budget smaller (its ODE solver is Euler, for speed)."""
    cpu, smoke = _cfg("lj55-cpu"), _cfg("lj55-smoke", "smoke")
    assert smoke.pretrain.coupling == cpu.pretrain.coupling
    assert smoke.net.name == cpu.net.name and smoke.mode == cpu.mode and smoke.tilt.method == cpu.tilt.method
    assert smoke.temperature_factor == cpu.temperature_factor
    for key in ("pretrain.steps", "data.n", "reference.n", "final.n_samples", "tilt.max_levels",
                "tilt.n_endpoints"):
        a, b = key.split(".")
        assert getattr(getattr(smoke, a), b) < getattr(getattr(cpu, a), b), key


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
