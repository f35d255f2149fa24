"""The internal-coordinate velocity net: shapes, periodicity, exact divergence, spec round trip."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ConfigError, ShapeError
from molsample.flows.ode import field_divergence
from molsample.nets import build_net
from molsample.nets.internal_mlp import InternalMLP

PERIODIC = [False, False, True, False, True]


@pytest.fixture
def net(generator):
    net = InternalMLP(5, PERIODIC, hidden=32, n_layers=2).double()
    for p in net.parameters():
        p.data.normal_(0.0, 0.2, generator=generator)
    return net


def test_starts_as_the_zero_field():
    net = InternalMLP(5, PERIODIC, hidden=8, n_layers=1)
    assert torch.equal(net(0.5, torch.randn(4, 5, 1)), torch.zeros(4, 5, 1))


def test_periodic_in_the_torsions_only(net, generator):
    z = torch.randn(6, 5, 1, generator=generator, dtype=torch.float64)
    shift = torch.zeros(1, 5, 1, dtype=torch.float64)
    shift[0, 2, 0], shift[0, 4, 0] = 2 * math.pi, -2 * math.pi
    assert torch.allclose(net(0.3, z), net(0.3, z + shift), atol=1e-12)
    plain = torch.zeros_like(shift)
    plain[0, 0, 0] = 2 * math.pi
    assert not torch.allclose(net(0.3, z), net(0.3, z + plain))


def test_exact_divergence_is_the_trace_of_the_jacobian(net, generator):
    z = torch.randn(3, 5, 1, generator=generator, dtype=torch.float64)
    t = torch.tensor(0.4, dtype=torch.float64)
    v, div = field_divergence(net, t, z)
    assert torch.allclose(v, net(t, z))
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda y: net(t, y[None])[0].reshape(-1), z[b]).reshape(5, 5)
        assert div[b].item() == pytest.approx(torch.trace(jac).item(), abs=1e-10)


def test_spec_round_trip_and_capabilities(net):
    rebuilt = build_net(net.spec).double()
    rebuilt.load_state_dict(net.state_dict())
    z = torch.randn(2, 5, 1, dtype=torch.float64)
    assert torch.equal(rebuilt(0.1, z), net(0.1, z))
    assert InternalMLP.reflection_invariant is False


def test_bad_shapes_and_arguments(net):
    with pytest.raises(ShapeError, match=r"\(batch, 5, 1\)"):
        net(0.0, torch.zeros(2, 5, 3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="one periodic flag per coordinate"):
        InternalMLP(4, PERIODIC)
