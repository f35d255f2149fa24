import math

import pytest
import torch

from molsample.energies import (
    GaussianEnergy,
    MultiDoubleWell,
    RingMixture,
    bump_reward,
    quadratic_reward,
    tilted_gaussian,
)
from molsample.testing import assert_forces_match_fd


def test_double_well_pair_values():
    dw = MultiDoubleWell().double()
    # a square of side s: 4 sides and 2 diagonals
    s = 3.0
    x = torch.tensor([[[0, 0], [s, 0], [s, s], [0, s]]], dtype=torch.float64)
    def pair(d):
        return 0.9 * (d - 4) ** 4 - 4 * (d - 4) ** 2
    expected = 4 * pair(s) + 2 * pair(s * math.sqrt(2))
    assert dw.energy(x).item() == pytest.approx(expected, rel=1e-12)


def test_double_well_minima_location():
    # each pair term has minima at d0 ± sqrt(-b/(2a))
    dw = MultiDoubleWell(n_particles=2).double()
    d = torch.linspace(0.5, 7.5, 7001, dtype=torch.float64)
    x = torch.zeros(len(d), 2, 2, dtype=torch.float64)
    x[:, 1, 0] = d
    e = dw.energy(x)
    dmin = d[e.argmin()].item()
    assert min(abs(dmin - (4 + math.sqrt(4 / 1.8))), abs(dmin - (4 - math.sqrt(4 / 1.8)))) < 2e-3


def test_double_well_forces_fd():
    dw = MultiDoubleWell().double()
    x = 2.0 * torch.randn(4, 4, 2, dtype=torch.float64)
    assert_forces_match_fd(dw, x, n_coords=None, rtol=1e-6, atol=1e-5)


def test_ring_is_normalized_and_exact_samples_match():
    ring = RingMixture().double()
    g = torch.linspace(-6, 6, 601, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([X.flatten(), Y.flatten()], -1)[:, None, :]
    mass = torch.exp(-ring.energy(pts)).sum() * (g[1] - g[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-4)
    s = ring.sample(20000, torch.Generator().manual_seed(0)).double()
    r = s[:, 0].norm(dim=-1)
    assert r.mean().item() == pytest.approx(4.0, abs=0.01)


def test_bump_reward():
    x = torch.tensor([[[4.0, 0.0]], [[4.0, 2.5]]])
    r = bump_reward(x)
    torch.testing.assert_close(r, torch.tensor([1.0, math.exp(-0.5)]))


def test_tilted_gaussian_closed_form_matches_reweighting():
    mean = torch.tensor([1.0, -0.5], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    lam = torch.tensor([[0.5, 0.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 0.5], dtype=torch.float64)
    gauss = GaussianEnergy(mean, cov)
    x = gauss.sample(400000, torch.Generator().manual_seed(0))
    w = torch.softmax(quadratic_reward(x, lam, b), 0)
    m_a, c_a = tilted_gaussian(mean, cov, lam, b)
    xm = (w[:, None] * x[:, 0]).sum(0)
    torch.testing.assert_close(xm, m_a, atol=0.01, rtol=0)
    xc = x[:, 0] - xm
    torch.testing.assert_close((w[:, None, None] * xc[:, :, None] * xc[:, None, :]).sum(0), c_a, atol=0.01, rtol=0)
    # and the energy is the exact negative log-density
    lp = torch.distributions.MultivariateNormal(mean, cov).log_prob(x[:5, 0])
    torch.testing.assert_close(gauss.energy(x[:5]), -lp)
