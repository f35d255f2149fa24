"""EndpointVelocity: b(t, x) = d(t, x) / max(1 − t, g_min), with the divergence of d over the gap."""

from __future__ import annotations

import pytest
import torch

from molsample.errors import ConfigError
from molsample.flows.ode import _generic_exact_divergence, field_divergence
from molsample.nets import EGNN, MLPVelocity, build_net, default_net_spec, load_model, save_model
from molsample.nets.endpoint import ENDPOINT_MIN_GAP, EndpointVelocity
from molsample.nets.scaled import ScaledVelocity
from molsample.stages.config import config_from_dict
from molsample.systems.cards import load_system
from molsample.testing import assert_equivariant

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture
def inner() -> ScaledVelocity:
    torch.manual_seed(0)
    net = EGNN(6, 3, hidden=16, n_layers=2).double()
    for layer in net.layers:  # a large coordinate head, so that the checks are not vacuous
        torch.nn.init.normal_(layer.coord_out.weight, std=0.5)
    return ScaledVelocity(net, 0.17)


@pytest.mark.parametrize("t, gap", [(0.0, 1.0), (0.3, 0.7), (0.95, ENDPOINT_MIN_GAP), (1.0, ENDPOINT_MIN_GAP)])
def test_forward_is_the_displacement_over_the_clamped_gap(inner, generator, t, gap):
    x = torch.randn(4, 6, 3, generator=generator, dtype=torch.float64) * 0.2
    net = EndpointVelocity(inner)
    assert torch.allclose(net(t, x), inner(t, x) / gap)
    assert torch.isfinite(net(t, x)).all()
    assert torch.allclose(net.endpoint(t, x), x + inner(t, x))


def test_per_sample_times(inner, generator):
    x = torch.randn(3, 6, 3, generator=generator, dtype=torch.float64) * 0.2
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    net = EndpointVelocity(inner)
    rows = torch.stack([net(float(t[i]), x[i:i + 1])[0] for i in range(3)])
    assert torch.allclose(net(t, x), rows)


@pytest.mark.parametrize("t", [0.6, 0.99, [0.2, 0.5, 0.97]])
def test_divergence_matches_autograd(inner, generator, t):
    net = EndpointVelocity(inner)
    x = torch.randn(3, 6, 3, generator=generator, dtype=torch.float64) * 0.2
    t = torch.tensor(t, dtype=torch.float64)
    v, div = field_divergence(net, t, x)
    v_ref, div_ref = _generic_exact_divergence(lambda y: net(t, y), x)
    assert torch.allclose(v, v_ref) and torch.allclose(div, div_ref, atol=1e-9)
    assert div.abs().max() > 1e-3  # not vacuous


def test_symmetries_are_kept(inner, generator):
    x = torch.randn(2, 6, 3, generator=generator, dtype=torch.float64)
    assert_equivariant(lambda y: EndpointVelocity(inner)(0.4, y), x)


def test_build_and_round_trip(tmp_path, generator):
    spec = {"name": "egnn", "n_particles": 5, "dim": 3, "hidden": 8, "n_layers": 2, "length_scale": 0.17,
            "parametrisation": "endpoint"}
    net = build_net(spec)
    assert isinstance(net, EndpointVelocity) and isinstance(net.net, ScaledVelocity)
    assert spec.items() <= net.spec.items() and build_net(net.spec).spec == net.spec
    x = torch.randn(2, 5, 3, generator=generator)
    loaded, _ = load_model(save_model(tmp_path / "m.pt", net))
    assert isinstance(loaded, EndpointVelocity) and torch.equal(loaded(0.2, x), net(0.2, x))
    with pytest.raises(ConfigError, match="unknown parametrisation 'x1'"):
        build_net({**spec, "parametrisation": "x1"})


def test_velocity_spec_is_unchanged_so_cached_models_still_match():
    system = load_system("lj13")
    assert "parametrisation" not in default_net_spec(system)
    assert default_net_spec(system, parametrisation="endpoint")["parametrisation"] == "endpoint"


def test_fields_without_own_divergence_keep_the_generic_one():
    assert not hasattr(EndpointVelocity(MLPVelocity(1, 2, hidden=8, n_layers=2)), "velocity_and_divergence")


@pytest.mark.parametrize("table, needle", [
    ({"net": {"parametrisation": "x1"}}, "net.parametrisation = 'x1'"),
    ({"net": {"parametrisation": "endpoint"}, "tilt": {"path": "trig"}}, "needs the linear path"),
])
def test_config_errors(table, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(table).validate()
