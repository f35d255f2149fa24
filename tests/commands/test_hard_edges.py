"""Bad input a new user hits first: each is one line naming the problem and the fix, exit status 2,
and nothing already written is lost."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from molsample.cli import main
from molsample.errors import MolsampleError, OutputError
from molsample.flows.weights import MIN_EFFECTIVE_SAMPLES, unusable_note, usable
from molsample.io.atomic import check_writable
from molsample.io.hdf5 import RunFile

from _run_helpers import write_lj_run


def _exit(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as info:
        return int(info.code or 0)
    return 0


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error") and "Traceback" not in err, err
    return err.splitlines()[-1]


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only folder, or (as root, who may write
    anywhere) a path below a regular file."""
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(ro, os.W_OK):  # root
        (tmp_path / "file.txt").write_text("x")
        yield tmp_path / "file.txt"
    else:
        yield ro
    ro.chmod(stat.S_IRWXU)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    write_lj_run(tmp_path / "run" / "samples.h5", n=100)
    return tmp_path / "run"


# ---- 1. unwritable output locations -------------------------------------------------------------

def test_check_writable_names_the_path_and_the_fix(unwritable: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write to .*out.*; choose another --out"):
        check_writable(unwritable / "out")
    assert isinstance(OutputError("x"), MolsampleError)
    assert check_writable(tmp_path / "new" / "deeper" / "x.npy") == tmp_path / "new" / "deeper" / "x.npy"


@pytest.mark.parametrize("command", ["export", "report"])
def test_export_and_report_to_an_unwritable_place_fail_before_work(command, unwritable, run_dir, capsys):
    before = sorted(p.name for p in run_dir.iterdir())
    out = unwritable / ("x.npy" if command == "export" else "rep")
    assert _exit([command, str(run_dir), "--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert f"cannot write to {out}" in line and "choose another --out" in line
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written, nothing lost


def test_tilt_to_an_unwritable_place_fails_before_work(unwritable, capsys):
    out = unwritable / "run"
    assert _exit(["tilt", "--system", "gauss2d", "--preset", "smoke", "--out", str(out)]) == 2
    assert "cannot write to" in _one_line_error(capsys)


# ---- 2. integer limits ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", ["99999999999999999999", "2000000000"])
def test_export_resample_above_the_limit_is_a_usage_error(n, run_dir, tmp_path, capsys):
    assert _exit(["export", str(run_dir), "--out", str(tmp_path / "x.npy"), "--resample", n]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--resample" in err and "1000000" in err
    assert not (tmp_path / "x.npy").exists()


def test_export_resampling_far_beyond_the_ess_warns_with_unique_count_and_size(run_dir, tmp_path, capsys):
    assert _exit(["export", str(run_dir), "--out", str(tmp_path / "x.npy"), "--resample", "5000"]) == 0
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("warning: --resample 5000"))
    assert "distinct structures" in line and "B" in line and "effective samples" in line
    assert "UserWarning" not in err and ".py:" not in err  # the tool's own line, no source path


def test_huge_count_in_a_config_is_rejected_before_work(tmp_path, capsys):
    cfg = tmp_path / "big.toml"
    cfg.write_text(f"[final]\nn_samples = {2**63 - 1}\n")
    out = tmp_path / "run"
    assert _exit(["tilt", "--system", "gauss2d", "--preset", "smoke", "--config", str(cfg), "--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert "final.n_samples" in line and "limit" in line
    assert not out.exists()


def test_sample_count_above_the_limit_is_rejected(run_dir, capsys):
    assert _exit(["sample", str(run_dir), "--n-samples", str(10**12)]) == 2
    assert "limit" in _one_line_error(capsys)


# ---- 3. fix hints that point the right way -------------------------------------------------------

def test_missing_model_in_a_run_folder_says_resume_not_pretrain(run_dir, capsys):
    assert _exit(["sample", str(run_dir), "--n", "3"]) == 2
    line = _one_line_error(capsys)
    assert "model.pt" in line and "--resume" in line and "pretrain" not in line


def test_a_pdb_given_as_system_says_what_a_card_is(tmp_path, capsys):
    pdb = tmp_path / "mol.pdb"
    pdb.write_text("ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00  0.00           N\nEND\n")
    assert _exit(["tilt", "--system", str(pdb), "--preset", "smoke", "--out", str(tmp_path / "r")]) == 2
    line = _one_line_error(capsys)
    assert ".toml" in line and "molsample systems" in line and "malformed TOML" not in line


def test_folder_that_never_held_a_run_says_no_run_there(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _exit(["report", str(tmp_path / "empty")]) == 2
    line = _one_line_error(capsys)
    assert "holds no run" in line and "did not finish" not in line
    (tmp_path / "started" / "checkpoints").mkdir(parents=True)
    assert _exit(["report", str(tmp_path / "started")]) == 2
    assert "--resume" in _one_line_error(capsys)


def test_report_of_a_run_with_zero_samples_is_one_error_line(tmp_path, capsys):
    (tmp_path / "zero").mkdir()
    with RunFile(tmp_path / "zero" / "samples.h5", "w") as rf:
        rf.write_samples(np.zeros((0, 13, 3)), logw=np.zeros(0), energy=np.zeros(0), energy_unit="reduced",
                         length_unit="reduced", kT=1.0)
    assert _exit(["report", str(tmp_path / "zero")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0 samples" in err and "non-finite" not in err and "molsample sample" in err
    assert not (tmp_path / "zero" / "report").exists()


def test_global_option_after_the_command_says_where_it_goes(capsys):
    assert _exit(["tilt", "--threads", "1", "--system", "lj13"]) == 2
    assert "molsample --threads N tilt" in capsys.readouterr().err


# ---- 5. Python warnings become the tool's own lines ---------------------------------------------

def test_python_warnings_print_as_one_tool_line(monkeypatch, capsys):
    import click

    import molsample.cli as cli_mod

    @click.command()
    def noisy() -> None:
        warnings.warn("overflow encountered in exp", RuntimeWarning, stacklevel=1)

    monkeypatch.setattr(cli_mod.LazyGroup, "get_command", lambda self, ctx, name: noisy)
    shown = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert _exit(["noisy"]) == 0
    assert capsys.readouterr().err.strip() == "warning: overflow encountered in exp"
    assert warnings.showwarning is shown  # restored after the command


# ---- 8. estimates from too few effective samples -------------------------------------------------

def test_usable_threshold():
    assert MIN_EFFECTIVE_SAMPLES == 50
    assert usable(0.5, 100) and not usable(0.49, 100) and not usable(float("nan"), 100)
    assert unusable_note(0.5, 100) == ""
    assert unusable_note(0.001, 1000) == " (unusable: 1 effective sample)"
    assert unusable_note(0.01, 1000) == " (unusable: 10 effective samples)"


def test_report_headline_marks_reweighted_numbers_from_one_effective_sample(tmp_path: Path) -> None:
    from molsample.reporting.report import make_report

    data = write_lj_run(tmp_path / "src.h5", n=200)

    def report(name: str, logw: np.ndarray):
        with RunFile(tmp_path / f"{name}.h5", "w") as rf:
            rf.write_samples(data["x"], logw=logw, energy=data["energy"], energy_unit="reduced",
                             length_unit="reduced", kT=1.0)
            rf.write_samples(data["x_ref"], energy=data["e_ref"], energy_unit="reduced", length_unit="reduced",
                             kT=1.0, name="reference")
        return make_report(tmp_path / f"{name}.h5", out=tmp_path / f"{name}-report")

    good = report("good", np.zeros(200))  # equal weights: 200 effective samples
    key = next(k for k in good.headline if k.startswith("energy W2 to reference, reweighted"))
    assert isinstance(good.headline[key], float) and good.summary["reweighted_usable"] is True
    spike = np.zeros(200)
    spike[0] = 100.0  # one sample carries all the weight: 1 effective sample
    bad = report("bad", spike)
    assert str(bad.headline[key]).endswith("(unusable: 1 effective sample)")
    assert bad.summary["reweighted_usable"] is False
    assert isinstance(bad.summary["energy_w2"]["reweighted"], float)  # the number itself stays in summary.json


# ---- 4. a long job in a log file is not silent ---------------------------------------------------

def test_plain_progress_lines_in_a_log_file(monkeypatch):
    import io

    import molsample.runtime.progress as progress

    log = io.StringIO()  # not a terminal: no bars
    monkeypatch.setattr(progress.sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "_log_lines", False)
    for _ in progress.progress_bar(range(3), enabled=False, desc="final samples"):
        pass
    assert log.getvalue() == ""  # library use and --no-progress: silent
    progress.log_progress_lines(True)
    for _ in progress.progress_bar(range(3), enabled=False, desc="final samples"):
        pass
    lines = log.getvalue().splitlines()
    assert lines and all(ln.startswith("progress: final samples") and "\r" not in ln for ln in lines)
    assert "3/3" in lines[-1]


def test_plain_progress_lines_come_once_per_interval(monkeypatch):
    """Refreshes (updates, set_postfix) between two lines print nothing: one line per LOG_INTERVAL_S."""
    import io

    import molsample.runtime.progress as progress

    log = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", log)
    monkeypatch.setattr(progress, "_log_lines", True)
    bar = progress.progress_bar(total=100, enabled=False, desc="flow matching")
    clock = [bar.start_t]
    bar._time = lambda: clock[0]
    for i in range(100):  # one step per simulated second
        clock[0] += 1.0
        bar.update(1)
        bar.set_postfix(loss=f"{i}")
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 100 // int(progress.LOG_INTERVAL_S), lines


# ---- 6. the same option is spelled the same way everywhere ---------------------------------------

@pytest.mark.parametrize("command", ["tilt", "pretrain", "sample", "reference", "report", "export"])
def test_every_long_running_command_takes_progress_and_resume_spellings(command):
    from molsample.cli import cli

    import click

    cmd = cli.get_command(click.Context(cli), command)
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    assert {"--progress", "--no-progress"} <= opts
    if command in ("tilt", "pretrain"):
        assert {"--resume", "--no-resume"} <= opts
    if command in ("sample", "reference", "tilt"):
        assert "--n-samples" in opts


def test_nproc_above_the_core_count_warns(monkeypatch, capsys):
    import molsample.runtime.threads as threads
    from molsample.commands import launch

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    launch.warn_if_oversubscribed(3)
    assert "--nproc 3" in capsys.readouterr().err
    launch.warn_if_oversubscribed(2)
    assert capsys.readouterr().err == ""
