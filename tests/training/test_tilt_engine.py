"""Tilt trainer details owned by the engine: resume-free settings, the true-energy ESS, the loss registry."""

from __future__ import annotations

import copy

import pytest
import torch

from molsample import load_system
from molsample.errors import ConfigError
from molsample.flows.distributions import StandardGaussian
from molsample.flows.weights import ess
from molsample.nets.affine import AffineVelocity
from molsample.training.losses import LOSSES, get_loss, register_loss
from molsample.training.rewards import make_reward
from molsample.training.tilt import TiltConfig, TiltMatching

CFG = dict(method="itm", h=0.25, steps_per_level=5, n_endpoints=64, endpoints_per_step=16, ode_method="euler",
           ode_steps=4, n_probe=32)


@pytest.fixture
def setup():
    system = load_system("gauss2d")
    torch.manual_seed(0)
    return system, AffineVelocity(1, 2).double(), StandardGaussian((1, 2))


def _reward(system, cap=None):
    return make_reward(system, "temperature", kT0=2.0 * system.kT, energy_cap=cap)


class _Stop(Exception):
    pass


def _interrupted_then_resumed(setup, tmp_path, first: dict, then: dict) -> torch.nn.Module:
    system, field, base = setup

    def stop(row):
        if row["level"] >= 1:
            raise _Stop

    f = copy.deepcopy(field)
    with pytest.raises(_Stop):
        TiltMatching(f, base, _reward(system), TiltConfig(**{**CFG, **first}), seed=2).run(
            checkpoint_path=tmp_path / "t.pt", progress=False, callback=stop)
    g = copy.deepcopy(field)
    TiltMatching(g, base, _reward(system), TiltConfig(**{**CFG, **then}), seed=2).run(
        checkpoint_path=tmp_path / "t.pt", resume=True, progress=False)
    return g


def test_resume_with_another_full_ess_every_is_bit_identical(setup, tmp_path):
    system, field, base = setup
    full = copy.deepcopy(field)
    TiltMatching(full, base, _reward(system), TiltConfig(**{**CFG, "full_ess_every": 0}), seed=2).run(progress=False)
    resumed = _interrupted_then_resumed(setup, tmp_path, {"full_ess_every": 1}, {"full_ess_every": 3})
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_resume_with_another_n_probe_is_refused(setup, tmp_path):
    with pytest.raises(ConfigError, match="tilt.n_probe: 32 → 16"):
        _interrupted_then_resumed(setup, tmp_path, {}, {"n_probe": 16})


def test_level_ess_uses_the_true_energy(setup):
    system, field, base = setup
    reward = _reward(system, cap=-5.0)  # every energy is above the cap: the reward sees a compressed one
    x = torch.randn(50, 1, 2, dtype=torch.float64)
    e = reward.energy(x)
    torch.testing.assert_close(reward.log_level_target(x, e, 1.0), reward.log_final_target(x, e))
    assert not torch.allclose(reward.log_target_from_energy(x, e, 1.0), reward.log_final_target(x, e))
    assert reward.energy_cap == -5.0  # restored
    trainer = TiltMatching(field, base, reward, TiltConfig(**CFG), seed=0)
    trainer.level = 3
    g = torch.Generator().manual_seed(0 + 7919 * 4)
    xs, logq = trainer.sampler(field).draw_with_logq(32, generator=g)
    expected = ess(reward.log_final_target(xs, reward.energy(xs)) - logq)
    assert trainer.full_ess(1.0) == pytest.approx(expected, rel=1e-12)


def test_registry_drives_validation_and_centring():
    assert list(LOSSES) == ["itm", "etm", "wfm", "ram"]
    assert [TiltConfig(method=m).centring for m in LOSSES] == ["lme", "mean", "lme", "none"]
    assert not get_loss("wfm").needs_frozen and get_loss("itm").needs_frozen
    with pytest.raises(ConfigError, match="use one of itm, etm, wfm, ram"):
        TiltConfig(method="nope").validate()

    @register_loss("_test_fm", needs_frozen=False, centring="mean", summary="test only")
    def _fm(v, v_prev, dxt, hr):
        return (v - dxt).pow(2).flatten(1).sum(-1)

    try:
        TiltConfig(method="_test_fm").validate()
        assert TiltConfig(method="_test_fm").centring == "mean"
    finally:
        del LOSSES["_test_fm"]
