"""The exact flow-matching velocity between Gaussians, and an affine field set to it (closed-form tests)."""

from __future__ import annotations

import torch

from molsample.nets.affine import AffineVelocity


def exact_velocity(t: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """E[x1 − x0 | I_t = x] for x0 ~ N(0, I), x1 ~ N(mean, cov), I_t = (1−t)x0 + t x1; ``x: (n, d)``."""
    eye = torch.eye(len(mean), dtype=x.dtype)
    tt = t[:, None, None]
    s = (1 - tt) ** 2 * eye + tt**2 * cov
    c = tt * cov - (1 - tt) * eye
    y = torch.linalg.solve(s, (x - t[:, None] * mean)[..., None])
    return mean + (c @ y)[..., 0]


def fit_affine(field: AffineVelocity, mean: torch.Tensor, cov: torch.Tensor, n: int = 20000) -> AffineVelocity:
    """Set the affine field to the exact Gaussian flow-matching velocity N(0, I) → N(mean, cov) by least squares."""
    d = len(mean)
    g = torch.Generator().manual_seed(5)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    x = 3 * torch.randn(n, d, generator=g, dtype=torch.float64) + t[:, None] * mean
    v = exact_velocity(t, x, mean, cov)
    phi = field.basis(t)
    design = torch.cat([phi, (phi[:, :, None] * x[:, None, :]).flatten(1)], dim=1)
    coef = torch.linalg.lstsq(design, v).solution  # (K + K·d, d)
    k = field.degree + 1
    with torch.no_grad():
        field.m.copy_(coef[:k])
        field.A.copy_(coef[k:].reshape(k, d, d).transpose(1, 2))
    return field
