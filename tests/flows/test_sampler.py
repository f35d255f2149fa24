"""The sampling room: FlowSampler draws the same samples as the solver, weights them exactly."""

from __future__ import annotations

import math

import pytest
import torch

from molsample import load_system
from molsample.flows.distributions import StandardGaussian
from molsample.flows.ode import sample as ode_sample
from molsample.flows.sampler import FlowSampler
from molsample.nets.affine import AffineVelocity
from molsample.training.rewards import make_reward


@pytest.fixture
def gauss():
    system = load_system("gauss2d")
    field = AffineVelocity(1, 2).double()
    return system, field, StandardGaussian((1, 2)), make_reward(system, "temperature", kT0=1.5 * system.kT)


def test_draw_equals_the_solver_with_the_same_generator(gauss):
    _, field, base, reward = gauss
    s = FlowSampler(field, base, reward, method="euler", steps=5, dtype=torch.float64)
    x = s.draw(7, generator=torch.Generator().manual_seed(3))
    ref = ode_sample(field, base, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64,
                     method="euler", steps=5).x1
    assert torch.equal(x, ref)


def test_batches_do_not_change_the_samples_and_counts_are_exact(gauss):
    _, field, base, reward = gauss
    s = FlowSampler(field, base, reward, method="rk4", steps=4, dtype=torch.float64)
    reward.n_energy_evals = 0
    one = s.sample(30, batch_size=30, generator=torch.Generator().manual_seed(5))
    assert reward.n_energy_evals == 30
    # the base draws x0 in one call per batch; with one batch the x1 equal the solver's
    ref = ode_sample(field, base, 30, generator=torch.Generator().manual_seed(5), dtype=torch.float64,
                     method="rk4", steps=4, with_logq=True)
    assert torch.equal(one.x, ref.x1) and torch.equal(one.logq, ref.logq.double())


def test_log_weights_are_exact_for_an_identity_flow():
    """Zero field: x1 = x0 ~ N(0, I), log q = log N(x1); target N(0, kT) with kT = 1 → logw = const."""
    system = load_system("gauss2d")

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, t, x):
            return x * self.w

    class StdNormalTarget:
        n_energy_evals = 0

        def energy(self, x):
            self.n_energy_evals += len(x)
            return 0.5 * x.pow(2).flatten(1).sum(-1)

        def log_final_target(self, x, e):
            return -e

    ws = FlowSampler(Zero().double(), StandardGaussian((1, 2)), StdNormalTarget(), method="euler", steps=3,
                     dtype=torch.float64).sample(64, batch_size=16, generator=torch.Generator().manual_seed(0))
    # log q = −|x|²/2 − log 2π, log π = −|x|²/2 → logw = log 2π for every sample, ESS 1, log Z = log 2π
    torch.testing.assert_close(ws.logw, torch.full((64,), math.log(2 * math.pi), dtype=torch.float64))
    assert ws.summary.ess == pytest.approx(1.0)
    assert ws.summary.log_z == pytest.approx(math.log(2 * math.pi))
    del system


def test_sample_without_target_is_an_error(gauss):
    _, field, base, _ = gauss
    with pytest.raises(ValueError, match="needs a target"):
        FlowSampler(field, base, None, dtype=torch.float64).sample(4)
