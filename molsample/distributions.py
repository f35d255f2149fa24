r"""Base distributions of the flows (t = 0).

* :class:`StandardGaussian` — N(0, σ²I) on all n·d coordinates (2-D toys, systems without CoM removal).
* :class:`CoMFreeGaussian` — the Gaussian N(0, σ²I) restricted to the zero-centre-of-mass subspace
  {x : Σ_i x_i = 0} of (n, d) configurations, which has (n − 1)·d dimensions.

σ (``std``, default 1) is the system's ``length_scale`` (see :func:`base_distribution`); the
formulas below are for σ = 1, and a general σ adds −‖·‖²/(2σ²) scaling and −dof·log σ.

CoM-free log-density. Let P = (I_n − 1 1ᵀ/n) ⊗ I_d be the orthogonal projection onto the subspace
and U an orthonormal basis of it (Uᵀ U = I_{(n−1)d}). A sample is x = P z with z ~ N(0, I_{nd}),
so its coordinates y = Uᵀ x are N(0, I_{(n−1)d}) and, with ‖Uᵀx‖ = ‖P x‖ = ‖x − x̄‖,

    log q(x) = −½ ‖x − x̄‖² − ½ (n − 1) d · log 2π,      x̄ = (1/n) Σ_i x_i.

This is the density with respect to the (n − 1)·d-dimensional Lebesgue measure on the subspace;
inputs with a non-zero centre of mass are projected first (the density is translation invariant).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from molsample.errors import ConfigError, ShapeError

__all__ = ["StandardGaussian", "CoMFreeGaussian", "base_distribution"]

_LOG_2PI = math.log(2.0 * math.pi)


def _randn(n: int, shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
           device: torch.device | str | None) -> Tensor:
    """Normal draws of shape (n, *shape), using ``generator`` on its own device then moving."""
    if generator is not None:
        z = torch.randn(n, *shape, generator=generator, dtype=dtype, device=generator.device)
        return z.to(device) if device is not None else z
    return torch.randn(n, *shape, dtype=dtype, device=device)


class StandardGaussian:
    """N(0, I) on ``event_shape = (n_particles, dim)``.

    Args:
        event_shape: ``(n_particles, dim)`` of one configuration.
        std: standard deviation σ of every coordinate, in the system's length unit.
    """

    def __init__(self, event_shape: tuple[int, int], std: float = 1.0) -> None:
        if len(event_shape) != 2 or min(event_shape) < 1:
            raise ShapeError(f"event_shape must be (n_particles, dim) with positive entries, got {event_shape}")
        if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
            raise ConfigError(f"the base distribution's std must be a positive number, got {std!r}")
        self.event_shape: tuple[int, int] = (int(event_shape[0]), int(event_shape[1]))
        self.std = float(std)

    def _log_norm(self) -> float:
        """½·dof·log 2π + dof·log σ."""
        return self.dof * (0.5 * _LOG_2PI + math.log(self.std))

    @property
    def dof(self) -> int:
        """Number of degrees of freedom (dimension of the support)."""
        return self.event_shape[0] * self.event_shape[1]

    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.event_shape:
            n, d = self.event_shape
            raise ShapeError(f"{type(self).__name__} expects (batch, {n}, {d}), got {tuple(x.shape)}")
        return x

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """``n`` samples, ``(n, n_particles, dim)``."""
        z = _randn(int(n), self.event_shape, generator, dtype, device)
        return z if self.std == 1.0 else z * self.std

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density −‖x‖²/(2σ²) − ½·dof·log 2π − dof·log σ, ``(batch,)``."""
        x = self._check(x)
        return -0.5 * (x * x).sum(dim=(1, 2)) / self.std**2 - self._log_norm()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(event_shape={self.event_shape}, std={self.std:g})"


class CoMFreeGaussian(StandardGaussian):
    """Standard Gaussian on the zero-centre-of-mass subspace ((n − 1)·dim degrees of freedom).

    See the module docstring for the exact log-density.
    """

    def __init__(self, n_particles: int, dim: int, std: float = 1.0) -> None:
        if n_particles < 2:
            raise ShapeError(f"CoMFreeGaussian needs n_particles >= 2, got {n_particles}; use StandardGaussian")
        super().__init__((n_particles, dim), std)

    @property
    def dof(self) -> int:
        return (self.event_shape[0] - 1) * self.event_shape[1]

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """``n`` samples with zero centre of mass, ``(n, n_particles, dim)``."""
        z = super().sample(n, generator=generator, dtype=dtype, device=device)
        return z - z.mean(dim=1, keepdim=True)

    def log_prob(self, x: Tensor) -> Tensor:
        """−‖x − x̄‖²/(2σ²) − ½(n − 1)·dim·log 2π − (n − 1)·dim·log σ, ``(batch,)``."""
        x = self._check(x)
        xc = x - x.mean(dim=1, keepdim=True)
        return -0.5 * (xc * xc).sum(dim=(1, 2)) / self.std**2 - self._log_norm()

    def __repr__(self) -> str:
        n, d = self.event_shape
        return f"{type(self).__name__}(n_particles={n}, dim={d}, std={self.std:g})"


def base_distribution(system: Any) -> StandardGaussian | CoMFreeGaussian:
    """The base distribution of a :class:`~molsample.systems.System`.

    :class:`CoMFreeGaussian` when ``system.remove_com`` (particle systems), else :class:`StandardGaussian`,
    with std = ``system.length_scale`` (the card's ``length_scale``, default 1).
    """
    n, d = system.event_shape
    std = float(getattr(system, "length_scale", 1.0))
    if getattr(system, "remove_com", False) and n > 1:
        return CoMFreeGaussian(n, d, std)
    return StandardGaussian((n, d), std)
