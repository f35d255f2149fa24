"""The Flow object: the Cartesian path keeps the samples of the code before the transform seam,
save/load round trips, and the weights carry the transform's log-determinant."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import DATA
from molsample.flows.distributions import base_distribution
from molsample.flows.flow import Flow, load_flow, save_flow
from molsample.flows.sampler import FlowSampler
from molsample.flows.transform import CartesianTransform, Transform, transform_from_state
from molsample.nets import build_net, default_net_spec
from molsample.systems.cards import load_system
from molsample.training.rewards import make_reward


@pytest.fixture(scope="module")
def dw4():
    return load_system("dw4")


def _reference_net(system):
    """The seeded net of tests/data/make_flow_reference.py."""
    torch.manual_seed(0)
    net = build_net(default_net_spec(system, hidden=16, n_layers=2))
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return net


def test_cartesian_flow_keeps_the_stored_samples(dw4):
    ref = json.loads((DATA / "dw4_flow_reference.json").read_text())
    net = _reference_net(dw4)
    reward = make_reward(dw4, "temperature", kT0=1.25 * dw4.kT)
    flow = Flow(net, base_distribution(dw4), CartesianTransform(dw4.event_shape), method="midpoint", steps=8)
    ws = flow.sampler(reward).sample(12, batch_size=5, generator=torch.Generator().manual_seed(3))
    for key in ("x", "logq", "logw", "energy"):
        got = getattr(ws, key).double()
        # float32 energies of a few hundred differ in their last bit between CPUs: rtol of a few ulps
        assert torch.allclose(got, torch.tensor(ref[key], dtype=torch.float64), atol=1e-6, rtol=5e-7), key
    assert ws.z is None


class _Shift(Transform):
    """x = 2 z + 1 on every coordinate: log|det J| = D·log 2 (a closed form for the weights)."""

    name = "shift"

    def __init__(self, event_shape):
        self.event_shape = event_shape

    def forward(self, z):
        return 2.0 * z + 1.0, z.new_full((z.shape[0],), math.prod(self.event_shape) * math.log(2.0))

    def inverse(self, x):
        return (x - 1.0) / 2.0, x.new_full((x.shape[0],), -math.prod(self.event_shape) * math.log(2.0))


def test_weights_carry_the_log_determinant(dw4):
    """log w = −E(T(z))/kT + log|det J| − log q(z): against the same flow sampled without the transform."""
    net = _reference_net(dw4)
    reward = make_reward(dw4, "temperature", kT0=1.25 * dw4.kT)
    base = base_distribution(dw4)
    plain = FlowSampler(net, base, reward, method="midpoint", steps=4).draw_with_logq(6, generator=torch.Generator()
                                                                                       .manual_seed(5))
    ws = FlowSampler(net, base, reward, method="midpoint", steps=4, transform=_Shift(dw4.event_shape)).sample(
        6, generator=torch.Generator().manual_seed(5))
    z, logq_z = plain
    x = 2.0 * z.double() + 1.0
    assert torch.allclose(ws.z.double(), z.double())
    assert torch.allclose(ws.x.double(), x)
    logdet = 8 * math.log(2.0)
    assert torch.allclose(ws.logq, logq_z.double() - logdet, atol=1e-6)
    e = dw4.energy.energy(x)
    assert torch.allclose(ws.logw, -e / dw4.kT + logdet - logq_z.double(), atol=1e-5)


def test_save_and_load_a_cartesian_flow(dw4, tmp_path):
    net = _reference_net(dw4)
    save_flow(tmp_path / "model.pt", net, CartesianTransform(dw4.event_shape), system="dw4")
    flow, payload = load_flow(tmp_path / "model.pt", dw4)
    assert "transform" not in payload  # Cartesian model files look as they did
    assert flow.transform.is_identity and flow.transform.event_shape == dw4.event_shape
    x = torch.randn(3, *dw4.event_shape)
    assert torch.allclose(flow.field(0.3, x), net(0.3, x))


def test_unknown_transform_in_a_model_file_is_named():
    from molsample.errors import RunFileError

    with pytest.raises(RunFileError, match="unknown flow coordinates 'spherical'"):
        transform_from_state({"name": "spherical"})
