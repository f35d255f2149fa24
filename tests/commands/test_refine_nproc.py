"""``molsample refine --nproc 2`` (torchrun, gloo) gives the one-process refined set of a DW-4 run, with
either kernel; a run interrupted in one process resumes with two; ``--kernel``/``--leapfrog-steps``
are checked and recorded."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from molsample.cli import main
from molsample.flows import smc
from molsample.io.hdf5 import RunFile
from molsample.stages.refine import checkpoint_path, refine_run
from molsample.systems.cards import load_system

from _run_helpers import interrupt_after

SIGMA = 0.6
SQUARE = torch.tensor([[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0]], dtype=torch.float64)


def write_dw4_run(path: Path, n: int = 240, seed: int = 0) -> None:
    """A DW-4 run file whose "flow" is an isotropic Gaussian around a square on the zero-CoM subspace
    (6 degrees of freedom), with its exact log q."""
    system = load_system("dw4")
    noise = SIGMA * torch.randn(n, 4, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = SQUARE + noise - noise.mean(1, keepdim=True)
    d = (x - SQUARE).flatten(1)
    logq = -0.5 * (d**2).sum(1) / SIGMA**2 - 3.0 * math.log(2 * math.pi * SIGMA**2)
    e = system.energy.double().energy(x)
    with RunFile(path, "w") as rf:
        rf.write_samples(x, logw=-e / system.kT - logq, logq=logq, energy=e, energy_unit=system.energy_unit,
                         length_unit=system.length_unit, kT=system.kT)
        rf.set_attrs(system="dw4", kind="tilt", method="itm", seed=seed)


def main_exit(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as info:
        return info.code
    return 0


def _molsample(args: list[str], cwd: Path, one_core: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    core = min(os.sched_getaffinity(0))
    return subprocess.run([sys.executable, "-m", "molsample", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300,
                          preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if one_core else None)


def _refined(path: Path) -> dict:
    with RunFile(path) as rf:
        s = rf.read_samples("refined")
        return {"x": s["x"], "logw": s["logw"], "energy": s["energy"], "attrs": dict(rf.attrs),
                "ancestors": rf.read_array("refined_ancestors")}


def _assert_same_set(one: dict, two: dict) -> None:
    np.testing.assert_allclose(two["x"], one["x"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(two["logw"], one["logw"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(two["energy"], one["energy"], rtol=0, atol=1e-9)
    assert np.array_equal(two["ancestors"], one["ancestors"])
    for key in ("refined_levels", "refined_energy_evals", "refined_unique_ancestors", "refined_resamplings",
                "refined_settings"):
        assert two["attrs"][key] == one["attrs"][key], key
    assert abs(two["attrs"]["refined_log_z"] - one["attrs"]["refined_log_z"]) < 1e-9


@pytest.mark.parametrize("kernel", [["--kernel", "mala"], ["--kernel", "hmc", "--leapfrog-steps", "3"]])
def test_two_processes_refine_exactly_as_one(tmp_path, capsys, kernel):
    args = ["--steps", "3", "--final-steps", "8", "--groups", "6", "--seed", "2", "--no-progress", *kernel]
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        write_dw4_run(tmp_path / name / "samples.h5")
    assert main_exit(["refine", str(tmp_path / "one"), *args]) == 0
    capsys.readouterr()
    res = _molsample(["refine", "two", *args, "--nproc", "2"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("refined 240 samples") == 1  # rank 0 alone prints
    one, two = _refined(tmp_path / "one" / "samples.h5"), _refined(tmp_path / "two" / "samples.h5")
    _assert_same_set(one, two)
    settings = json.loads(one["attrs"]["refined_settings"])
    assert settings["kernel"] == kernel[1] and settings.get("leapfrog_steps") == (3 if kernel[1] == "hmc" else None)
    assert not checkpoint_path(tmp_path / "two" / "samples.h5").exists()


def test_a_run_stopped_in_one_process_resumes_in_two(tmp_path, monkeypatch):
    """The checkpoint holds the whole population, so any number of processes continues it; two
    processes on one core also warn that they compete for it."""
    kw = dict(steps=2, final_steps=6, groups=4, seed=3, kT_start=3.0)
    for name in ("full", "cut"):
        (tmp_path / name).mkdir()
        write_dw4_run(tmp_path / name / "samples.h5", seed=1)
    refine_run(tmp_path / "full", **kw)
    interrupt_after(monkeypatch, smc, "_reweight", 2)
    with pytest.raises(KeyboardInterrupt):
        refine_run(tmp_path / "cut", **kw)
    assert checkpoint_path(tmp_path / "cut" / "samples.h5").is_file()
    res = _molsample(["refine", "cut", "--steps", "2", "--final-steps", "6", "--groups", "4", "--seed", "3",
                      "--start-kT", "3.0", "--resume", "--no-progress", "--nproc", "2"], tmp_path, one_core=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "--nproc 2 starts more processes than the 1 usable CPU cores" in res.stderr
    _assert_same_set(_refined(tmp_path / "full" / "samples.h5"), _refined(tmp_path / "cut" / "samples.h5"))


@pytest.mark.parametrize("args, match", [(["--leapfrog-steps", "4"], "applies to --kernel hmc"),
                                         (["--kernel", "hmc", "--leapfrog-steps", "0"], "--leapfrog-steps 0"),
                                         (["--kernel", "nuts"], "'nuts' is not one of")])
def test_kernel_options_are_checked(tmp_path, capsys, args, match):
    write_dw4_run(tmp_path / "samples.h5", n=40)
    assert main_exit(["refine", str(tmp_path / "samples.h5"), *args]) == 2
    assert match in capsys.readouterr().err
