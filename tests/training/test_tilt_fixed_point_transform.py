"""The tilt's fixed point for a flow in other coordinates, against a closed form.

A flow in coordinates z with x = T(z) = exp(z) (per coordinate, log|det J| = Σ z, not a constant) and
the energy E(x) = Σ (log x − μ)² / (2σ²). The Boltzmann law at inverse temperature β, written in z,
carries the Jacobian: q_β(z) ∝ exp(−β E(T z)) e^{Σz}, the Gaussian N(μ + σ²/β, σ²/β) per coordinate.
The temperature tilt from β0 to β multiplies by exp((β0 − β) E(T z)): no Jacobian (it cancels in
π_β / π_β0). Pretrained exactly on q_β0, ITM must land on q_β; a tilt that took the Jacobian into the
reward (r − Σz) would land on N(μ, σ²/β), a mean 0.25 away. The weights of the tilted flow must give
Z = ∫ exp(−β E(x)) dx = Π sqrt(2πσ²/β) exp(μ + σ²/(2β)).
"""

from __future__ import annotations

import math

import pytest
import torch

from molsample.energies.base import Energy
from molsample.flows.distributions import StandardGaussian
from molsample.flows.flow import Flow
from molsample.flows.ode import sample as ode_sample
from molsample.flows.transform import Transform
from molsample.nets.affine import AffineVelocity
from molsample.systems.cards import System
from molsample.training.rewards import make_reward
from molsample.training.tilt import TiltConfig, TiltMatching

from _gaussian_fields import fit_affine

MU = torch.tensor([0.3, -0.2], dtype=torch.float64)
SIGMA2 = 0.25
KT0, KT = 2.0, 1.0


class LogNormalEnergy(Energy):
    """E(x) = Σ (log x − μ)² / (2σ²) on x > 0 (+inf elsewhere), one particle in 2-D."""

    def __init__(self) -> None:
        super().__init__(1, 2)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        lx = torch.log(x.clamp_min(1e-300))
        e = ((lx - MU.to(x.dtype)) ** 2).sum(dim=(1, 2)) / (2 * SIGMA2)
        return torch.where((x > 0).all(dim=2).all(dim=1), e, torch.full_like(e, math.inf))


class Exp(Transform):
    """x = exp(z) per coordinate: log|det J| = Σ z."""

    name = "exp"
    event_shape = (1, 2)

    def forward(self, z):
        return torch.exp(z), z.sum(dim=(1, 2))

    def inverse(self, x):
        z = torch.log(x)
        return z, -z.sum(dim=(1, 2))


def law_in_z(kT: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(2,)`` and covariance ``(2, 2)`` of the Boltzmann law at ``kT`` in z (Jacobian included)."""
    var = SIGMA2 * kT
    return MU + var, var * torch.eye(2, dtype=torch.float64)


@pytest.fixture(scope="module")
def tilted():
    system = System(name="lognormal", energy=LogNormalEnergy(), kT=KT, remove_com=False)
    m0, c0 = law_in_z(KT0)
    field = fit_affine(AffineVelocity(1, 2).double(), m0, c0)  # the exact pretrained field of q_β0
    base = StandardGaussian((1, 2))
    reward = make_reward(system, "temperature", kT0=KT0)
    cfg = TiltConfig(method="itm", h=1.0, steps_per_level=1500, n_endpoints=16384, endpoints_per_step=256,
                     draws_per_endpoint=4, ode_method="rk4", ode_steps=20, lr=1e-2, grad_clip=None)
    trainer = TiltMatching(field, base, reward, cfg, seed=1, transform=Exp())
    trainer.run(progress=False)
    assert trainer.a == 1.0
    return system, field, base, reward


def test_the_tilt_lands_on_the_target_law_in_flow_coordinates(tilted):
    _, field, base, _ = tilted
    z = ode_sample(field, base, 20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                   method="rk4", steps=40).x1[:, 0]
    m1, c1 = law_in_z(KT)
    torch.testing.assert_close(z.mean(0), m1, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), c1, atol=0.03, rtol=0)
    # a tilt with the Jacobian in its reward would give N(μ, σ²/β): its mean is 0.25 from m1
    assert float((z.mean(0) - MU).abs().min()) > 0.2


def test_the_weights_of_the_tilted_flow_give_the_closed_form_log_z(tilted):
    system, field, base, reward = tilted
    flow = Flow(field, base, Exp(), method="rk4", steps=20)
    ws = flow.sampler(reward, dtype=torch.float64).sample(4000, batch_size=1000, generator=torch.Generator().manual_seed(2))
    beta = 1.0 / KT
    log_z = float(sum(0.5 * math.log(2 * math.pi * SIGMA2 / beta) + m + SIGMA2 / (2 * beta) for m in MU.tolist()))
    s = ws.summary
    assert s.ess > 0.95
    assert abs(s.log_z - log_z) < 4 * s.log_z_se + 0.01
