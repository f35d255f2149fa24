"""Time handling shared by the velocity networks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from molsample.errors import ShapeError


def batch_time(t: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """``t`` (float, 0-d or ``(batch,)``) as a ``(batch,)`` tensor with the dtype/device of ``like``."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        return t.expand(batch)
    t = t.reshape(-1)
    if t.shape[0] == 1:
        return t.expand(batch)
    if t.shape[0] != batch:
        raise ShapeError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t


def fourier_features(t: Tensor, n_freqs: int) -> Tensor:
    """[sin(2^k π t), cos(2^k π t)] for k < n_freqs, ``(batch, 2·n_freqs)`` for ``t: (batch,)``."""
    freqs = (2.0 ** torch.arange(n_freqs, dtype=t.dtype, device=t.device)) * math.pi
    angles = t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
