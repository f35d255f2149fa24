"""Geometry of configurations: random rotations and reflections, Kabsch alignment, particle assignment
and principal frames (shared by the sample metrics and the training couplings)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["assign_particles", "kabsch", "principal_frames", "random_orthogonal"]


def random_orthogonal(dim: int, generator: torch.Generator | None = None, reflection: bool | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A Haar-random orthogonal matrix ``(dim, dim)``.

    Args:
        reflection: ``True`` forces det = −1, ``False`` forces det = +1, ``None`` leaves it random.
    """
    a = torch.randn(dim, dim, generator=generator, dtype=dtype)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))[None, :]
    det = torch.linalg.det(q)
    if reflection is True and det > 0 or reflection is False and det < 0:
        q = q.clone()
        q[:, 0] = -q[:, 0]
    return q


def kabsch(a: Tensor, b: Tensor, reflections: bool) -> Tensor:
    """Rotations R ``(B, d, d)`` minimizing |a − b Rᵀ|² for centred ``a, b: (B, n, d)``."""
    h = b.transpose(1, 2) @ a  # Σ_i b_i a_iᵀ
    u, _, vh = torch.linalg.svd(h)
    r = vh.transpose(1, 2) @ u.transpose(1, 2)
    if not reflections:
        det = torch.linalg.det(r)
        s = torch.ones(a.shape[0], a.shape[2], dtype=a.dtype)
        s[:, -1] = torch.sign(det)
        s[s == 0] = 1.0
        r = vh.transpose(1, 2) @ (s[:, :, None] * u.transpose(1, 2))
    return r


def assign_particles(a: Tensor, b: Tensor) -> Tensor:
    """Per pair, the permutation π ``(B, n)`` minimizing Σ_i |a_i − b_{π(i)}|²."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(a, b).pow(2).numpy()
    perm = np.empty(cost.shape[:2], dtype=np.int64)
    for k in range(cost.shape[0]):
        _, col = linear_sum_assignment(cost[k])
        perm[k] = col
    return torch.from_numpy(perm)


def principal_frames(x: Tensor, proper: bool) -> Tensor:
    """Principal axes ``(B, d, d)`` (columns) of centred ``x: (B, n, d)`` with canonical signs.

    Each axis v is oriented so that Σ_i (v·x_i)³ >= 0, which makes the frame rotate with the
    configuration and ignore the particle order (for configurations with distinct principal
    moments and non-zero skewness). With ``proper`` the last axis is instead oriented to make
    the frame a rotation (det +1), which is equivariant under proper rotations only.
    """
    _, v = torch.linalg.eigh(x.transpose(1, 2) @ x)
    skew = ((x @ v) ** 3).sum(dim=1)  # (B, d)
    sign = torch.where(skew < 0, -1.0, 1.0).to(x.dtype)
    v = v * sign[:, None, :]
    if proper:
        det = torch.linalg.det(v)
        v = torch.cat([v[:, :, :-1], v[:, :, -1:] * torch.where(det < 0, -1.0, 1.0).to(x.dtype)[:, None, None]], dim=2)
    return v
