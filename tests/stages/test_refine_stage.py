"""SMC as a stage of `molsample tilt` ([refine]), its resume, and the retired MCMC correction."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import molsample.flows.smc as smc_module
from molsample.cli import main
from molsample.errors import ConfigError
from molsample.io.hdf5 import RunFile
from molsample.stages.config import config_from_dict, resolve_config
from molsample.stages.refine import checkpoint_path, refine_run
from molsample.systems.cards import load_system

from _run_helpers import interrupt_after

SETTINGS = dict(steps=2, final_steps=4, kT_start=4.0, groups=4, target_cess=0.9, seed=3)


def _exit(argv) -> int:
    try:
        main(argv)
    except SystemExit as info:
        return info.code
    return 0


def _gauss2d_run(path: Path, n: int = 200) -> None:
    """A run file of gauss2d with "flow" samples of a wider Gaussian and their exact log q."""
    system = load_system("gauss2d")
    g = torch.Generator().manual_seed(0)
    mu, scale = torch.tensor([1.0, -0.5], dtype=torch.float64), 1.6
    x = mu + scale * torch.randn(n, 1, 2, generator=g, dtype=torch.float64)
    logq = -0.5 * ((x - mu) ** 2).sum((1, 2)) / scale**2 - math.log(2 * math.pi * scale**2)
    e = system.energy.energy(x)
    with RunFile(path, "w") as rf:
        rf.write_samples(x, logw=-e / system.kT - logq, logq=logq, energy=e, energy_unit=system.energy_unit,
                         length_unit=system.length_unit, kT=system.kT)
        rf.set_attrs(system="gauss2d", kind="tilt", method="itm", seed=0)


def _refined(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    with RunFile(path) as rf:
        s = rf.read_samples("refined")
        return s["x"], s["logw"], float(rf.attrs["refined_log_z"])


# --------------------------------------------------------------------------- configuration


def test_refine_table_is_off_by_default_and_read_from_toml(tmp_path):
    assert resolve_config("lj13").refine.enabled is False
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('[refine]\nenabled = true\nsteps = 7\nstart_kT = 1.2\ngroups = 5\n')
    cfg = resolve_config("lj13", config_file=cfg_file)
    assert (cfg.refine.enabled, cfg.refine.steps, cfg.refine.start_kT, cfg.refine.groups) == (True, 7, 1.2, 5)
    assert config_from_dict(cfg.to_dict()).refine == cfg.refine


@pytest.mark.parametrize("table, match", [("steps = -1", "refine.steps = -1"), ("groups = 0", "refine.groups = 0"),
                                          ("target_cess = 1.0", "refine.target_cess"),
                                          ('start_kT = "hot"', "refine.start_kT")])
def test_bad_refine_settings_name_the_key(tmp_path, table, match):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(f"[refine]\n{table}\n")
    with pytest.raises(ConfigError, match=match):
        resolve_config("lj13", config_file=cfg_file)


def test_the_retired_mcmc_steps_point_to_refine(tmp_path, capsys):
    cfg_file = tmp_path / "old.toml"
    cfg_file.write_text("[final]\nmcmc_steps = 10\n")
    for argv in (["tilt", "--system", "lj13", "--config", str(cfg_file)], ["tilt", "--system", "lj13", "--mcmc-steps", "5"]):
        assert _exit(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "no longer exists" in err and "[refine]" in err and "molsample refine" in err
    # a run file written before the key was retired still loads (its stored config has final.mcmc_steps)
    table = resolve_config("lj13").to_dict()
    table["final"]["mcmc_steps"] = 10
    assert config_from_dict(table).final.n_samples == resolve_config("lj13").final.n_samples


def test_refine_steps_option_sets_the_stage(tmp_path, capsys):
    assert _exit(["tilt", "--system", "lj13", "--refine-steps", "-2"]) == 2
    assert "--refine-steps -2" in capsys.readouterr().err


# --------------------------------------------------------------------------- resume


def test_refine_stopped_after_a_level_and_resumed_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _gauss2d_run(a / "samples.h5")
    shutil.copy(a / "samples.h5", b / "samples.h5")
    full, _ = refine_run(a, **SETTINGS)
    assert full.n_levels >= 4 and not checkpoint_path(a / "samples.h5").exists()

    real = interrupt_after(monkeypatch, smc_module, "write_checkpoint", 2, right_after=True)
    with pytest.raises(KeyboardInterrupt):
        refine_run(b, **SETTINGS)
    assert checkpoint_path(b / "samples.h5").is_file()
    with RunFile(b / "samples.h5") as rf:
        assert "refined" not in rf.sample_sets()
    monkeypatch.setattr(smc_module, "write_checkpoint", real)
    resumed, _ = refine_run(b, resume=True, **SETTINGS)
    assert not checkpoint_path(b / "samples.h5").exists()
    xa, wa, za = _refined(a / "samples.h5")
    xb, wb, zb = _refined(b / "samples.h5")
    assert np.array_equal(xa, xb) and np.array_equal(wa, wb) and za == zb
    assert resumed.history.keys() == full.history.keys() and resumed.n_energy_evals == full.n_energy_evals
    for k, v in full.history.items():
        assert np.array_equal(resumed.history[k], v, equal_nan=True), k
    assert torch.equal(resumed.ancestors, full.ancestors)


def test_without_resume_an_old_checkpoint_is_discarded_and_another_seed_starts_over(tmp_path, monkeypatch):
    _gauss2d_run(tmp_path / "samples.h5")
    real = interrupt_after(monkeypatch, smc_module, "write_checkpoint", 1, right_after=True)
    with pytest.raises(KeyboardInterrupt):
        refine_run(tmp_path, **SETTINGS)
    monkeypatch.setattr(smc_module, "write_checkpoint", real)
    other = dict(SETTINGS, seed=SETTINGS["seed"] + 1)
    fresh, _ = refine_run(tmp_path, **other)  # no --resume: the old state is not used
    copy = tmp_path / "copy"
    copy.mkdir()
    _gauss2d_run(copy / "samples.h5")
    again, _ = refine_run(copy, resume=True, **other)  # nothing to resume: a plain run
    assert torch.equal(fresh.x, again.x) and fresh.log_z == again.log_z


# --------------------------------------------------------------------------- the tilt stage


def test_tilt_runs_the_refine_stage_after_the_final_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('report = false\n[reference]\nn = 0\n[final]\nn_samples = 48\nbatch_size = 48\n'
                   'ode_method = "euler"\node_steps = 3\n[refine]\nfinal_steps = 3\ngroups = 4\n')
    argv = ["tilt", "--system", "lj13", "--preset", "demo", "--config", str(cfg), "--out", "run", "--quiet"]
    assert _exit(argv + ["--refine-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "refined log Z" in out and "unique ancestors" in out
    run = tmp_path / "run"
    with RunFile(run / "samples.h5") as rf:
        assert "refined" in rf.sample_sets()
        attrs = dict(rf.attrs)
        assert len(rf.read_samples("refined")["x"]) == 48
    settings = json.loads(attrs["refined_settings"])
    assert settings["steps"] == 2 and settings["groups"] == 4 and settings["final_steps"] == 3
    assert "refine" in json.loads(attrs["stage_cpu_s"])
    assert not (run / "checkpoints" / "refine.pt").exists()
    # the same settings through `molsample refine` give the same set (one shared function)
    x_stage = _refined(run / "samples.h5")
    assert _exit(["refine", str(run), "--steps", "2", "--final-steps", "3", "--groups", "4", "--seed", "0"]) == 0
    x_cmd = _refined(run / "samples.h5")
    assert np.array_equal(x_stage[0], x_cmd[0]) and x_stage[2] == x_cmd[2]


def test_refine_command_stops_with_a_resume_hint_and_resume_finishes_it(tmp_path, monkeypatch, capsys):
    _gauss2d_run(tmp_path / "samples.h5")
    argv = ["refine", str(tmp_path), "--steps", "2", "--final-steps", "4", "--start-kT", "4", "--groups", "4"]
    real = interrupt_after(monkeypatch, smc_module, "write_checkpoint", 1, right_after=True)
    assert _exit(argv) == 130
    assert "--resume" in capsys.readouterr().err and (tmp_path / "checkpoints" / "refine.pt").is_file()
    monkeypatch.setattr(smc_module, "write_checkpoint", real)
    assert _exit(argv + ["--resume"]) == 0
    assert "unique ancestors" in capsys.readouterr().out
    assert not (tmp_path / "checkpoints" / "refine.pt").exists()


def test_an_interrupted_refine_stage_continues_with_tilt_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('report = false\n[reference]\nn = 0\n[final]\nn_samples = 48\nbatch_size = 48\n'
                   'ode_method = "euler"\node_steps = 3\n[refine]\nenabled = true\nsteps = 2\nfinal_steps = 3\n'
                   'groups = 4\nstart_kT = 1.5\ntarget_cess = 0.8\n')
    argv = ["tilt", "--system", "lj13", "--preset", "demo", "--config", str(cfg), "--out", "run", "--quiet"]
    real, calls = smc_module.write_checkpoint, []

    def stop_after_one(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(smc_module, "write_checkpoint", stop_after_one)
    assert _exit(argv) == 130
    assert calls and (tmp_path / "run" / "checkpoints" / "refine.pt").is_file()
    monkeypatch.setattr(smc_module, "write_checkpoint", real)
    assert _exit(argv + ["--resume"]) == 0
    assert "refined log Z" in capsys.readouterr().out
    resumed = _refined(tmp_path / "run" / "samples.h5")
    assert _exit(["refine", "run", "--steps", "2", "--final-steps", "3", "--groups", "4", "--start-kT", "1.5",
                  "--target-cess", "0.8"]) == 0
    plain = _refined(tmp_path / "run" / "samples.h5")
    assert np.array_equal(resumed[0], plain[0]) and np.array_equal(resumed[1], plain[1]) and resumed[2] == plain[2]
