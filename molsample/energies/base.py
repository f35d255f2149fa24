"""The ``Energy`` interface that every potential in molsample implements."""

from __future__ import annotations

import torch
from torch import nn

from molsample.errors import ShapeError


class Energy(nn.Module):
    """A batched potential energy E(x).

    Subclasses implement :meth:`_energy`; :meth:`energy` validates shapes first.

    Attributes:
        n_particles: number of particles (1 for 2-D toy densities).
        dim: spatial dimension of each particle (3 for molecules, 2 for toys and DW-4).
        unit: name of the energy unit ("kJ/mol" or "reduced").
        length_unit: name of the length unit ("nm" or "reduced").
    """

    unit: str = "reduced"
    length_unit: str = "reduced"

    def __init__(self, n_particles: int, dim: int) -> None:
        super().__init__()
        self.n_particles = int(n_particles)
        self.dim = int(dim)

    @property
    def event_shape(self) -> tuple[int, int]:
        """Shape of one configuration, ``(n_particles, dim)``."""
        return (self.n_particles, self.dim)

    def check_shape(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` as ``(batch, n_particles, dim)`` or raise :class:`ShapeError`.

        A single configuration ``(n_particles, dim)`` gets a batch axis of 1; a flat
        ``(batch, n_particles*dim)`` tensor is reshaped.
        """
        if not isinstance(x, torch.Tensor):
            raise ShapeError(f"expected a torch.Tensor, got {type(x).__name__}; wrap it with torch.as_tensor")
        n, d = self.event_shape
        if x.dim() == 2 and tuple(x.shape) == (n, d):
            return x.unsqueeze(0)
        if x.dim() == 2 and x.shape[1] == n * d:
            return x.reshape(x.shape[0], n, d)
        if x.dim() == 3 and tuple(x.shape[1:]) == (n, d):
            return x
        raise ShapeError(
            f"{type(self).__name__} expects positions of shape (batch, {n}, {d}) "
            f"(n_particles={n}, dim={d}), got {tuple(x.shape)}; reshape to (batch, {n}, {d})"
        )

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energy of each configuration.

        Args:
            x: ``(batch, n_particles, dim)`` positions in :attr:`length_unit`.
        Returns:
            ``(batch,)`` energies in :attr:`unit`.
        """
        return self._energy(self.check_shape(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)

    def force(self, x: torch.Tensor) -> torch.Tensor:
        """Force −∇E, ``(batch, n_particles, dim)`` in unit/length_unit (autograd by default)."""
        x = self.check_shape(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self._energy(xg)
            (grad,) = torch.autograd.grad(e.sum(), xg)
        return -grad

    def energy_and_force(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``(batch,)`` and forces ``(batch, n_particles, dim)`` in one pass."""
        x = self.check_shape(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self._energy(xg)
            (grad,) = torch.autograd.grad(e.sum(), xg)
        return e.detach(), -grad

    def extra_repr(self) -> str:
        return f"n_particles={self.n_particles}, dim={self.dim}, unit={self.unit!r}"


def pairwise_distances(x: torch.Tensor, floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distances of unique pairs i<j.

    Args:
        x: ``(batch, n, dim)``.
        floor: lower bound on the returned distances (keeps 1/d finite for coincident particles).
    Returns:
        ``(d, i, j)`` with ``d: (batch, n*(n-1)/2)`` and index tensors ``i, j`` of the pairs.
    """
    n = x.shape[1]
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    diff = x[:, i, :] - x[:, j, :]
    # sqrt of a clamped square: finite gradient even when two particles coincide.
    d2 = (diff * diff).sum(-1)
    d = torch.sqrt(d2.clamp_min(max(floor, 1e-12) ** 2))
    return d, i, j
