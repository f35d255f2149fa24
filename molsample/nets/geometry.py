"""Centre-of-mass and pairwise-geometry helpers for ``(batch, n_particles, dim)`` tensors."""

from __future__ import annotations

from torch import Tensor

__all__ = ["center_of_mass", "remove_mean", "is_mean_free", "pairwise_vectors", "pairwise_sq_distances"]


def center_of_mass(x: Tensor) -> Tensor:
    """Mean over particles (equal masses), ``(batch, 1, dim)``."""
    return x.mean(dim=-2, keepdim=True)


def remove_mean(x: Tensor) -> Tensor:
    """``x`` shifted to zero centre of mass (projection onto the zero-CoM subspace), same shape."""
    return x - x.mean(dim=-2, keepdim=True)


def is_mean_free(x: Tensor, atol: float = 1e-5) -> bool:
    """Whether every configuration in ``x`` has its centre of mass within ``atol`` of the origin."""
    return bool(x.mean(dim=-2).abs().max() <= atol) if x.numel() else True


def pairwise_vectors(x: Tensor) -> Tensor:
    """All difference vectors r_ij = x_i − x_j, ``(batch, n, n, dim)``."""
    return x[..., :, None, :] - x[..., None, :, :]


def pairwise_sq_distances(x: Tensor) -> Tensor:
    """All squared distances |x_i − x_j|², ``(batch, n, n)`` (zero on the diagonal)."""
    r = pairwise_vectors(x)
    return (r * r).sum(-1)
