"""Distributed runs on torch.distributed (gloo, 2 CPU processes) against 1-process runs.

The multi-process tests start real processes: ``molsample ... --nproc 2`` (torchrun's elastic
agent) and, for the fault test, two ranks started by hand so that one can be killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from molsample.commands.launch import strip_nproc, worker_command
from molsample.errors import DistributedError
from molsample.runtime.distributed import World
from molsample.training.losses import LOSSES, get_loss, tilt_loss

# the smoke preset cut further, without the reference and the report (rank 0 alone runs those)
SMALL = """
report = false
[data]
n = 256
burn_in = 100
steps = 200
[reference]
n = 0
[pretrain]
steps = 60
[tilt]
steps_per_level = 4
[final]
n_samples = 128
batch_size = 64
"""


# ---------------------------------------------------------------------------------- in-process checks
@pytest.mark.parametrize("n", [0, 1, 5, 64, 97])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_every_item_once_in_order(n, size):
    parts = [World(rank=r, world_size=size).shard(n) for r in range(size)]
    items = [i for s in parts for i in range(n)[s]]
    assert items == list(range(n))
    lengths = [len(range(n)[s]) for s in parts]
    assert max(lengths) - min(lengths) <= 1


def test_one_process_world_is_the_identity():
    w = World()
    t = torch.arange(5.0)
    assert w.gather(t) is t and w.sum(2.5) == 2.5 and w.is_main and not w.distributed
    w.barrier()
    with pytest.raises(DistributedError, match="multiple of 2"):
        World(rank=0, world_size=2).check_divisible(5, "batch_size")


@pytest.mark.parametrize("method", list(LOSSES))
def test_shard_losses_add_up_to_the_minibatch_loss(method, generator):
    """Each rank's loss uses its share of the whole minibatch's weights (WFM: a softmax over all of
    it), so the ranks' losses sum to the loss of the whole minibatch; DDP's gradient average,
    scaled by K, is then the gradient of the whole minibatch."""
    b = 12
    v, v_prev, dxt = (torch.randn(b, 3, 2, generator=generator, dtype=torch.float64) for _ in range(3))
    hr = torch.randn(b, generator=generator, dtype=torch.float64)
    whole = tilt_loss(method, v, v_prev, dxt, hr)
    for size in (2, 3, 5):
        w = get_loss(method).weights(hr)
        parts = [World(rank=r, world_size=size).shard(b) for r in range(size)]
        total = sum(tilt_loss(method, v[s], v_prev[s], dxt[s], hr[s], weights=w[s]) for s in parts)
        torch.testing.assert_close(total, whole)


def test_nproc_is_stripped_from_the_processes_command_line():
    argv = ["--threads", "1", "tilt", "--system", "lj13", "--nproc", "2", "--nproc=3", "--seed", "1"]
    assert strip_nproc(argv) == ["--threads", "1", "tilt", "--system", "lj13", "--seed", "1"]
    assert worker_command(argv) == [sys.executable, "-m", "molsample", *strip_nproc(argv)]


# ---------------------------------------------------------------------------------- multi-process runs
def _molsample(args: list[str], cwd: Path, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if env is None or key not in env:
            full_env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "molsample", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def _read(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in ("coordinates", "logq", "energy", "logw")}
        out["history"] = {k: f["history"][k][()] for k in f["history"]}
        out["attrs"] = dict(f.attrs)
    return out


def _assert_same_run(one: dict, two: dict) -> None:
    """The K-process run follows the 1-process run up to the order of float reductions."""
    np.testing.assert_allclose(two["coordinates"], one["coordinates"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(two["logq"], one["logq"], atol=1e-3, rtol=1e-5)
    finite = np.isfinite(one["logw"])
    assert np.array_equal(finite, np.isfinite(two["logw"]))
    np.testing.assert_allclose(two["energy"], one["energy"], rtol=1e-3, atol=1e-4)
    for key in ("a", "h", "level", "reward_evals", "n_nonfinite"):
        np.testing.assert_array_equal(two["history"][key], one["history"][key])
    for key in ("loss", "mean_reward", "update_norm", "ess_incremental"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-3, atol=1e-5)
    assert one["attrs"]["world_size"] == 1 and one["attrs"]["backend"] == "none"
    assert two["attrs"]["world_size"] == 2 and two["attrs"]["backend"] == "gloo"
    assert two["attrs"]["energy_evals"] == one["attrs"]["energy_evals"]


@pytest.mark.parametrize("system", ["ring2d", pytest.param("lj13", marks=pytest.mark.slow)])
def test_two_processes_equal_one(tmp_path, system):
    """``tilt --nproc 2`` (torchrun, gloo) gives the 1-process run's samples, each exactly once, in
    the same order; ``sample --nproc 2`` appends the same new samples."""
    (tmp_path / "small.toml").write_text(SMALL)
    common = ["tilt", "--system", system, "--preset", "smoke", "--config", "small.toml", "--no-progress"]
    two = _molsample(common + ["--out", "two", "--nproc", "2"], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _molsample(common + ["--out", "one"], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.stdout.count("energy evals") == 1  # rank 0 alone prints the summary
    _assert_same_run(_read(tmp_path / "one" / "samples.h5"), _read(tmp_path / "two" / "samples.h5"))
    if system != "ring2d":
        return
    for run, extra in (("one", []), ("two", ["--nproc", "2"])):
        res = _molsample(["sample", run, "--n", "40", "--batch-size", "16", "--seed", "5", "--no-progress", *extra],
                         tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
    a, b = _read(tmp_path / "one" / "samples.h5"), _read(tmp_path / "two" / "samples.h5")
    assert len(b["coordinates"]) == len(a["coordinates"]) == 128 + 40
    np.testing.assert_allclose(b["coordinates"][128:], a["coordinates"][128:], atol=1e-4, rtol=1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_rank_gives_a_clear_error_and_the_run_resumes(tmp_path):
    """Two ranks started by hand; rank 1 is killed mid-tilt. Rank 0 stops with an error naming the
    failure and --resume (not a hang), and the run then finishes from its checkpoint with 1 process."""
    (tmp_path / "small.toml").write_text(SMALL.replace("steps_per_level = 4", "steps_per_level = 40"))
    args = ["-m", "molsample", "tilt", "--system", "ring2d", "--preset", "smoke", "--config", "small.toml",
            "--out", "run", "--no-progress"]
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "MOLSAMPLE_DIST_TIMEOUT": "60"}
        procs.append(subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    ckpt = tmp_path / "run" / "checkpoints" / "tilt.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists():
        assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    _, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == 2, err[-3000:]
    assert time.monotonic() - start < 60  # detected when the peer vanished, well before the timeout
    assert "rank 0 of 2 lost the other processes" in err and "--resume" in err
    procs[1].communicate()

    state = torch.load(ckpt, weights_only=False)
    assert 1 <= state["level"] < 8
    res = _molsample(args[2:] + ["--resume"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    with h5py.File(tmp_path / "run" / "samples.h5", "r") as f:
        assert len(f["history"]["level"]) == 8 and f.attrs["world_size"] == 1


def test_reference_chains_shared_by_two_processes_are_those_of_one(tmp_path):
    """``reference --nproc 2``: each rank evaluates the energies of its half of the PT replicas; every
    rank draws the same random numbers, so the samples are exactly those of one process."""
    common = ["reference", "--system", "lj13", "--n", "64", "--method", "pt", "--chains", "4", "--burn-in", "20",
              "--thin", "5", "--no-progress"]
    for out, extra in (("one.h5", []), ("two.h5", ["--nproc", "2"])):
        res = _molsample(common + ["--out", out, *extra], tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(tmp_path / "two.h5", "r") as b:
        np.testing.assert_allclose(b["coordinates"][()], a["coordinates"][()], rtol=0, atol=1e-12)


def test_one_trajectory_references_refuse_to_be_split():
    from molsample.mcmc.reference import generate_reference
    from molsample.systems.cards import load_system

    with pytest.raises(DistributedError, match="run it with one process"):
        generate_reference(load_system("ring2d"), 10, method="exact", world=World(rank=0, world_size=2))


def test_internal_coordinates_two_processes_and_a_resumed_run_equal_one(tmp_path):
    """Alanine dipeptide in internal coordinates: ``tilt --nproc 2`` and a run stopped by SIGTERM in
    the tilt and continued with ``--resume`` give the uninterrupted 1-process run's samples and
    internal coordinates (the fitted transform is shared by the ranks and rebuilt on resume)."""
    (tmp_path / "small.toml").write_text(SMALL.replace("steps_per_level = 4", "steps_per_level = 40"))
    common = ["tilt", "--system", "aldp", "--coordinates", "internal", "--preset", "smoke", "--config", "small.toml",
              "--no-progress"]
    one = _molsample(common + ["--out", "one"], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _molsample(common + ["--out", "two", "--nproc", "2"], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    stopped = subprocess.Popen([sys.executable, "-m", "molsample", *common, "--out", "stopped"], cwd=tmp_path,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "stopped" / "checkpoints" / "tilt.pt"  # a level of the tilt is done
    deadline = time.monotonic() + 240
    while not ckpt.exists():
        assert time.monotonic() < deadline and stopped.poll() is None, stopped.communicate()[1][-3000:]
        time.sleep(0.05)
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, err[-3000:]
    assert not (tmp_path / "stopped" / "samples.h5").exists()
    resumed = _molsample(common + ["--out", "stopped", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def internal(run: str) -> np.ndarray:
        with h5py.File(tmp_path / run / "samples.h5", "r") as f:
            return f["internal_coordinates"][()]

    ref = _read(tmp_path / "one" / "samples.h5")
    _assert_same_run(ref, _read(tmp_path / "two" / "samples.h5"))
    np.testing.assert_allclose(internal("two"), internal("one"), atol=1e-4, rtol=1e-4)
    again = _read(tmp_path / "stopped" / "samples.h5")
    for key in ("coordinates", "logq", "logw", "energy"):
        np.testing.assert_array_equal(again[key], ref[key])
    np.testing.assert_array_equal(internal("stopped"), internal("one"))
