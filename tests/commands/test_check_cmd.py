"""`molsample check` on a smoke run: the solver gap as run-file attributes and report rows;
`molsample sample --ode-method/--ode-steps`; bad input exits 2 with one line."""

import math
import shutil

import pytest

from molsample.io.hdf5 import RunFile
from _run_helpers import molsample


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    proc = molsample("tilt", "--system", "dw4", "--preset", "smoke", "--out", "runs/dw4", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work, work / "runs" / "dw4"


def test_check_writes_the_solver_gap_and_the_report_shows_it(smoke_run):
    work, run = smoke_run
    with RunFile(run / "samples.h5") as rf:
        before = dict(rf.attrs)
        n_samples = len(rf.read_samples()["x"])
    proc = molsample("check", str(run), "--n", "40", "--discrete", "3", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "log q shift" in proc.stdout and "discrete map  gap" in proc.stdout
    with RunFile(run / "samples.h5") as rf:
        attrs = dict(rf.attrs)
        assert len(rf.read_samples()["x"]) == n_samples  # only attributes were added
    assert attrs["check_n"] == 40 and attrs["check_discrete_n"] == 3
    assert attrs["check_method"] == "euler" and attrs["check_fine_method"] == "rk4"
    assert attrs["check_fine_steps"] == max(2 * attrs["check_steps"], 20)
    for key in ("check_shift_mean", "check_shift_std", "check_log_z_shift", "check_discrete_gap_mean"):
        assert math.isfinite(attrs[key]), key
    # euler × few steps: the solver's log q is visibly not the density of its map
    assert abs(attrs["check_discrete_gap_mean"]) > 1e-3
    assert attrs["log_z"] == before["log_z"]  # the check does not touch the run's own numbers
    proc = molsample("report", str(run), "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    page = (run / "report" / "report.md").read_text()
    assert "solver check: log q shift" in page and "discrete-map gap" in page
    # the coverage rows against the run's reference set (an untrained smoke flow misses most of it)
    assert "reference mass the flow never visits (energy)" in page and "the ESS cannot see it" in page


def test_sample_takes_another_solver(smoke_run):
    work, run = smoke_run
    proc = molsample("sample", str(run), "--n", "16", "--ode-method", "midpoint", "--ode-steps", "12", "--quiet",
                     cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "solver midpoint × 12" in proc.stdout


@pytest.mark.parametrize("what", ["no-model", "no-run", "bad-n"])
def test_bad_input_is_one_line_and_exit_2(smoke_run, tmp_path, what):
    work, run = smoke_run
    args = [str(tmp_path / "nothing")]
    if what == "no-model":
        copy = tmp_path / "copy"
        copy.mkdir()
        shutil.copy(run / "samples.h5", copy / "samples.h5")
        args = [str(copy)]
    elif what == "bad-n":
        args = [str(run), "--n", "1"]
    proc = molsample("check", *args, cwd=work)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("Error: ")
