"""An example plugin energy: independent harmonic wells, loaded by a card with

    [energy]
    type = "plugin"
    path = "potentials/harmonic_example.py:HarmonicWells"
    params = { n_particles = 3, dim = 3, k = 2.0 }
"""

import torch

from molsample.energies import Energy


class HarmonicWells(Energy):
    """E(x) = ½ k Σ_i |x_i − x̄|²  (reduced units)."""

    def __init__(self, n_particles: int = 3, dim: int = 3, k: float = 1.0) -> None:
        super().__init__(n_particles, dim)
        self.k = float(k)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(1, keepdim=True)
        return 0.5 * self.k * (c * c).sum((1, 2))
