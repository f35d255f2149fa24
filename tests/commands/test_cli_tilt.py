"""`molsample tilt` end to end on the smoke preset, then `sample`, `report` and `export` on its run."""

import json
import subprocess
import sys

import mdtraj
import numpy as np
import pytest
import torch

from molsample.flows.weights import summarize
from molsample.io.hdf5 import RunFile
from _run_helpers import molsample


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
    # the base data's making cost travels with the run (and with base_data.pt, for runs that reuse it)
    base = json.loads(attrs["base_data_cost"])
    assert base["method"] == "mala" and base["n"] == 1024 and base["kT0"] == pytest.approx(1.25)
    assert base["n_energy_evals"] > 256 and base["cpu_time_s"] > 0
    assert torch.load(run / "base_data.pt", weights_only=False)["cost"] == base
    pre = json.loads(attrs["pretrain_cost"])
    assert pre["steps"] == 200 and 0 < pre["cpu_time_s"] <= json.loads(attrs["stage_cpu_s"])["pretrain"]
    # the run file is an MDTraj trajectory
    traj = mdtraj.load(str(run / "samples.h5"))
    assert traj.n_frames == 256 and traj.n_atoms == 13
    assert (run / "report" / "report.html").is_file() and (run / "model.pt").is_file()


def test_sample_appends_weighted_samples(smoke_run):
    work, run, _ = smoke_run
    with RunFile(run / "samples.h5") as rf:
        before = dict(rf.attrs)
    proc = molsample("sample", str(run), "--n", "64", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "all samples" in proc.stdout and "DEGENERATE WEIGHTS" in proc.stdout  # an untrained smoke model
    with RunFile(run / "samples.h5") as rf:
        s = rf.read_samples()
        after = dict(rf.attrs)
    assert s["x"].shape[0] == 256 + 64 and s["logw"].shape == (320,)
    # the appended samples' cost joins the run's: one energy evaluation each, CPU in the final stage
    assert after["energy_evals"] == before["energy_evals"] + 64
    cpu_before, cpu_after = json.loads(before["stage_cpu_s"]), json.loads(after["stage_cpu_s"])
    assert cpu_after["final"] > cpu_before["final"] and cpu_after["pretrain"] == cpu_before["pretrain"]
    assert json.loads((run / "timings.json").read_text())["cpu_s"] == cpu_after


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
        attrs = dict(rf.attrs)
    assert "reusing" in proc.stdout and f"{n_levels} levels" in proc.stdout  # the stored count, not a new run
    # the reused base data and pretrained field keep the cost they had when they were made
    assert json.loads(attrs["base_data_cost"]) == torch.load(run / "base_data.pt", weights_only=False)["cost"]
    assert json.loads(attrs["pretrain_cost"])["cpu_time_s"] == pytest.approx(
        torch.load(run / "pretrained.pt", weights_only=False)["train_cpu_s"])


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


def test_endpoint_parametrisation_runs_the_whole_job(tmp_path):
    """[net] parametrisation and [pretrain] time_weighting from a config file reach the pretrained
    net and the tilt, and the run ends with finite log-weights."""
    from molsample.nets import load_model
    from molsample.nets.endpoint import EndpointVelocity

    (tmp_path / "endpoint.toml").write_text('[net]\nparametrisation = "endpoint"\n\n'
                                            '[pretrain]\ntime_weighting = "endpoint"\n')
    proc = molsample("tilt", "--system", "ring2d", "--preset", "smoke", "--config", "endpoint.toml",
                     "--out", "runs/ring", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    net, payload = load_model(tmp_path / "runs" / "ring" / "pretrained.pt")
    assert isinstance(net, EndpointVelocity) and payload["config"]["time_weighting"] == "endpoint"
    with RunFile(tmp_path / "runs" / "ring" / "samples.h5") as rf:
        assert rf.read_config()["net"]["parametrisation"] == "endpoint"
        assert np.isfinite(rf.read_samples()["logw"]).all()


@pytest.mark.slow  # ~60 s; the reflection itself is checked in tests/flows/test_final_samples.py
def test_aldp_run_reports_and_fixes_chirality(tmp_path):
    """OpenMM system end to end: MD base data, EGNN with atom types, chirality fixed for an E(3) flow."""
    import torch

    from molsample import load_system
    from molsample.molecules.chirality import chiral_centers_for_system, chirality

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


def test_sigterm_stops_a_run_like_ctrl_c_and_it_resumes(tmp_path):
    """SIGTERM mid-run (inside pretraining, after its first checkpoint): exit 130 with the resume hint,
    the interrupted stage's CPU time recorded, and the same command with --resume finishes the run."""
    import signal
    import time

    (tmp_path / "long.toml").write_text("report = false\n[reference]\nn = 0\n"
                                        "[pretrain]\nsteps = 1500\ncheckpoint_every = 50\n")
    run = tmp_path / "runs" / "t"
    cmd = [sys.executable, "-m", "molsample", "--threads", "1", "tilt", "--system", "ring2d", "--preset", "smoke",
           "--config", "long.toml", "--out", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((run / "checkpoints").glob("pretrain-*.pt")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "can be continued with" in err and "--resume" in err
    timings = json.loads((run / "timings.json").read_text())
    assert "pretrain" in timings["cpu_s"] and "tilt" not in timings["cpu_s"]  # the stopped stage counts its time
    done = subprocess.run(cmd + ["--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (run / "samples.h5").is_file()
    assert json.loads((run / "timings.json").read_text())["invocations"] == 2
