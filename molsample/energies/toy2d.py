"""2-D toy densities with exact samplers and closed-form tilts.

Toys use the particle layout of every other system: one particle in 2-D, so positions
are ``(batch, 1, 2)``. Energies are in units of kT (kT = 1), i.e. E = −log density + const.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from molsample.energies.base import Energy
from molsample.energies.registry import register_energy_type, take
from molsample.errors import ConfigError


def ring_centers(n_modes: int = 8, radius: float = 4.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mode centres at angles 2πk/n_modes, ``(n_modes, 2)``."""
    angles = torch.arange(n_modes, dtype=dtype) * (2 * math.pi / n_modes)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=-1)


class RingMixture(Energy):
    """Equal-weight mixture of ``n_modes`` isotropic Gaussians on a circle.

    E(x) = −log p(x) (normalized, so exp(−E) integrates to 1); kT = 1.
    """

    def __init__(self, n_modes: int = 8, radius: float = 4.0, sigma: float = 0.15) -> None:
        super().__init__(1, 2)
        if n_modes < 1 or radius < 0 or sigma <= 0:
            raise ConfigError(f"RingMixture needs n_modes>=1, radius>=0, sigma>0; got {n_modes}, {radius}, {sigma}")
        self.n_modes, self.radius, self.sigma = int(n_modes), float(radius), float(sigma)
        self.register_buffer("centers", ring_centers(n_modes, radius), persistent=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized log-density, ``(batch,)``."""
        x = self.check_shape(x)[:, 0, :]
        c = self.centers.to(x)
        d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        log_comp = -0.5 * d2 / self.sigma**2 - math.log(2 * math.pi * self.sigma**2)
        return torch.logsumexp(log_comp, dim=-1) - math.log(self.n_modes)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples, ``(n, 1, 2)``."""
        labels = torch.randint(0, self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return (self.centers.cpu()[labels] + self.sigma * noise)[:, None, :]


def bump_reward(x: torch.Tensor, center: tuple[float, float] = (4.0, 0.0), scale: float = 2.5) -> torch.Tensor:
    """The ITM tutorial's Gaussian-bump reward r(x) = exp(−½|x − c|²/scale²).

    Args:
        x: ``(batch, 1, 2)`` or ``(batch, 2)``.
    Returns:
        ``(batch,)`` rewards in (0, 1].
    """
    x2 = x.reshape(x.shape[0], -1)
    c = torch.as_tensor(center, dtype=x.dtype, device=x.device)
    return torch.exp(-0.5 * ((x2 - c) ** 2).sum(-1) / scale**2)


class GaussianEnergy(Energy):
    """Gaussian N(mean, cov) as an energy E = −log N(x; mean, cov), ``x: (batch, 1, d)``."""

    def __init__(self, mean: torch.Tensor | list[float], cov: torch.Tensor | list[list[float]]) -> None:
        mean_t = torch.as_tensor(mean, dtype=torch.float64)
        cov_t = torch.as_tensor(cov, dtype=torch.float64)
        d = mean_t.shape[0]
        if cov_t.shape != (d, d):
            raise ConfigError(f"cov must be ({d}, {d}) to match mean of length {d}, got {tuple(cov_t.shape)}")
        super().__init__(1, d)
        self.register_buffer("mean", mean_t)
        self.register_buffer("cov", cov_t)
        self.register_buffer("scale_tril", torch.linalg.cholesky(cov_t))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_shape(x)[:, 0, :]
        dist = torch.distributions.MultivariateNormal(self.mean.to(x), scale_tril=self.scale_tril.to(x))
        return dist.log_prob(x)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples, ``(n, 1, d)`` float64."""
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.mean + z @ self.scale_tril.T)[:, None, :]


def quadratic_reward(
    x: torch.Tensor, precision: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """r(x) = −½ xᵀ Λ x + bᵀ x with Λ = ``precision`` (d, d), b = ``shift`` (d,); ``x: (batch, 1, d)``."""
    v = x.reshape(x.shape[0], -1)
    lam = precision.to(v)
    return -0.5 * ((v @ lam) * v).sum(-1) + v @ shift.to(v)


def tilted_gaussian(
    mean: torch.Tensor, cov: torch.Tensor, precision: torch.Tensor, shift: torch.Tensor, a: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form of N(mean, cov)·exp(a·r) for the quadratic reward ``r``.

    Returns:
        ``(mean_a, cov_a)``: precision Σ⁻¹ + aΛ and mean (Σ⁻¹ + aΛ)⁻¹(Σ⁻¹μ + a b).
    """
    p0 = torch.linalg.inv(cov)
    pa = p0 + a * precision
    cov_a = torch.linalg.inv(pa)
    mean_a = cov_a @ (p0 @ mean + a * shift)
    return mean_a, cov_a


@register_energy_type("ring2d", ("n_modes", "radius", "sigma"))
def ring_from_card(table: dict, card_path: Path) -> RingMixture:
    """``[energy] type = "ring2d"``: ``n_modes`` (8), ``radius`` (4), ``sigma`` (0.15)."""
    w = str(card_path)
    return RingMixture(
        n_modes=take(table, "n_modes", int, w, 8),
        radius=take(table, "radius", float, w, 4.0),
        sigma=take(table, "sigma", float, w, 0.15),
    )


@register_energy_type("gaussian", ("mean", "cov"))
def gaussian_from_card(table: dict, card_path: Path) -> GaussianEnergy:
    """``[energy] type = "gaussian"``: ``mean`` (d,) and ``cov`` (d, d), both required."""
    w = str(card_path)
    return GaussianEnergy(take(table, "mean", list, w), take(table, "cov", list, w))
