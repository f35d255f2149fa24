"""Multi-particle double-well potential (DW-4)."""

from __future__ import annotations

from pathlib import Path

import torch

from molsample.energies.base import Energy, pairwise_distances
from molsample.energies.registry import register_energy_type, take


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


@register_energy_type("double_well", ("n_particles", "dim", "a", "b", "d0"))
def double_well_from_card(table: dict, card_path: Path) -> MultiDoubleWell:
    """``[energy] type = "double_well"``: every constructor argument, DW-4's values by default."""
    w = str(card_path)
    return MultiDoubleWell(
        n_particles=take(table, "n_particles", int, w, 4),
        dim=take(table, "dim", int, w, 2),
        a=take(table, "a", float, w, 0.9),
        b=take(table, "b", float, w, -4.0),
        d0=take(table, "d0", float, w, 4.0),
    )
