"""InternalBase: the closed-form log-density, periodicity, samples, state."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ShapeError
from molsample.flows.internal_base import InternalBase

F64 = torch.float64
MASK = torch.tensor([False, False, True, False, True, True, False])


def test_log_prob_closed_form():
    base = InternalBase(MASK)
    z = torch.randn(10, 7, 1, dtype=F64) * 2
    normal = torch.distributions.Normal(torch.zeros((), dtype=F64), torch.ones((), dtype=F64))
    expected = normal.log_prob(z[:, ~MASK, 0]).sum(-1) - 3 * math.log(2 * math.pi)
    assert torch.allclose(base.log_prob(z), expected, atol=1e-12, rtol=0)
    assert base.log_prob(z).shape == (10,)
    # a Gaussian in internal coordinates: with no periodic entries it is N(0, I_D)
    plain = InternalBase(torch.zeros(7, dtype=torch.bool))
    mvn = torch.distributions.MultivariateNormal(torch.zeros(7, dtype=F64), torch.eye(7, dtype=F64))
    assert torch.allclose(plain.log_prob(z), mvn.log_prob(z[..., 0]), atol=1e-12, rtol=0)


def test_log_prob_is_periodic_in_periodic_coordinates():
    base = InternalBase(MASK)
    z = torch.randn(6, 7, 1, dtype=F64)
    shift = torch.zeros(7, dtype=F64)
    shift[MASK] = 2 * math.pi * torch.tensor([1.0, -3.0, 2.0], dtype=F64)
    assert torch.allclose(base.log_prob(z + shift.view(1, 7, 1)), base.log_prob(z), atol=1e-12, rtol=0)
    moved = z.clone()
    moved[:, 0] += 2 * math.pi
    assert not torch.allclose(base.log_prob(moved), base.log_prob(z))


def test_samples_in_range_and_distribution():
    base = InternalBase(MASK)
    z = base.sample(20_000, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert z.shape == (20_000, 7, 1) and z.dtype == F64
    per, rest = z[:, MASK, 0], z[:, ~MASK, 0]
    assert (per > -math.pi).all() and (per <= math.pi).all()
    assert per.std(0).sub(2 * math.pi / math.sqrt(12)).abs().max() < 0.05
    assert rest.mean(0).abs().max() < 0.05 and rest.std(0).sub(1).abs().max() < 0.05
    again = base.sample(20_000, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert torch.equal(z, again)
    assert base.sample(3).dtype == torch.float32


def test_state_shape_and_repr():
    base = InternalBase(MASK)
    assert base.event_shape == (7, 1) and base.dof == 7
    same = InternalBase.from_state(base.state())
    assert torch.equal(same.periodic, base.periodic)
    assert repr(base) == "InternalBase(dof=7, periodic=3)"
    with pytest.raises(ShapeError, match="\\(batch, 7, 1\\)"):
        base.log_prob(torch.zeros(2, 7))
