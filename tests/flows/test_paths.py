"""Interpolants: endpoints, closed-form coefficients, İ_t against finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ConfigError, ShapeError
from molsample.flows.paths import LinearPath, PathSample, TrigPath, get_path


@pytest.fixture
def pair(generator):
    x0 = torch.randn(7, 3, 2, generator=generator, dtype=torch.float64)
    x1 = torch.randn(7, 3, 2, generator=generator, dtype=torch.float64)
    return x0, x1


@pytest.mark.parametrize("name, cls", [("linear", LinearPath), ("trig", TrigPath), ("LINEAR", LinearPath)])
def test_get_path(name, cls):
    assert isinstance(get_path(name), cls)


def test_unknown_path_lists_known():
    with pytest.raises(ConfigError, match="linear, trig"):
        get_path("cosine")


@pytest.mark.parametrize("name", ["linear", "trig"])
def test_endpoints(name, pair):
    path, (x0, x1) = get_path(name), pair
    b = x0.shape[0]
    assert torch.allclose(path.sample(x0, x1, torch.zeros(b, dtype=torch.float64)).xt, x0, atol=1e-15)
    assert torch.allclose(path.sample(x0, x1, torch.ones(b, dtype=torch.float64)).xt, x1, atol=1e-15)


def test_coefficients_closed_form():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    lin, trig = LinearPath(), TrigPath()
    assert torch.equal(lin.alpha(t), 1 - t) and torch.equal(lin.beta(t), t)
    assert torch.allclose(trig.alpha(t), torch.cos(math.pi * t / 2))
    assert torch.allclose(trig.beta(t), torch.sin(math.pi * t / 2))
    # the trigonometric path preserves variance: α² + β² = 1
    assert torch.allclose(trig.alpha(t) ** 2 + trig.beta(t) ** 2, torch.ones_like(t))


@pytest.mark.parametrize("name", ["linear", "trig"])
def test_dxt_is_time_derivative(name, pair):
    path, (x0, x1) = get_path(name), pair
    t = torch.linspace(0.05, 0.95, x0.shape[0], dtype=torch.float64)
    h = 1e-6
    fd = (path.sample(x0, x1, t + h).xt - path.sample(x0, x1, t - h).xt) / (2 * h)
    ps = path.sample(x0, x1, t)
    assert isinstance(ps, PathSample)
    assert ps.xt.shape == x0.shape and ps.dxt.shape == x0.shape and ps.t.shape == (x0.shape[0],)
    assert torch.allclose(ps.dxt, fd, atol=1e-8)


def test_scalar_time_broadcasts(pair):
    x0, x1 = pair
    a = LinearPath().sample(x0, x1, 0.3)
    b = LinearPath().sample(x0, x1, torch.full((x0.shape[0],), 0.3, dtype=torch.float64))
    assert torch.equal(a.xt, b.xt) and a.t.shape == (x0.shape[0],)


def test_shape_errors(pair):
    x0, x1 = pair
    with pytest.raises(ShapeError):
        LinearPath().sample(x0, x1[:3], torch.rand(7))
    with pytest.raises(ShapeError):
        LinearPath().sample(x0, x1, torch.rand(5))
