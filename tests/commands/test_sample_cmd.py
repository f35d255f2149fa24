"""`molsample sample`: the final stage's recipe, appended batch by batch in one atomic write."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from molsample.errors import ConfigError, OutputError
from molsample.flows.weights import summarize
from molsample.nets import save_model
from molsample.nets.affine import AffineVelocity
from molsample.stages.config import RunConfig
from molsample.stages.run import run_tilt, sample_more

SEED = 7


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A gauss2d run started from an affine model: 40 final samples in batches of 16 (seed 7)."""
    tmp = tmp_path_factory.mktemp("sample")
    torch.manual_seed(0)
    model = save_model(tmp / "m.pt", AffineVelocity(1, 2), system="gauss2d", a=1.0, mode="temperature")
    cfg = RunConfig(system="gauss2d", report=False, seed=SEED)
    cfg.start.model = str(model)
    cfg.reference.n = 0
    cfg.final.n_samples, cfg.final.batch_size, cfg.final.ode_steps, cfg.final.ode_method = 40, 16, 3, "euler"
    run_tilt(cfg, tmp / "run", progress=False, echo=lambda _: None)
    shutil.copyfile(model, tmp / "run" / "model.pt")
    return tmp / "run"


@pytest.fixture
def run(finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def _read(run) -> dict:
    with h5py.File(run / "samples.h5") as f:
        out = {k: f[k][()] for k in ("coordinates", "logq", "logw", "energy")}
        out["attrs"] = dict(f.attrs)
    return out


def test_appended_batches_are_the_final_stage_samples_again(run):
    """The same seed and batch size give, batch by batch, the final stage's own samples: one recipe."""
    before = _read(run)
    lines = sample_more(run, 40, seed=SEED + 1, batch_size=16, progress=False)
    after = _read(run)
    for key in ("coordinates", "logq", "logw", "energy"):
        assert len(after[key]) == 80
        np.testing.assert_array_equal(after[key][:40], before[key])
        np.testing.assert_array_equal(after[key][40:], before[key])
    total = summarize(torch.as_tensor(after["logw"]))
    assert after["attrs"]["ess"] == pytest.approx(total.ess, rel=1e-12)
    assert after["attrs"]["log_z"] == pytest.approx(total.log_z, rel=1e-12)
    assert after["attrs"]["energy_evals"] == before["attrs"]["energy_evals"] + 40
    cpu_before, cpu_after = json.loads(before["attrs"]["stage_cpu_s"]), json.loads(after["attrs"]["stage_cpu_s"])
    assert cpu_after["final"] > cpu_before["final"] and cpu_after["start"] == cpu_before["start"]
    new = summarize(torch.as_tensor(before["logw"]))
    assert lines[0].startswith(f"appended      40 samples to {run / 'samples.h5'} (80 in total; solver euler × 3)")
    assert lines[1] == f"new samples   ESS {new.ess:.4f}, {new.n_nonfinite} non-finite"


def test_a_failure_after_some_batches_leaves_the_run_file_as_it_was(run, monkeypatch):
    import molsample.stages.final as final

    draws = []
    real = final.draw_final

    def fail_on_the_third_batch(*args, **kwargs):
        draws.append(1)
        if len(draws) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(final, "draw_final", fail_on_the_third_batch)
    files = sorted(p.name for p in run.iterdir())
    before = (run / "samples.h5").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        sample_more(run, 40, seed=1, batch_size=16, progress=False)
    assert len(draws) == 3 and (run / "samples.h5").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == files  # no half-written copy left behind


@pytest.mark.parametrize("n, match", [(0, ">= 1"), (10**8, "limit")])
def test_counts_out_of_bounds_are_refused_before_work(run, n, match):
    before = (run / "samples.h5").read_bytes()
    with pytest.raises(ConfigError, match=match):
        sample_more(run, n, progress=False)
    assert (run / "samples.h5").read_bytes() == before


def test_an_unwritable_run_folder_is_refused_before_work(run, monkeypatch):
    import molsample.stages.final as final

    def check_writable(path, option="--out"):
        raise OutputError(f"cannot write to {path}; choose another {option}")

    def no_draw(*args, **kwargs):
        raise AssertionError("drew samples for a run file that cannot be written")

    monkeypatch.setattr("molsample.io.atomic.check_writable", check_writable)
    monkeypatch.setattr(final, "draw_final", no_draw)
    with pytest.raises(OutputError, match="cannot write to"):
        sample_more(run, 8, progress=False)
