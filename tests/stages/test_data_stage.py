"""The base-data stage on a RunContext: samples at kT0 written to base_data.pt, reused while the
cache key (system, mode, [data], temperature factor, seed) holds and redrawn when it changes; the
base Gaussian in the prior mode, the exact sampler in the reward mode; and base_data_cost."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import molsample.stages.data as data_stage
from molsample.mcmc.reference import ReferenceResult
from molsample.stages.config import resolve_config
from molsample.stages.context import RunContext
from molsample.stages.data import BASE_DATA_COST_KEYS, base_data_cost, base_data_stage

SMALL_DATA = {"n": 64, "steps": 40, "burn_in": 20}


@pytest.fixture(autouse=True)
def _reference_cache_in_tmp(tmp_path, monkeypatch):
    """The reference cache (runs/cache/reference/ under the working directory) goes to tmp_path."""
    monkeypatch.chdir(tmp_path)


def make_context(run_dir: Path, said: list[str] | None = None, system: str = "dw4", **overrides) -> RunContext:
    cfg = resolve_config(system, preset="smoke", overrides={"data": dict(SMALL_DATA), **overrides})
    return RunContext.create(cfg, run_dir, progress=False, echo=(said if said is not None else []).append)


class FakeSampler:
    """Stands in for the reference sampler: records each request and answers ``n`` tagged samples."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, system, dcfg, kT, *, seed, progress, world=None) -> ReferenceResult:
        self.calls.append({"n": dcfg.n, "kT": kT, "seed": seed})
        n, d = system.event_shape
        x = torch.full((dcfg.n, n, d), float(len(self.calls)), dtype=torch.float64)
        diag = {"method": "pt", "n": dcfg.n, "n_energy_evals": 10 * dcfg.n, "cpu_time_s": 1.5, "tau_int": 2.0}
        return ReferenceResult(samples=x, energies=torch.zeros(dcfg.n), kT=kT, method="pt", system=system.name,
                               diagnostics=diag)


def test_the_stage_samples_at_kT0_and_writes_base_data(tmp_path, monkeypatch):
    asked = []
    real = data_stage.reference_samples

    def spy(system, dcfg, kT, **kw):
        asked.append(kT)
        return real(system, dcfg, kT, **kw)

    monkeypatch.setattr(data_stage, "reference_samples", spy)
    said: list[str] = []
    ctx = make_context(tmp_path / "run", said)
    assert ctx.mode == "temperature" and ctx.kT0 == pytest.approx(1.25)  # the smoke preset's factor × kT = 1
    base_data_stage(ctx)
    assert asked == [pytest.approx(1.25)]
    assert ctx.data.shape == (64, 4, 2) and ctx.data.dtype == torch.float64
    assert ctx.data.mean(1).abs().max() < 1e-6  # dw4 samples live on the zero-CoM subspace
    blob = torch.load(tmp_path / "run" / "base_data.pt", weights_only=False)
    assert torch.equal(blob["x"], ctx.data) and blob["cost"] == ctx.base_data_cost
    cost = ctx.base_data_cost
    assert cost["method"] == "pt" and cost["n"] == 64 and cost["kT0"] == pytest.approx(1.25)
    assert cost["n_energy_evals"] > 64 * (40 + 20)
    assert said == ["base data: 64 samples (pt at kT0 = 1.25 reduced)"]


def test_a_second_call_reuses_base_data_without_sampling(tmp_path, monkeypatch):
    first = make_context(tmp_path / "run")
    base_data_stage(first)

    def refuse(*args, **kwargs):
        raise AssertionError("the cached base data were sampled again")

    monkeypatch.setattr(data_stage, "reference_samples", refuse)
    said: list[str] = []
    again = make_context(tmp_path / "run", said)
    base_data_stage(again)
    assert torch.equal(again.data, first.data) and again.base_data_cost == first.base_data_cost
    assert said == [f"base data: reusing 64 cached samples ({tmp_path / 'run' / 'base_data.pt'})"]


@pytest.mark.parametrize("change", [
    {"data": {**SMALL_DATA, "n": 48}},
    {"data": {**SMALL_DATA, "burn_in": 21}},
    {"data": {**SMALL_DATA, "method": "mala"}},
    {"seed": 1},
    {"temperature_factor": 1.5},
    {"mode": "prior"},
], ids=["data.n", "data.burn_in", "data.method", "seed", "temperature_factor", "mode"])
def test_a_changed_cache_key_draws_the_base_data_again(tmp_path, monkeypatch, change):
    fake = FakeSampler()
    monkeypatch.setattr(data_stage, "reference_samples", fake)
    first = make_context(tmp_path / "run")
    base_data_stage(first)
    base_data_stage(make_context(tmp_path / "run"))  # unchanged: reused
    assert len(fake.calls) == 1
    changed = make_context(tmp_path / "run", **change)
    base_data_stage(changed)
    if change.get("mode") == "prior":  # the base Gaussian instead of the sampler
        assert len(fake.calls) == 1 and changed.base_data_cost["method"] == "base Gaussian"
    else:
        assert len(fake.calls) == 2 and fake.calls[1]["n"] == changed.cfg.data.n
        assert float(changed.data[0, 0, 0]) == 2.0  # the second answer, not the cached first
    blob = torch.load(tmp_path / "run" / "base_data.pt", weights_only=False)
    assert torch.equal(blob["x"], changed.data)  # the file now holds the new data


def test_the_prior_mode_draws_the_base_gaussian_with_the_runs_seed(tmp_path):
    ctx = make_context(tmp_path / "run", mode="prior")
    base_data_stage(ctx)
    expected = ctx.base.sample(64, generator=torch.Generator().manual_seed(ctx.cfg.seed), dtype=torch.float64)
    assert torch.equal(ctx.data, expected)
    assert ctx.base_data_cost == {"method": "base Gaussian", "n": 64, "n_energy_evals": 0}


def test_the_reward_mode_of_a_toy_uses_its_exact_sampler(tmp_path):
    said: list[str] = []
    ctx = make_context(tmp_path / "run", said, system="gauss2d")
    assert ctx.mode == "reward"
    base_data_stage(ctx)
    assert callable(ctx.data) and not (tmp_path / "run" / "base_data.pt").exists()
    x = ctx.data(5000, torch.Generator().manual_seed(0))
    assert x.shape == (5000, 1, 2)
    torch.testing.assert_close(x[:, 0].mean(0).double(), torch.tensor([1.0, -0.5], dtype=torch.float64), atol=0.06,
                               rtol=0)
    assert said[0].startswith("base data: the system's exact sampler")


def test_base_data_cost_keeps_its_keys_as_plain_numbers():
    diagnostics = {"method": "mala", "n": 100.0, "n_energy_evals": torch.tensor(2500), "cpu_time_s": torch.tensor(3.5),
                   "wall_time_s": 4, "tau_int": None, "acceptance": 0.6, "settings": {"chains": 8}}
    cost = base_data_cost(diagnostics, 1.25)
    assert list(cost) == [*BASE_DATA_COST_KEYS, "kT0"]
    assert cost == {"method": "mala", "n": 100, "n_energy_evals": 2500, "cpu_time_s": 3.5, "wall_time_s": 4.0,
                    "tau_int": None, "n_effective": None, "kT0": 1.25}
    assert type(cost["n"]) is int and type(cost["n_energy_evals"]) is int and type(cost["cpu_time_s"]) is float
