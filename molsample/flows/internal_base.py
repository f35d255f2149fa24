r"""The base distribution of internal-coordinate flows.

A standard normal on the non-periodic coordinates (standardised bonds, angles and narrow torsions)
and the uniform distribution on the circle (−π, π] on the periodic ones (circular torsions):

    log q(z) = Σ_{non-periodic} (−½ z_i² − ½ log 2π) − n_periodic · log 2π.

The uniform density is the same at z and z + 2π, so log q is periodic in the periodic coordinates
(they are wrapped to (−π, π] before evaluation; samples lie in (−π, π]).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from molsample.errors import ShapeError

__all__ = ["InternalBase"]

_LOG_2PI = math.log(2.0 * math.pi)


class InternalBase:
    """N(0, 1) on non-periodic and uniform on (−π, π] on periodic coordinates of ``z: (batch, D, 1)``.

    Args:
        periodic: ``(D,)`` bool mask (e.g. :attr:`InternalCoordinates.periodic`).
    """

    def __init__(self, periodic: Any) -> None:
        mask = torch.as_tensor(np.asarray(periodic, dtype=bool)).reshape(-1)
        if mask.numel() < 1:
            raise ShapeError("InternalBase needs a periodic mask with at least one entry, got an empty one")
        self.periodic = mask.clone()
        self.event_shape: tuple[int, int] = (int(mask.numel()), 1)

    @property
    def dof(self) -> int:
        """Number of degrees of freedom D."""
        return self.event_shape[0]

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """``n`` samples ``(n, D, 1)``: normal draws, uniform on (−π, π] where periodic."""
        gen_device = generator.device if generator is not None else device
        shape = (int(n), *self.event_shape)
        normal = torch.randn(shape, generator=generator, dtype=dtype, device=gen_device)
        uniform = math.pi - 2.0 * math.pi * torch.rand(shape, generator=generator, dtype=dtype, device=gen_device)
        z = torch.where(self.periodic.to(normal.device).view(1, -1, 1), uniform, normal)
        return z.to(device) if device is not None else z

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density ``(batch,)`` of ``z: (batch, D, 1)`` (module docstring)."""
        if z.dim() != 3 or tuple(z.shape[1:]) != self.event_shape:
            raise ShapeError(f"InternalBase expects z of shape (batch, {self.dof}, 1), got {tuple(z.shape)}")
        per = self.periodic.to(z.device)
        v = z[..., 0]
        # the uniform density on the circle is constant: wrapping the periodic entries leaves only the constant
        quad = torch.where(per, torch.zeros_like(v), v * v).sum(-1)
        n_per = int(per.sum())
        return -0.5 * quad - 0.5 * (self.dof - n_per) * _LOG_2PI - n_per * _LOG_2PI

    def state(self) -> dict:
        """Plain lists: ``name`` and the ``periodic`` mask."""
        return {"name": "internal", "periodic": self.periodic.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> InternalBase:
        """Rebuild from :meth:`state`."""
        return cls(state["periodic"])

    def __repr__(self) -> str:
        return f"InternalBase(dof={self.dof}, periodic={int(self.periodic.sum())})"
