"""The reference stage on a RunContext: [reference] n samples at the card's kT (not the base data's
kT0) beside the flow samples in samples.h5, resampled by e^{βr} to the tilted target in the reward
mode, cached by the reference sampler, and skipped when n = 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from molsample.io.hdf5 import RunFile
from molsample.stages.config import resolve_config
from molsample.stages.context import RunContext
from molsample.stages.engine import run_stages
from molsample.stages.reference import reference_stage, wants_reference
from molsample.stages.run import TILT_STAGES
from molsample.stages.tilt import make_run_reward

F64 = torch.float64
MU = torch.tensor([1.0, -0.5], dtype=F64)  # the gauss2d card
COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
PRECISION, SHIFT, BETA = torch.diag(torch.tensor([0.5, 1.0], dtype=F64)), torch.tensor([1.0, 0.5], dtype=F64), 1.0
N = 4000


@pytest.fixture(autouse=True)
def _reference_cache_in_tmp(tmp_path, monkeypatch):
    """The reference cache (runs/cache/reference/ under the working directory) goes to tmp_path."""
    monkeypatch.chdir(tmp_path)


def gauss2d_context(tmp_path, mode: str, n: int = N, said: list[str] | None = None) -> RunContext:
    cfg = resolve_config("gauss2d", preset="smoke", overrides={"mode": mode, "reference": {"n": n}})
    ctx = RunContext.create(cfg, tmp_path / "run", progress=False, echo=(said if said is not None else []).append)
    ctx.reward = make_run_reward(ctx)
    return ctx


def assert_gaussian(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, n_eff: float) -> None:
    """Sample mean and covariance of ``x (n, 2)`` within 4 standard errors of ``mean``, ``cov``."""
    se_mean = torch.sqrt(torch.diag(cov) / n_eff)
    assert torch.all((x.mean(0) - mean).abs() < 4 * se_mean), (x.mean(0), mean)
    se_cov = torch.sqrt((torch.diag(cov)[:, None] * torch.diag(cov)[None, :] + cov * cov) / n_eff)
    assert torch.all((torch.cov(x.T) - cov).abs() < 4 * se_cov), (torch.cov(x.T), cov)


def test_reference_samples_at_kT_are_stored_beside_the_flow_samples(tmp_path):
    said: list[str] = []
    ctx = gauss2d_context(tmp_path, "temperature", said=said)
    assert ctx.kT0 == pytest.approx(1.25) and ctx.system.kT == 1.0 and wants_reference(ctx)
    ctx.run_dir.mkdir(parents=True)
    flow_x = torch.zeros(3, 1, 2, dtype=F64)
    with RunFile(ctx.run_dir / "samples.h5", "w") as rf:  # what the final stage left
        rf.write_samples(flow_x, logw=torch.zeros(3), energy_unit="reduced", length_unit="reduced", kT=1.0)
    reference_stage(ctx)
    x = ctx.reference_x
    assert x.shape == (N, 1, 2)
    assert_gaussian(x[:, 0].double(), MU, COV * ctx.system.kT, N)  # N(μ, Σ·kT), not Σ·kT0 = 1.25 Σ
    with RunFile(ctx.run_dir / "samples.h5") as rf:
        assert rf.sample_sets() == ["samples", "reference"]
        assert np.array_equal(rf.read_samples()["x"], flow_x.numpy().astype(np.float32))
        ref = rf.read_samples("reference")
    assert ref["kT"] == 1.0 and ref["energy_unit"] == "reduced"
    np.testing.assert_allclose(ref["x"], x.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ref["energy"], ctx.system.energy.energy(x.double()).numpy(), rtol=1e-5, atol=1e-5)
    assert said == [f"reference: {N} exact samples at kT = 1 reduced"]


def test_the_reward_mode_resamples_the_reference_to_the_tilted_target(tmp_path):
    """N(μ, Σ)·e^{βr} with r = −½xᵀΛx + bᵀx is N(m, P⁻¹): P = Σ⁻¹ + βΛ, m = P⁻¹(Σ⁻¹μ + βb)."""
    said: list[str] = []
    ctx = gauss2d_context(tmp_path, "reward", said=said)
    reference_stage(ctx)
    inv = torch.linalg.inv(COV)
    cov_a = torch.linalg.inv(inv + BETA * PRECISION)
    mean_a = cov_a @ (inv @ MU + BETA * SHIFT)
    x = ctx.reference_x[:, 0].double()
    assert x.shape == (N, 2)
    assert (x.mean(0) - MU).abs().max() > 0.15  # the tilt moved the mean well beyond the tolerance below
    assert_gaussian(x, mean_a, cov_a, N / 4)  # resampling repeats samples: fewer than N effective
    assert said[0].endswith("resampled with weights exp(β·reward), β = 1")


def test_the_reference_is_cached_by_the_sampler(tmp_path, monkeypatch):
    import molsample.mcmc.reference as reference_module

    first = gauss2d_context(tmp_path, "temperature", n=64)
    reference_stage(first)
    cached = list((tmp_path / "runs" / "cache" / "reference").glob("gauss2d-exact-n64-*.h5"))
    assert len(cached) == 1
    real = reference_module.generate_reference

    def refuse(*args, **kwargs):
        raise AssertionError("the cached reference was sampled again")

    monkeypatch.setattr(reference_module, "generate_reference", refuse)
    again = gauss2d_context(tmp_path, "temperature", n=64)
    reference_stage(again)
    assert torch.equal(again.reference_x, first.reference_x)
    monkeypatch.setattr(reference_module, "generate_reference", real)
    other_seed = resolve_config("gauss2d", preset="smoke", overrides={"mode": "temperature", "reference": {"n": 64},
                                                                       "seed": 5})
    ctx = RunContext.create(other_seed, tmp_path / "run2", progress=False, echo=lambda _: None)
    ctx.reward = make_run_reward(ctx)
    reference_stage(ctx)
    assert not torch.equal(ctx.reference_x, first.reference_x)


def test_no_reference_samples_skip_the_stage(tmp_path):
    ctx = gauss2d_context(tmp_path, "temperature", n=0)
    assert not wants_reference(ctx)
    stage = next(s for s in TILT_STAGES if s.name == "reference")
    assert stage.skip(ctx) and stage.main_only
    timings = run_stages([stage], ctx)
    assert ctx.reference_x is None and not (ctx.run_dir / "samples.h5").exists()
    assert "reference" not in timings.cpu_s
