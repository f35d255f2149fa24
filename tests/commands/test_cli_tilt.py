"""`molsample tilt` end to end on the smoke preset, then `sample`, `report` and `export` on its run."""

import subprocess
import sys

import mdtraj
import numpy as np
import pytest
import torch

from molsample.io.hdf5 import RunFile
from molsample.sampling.weights import summarize


def molsample(*args, cwd):
    return subprocess.run([sys.executable, "-m", "molsample", "--threads", "1", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    proc = molsample("tilt", "--system", "lj13", "--preset", "smoke", "--out", "runs/smoke", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work, work / "runs" / "smoke", proc.stdout


def test_smoke_run_writes_a_run_file_with_finite_ess(smoke_run):
    work, run, out = smoke_run
    assert "ESS" in out and "log Z" in out
    with RunFile(run / "samples.h5") as rf:
        ess_n = summarize(torch.as_tensor(rf.read_samples()["logw"])).ess * 256
    # the smoke model is untrained: its weights are degenerate, and the summary must say so loudly,
    # without a ± se on log Z
    assert (ess_n < 50) == ("DEGENERATE WEIGHTS" in out)
    if ess_n < 50:
        assert "unreliable" in out and "±" not in next(l for l in out.splitlines() if l.startswith("log Z"))
    with RunFile(run / "samples.h5") as rf:
        s = rf.read_samples()
        hist = rf.read_history()
        attrs = dict(rf.attrs)
        assert "reference" in rf.sample_sets()
    assert s["x"].shape == (256, 13, 3)
    # oracle: log w = −E/kT − log q from the stored energies and log-densities, and the stored ESS
    # and log Z are those of these weights
    ok = np.isfinite(s["logw"])
    assert ok.sum() > 0.9 * len(ok)
    np.testing.assert_allclose(s["logw"][ok], -s["energy"][ok] / s["kT"] - s["logq"][ok], rtol=1e-9, atol=1e-9)
    ws = summarize(torch.as_tensor(s["logw"]))
    assert attrs["ess"] == pytest.approx(ws.ess, rel=1e-9) and attrs["log_z"] == pytest.approx(ws.log_z, rel=1e-9)
    assert hist["a"][-1] == pytest.approx(1.0)
    assert attrs["kind"] == "tilt" and attrs["method"] == "itm" and attrs["mode"] == "temperature"
    # the run file is an MDTraj trajectory
    traj = mdtraj.load(str(run / "samples.h5"))
    assert traj.n_frames == 256 and traj.n_atoms == 13
    assert (run / "report" / "report.html").is_file() and (run / "model.pt").is_file()


def test_sample_appends_weighted_samples(smoke_run):
    work, run, _ = smoke_run
    proc = molsample("sample", str(run), "--n", "64", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "all samples" in proc.stdout and "DEGENERATE WEIGHTS" in proc.stdout  # an untrained smoke model
    with RunFile(run / "samples.h5") as rf:
        s = rf.read_samples()
    assert s["x"].shape[0] == 256 + 64 and s["logw"].shape == (320,)


def test_export_resampled_dcd(smoke_run):
    work, run, _ = smoke_run
    proc = molsample("export", str(run), "--format", "dcd", "--resample", "20", "--out", "x.dcd", cwd=work)
    assert proc.returncode == 0, proc.stderr
    traj = mdtraj.load(str(work / "x.dcd"), top=mdtraj.load_topology(str(run / "samples.h5")))
    assert traj.n_frames == 20


def test_resume_of_a_finished_run_keeps_its_levels(smoke_run):
    work, run, _ = smoke_run
    proc = molsample("tilt", "--system", "lj13", "--preset", "smoke", "--out", "runs/smoke", "--quiet",
                     "--resume", cwd=work)
    assert proc.returncode == 0, proc.stderr
    with RunFile(run / "samples.h5") as rf:
        n_levels = len(rf.read_history()["a"])
    assert "reusing" in proc.stdout and f"{n_levels} levels" in proc.stdout  # the stored count, not a new run


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--system", "lj14"], "unknown system"),
        (["--system", "lj13", "--config", "missing.toml"], "missing.toml"),
        (["--system", "lj13", "--device", "cuda:7", "--preset", "smoke"], "cuda"),
        (["--system", "lj13", "--h", "3"], "tilt.h"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, args, needle):
    proc = molsample("tilt", *args, "--quiet", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_ring_reward_mode_end_to_end(tmp_path):
    proc = molsample("tilt", "--system", "ring2d", "--preset", "smoke", "--out", "runs/ring", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "exact sampler" in proc.stdout and "resampled with weights" in proc.stdout
    with RunFile(tmp_path / "runs" / "ring" / "samples.h5") as rf:
        flow, ref = rf.read_samples(), rf.read_samples("reference")
        assert rf.attrs["mode"] == "reward"
    assert flow["x"].shape == (256, 1, 2) and np.isfinite(flow["logw"]).all()
    # the reference is the tilted ring: the rewarded mode at (4, 0) holds most of its mass
    near = np.linalg.norm(ref["x"][:, 0] - np.array([4.0, 0.0]), axis=1) < 1.0
    assert near.mean() > 0.4


def test_aldp_run_reports_and_fixes_chirality(tmp_path):
    """OpenMM system end to end: MD base data, EGNN with atom types, chirality fixed for an E(3) flow."""
    import torch

    from molsample import load_system
    from molsample.chirality import chiral_centers_for_system, chirality

    proc = molsample("tilt", "--system", "aldp", "--preset", "smoke", "--out", "runs/aldp", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with RunFile(tmp_path / "runs" / "aldp" / "samples.h5") as rf:
        s = rf.read_samples()
        attrs = dict(rf.attrs)
    assert s["energy_unit"] == "kJ/mol" and s["x"].shape == (256, 22, 3)
    # an E(3) flow makes both enantiomers about equally often ...
    assert 0.3 < attrs["chirality_reference_fraction"] < 0.7
    assert attrs["chirality_reflected"] > 0
    # ... and every stored sample has the reference (L) handedness after the fix
    centers = chiral_centers_for_system(load_system("aldp"))
    assert (chirality(torch.as_tensor(s["x"]), centers) == 1).all()
    assert (tmp_path / "runs" / "aldp" / "report" / "ramachandran.png").is_file()
