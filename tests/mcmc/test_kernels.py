"""The MALA kernel keeps exp(−βE) invariant, respects the zero-CoM subspace and counts its evaluations."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.energies.base import Energy
from molsample.errors import EnergyError
from molsample.mcmc.kernels import KERNELS, MALAKernel


class Quadratic(Energy):
    """E = ½ Σ (x − μ)² / σ², per coordinate σ (a Gaussian of variance σ²/β at inverse temperature β)."""

    def __init__(self, n_particles: int, dim: int, sigma: torch.Tensor, mu: float = 0.0) -> None:
        super().__init__(n_particles, dim)
        self.sigma, self.mu = sigma, mu

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (((x - self.mu) / self.sigma) ** 2).flatten(1).sum(1)


class NoForce(Energy):
    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor((x.detach().numpy() ** 2).sum(axis=(1, 2)))


def _chain(kernel, x, beta, h, steps):
    e, f = kernel.evaluate(x)
    acc, xs = 0.0, []
    for _ in range(steps):
        out = kernel.step(x, e, f, beta, h)
        x, e, f = out.x, out.energy, out.force
        acc += float(out.accept_prob.mean())
        xs.append(x)
    return torch.stack(xs), acc / steps


def test_registry_names_the_mala_kernel():
    assert KERNELS["mala"] is MALAKernel and MALAKernel.target_accept == 0.574


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_mala_keeps_an_anisotropic_gaussian_invariant(beta):
    g = torch.Generator().manual_seed(3)
    sigma = torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    energy = Quadratic(1, 3, sigma, mu=1.0)
    var = sigma**2 / beta
    n = 8000
    x = 1.0 + torch.randn(n, 1, 3, generator=g, dtype=torch.float64) * var.sqrt()  # start in equilibrium
    k = MALAKernel(energy, remove_com=False, generator=g)
    # a large step: a sloppy proposal that only the MH correction makes exact
    xs, acc = _chain(k, x, beta, torch.full((n,), 0.8, dtype=torch.float64), 25)
    last = xs[-1, :, 0]  # independent chains: standard errors sd/√n and ≈ √(2/n) of the variance ratio
    assert 0.1 < acc < 0.9
    assert ((last.mean(0) - 1.0).abs() / (var[0] / n).sqrt()).max() < 4.0
    assert ((last.var(0) / var[0] - 1.0).abs()).max() < 4.0 * math.sqrt(2.0 / n)
    assert k.n_evals == n * 26


def test_mala_without_correction_would_be_biased():
    """The same step without MH is visibly off: the invariance above is the correction's doing."""
    sigma = torch.ones(1, 1, dtype=torch.float64)
    h = 0.8  # unadjusted Langevin on N(0,1) converges to variance 1/(1 − h/2) = 1.67
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 1, 1, generator=g, dtype=torch.float64)
    for _ in range(30):
        x = x - h * x / sigma**2 + math.sqrt(2 * h) * torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert float(x.var()) > 1.4


def test_mala_stays_on_the_zero_com_subspace_with_per_particle_steps():
    g = torch.Generator().manual_seed(1)
    energy = Quadratic(4, 2, torch.ones(4, 2, dtype=torch.float64))
    x = torch.randn(500, 4, 2, generator=g, dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    k = MALAKernel(energy, remove_com=True, generator=g)
    h = torch.linspace(0.05, 1.0, 500, dtype=torch.float64)
    xs, _ = _chain(k, x, 1.0, h, 30)
    assert xs.mean(2).abs().max() < 1e-12
    # on the (4−1)·2-dimensional subspace each coordinate has variance (1 − 1/4)
    assert abs(float(xs[-10:].var(dim=(0, 1)).mean()) - 0.75) < 0.05


def test_an_energy_without_forces_is_a_one_line_error():
    k = MALAKernel(NoForce(2, 2), remove_com=False)
    with pytest.raises(EnergyError, match="no forces"):
        k.evaluate(torch.zeros(3, 2, 2, dtype=torch.float64))
