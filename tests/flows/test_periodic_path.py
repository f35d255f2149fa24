"""Flows on the circle: the shortest-arc path, its closed-form velocity, and wrapping that leaves log q alone."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ConfigError
from molsample.flows.ode import integrate
from molsample.flows.paths import LinearPath, PeriodicPath, get_path, path_for_base, wrap_angle
from molsample.nets.internal_mlp import InternalMLP


def test_wrap_angle_range_and_identity_inside():
    x = torch.linspace(-20.0, 20.0, 4001, dtype=torch.float64)
    w = wrap_angle(x)
    assert (w > -math.pi).all() and (w <= math.pi).all()
    assert torch.allclose(torch.cos(w), torch.cos(x)) and torch.allclose(torch.sin(w), torch.sin(x), atol=1e-12)
    inside = torch.tensor([-3.0, 0.0, 1.0, math.pi], dtype=torch.float64)
    assert torch.equal(wrap_angle(inside), inside)


def test_shortest_arc_velocity_is_the_closed_form(generator):
    """Uniform base, target a point c on the circle: E[İ_t | I_t = x] = wrap(c − x)/(1 − t)."""
    path = PeriodicPath(LinearPath(), torch.tensor([True]))
    n = 2000
    x0 = (torch.rand(n, 1, 1, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    c = 2.9  # near +π: many shortest arcs cross ±π
    x1 = torch.full_like(x0, c)
    t = torch.rand(n, generator=generator, dtype=torch.float64) * 0.95
    ps = path.sample(x0, x1, t)
    assert (ps.xt > -math.pi).all() and (ps.xt <= math.pi).all()
    expected = wrap_angle(c - ps.xt) / (1 - t)[:, None, None]
    assert torch.allclose(ps.dxt, expected, atol=1e-9)
    assert (ps.dxt.abs() <= math.pi + 1e-12).all()  # never the long way round


def test_only_masked_coordinates_are_periodic():
    path = PeriodicPath(LinearPath(), torch.tensor([True, False]))
    x0 = torch.tensor([[[3.0], [3.0]]], dtype=torch.float64)
    x1 = torch.tensor([[[-3.0], [-3.0]]], dtype=torch.float64)
    ps = path.sample(x0, x1, torch.tensor([0.5], dtype=torch.float64))
    assert ps.dxt[0, 0, 0] == pytest.approx(2 * math.pi - 6.0)  # across ±π
    assert ps.dxt[0, 1, 0] == pytest.approx(-6.0)  # the straight line


def test_path_for_base_and_trig_refusal():
    class Base:
        periodic = torch.tensor([False, True])

    assert isinstance(path_for_base("linear", Base()), PeriodicPath)
    assert isinstance(path_for_base("linear", object()), LinearPath)
    with pytest.raises(ConfigError, match="linear path"):
        path_for_base("trig", Base())
    assert get_path("trig").name == "trig"


def test_periodic_net_and_wrapping_leave_log_q_unchanged(generator):
    """The flow of a net that sees torsions through sin/cos is the same from z0 and z0 + 2π."""
    periodic = [True, False, True]
    net = InternalMLP(3, periodic, hidden=16, n_layers=2).double()
    for p in net.parameters():
        p.data.normal_(0.0, 0.3, generator=generator)
    z0 = torch.randn(5, 3, 1, generator=generator, dtype=torch.float64)
    shift = torch.tensor([2 * math.pi, 0.0, -4 * math.pi], dtype=torch.float64).reshape(1, 3, 1)
    a = integrate(net, z0, method="midpoint", steps=10, with_logq=True)
    b = integrate(net, z0 + shift, method="midpoint", steps=10, with_logq=True)
    assert torch.allclose(a.logq, b.logq, atol=1e-10)
    mask = torch.tensor(periodic).reshape(1, 3, 1)
    assert torch.allclose(torch.where(mask, wrap_angle(a.x1), a.x1), torch.where(mask, wrap_angle(b.x1), b.x1),
                          atol=1e-10)
