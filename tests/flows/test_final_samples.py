"""The final sampling stage: weighted samples, and resuming after an interruption."""

from __future__ import annotations

import pytest
import torch

from molsample import load_system
from molsample.flows.distributions import StandardGaussian
from molsample.flows.sampler import FlowSampler
from molsample.nets.affine import AffineVelocity
from molsample.training.rewards import make_reward


class Interrupted(RuntimeError):
    pass


@pytest.fixture
def setup():
    system = load_system("gauss2d")
    torch.manual_seed(0)
    field = AffineVelocity(1, 2).double()
    return field, StandardGaussian((1, 2)), make_reward(system, "temperature", kT0=1.5 * system.kT)


def draw(field, base, reward, **kw):
    sampler = FlowSampler(field, base, reward, method="rk4", steps=4, dtype=torch.float64)
    return sampler.sample(50, batch_size=8, generator=torch.Generator().manual_seed(7), **kw)


def test_resume_after_interruption_equals_an_uninterrupted_run(setup, tmp_path, monkeypatch):
    field, base, reward = setup
    full = draw(field, base, reward)
    ckpt = tmp_path / "final.pt"

    calls = {"n": 0}
    energy = type(reward).energy

    def failing_energy(self, x):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Interrupted("killed during batch 4")
        return energy(self, x)

    monkeypatch.setattr(type(reward), "energy", failing_energy)
    reward.n_energy_evals = 0
    with pytest.raises(Interrupted):
        draw(field, base, reward, checkpoint=ckpt)
    assert ckpt.is_file() and len(torch.load(ckpt, weights_only=False)["x"]) == 3
    monkeypatch.setattr(type(reward), "energy", energy)

    reward.n_energy_evals = 0
    resumed = draw(field, base, reward, checkpoint=ckpt)
    assert torch.equal(resumed.x, full.x) and torch.equal(resumed.logw, full.logw)
    assert reward.n_energy_evals == 50  # the 24 of the interrupted call are counted
    assert not ckpt.exists()


def test_checkpoint_of_another_field_is_ignored(setup, tmp_path):
    field, base, reward = setup
    ckpt = tmp_path / "final.pt"
    from molsample.io.atomic import save_torch_atomic

    save_torch_atomic({"key": "stale", "x": [torch.zeros(8, 1, 2)], "logq": [torch.zeros(8)],
                       "energy": [torch.zeros(8)], "generator": None}, ckpt)
    res = draw(field, base, reward, checkpoint=ckpt)
    assert torch.equal(res.x, draw(field, base, reward).x)


class _Spec(torch.nn.Module):
    """A stand-in net with the spec and the declared reflection capability of the named net."""

    def __init__(self, **spec):
        super().__init__()
        self.spec = spec
        self.reflection_invariant = spec["name"] == "egnn" or not spec.get("chiral", True)


@pytest.mark.parametrize("spec, reflect", [({"name": "egnn"}, True), ({"name": "e3nn", "chiral": False}, True),
                                           ({"name": "e3nn", "chiral": True}, True), ({"name": "egnn"}, False)])
def test_chirality_fix_by_net(spec, reflect):
    """E(3) nets: D samples mirrored, weights kept. Chiral e3nn: D samples weight 0, L samples + log 2."""
    import math

    from molsample.flows.sampler import WeightedSamples
    from molsample.flows.weights import summarize
    from molsample.molecules.chirality import chiral_centers_for_system, chirality
    from molsample.stages.final import fix_chirality

    aldp = load_system("aldp")
    centers = chiral_centers_for_system(aldp)
    x_l = torch.as_tensor(aldp.energy.positions)[None]
    x = torch.cat([x_l, -x_l, x_l + 0.1])
    logw = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    ws = WeightedSamples(x=x.clone(), logq=torch.zeros(3), energy=torch.zeros(3), logw=logw.clone(),
                         summary=summarize(logw))
    given = ws
    ws, attrs = fix_chirality(ws, aldp, _Spec(**spec), reflect=reflect, echo=lambda _: None)
    assert torch.equal(given.x, x) and torch.equal(given.logw, logw)  # the input is never edited in place
    assert attrs["chirality_reference_fraction"] == pytest.approx(2 / 3)
    chiral_net = spec["name"] == "e3nn" and spec.get("chiral", True)
    if not reflect:
        assert torch.equal(ws.x, x) and torch.equal(ws.logw, logw) and "chirality_reflected" not in attrs
    elif chiral_net:
        assert torch.equal(ws.x, x) and attrs["chirality_dropped"] == 1
        assert ws.logw.tolist() == [-1.0 + math.log(2.0), -math.inf, -3.0 + math.log(2.0)]
        assert ws.summary.ess == pytest.approx(summarize(ws.logw).ess) and ws.summary.ess < summarize(logw).ess
    else:
        assert (chirality(ws.x, centers) == 1).all() and attrs["chirality_reflected"] == 1
        assert torch.equal(ws.logw, logw)
