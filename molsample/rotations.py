"""Random rotations and reflections of 3-D (or d-D) configurations."""

from __future__ import annotations

import torch

__all__ = ["random_orthogonal"]


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
