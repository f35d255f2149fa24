"""Lennard-Jones clusters (LJ-13, LJ-55) with an optional centre-of-mass oscillator."""

from __future__ import annotations

from pathlib import Path

import torch

from molsample.energies.base import Energy, pairwise_distances
from molsample.energies.registry import register_energy_type, take
from molsample.errors import ConfigError


class LennardJones(Energy):
    r"""Lennard-Jones cluster energy in reduced units.

    E(x) = pair_factor · Σ_{i<j} ε[(r_m/d_ij)^12 − 2(r_m/d_ij)^6] + oscillator_scale · ½ Σ_i |x_i − x̄|²

    ``pair_factor`` 1 sums unique pairs (the physical energy, minimum −ε per pair);
    2 sums ordered pairs, the convention of the LJ-13/LJ-55 benchmark data
    (Klein et al. 2023) used by DEM, iDEM and Adjoint Sampling.

    Args:
        n_particles: number of atoms.
        dim: spatial dimension (3).
        epsilon: well depth ε.
        r_m: distance of the pair minimum (r_m = 2^{1/6} σ).
        pair_factor: 1 (unique pairs) or 2 (ordered pairs).
        oscillator_scale: strength of the harmonic term on distances to the centre of mass.
        distance_floor: distances below this are clamped (in units of r_m) so that
            coincident particles give a large finite energy, never NaN/inf.
    """

    def __init__(
        self,
        n_particles: int,
        dim: int = 3,
        epsilon: float = 1.0,
        r_m: float = 1.0,
        pair_factor: float = 1.0,
        oscillator_scale: float = 0.0,
        distance_floor: float = 0.2,
    ) -> None:
        super().__init__(n_particles, dim)
        if n_particles < 2:
            raise ConfigError(f"LennardJones needs n_particles >= 2, got {n_particles}")
        if epsilon <= 0 or r_m <= 0:
            raise ConfigError(f"LennardJones needs epsilon > 0 and r_m > 0, got epsilon={epsilon}, r_m={r_m}")
        if distance_floor <= 0:
            raise ConfigError(f"distance_floor must be > 0, got {distance_floor}")
        self.epsilon = float(epsilon)
        self.r_m = float(r_m)
        self.pair_factor = float(pair_factor)
        self.oscillator_scale = float(oscillator_scale)
        self.distance_floor = float(distance_floor)

    def pair_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_{i<j} ε[(r_m/d)^12 − 2(r_m/d)^6] without pair_factor, ``(batch,)``."""
        d, _, _ = pairwise_distances(x, floor=self.distance_floor * self.r_m)
        s6 = (self.r_m / d) ** 6
        return self.epsilon * (s6 * s6 - 2.0 * s6).sum(-1)

    def oscillator_energy(self, x: torch.Tensor) -> torch.Tensor:
        """½ Σ_i |x_i − x̄|², ``(batch,)`` (translation invariant)."""
        centred = x - x.mean(dim=1, keepdim=True)
        return 0.5 * (centred * centred).sum(dim=(1, 2))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        e = self.pair_factor * self.pair_energy(x)
        if self.oscillator_scale != 0.0:
            e = e + self.oscillator_scale * self.oscillator_energy(x)
        return e

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, epsilon={self.epsilon}, r_m={self.r_m}, "
            f"pair_factor={self.pair_factor}, oscillator_scale={self.oscillator_scale}"
        )


@register_energy_type("lennard_jones", ("n_particles", "dim", "epsilon", "r_m", "pair_factor", "oscillator_scale",
                                       "distance_floor"), identical_atoms=True)
def lennard_jones_from_card(table: dict, card_path: Path) -> LennardJones:
    """``[energy] type = "lennard_jones"``: every constructor argument, ``n_particles`` required."""
    w = str(card_path)
    return LennardJones(
        n_particles=take(table, "n_particles", int, w),
        dim=take(table, "dim", int, w, 3),
        epsilon=take(table, "epsilon", float, w, 1.0),
        r_m=take(table, "r_m", float, w, 1.0),
        pair_factor=take(table, "pair_factor", float, w, 1.0),
        oscillator_scale=take(table, "oscillator_scale", float, w, 0.0),
        distance_floor=take(table, "distance_floor", float, w, 0.2),
    )
