"""``molsample refine``: appends the set 'refined' to a run file; bad input is one line, exit 2, file unchanged."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from molsample.cli import main
from molsample.io.hdf5 import RunFile
from molsample.systems.cards import load_system

NO_FORCE_PLUGIN = '''
import torch
from molsample.energies.base import Energy


class NoForce(Energy):
    """A 2-D energy computed outside torch: no gradient, so no forces."""

    def __init__(self):
        super().__init__(1, 2)

    def _energy(self, x):
        return torch.as_tensor(0.5 * (x.detach().numpy() ** 2).sum(axis=(1, 2)))
'''


def _exit(argv) -> int:
    try:
        main(argv)
    except SystemExit as info:
        return info.code
    return 0


def write_gauss2d_run(path: Path, n: int = 400, seed: int = 0, system: str = "gauss2d",
                      logq_fill: float | None = None, with_logq: bool = True) -> None:
    """A run file like a tilt run's of ``gauss2d``: samples of a wider Gaussian "flow" with their exact log q.

    gauss2d's energy is −log N(x; μ, Σ), so the target's log Z is 0.
    """
    sysm = load_system(system)
    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor([1.0, -0.5], dtype=torch.float64)
    scale = 1.6
    x = mu + scale * torch.randn(n, 1, 2, generator=g, dtype=torch.float64)
    logq = -0.5 * ((x - mu) ** 2).sum((1, 2)) / scale**2 - math.log(2 * math.pi * scale**2)
    if logq_fill is not None:
        logq[:] = logq_fill
    e = sysm.energy.energy(x) if system == "gauss2d" else 0.5 * (x**2).sum((1, 2))
    with RunFile(path, "w") as rf:
        rf.write_samples(x, logw=-e / sysm.kT - logq, logq=logq if with_logq else None, energy=e,
                         energy_unit=sysm.energy_unit, length_unit=sysm.length_unit, kT=sysm.kT)
        rf.set_attrs(system=system, kind="tilt", method="itm", seed=seed)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_refine_appends_the_refined_set_and_says_what_it_did(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    write_gauss2d_run(run / "samples.h5")
    with RunFile(run / "samples.h5") as rf:
        before = rf.read_samples()
    assert _exit(["refine", str(run), "--steps", "3", "--final-steps", "10", "--groups", "8", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "levels from kT" in out and "unique ancestors" in out and "log Z" in out and "CPU" in out
    assert "not comparable to a flow's ESS" in out
    with RunFile(run / "samples.h5") as rf:
        assert rf.sample_sets() == ["samples", "refined"]
        s = rf.read_samples("refined")
        a = dict(rf.attrs)
        hist = rf.read_history("refined_history")
        assert np.array_equal(rf.read_samples()["x"], before["x"])  # the flow samples are untouched
    assert s["x"].shape == (400, 1, 2) and np.isfinite(s["logw"]).all() and np.isfinite(s["energy"]).all()
    assert hist["kT"][-1] == 1.0 and len(hist["kT"]) == a["refined_levels"]
    assert abs(a["refined_log_z"]) < 4 * a["refined_log_z_se"] + 1e-9  # gauss2d: log Z = 0
    assert a["refined_energy_evals"] > 400 and json.loads(a["refined_settings"])["groups"] == 8
    assert json.loads(a["refined_warnings"]) == []
    assert _exit(["export", str(run), "--set", "refined", "--out", str(tmp_path / "refined.npy")]) == 0
    assert np.load(tmp_path / "refined.npy").shape == (400, 1, 2)


@pytest.mark.parametrize("args, match", [
    (["--steps", "-1"], "--steps -1: must be >= 0"),
    (["--start-kT", "0.5"], "below the run's kT"),
    (["--start-kT", "hot"], "neither 'auto' nor a number"),
    (["--target-cess", "1.5"], "--target-cess 1.5"),
    (["--groups", "0"], "--groups 0"),
    (["--groups", "300"], "fewer groups"),
])
def test_bad_options_are_one_line_and_leave_the_run_file_unchanged(tmp_path, capsys, args, match):
    path = tmp_path / "samples.h5"
    write_gauss2d_run(path)
    digest = _digest(path)
    assert _exit(["refine", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err, err
    assert _digest(path) == digest and [p.name for p in tmp_path.iterdir()] == ["samples.h5"]


@pytest.mark.parametrize("kind, match", [("no_logq", "no flow samples with log q"),
                                         ("nan_logq", "no flow sample has a finite log q"),
                                         ("no_samples", "has no flow samples"),
                                         ("no_forces", "gives no forces")])
def test_unusable_runs_are_one_line_errors(tmp_path, capsys, kind, match):
    path = tmp_path / "samples.h5"
    if kind == "no_logq":
        write_gauss2d_run(path, with_logq=False)
    elif kind == "nan_logq":
        write_gauss2d_run(path, logq_fill=float("nan"))
    elif kind == "no_samples":
        with RunFile(path, "w") as rf:
            rf.set_attrs(system="gauss2d", kind="tilt")
    else:
        (tmp_path / "noforce.py").write_text(NO_FORCE_PLUGIN)
        card = tmp_path / "noforce.toml"
        card.write_text('name = "noforce"\nkT = 1.0\nremove_com = false\n[energy]\ntype = "plugin"\n'
                        'path = "noforce.py:NoForce"\n')
        write_gauss2d_run(path, system=str(card))
    digest = _digest(path)
    assert _exit(["refine", str(path), "--final-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err, err
    assert _digest(path) == digest


def test_refine_with_hmc_records_the_kernel_and_its_cost(tmp_path, capsys):
    path = tmp_path / "samples.h5"
    write_gauss2d_run(path, n=200)
    argv = ["refine", str(path), "--steps", "2", "--final-steps", "6", "--groups", "4", "--seed", "1", "--start-kT",
            "2", "--kernel", "hmc", "--leapfrog-steps", "4"]
    assert _exit(argv) == 0
    assert "energy evaluations" in capsys.readouterr().out
    with RunFile(path) as rf:
        a = dict(rf.attrs)
    settings = json.loads(a["refined_settings"])
    assert settings["kernel"] == "hmc" and settings["leapfrog_steps"] == 4
    steps = 2 * (a["refined_levels"] - 1) + 6
    assert a["refined_energy_evals"] == 200 * (2 + 4 * steps)  # L per HMC step, the start and the probe
    assert abs(a["refined_log_z"]) < 4 * a["refined_log_z_se"] + 1e-9  # gauss2d: log Z = 0


def test_the_refine_table_takes_the_kernel(tmp_path):
    from molsample.errors import ConfigError
    from molsample.stages.config import resolve_config

    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('[refine]\nkernel = "hmc"\nleapfrog_steps = 6\n')
    cfg = resolve_config("lj13", config_file=cfg_file)
    assert (cfg.refine.kernel, cfg.refine.leapfrog_steps) == ("hmc", 6)
    assert resolve_config("lj13").refine.kernel == "mala"
    for table, match in (('kernel = "nuts"', "refine.kernel = 'nuts'; use one of mala, hmc"),
                         ("leapfrog_steps = 0", "refine.leapfrog_steps = 0")):
        cfg_file.write_text(f"[refine]\n{table}\n")
        with pytest.raises(ConfigError, match=match):
            resolve_config("lj13", config_file=cfg_file)
