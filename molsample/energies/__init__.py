"""Potential energies: Lennard-Jones, double well, 2-D toys and the OpenMM bridge.

Each energy module registers its card type (``[energy] type = ...``) beside its class in
:data:`molsample.energies.registry.ENERGY_TYPES`; importing this package imports them all, in the
order the types are listed (OpenMM itself is imported only when an OpenMM card is built).
"""

from molsample.energies.base import Energy, pairwise_distances
from molsample.energies.lennard_jones import LennardJones
from molsample.energies.double_well import MultiDoubleWell
from molsample.energies.toy2d import (
    GaussianEnergy,
    RingMixture,
    bump_reward,
    quadratic_reward,
    tilted_gaussian,
)
from molsample.energies.openmm_bridge import OpenMMEnergy
from molsample.energies import openmm_card  # noqa: F401  (registers [energy] type = "openmm")
from molsample.energies.registry import ENERGY_TYPES, register_energy_type

__all__ = [
    "ENERGY_TYPES",
    "Energy",
    "GaussianEnergy",
    "LennardJones",
    "MultiDoubleWell",
    "OpenMMEnergy",
    "RingMixture",
    "bump_reward",
    "pairwise_distances",
    "quadratic_reward",
    "register_energy_type",
    "tilted_gaussian",
]
