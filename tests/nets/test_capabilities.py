"""Declared net capabilities, read through the wrapping nets, and the chirality decision built on them."""

import pytest
import torch

from molsample.nets import NETS, NetCapabilities, build_net, capabilities, net_class
from molsample.nets.egnn import EGNN
from molsample.nets.endpoint import EndpointVelocity
from molsample.nets.scaled import ScaledVelocity
from molsample.stages.final import is_chiral


@pytest.mark.parametrize("name", [n for n in NETS if n != "e3nn"] + ["e3nn"])
def test_every_registered_net_declares_all_three(name):
    if name == "e3nn":
        pytest.importorskip("e3nn")
    cls = net_class(name)
    for attr in ("reflection_invariant", "takes_atom_types", "keeps_centre_of_mass"):
        assert isinstance(cls.__dict__.get(attr), bool), f"{cls.__name__} does not declare {attr}"


def test_declared_values():
    assert capabilities(net_class("egnn")) == NetCapabilities(True, True, True)
    assert capabilities(net_class("mlp")) == NetCapabilities(False, False, False)
    assert capabilities(net_class("affine")) == NetCapabilities(False, False, False)
    assert capabilities(net_class("internal-mlp")) == NetCapabilities(False, False, False)


def test_capabilities_see_through_the_wrappers():
    egnn = EGNN(4, dim=2, hidden=8, n_layers=2)
    wrapped = EndpointVelocity(ScaledVelocity(egnn, 0.17))
    assert capabilities(wrapped) == capabilities(egnn) == NetCapabilities(True, True, True)
    built = build_net({**egnn.spec, "length_scale": 0.5, "parametrisation": "endpoint"})
    assert isinstance(built, EndpointVelocity) and capabilities(built).keeps_centre_of_mass
    mlp = build_net({"name": "mlp", "n_particles": 3, "dim": 2, "length_scale": 2.0})
    assert isinstance(mlp, ScaledVelocity) and not capabilities(mlp).keeps_centre_of_mass
    assert is_chiral(mlp) and not is_chiral(wrapped)


def test_undeclared_capabilities_count_as_absent():
    assert capabilities(torch.nn.Linear(2, 2)) == NetCapabilities(False, False, False)


def test_e3nn_chirality_follows_its_flag_through_the_wrappers():
    pytest.importorskip("e3nn")
    from molsample.nets.e3nn_net import E3NNVelocity

    chiral = E3NNVelocity(4, hidden=4, n_layers=2, chiral=True)
    mirror = E3NNVelocity(4, hidden=4, n_layers=2, chiral=False)
    assert not capabilities(chiral).reflection_invariant and capabilities(mirror).reflection_invariant
    assert capabilities(mirror).keeps_centre_of_mass and capabilities(mirror).takes_atom_types
    assert is_chiral(ScaledVelocity(chiral, 0.17)) and not is_chiral(EndpointVelocity(ScaledVelocity(mirror, 0.17)))
