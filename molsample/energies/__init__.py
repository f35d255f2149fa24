"""Potential energies: Lennard-Jones, double well, 2-D toys and the OpenMM bridge."""

from molsample.energies.base import Energy, pairwise_distances
from molsample.energies.double_well import MultiDoubleWell
from molsample.energies.lennard_jones import LennardJones
from molsample.energies.openmm_bridge import OpenMMEnergy
from molsample.energies.toy2d import (
    GaussianEnergy,
    RingMixture,
    bump_reward,
    quadratic_reward,
    tilted_gaussian,
)

__all__ = [
    "Energy",
    "GaussianEnergy",
    "LennardJones",
    "MultiDoubleWell",
    "OpenMMEnergy",
    "RingMixture",
    "bump_reward",
    "pairwise_distances",
    "quadratic_reward",
    "tilted_gaussian",
]
