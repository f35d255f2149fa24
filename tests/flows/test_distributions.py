"""Base distributions: Gaussian log-densities against direct formulas, CoM-free samples."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ConfigError, ShapeError
from molsample.flows.distributions import CoMFreeGaussian, StandardGaussian, base_distribution
from molsample.systems.cards import load_system


def helmert_basis(n: int) -> torch.Tensor:
    """Orthonormal basis (n, n−1) of {v ∈ R^n : Σ v = 0} (Helmert contrasts)."""
    u = torch.zeros(n, n - 1, dtype=torch.float64)
    for k in range(1, n):
        u[:k, k - 1] = 1.0
        u[k, k - 1] = -k
        u[:, k - 1] /= math.sqrt(k * (k + 1))
    return u


def test_standard_gaussian_log_prob(generator):
    base = StandardGaussian((3, 2))
    x = torch.randn(5, 3, 2, generator=generator, dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(dim=(1, 2))
    assert torch.allclose(base.log_prob(x), ref)
    assert base.dof == 6 and base.event_shape == (3, 2)
    assert base.sample(4, generator=generator).shape == (4, 3, 2)


@pytest.mark.parametrize("n, d", [(4, 2), (13, 3)])
def test_com_free_log_prob_matches_subspace_normal(n, d, generator):
    base = CoMFreeGaussian(n, d)
    u = helmert_basis(n)
    assert torch.allclose(u.T @ u, torch.eye(n - 1, dtype=torch.float64))
    x = base.sample(6, generator=generator, dtype=torch.float64)
    # coordinates in the orthonormal basis of the zero-CoM subspace: y = Uᵀ x per axis, (n−1)·d values
    y = torch.einsum("nk,bnd->bkd", u, x).reshape(6, -1)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(y).sum(-1)
    assert base.dof == (n - 1) * d
    assert torch.allclose(base.log_prob(x), ref)
    # the density is translation invariant (inputs are projected)
    assert torch.allclose(base.log_prob(x + 2.5), ref)


def test_com_free_samples_zero_com_and_covariance(generator):
    n, d, m = 4, 2, 40000
    x = CoMFreeGaussian(n, d).sample(m, generator=generator, dtype=torch.float64)
    assert x.mean(dim=1).abs().max() < 1e-12
    # covariance of one axis across particles is the projection I − 11ᵀ/n
    cov = torch.cov(x[:, :, 0].T)
    proj = torch.eye(n, dtype=torch.float64) - 1.0 / n
    assert torch.allclose(cov, proj, atol=0.03)
    # axes are independent
    assert torch.corrcoef(torch.stack([x[:, 0, 0], x[:, 0, 1]]))[0, 1].abs() < 0.03


def test_generator_reproducible_and_dtype():
    base = CoMFreeGaussian(3, 3)
    a = base.sample(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    b = base.sample(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(a, b) and a.dtype == torch.float64


def test_shape_errors():
    with pytest.raises(ShapeError):
        CoMFreeGaussian(1, 3)
    with pytest.raises(ShapeError):
        StandardGaussian((3, 2)).log_prob(torch.zeros(4, 2, 3))


@pytest.mark.parametrize("name, cls, dof", [("lj13", CoMFreeGaussian, 36), ("dw4", CoMFreeGaussian, 6),
                                            ("ring2d", StandardGaussian, 2), ("gauss2d", StandardGaussian, 2)])
def test_base_distribution_of_systems(name, cls, dof):
    base = base_distribution(load_system(name))
    assert type(base) is cls and base.dof == dof


@pytest.mark.parametrize("std", [0.17, 2.5])
def test_std_scales_samples_and_log_density(std, generator):
    """A base of std σ is the unit base pushed through x ↦ σx: log q_σ(σx) = log q_1(x) − dof·log σ."""
    for unit, scaled in ((StandardGaussian((3, 2)), StandardGaussian((3, 2), std)),
                         (CoMFreeGaussian(5, 3), CoMFreeGaussian(5, 3, std))):
        x = unit.sample(7, generator=generator, dtype=torch.float64)
        assert torch.allclose(scaled.log_prob(std * x), unit.log_prob(x) - unit.dof * math.log(std))
        a = scaled.sample(4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        b = unit.sample(4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        assert torch.allclose(a, std * b)
    x = torch.randn(3, 3, 2, generator=generator, dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, std).log_prob(x).sum(dim=(1, 2))
    assert torch.allclose(StandardGaussian((3, 2), std).log_prob(x), ref)


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan"), "1"])
def test_bad_std(std):
    with pytest.raises(ConfigError, match="std must be a positive number"):
        CoMFreeGaussian(3, 3, std)


def test_base_distribution_takes_the_card_length_scale():
    assert base_distribution(load_system("lj13")).std == 1.0
    aldp = load_system("aldp")
    base = base_distribution(aldp)
    assert base.std == aldp.length_scale != 1.0
