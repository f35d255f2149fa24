r"""Mirror images and force fields that are not reflection-invariant.

:func:`molsample.molecules.chirality.reflect_wrong_handed` folds wrong-handed samples onto the reference
stereoisomer by the inversion x ↦ 2x̄ − x, and keeps each sample's stored energy and weight. That
is valid only when the energy is reflection-invariant, E(Mx) = E(x). Bond, angle and non-bonded
terms depend on distances and angles only and are; so is a periodic torsion k(1 + cos(nφ − δ))
with δ ∈ {0, π}, because M flips the sign of every dihedral and cos(−nφ − δ) = cos(nφ − δ) exactly
for those phases. Torsions with other phases and CMAP correction maps on (φ, ψ) (CHARMM36, ff19SB)
are not: their energy of a mirror image differs.

* :func:`reflection_variant_terms` / :func:`energy_is_reflection_invariant` inspect the forces of
  an ``openmm.System`` (or a molsample system or energy holding one). Force types whose energy
  can depend on handedness and whose expressions are not inspected (``CustomTorsionForce``,
  ``CustomCompoundBondForce``, ``CustomExternalForce``, ``CustomCentroidBondForce``, unknown
  ones) count as not invariant.
* :func:`molsample.flows.reflection.reflect_and_reweight` mirrors the wrong-handed samples of a
  flow and recomputes their energies and log-weights, for energies that are not invariant.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

__all__ = ["reflection_variant_terms", "energy_is_reflection_invariant"]

#: OpenMM forces whose energy depends on distances / angles / cos(dihedral) only.
_INVARIANT_FORCES = {
    "HarmonicBondForce", "HarmonicAngleForce", "NonbondedForce", "CustomNonbondedForce", "CustomBondForce",
    "CustomAngleForce", "RBTorsionForce", "GBSAOBCForce", "CustomGBForce", "CMMotionRemover",
    "AndersenThermostat", "MonteCarloBarostat", "AmoebaVdwForce", "GayBerneForce",
}
#: distance-only molsample energies (pair potentials)
_INVARIANT_ENERGIES = {"LennardJones", "MultiDoubleWell"}


def _openmm_system(obj: Any) -> Any:
    """The ``openmm.System`` inside ``obj`` (a System, an energy with ``.system``, a molsample System), or None."""
    try:
        import openmm
    except ImportError:  # pragma: no cover - openmm is a dependency
        return None
    for cand in (obj, getattr(obj, "system", None), getattr(getattr(obj, "energy", None), "system", None)):
        if isinstance(cand, openmm.System):
            return cand
    return None


def reflection_variant_terms(system: Any) -> list[str]:
    """Terms of the energy that change (or may change) under a reflection; empty when it is invariant.

    Args:
        system: an ``openmm.System``, an :class:`~molsample.energies.openmm_bridge.OpenMMEnergy`, a
            molsample ``System``, or another molsample energy (pair potentials are invariant; an
            energy may declare ``reflection_invariant = True/False``).
    Returns:
        one line per offending force, e.g. ``"CMAPTorsionForce: 1 CMAP torsion(s)"`` or
        ``"PeriodicTorsionForce: 3 torsion(s) with phases other than 0/180 degrees"``.
    """
    omm = _openmm_system(system)
    if omm is None:
        energy = getattr(system, "energy", system)
        if inspect.ismethod(energy):  # an Energy module itself (its .energy is a method)
            energy = system
        declared = getattr(energy, "reflection_invariant", None)
        if declared is not None:
            return [] if declared else [f"{type(energy).__name__}: declared not reflection-invariant"]
        if type(energy).__name__ in _INVARIANT_ENERGIES:
            return []
        return [f"{type(energy).__name__}: unknown energy, reflection invariance not established"]
    out: list[str] = []
    for force in omm.getForces():
        name = type(force).__name__
        if name == "PeriodicTorsionForce":
            bad = sum(1 for i in range(force.getNumTorsions())
                      if abs(math.sin(_phase_rad(force.getTorsionParameters(i)[5]))) > 1e-6)
            if bad:
                out.append(f"{name}: {bad} torsion(s) with phases other than 0/180 degrees")
        elif name == "CMAPTorsionForce":
            if force.getNumTorsions():
                out.append(f"{name}: {force.getNumTorsions()} CMAP torsion(s)")
        elif name in _INVARIANT_FORCES:
            continue
        else:
            out.append(f"{name}: not inspected, may depend on handedness")
    return out


def _phase_rad(q: Any) -> float:
    """A phase as a float in radians (OpenMM returns a Quantity in radians)."""
    if hasattr(q, "value_in_unit"):
        from openmm import unit

        return float(q.value_in_unit(unit.radian))
    return float(q)


def energy_is_reflection_invariant(system: Any) -> bool:
    """True when every term of the energy is known to satisfy E(Mx) = E(x) (see :func:`reflection_variant_terms`)."""
    return not reflection_variant_terms(system)
