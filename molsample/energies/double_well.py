"""Multi-particle double-well potential (DW-4)."""

from __future__ import annotations

import torch

from molsample.energies.base import Energy, pairwise_distances


class MultiDoubleWell(Energy):
    r"""E(x) = Σ_{i<j} a(d_ij − d0)^4 + b(d_ij − d0)^2 (reduced units).

    The DW-4 benchmark: 4 particles in 2-D with a = 0.9, b = −4, d0 = 4
    (Köhler, Klein, Noé 2020). Each pair distance has two wells at
    d0 ± sqrt(−b/(2a)).
    """

    def __init__(
        self,
        n_particles: int = 4,
        dim: int = 2,
        a: float = 0.9,
        b: float = -4.0,
        d0: float = 4.0,
    ) -> None:
        super().__init__(n_particles, dim)
        self.a = float(a)
        self.b = float(b)
        self.d0 = float(d0)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        d, _, _ = pairwise_distances(x)
        u = d - self.d0
        u2 = u * u
        return (self.a * u2 * u2 + self.b * u2).sum(-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, a={self.a}, b={self.b}, d0={self.d0}"
