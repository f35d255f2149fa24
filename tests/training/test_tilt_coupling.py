"""The tilt's own (x0, x1) pairs follow the pretraining coupling, and only couplings that keep the
ITM fixed point are accepted (the closed-form fixed-point checks are in test_coupling.py)."""

from __future__ import annotations

import pytest
import torch

from molsample import load_system
from molsample.errors import ConfigError
from molsample.flows.distributions import base_distribution
from molsample.nets import build_net, default_net_spec
from molsample.stages.config import resolve_config
from molsample.training.coupling import couple, transport_cost
from molsample.training.rewards import make_reward
from molsample.training.tilt import TILT_COUPLINGS, TiltConfig, TiltMatching

CFG = TiltConfig(method="itm", h=0.5, steps_per_level=3, n_endpoints=32, endpoints_per_step=8, draws_per_endpoint=2,
                 ode_method="euler", ode_steps=3, n_probe=8)


@pytest.fixture(scope="module")
def dw4():
    system = load_system("dw4")
    torch.manual_seed(0)
    field = build_net(default_net_spec(system, "egnn", hidden=8, n_layers=1)).double()
    return system, field, base_distribution(system)


def _pair_costs(dw4, coupling: str) -> torch.Tensor:
    system, field, base = dw4
    reward = make_reward(system, "temperature", kT0=1.25 * system.kT)
    trainer = TiltMatching(field, base, reward, CFG, seed=3, coupling=coupling)
    seen = []
    sample = trainer.path.sample

    def spy(x0, x1, t):
        seen.append(transport_cost(x0, x1))
        return sample(x0, x1, t)

    trainer.path.sample = spy
    trainer.step_level()
    return torch.cat(seen[1:])  # seen[0]: the probe batch of the update norm, drawn before the regression


def test_aligned_tilt_regresses_on_aligned_pairs(dw4):
    independent, aligned = _pair_costs(dw4, "independent"), _pair_costs(dw4, "aligned")
    assert len(aligned) == CFG.steps_per_level * CFG.endpoints_per_step * CFG.draws_per_endpoint
    # rotating and permuting each x0 onto its x1 shortens every pair well below independent pairing
    assert float(aligned.mean()) < 0.7 * float(independent.mean())


@pytest.mark.parametrize("coupling", ["ot", "equivariant-ot"])
def test_couplings_that_break_the_fixed_point_are_refused(dw4, coupling):
    system, field, base = dw4
    assert coupling not in TILT_COUPLINGS
    with pytest.raises(ConfigError, match="fixed point"):
        TiltMatching(field, base, make_reward(system, "temperature", kT0=1.25), CFG, coupling=coupling)
    with pytest.raises(ConfigError, match="cannot be tilted"):
        resolve_config("lj13", preset="smoke", overrides={"pretrain": {"coupling": coupling}})
    # a run that only samples a shipped or saved model does not tilt, so any pretraining coupling is fine
    cfg = resolve_config("lj13", preset="smoke", overrides={"pretrain": {"coupling": coupling},
                                                            "start": {"model": "model.pt"}})
    assert cfg.pretrain.coupling == coupling


def test_resuming_with_another_coupling_is_refused(dw4, tmp_path):
    system, field, base = dw4
    reward = make_reward(system, "temperature", kT0=1.25 * system.kT)
    TiltMatching(field, base, reward, TiltConfig(**{**CFG.__dict__, "max_levels": 1}), seed=1).run(
        checkpoint_path=tmp_path / "t.pt", progress=False)
    with pytest.raises(ConfigError, match="coupling"):
        TiltMatching(field, base, reward, CFG, seed=1, coupling="aligned").run(
            checkpoint_path=tmp_path / "t.pt", resume=True, progress=False)


@pytest.mark.parametrize("coupling", ["aligned", "equivariant-ot"])
def test_typed_atoms_get_rotation_only_couplings(tmp_path, coupling, monkeypatch):
    """A molecule's atoms are not interchangeable: pretraining and the tilt couple them by rotations
    alone (permute=False), identical particles by rotations and permutations."""
    import molsample.training.flow_matching as fm_module
    import molsample.training.tilt as tilt_module
    from molsample.stages.pretrain import pretrain_field
    from molsample.training.flow_matching import FlowMatchingConfig

    seen: list[bool] = []

    def spy(kind, x0, x1, **kw):
        seen.append(kw.get("permute", True))
        return couple(kind, x0, x1, **kw)

    monkeypatch.setattr(fm_module, "couple", spy)
    monkeypatch.setattr(tilt_module, "couple", spy)
    system = load_system("dw4")
    data = base_distribution(system).sample(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for atom_types, expected in ((None, True), ([0, 1, 2, 3], False)):
        spec = default_net_spec(system, "egnn", hidden=8, n_layers=1)
        if atom_types is not None:
            spec["atom_types"] = atom_types
        seen.clear()
        out = tmp_path / f"m-{expected}.pt"
        field, _, _ = pretrain_field(spec, data, base_distribution(system),
                                     FlowMatchingConfig(coupling=coupling, steps=2, batch_size=8), out,
                                     device=torch.device("cpu"), dtype=torch.float64, progress=False,
                                     echo=lambda _: None)
        assert out.is_file() and seen == [expected, expected]
        if coupling in TILT_COUPLINGS:
            seen.clear()
            reward = make_reward(system, "temperature", kT0=1.25 * system.kT)
            TiltMatching(field, base_distribution(system), reward, CFG, seed=0, coupling=coupling).step_level()
            assert seen and set(seen) == {expected}
