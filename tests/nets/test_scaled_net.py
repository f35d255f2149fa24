"""ScaledVelocity: b(t, x) = σ·b̃(t, x/σ) keeps the symmetries, the divergence and the flow's density."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ConfigError
from molsample.flows.distributions import CoMFreeGaussian
from molsample.flows.ode import _generic_exact_divergence, field_divergence, sample
from molsample.nets import EGNN, MLPVelocity, build_net, default_net_spec, load_model, save_model
from molsample.nets.scaled import ScaledVelocity
from molsample.systems.cards import load_system
from molsample.testing import assert_equivariant

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

SIGMA = 0.17


@pytest.fixture
def inner() -> EGNN:
    torch.manual_seed(0)
    net = EGNN(6, 3, hidden=16, n_layers=2).double()
    for layer in net.layers:  # make the coordinate head large so that the checks are not vacuous
        torch.nn.init.normal_(layer.coord_out.weight, std=0.5)
    return net


def test_forward_is_the_scaled_inner_net(inner, generator):
    net = ScaledVelocity(inner, SIGMA)
    x = torch.randn(4, 6, 3, generator=generator, dtype=torch.float64) * SIGMA
    assert torch.allclose(net(0.3, x), SIGMA * inner(0.3, x / SIGMA))
    assert net.spec == {**inner.spec, "length_scale": SIGMA}


def test_divergence_matches_autograd_and_is_not_rescaled(inner, generator):
    net = ScaledVelocity(inner, SIGMA)
    x = torch.randn(3, 6, 3, generator=generator, dtype=torch.float64) * SIGMA
    t = torch.tensor(0.6, dtype=torch.float64)
    v, div = field_divergence(net, t, x)
    v_ref, div_ref = _generic_exact_divergence(lambda y: net(t, y), x)
    assert torch.allclose(v, v_ref) and torch.allclose(div, div_ref, atol=1e-9)
    assert torch.allclose(div, inner.velocity_and_divergence(t, x / SIGMA)[1])


def test_symmetries_are_kept(inner, generator):
    x = torch.randn(2, 6, 3, generator=generator, dtype=torch.float64)
    assert_equivariant(lambda y: ScaledVelocity(inner, SIGMA)(0.4, y), x)


def test_flow_is_the_unit_flow_scaled(inner):
    """With the base of std σ, samples are σ·(unit-flow samples) and log q drops by dof·log σ."""
    unit_base, base = CoMFreeGaussian(6, 3), CoMFreeGaussian(6, 3, SIGMA)
    kw = dict(dtype=torch.float64, method="rk4", steps=4, with_logq=True)
    ref = sample(inner, unit_base, 5, generator=torch.Generator().manual_seed(2), **kw)
    res = sample(ScaledVelocity(inner, SIGMA), base, 5, generator=torch.Generator().manual_seed(2), **kw)
    assert torch.allclose(res.x1, SIGMA * ref.x1)
    assert torch.allclose(res.logq, ref.logq - base.dof * math.log(SIGMA))


def test_build_and_round_trip(tmp_path, generator):
    spec = {"name": "egnn", "n_particles": 5, "dim": 3, "hidden": 8, "n_layers": 2, "length_scale": SIGMA}
    net = build_net(spec)
    assert isinstance(net, ScaledVelocity) and spec.items() <= net.spec.items()
    assert type(build_net({**spec, "length_scale": 1.0})) is EGNN
    x = torch.randn(2, 5, 3, generator=generator)
    loaded, _ = load_model(save_model(tmp_path / "m.pt", net))
    assert torch.equal(loaded(0.2, x), net(0.2, x))


def test_fields_without_own_divergence_keep_the_generic_one():
    net = ScaledVelocity(MLPVelocity(1, 2, hidden=8, n_layers=2), 2.0)
    assert not hasattr(net, "velocity_and_divergence")


def test_bad_length_scale():
    with pytest.raises(ConfigError, match="length_scale must be a positive number"):
        ScaledVelocity(EGNN(3, 3, hidden=4, n_layers=1), -1.0)


@pytest.mark.parametrize("name", ["egnn", "e3nn"])
def test_molecule_specs_carry_scale_and_atom_types(name):
    aldp = load_system("aldp")
    spec = default_net_spec(aldp, name)
    assert spec["length_scale"] == aldp.length_scale
    assert spec["atom_types"] == list(range(22))
    assert "length_scale" not in default_net_spec(load_system("lj13"))
