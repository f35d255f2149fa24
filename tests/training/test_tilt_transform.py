"""The tilt of a flow in other coordinates: rewards see the positions T(z), the temperature reward
carries no Jacobian (it cancels in π_kT / π_kT0), the level ESS carries log|det J|."""

from __future__ import annotations

import torch

from molsample import load_system
from molsample.flows.distributions import StandardGaussian
from molsample.flows.transform import Transform
from molsample.flows.weights import ess
from molsample.nets.affine import AffineVelocity
from molsample.training.rewards import make_reward
from molsample.training.tilt import TiltConfig, TiltMatching


class Cubic(Transform):
    """x = z + 0.1 z³ per coordinate (monotone): log|det J| = Σ log(1 + 0.3 z²), not a constant."""

    name = "cubic"
    event_shape = (1, 2)

    def forward(self, z):
        return z + 0.1 * z**3, torch.log1p(0.3 * z**2).sum(dim=(1, 2))

    def inverse(self, x):  # not needed here
        raise NotImplementedError


def _trainer(seed: int = 0) -> TiltMatching:
    system = load_system("gauss2d")
    torch.manual_seed(seed)
    field = AffineVelocity(1, 2).double()
    with torch.no_grad():
        for p in field.parameters():
            p.normal_(0.0, 0.2)
    reward = make_reward(system, "temperature", kT0=1.5 * system.kT)
    cfg = TiltConfig(n_endpoints=64, endpoints_per_step=16, draws_per_endpoint=2, steps_per_level=2,
                     ode_method="midpoint", ode_steps=4, n_probe=128, max_levels=1)
    return TiltMatching(field, StandardGaussian((1, 2)), reward, cfg, seed=seed, transform=Cubic())


def test_rewards_are_evaluated_on_the_positions_without_a_jacobian():
    trainer = _trainer()
    seen: list[torch.Tensor] = []
    evaluate = trainer.reward.evaluate

    def spy(x):
        seen.append(x.clone())
        return evaluate(x)

    trainer.reward.evaluate = spy
    g = torch.Generator()
    g.set_state(trainer.generator.get_state())
    z = trainer.sampler(trainer.field).draw_shard(64, generator=g)[0]  # the level's endpoints, replayed
    trainer.step_level()
    assert len(seen) == 1
    assert torch.allclose(seen[0], z + 0.1 * z**3)  # positions T(z), not the flow's coordinates
    system = trainer.reward.system
    r, _ = evaluate(seen[0])
    assert torch.allclose(r, -(1 / system.kT - 1 / (1.5 * system.kT)) * system.energy.energy(seen[0]))


def test_level_ess_carries_the_log_determinant():
    trainer = _trainer()
    a = 0.4
    got = trainer.full_ess(a)
    # by hand, with the probes of the same generator
    from molsample.training.tilt import FULL_ESS_SEED_OFFSET

    g = torch.Generator().manual_seed(trainer.seed + FULL_ESS_SEED_OFFSET * (1 + trainer.level))
    sampler = trainer.sampler(trainer.field)
    z, logq = sampler.draw_shard(trainer.config.n_probe, generator=g, with_logq=True)
    x = z + 0.1 * z**3
    logdet = torch.log1p(0.3 * z**2).sum(dim=(1, 2))
    e = trainer.reward.system.energy.energy(x)
    expected = ess(trainer.reward.log_level_target(x, e, a) - (logq - logdet))
    assert abs(got - expected) < 1e-10
    without = ess(trainer.reward.log_level_target(x, e, a) - logq)
    assert abs(got - without) > 1e-3  # the Jacobian matters here
