"""The reward-mode registry: each mode's reward and reference density, make_reward and the config checks."""

from __future__ import annotations

import pytest
import torch

from molsample.errors import ConfigError
from molsample.stages.config import RunConfig
from molsample.systems.cards import load_system
from molsample.training.rewards import MODES, REWARD_MODES, RewardMode, TiltReward, make_reward, register_reward_mode


@pytest.fixture(scope="module")
def gauss2d():
    return load_system("gauss2d")


def _rewards(system) -> dict[str, TiltReward]:
    base_log_prob = lambda x: -0.5 * (x * x).sum((1, 2))  # noqa: E731
    return {"temperature": make_reward(system, "temperature", kT0=2.0),
            "prior": make_reward(system, "prior", base_log_prob=base_log_prob),
            "reward": make_reward(system, "reward")}


def test_modes_are_registered_in_order():
    assert MODES == tuple(REWARD_MODES) == ("temperature", "prior", "reward")
    assert [m.name for m in REWARD_MODES.values() if m.tilts_target] == ["reward"]


@pytest.mark.parametrize("mode", ["temperature", "prior", "reward"])
def test_each_mode_tilts_its_reference_onto_the_target(gauss2d, mode):
    """log ρ_ref + 1·r is the final target, log ρ_ref + 0·r the reference (up to constants: exactly here)."""
    r = _rewards(gauss2d)[mode]
    x = torch.randn(7, 1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e = gauss2d.energy.energy(x)
    assert torch.allclose(r.log_target_from_energy(x, e, 1.0), r.log_final_target(x, e))
    assert torch.allclose(r.log_target_from_energy(x, e, 0.0), r.log_ref_from_energy(x, e))
    target = -e / gauss2d.kT + (r.beta * r.fn(x) if mode == "reward" else 0.0)
    assert torch.allclose(r.log_final_target(x, e), target)


def test_temperature_reward_is_the_inverse_temperature_gap(gauss2d):
    r = _rewards(gauss2d)["temperature"]
    e = torch.tensor([1.0, -2.0], dtype=torch.float64)
    assert torch.allclose(r.from_energy(torch.zeros(2, 1, 2), e), -(1.0 - 0.5) * e)


def test_temperature_reward_at_the_target_is_zero(gauss2d):
    r = make_reward(gauss2d, "temperature", kT0=gauss2d.kT)  # data already at the target: nothing to tilt
    e = torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)
    assert torch.equal(r.from_energy(torch.zeros(3, 1, 2), e), torch.zeros(3, dtype=torch.float64))


def test_mode_errors(gauss2d):
    with pytest.raises(ConfigError, match="unknown reward mode 'tilt'; use one of temperature, prior, reward"):
        make_reward(gauss2d, "tilt")
    with pytest.raises(ConfigError, match="temperature mode needs kT0 ≥ kT"):
        make_reward(gauss2d, "temperature", kT0=0.9)
    with pytest.raises(ConfigError, match="temperature mode needs kT0 ≥ kT"):
        make_reward(gauss2d, "temperature")
    with pytest.raises(ConfigError, match="prior mode needs the base distribution's log_prob"):
        make_reward(gauss2d, "prior")
    with pytest.raises(ConfigError, match="mode = 'tilt'; use temperature, prior or reward"):
        RunConfig(mode="tilt").validate()


def test_a_registered_mode_is_accepted_by_make_reward_and_the_config(gauss2d):
    mode = register_reward_mode(RewardMode(
        "test-flat", reward=lambda r, x, e: torch.zeros_like(e), log_ref=lambda r, x, e: -e / r.system.kT,
        build=lambda system, **kw: TiltReward("test-flat", system)))
    try:
        r = make_reward(gauss2d, "test-flat")
        x = torch.zeros(2, 1, 2, dtype=torch.float64)
        assert torch.equal(r(x), torch.zeros(2, dtype=torch.float64))
        assert RunConfig(mode="test-flat").validate().mode == "test-flat"
        with pytest.raises(ValueError, match="registered twice"):
            register_reward_mode(mode)
    finally:
        REWARD_MODES.pop("test-flat")
