"""Maximum-likelihood fine-tuning: the differentiable log q against the closed form of a linear field,
its gradient against finite differences, the Hutchinson estimate's mean, and convergence to the MLE."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from molsample.errors import ConfigError
from molsample.flows.distributions import StandardGaussian
from molsample.training.likelihood import LikelihoodConfig, finetune_likelihood, log_likelihood_hutchinson


class LinearField(nn.Module):
    """b(t, x) = x A (A a (d, d) parameter): x1 = x0 expm(A), log q(x1) = log p0(x1 expm(−A)) − tr A."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, t, x):
        return x @ self.a


def closed_form(a: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    x0 = x1 @ torch.linalg.matrix_exp(-a)
    return StandardGaussian((1, a.shape[0])).log_prob(x0) - torch.diagonal(a).sum()


@pytest.fixture
def x1() -> torch.Tensor:
    return torch.randn(16, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def test_a_diagonal_linear_field_gives_the_closed_form(x1):
    a = torch.diag(torch.tensor([0.4, -0.3, 0.7], dtype=torch.float64))
    lq = log_likelihood_hutchinson(LinearField(a), StandardGaussian((1, 3)), x1, ode_steps=200)
    torch.testing.assert_close(lq, closed_form(a, x1), atol=1e-4, rtol=0)


def test_the_hutchinson_estimate_is_unbiased_for_a_full_jacobian():
    a = torch.tensor([[0.2, 0.5, -0.1], [-0.4, 0.1, 0.3], [0.2, -0.3, -0.2]], dtype=torch.float64)
    x1 = torch.randn(1, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).expand(4000, 1, 3)
    lq = log_likelihood_hutchinson(LinearField(a), StandardGaussian((1, 3)), x1, ode_steps=100,
                                   generator=torch.Generator().manual_seed(2)).detach()
    assert lq.std() > 0.05  # the probes do vary the estimate
    se = lq.std() / math.sqrt(len(lq))
    assert abs(float(lq.mean() - closed_form(a, x1[:1])[0])) < 4 * se


def test_its_gradient_matches_finite_differences(x1):
    a = torch.diag(torch.tensor([0.4, -0.3, 0.7], dtype=torch.float64))
    field = LinearField(a)
    base = StandardGaussian((1, 3))
    log_likelihood_hutchinson(field, base, x1, ode_steps=8).sum().backward()
    eps = 1e-6
    for i in range(3):
        da = torch.zeros_like(a)
        da[i, i] = eps
        up = log_likelihood_hutchinson(LinearField(a + da), base, x1, ode_steps=8).sum().detach()
        down = log_likelihood_hutchinson(LinearField(a - da), base, x1, ode_steps=8).sum().detach()
        assert float(field.a.grad[i, i]) == pytest.approx(float(up - down) / (2 * eps), rel=1e-6)


def test_fine_tuning_reaches_the_maximum_likelihood_field():
    """Data N(0, diag(s²)) and the field x·diag(a) from a = 0: the MLE is a = log s (the midpoint map's
    per-step factor 1 + h a + (h a)²/2 makes it a hair off, well inside the tolerance)."""
    s = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    data = torch.randn(4096, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * s
    field = LinearField(torch.zeros(3, 3, dtype=torch.float64))
    cfg = LikelihoodConfig(steps=300, batch_size=256, lr=0.05, ode_steps=10, grad_clip=None, seed=0)
    hist = finetune_likelihood(field, data, StandardGaussian((1, 3)), cfg)
    assert hist["nll"][-1] < hist["nll"][0] - 0.5
    torch.testing.assert_close(torch.diagonal(field.a.detach()), torch.log(s), atol=0.06, rtol=0)


@pytest.mark.parametrize("bad", [{"steps": -1}, {"batch_size": 0}, {"ode_steps": 0}, {"lr": 0.0}])
def test_bad_settings_are_refused_by_name(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        LikelihoodConfig(**bad).validate()
