"""The tutorial MLP velocity: parameter count, shapes, time handling, spec round trip."""

from __future__ import annotations

import pytest
import torch

from molsample.errors import ConfigError, ShapeError
from molsample.nets import MLPVelocity, build_net


def test_tutorial_parameter_count():
    net = MLPVelocity()
    assert sum(p.numel() for p in net.parameters()) == 35_714
    hidden = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in hidden] == [(18, 128), (128, 128), (128, 128), (128, 2)]


def test_shapes_and_time_forms(generator):
    net = MLPVelocity(n_particles=3, dim=2, hidden=32).double()
    x = torch.randn(5, 3, 2, generator=generator, dtype=torch.float64)
    v = net(0.3, x)
    assert v.shape == x.shape
    assert torch.allclose(v, net(torch.full((5,), 0.3, dtype=torch.float64), x))
    t = torch.rand(5, generator=generator, dtype=torch.float64)
    rows = torch.cat([net(t[k], x[k:k + 1]) for k in range(5)])
    assert torch.allclose(net(t, x), rows)


def test_spec_round_trip():
    net = MLPVelocity(hidden=64, n_freqs=4, n_layers=2)
    rebuilt = build_net(net.spec)
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(4, 1, 2)
    assert torch.equal(rebuilt(0.1, x), net(0.1, x))


def test_errors():
    with pytest.raises(ShapeError, match=r"\(batch, 1, 2\)"):
        MLPVelocity()(0.0, torch.zeros(3, 2))
    with pytest.raises(ConfigError):
        MLPVelocity(hidden=0)
    with pytest.raises(ConfigError, match="bad arguments"):
        build_net({"name": "mlp", "width": 3})
