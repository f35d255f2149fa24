r"""Mirror images and force fields that are not reflection-invariant.

:func:`molsample.chirality.reflect_wrong_handed` folds wrong-handed samples onto the reference
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
* :func:`reflect_and_reweight` mirrors the wrong-handed samples, recomputes their energies and
  hence their log-weights −E/kT − log q. log q is unchanged: the density of an E(3)-equivariant
  flow from a CoM-free Gaussian is reflection-invariant, so q(Mx) = q(x).

With recomputed energies the folded samples (density 2q on the reference side) are weighted
against the Boltzmann density restricted to the reference stereoisomer; the self-normalized
weights are exact, and :func:`molsample.chirality.enantiomer_log_weights` of the result estimates
log Z of that stereoisomer (no longer log Z − log 2 when E(Mx) ≠ E(x)).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from molsample.chirality import ChiralCenter, mirror_where, wrong_handed_mask
from molsample.errors import ShapeError

__all__ = ["ReflectedSamples", "reflection_variant_terms", "energy_is_reflection_invariant", "reflect_and_reweight"]

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


@dataclass
class ReflectedSamples:
    """Samples after :func:`reflect_and_reweight`.

    Attributes:
        x: ``(batch, n_atoms, 3)`` positions, wrong-handed samples mirrored.
        energy: ``(batch,)`` energies of the returned positions (recomputed for the mirrored ones).
        logw: ``(batch,)`` float64 log-weights −energy/kT − logq (−inf where not finite).
        n_reflected: number of mirrored samples.
        mirrored: ``(batch,)`` bool mask of them.
    """

    x: Tensor
    energy: Tensor
    logw: Tensor
    n_reflected: int
    mirrored: Tensor


def reflect_and_reweight(
    x: Tensor,
    logq: Tensor,
    energy_fn: Callable[[Tensor], Tensor],
    kT: float,
    centers: Sequence[ChiralCenter],
    *,
    energy: Tensor | None = None,
    reference_signs: Sequence[int] | None = None,
) -> ReflectedSamples:
    """Mirror the wrong-handed samples and recompute their energies and log-weights.

    Args:
        x: ``(batch, n_atoms, 3)`` samples (nm for OpenMM systems).
        logq: ``(batch,)`` model log-density of ``x``; unchanged by the reflection (E(3)-equivariant flow).
        energy_fn: ``(k, n_atoms, 3) -> (k,)`` energy in the unit of ``kT`` (kJ/mol for OpenMM),
            e.g. ``system.energy.energy``.
        kT: thermal energy, same unit.
        centers: the stereocentres (:func:`~molsample.chirality.chiral_centers_for_system`).
        energy: ``(batch,)`` energies of ``x`` when already known: only the mirrored samples are
            evaluated then (else all are).
        reference_signs: the wanted handedness per centre (``None``: the reference structure's).
    Returns:
        :class:`ReflectedSamples`; for a reflection-invariant energy, energies and weights equal
        the inputs' up to the energy function's rounding.
    """
    from molsample.sampling.weights import log_weights

    if x.dim() != 3 or logq.shape != (x.shape[0],):
        raise ShapeError(f"x must be (batch, n_atoms, 3) and logq (batch,), got {tuple(x.shape)} and "
                         f"{tuple(logq.shape)}")
    mask = wrong_handed_mask(x, centers, reference_signs).to(x.device)
    x_new = mirror_where(x, mask)
    with torch.no_grad():
        if energy is None:
            e_new = energy_fn(x_new).detach()
        else:
            if energy.shape != (x.shape[0],):
                raise ShapeError(f"energy must have shape ({x.shape[0]},), got {tuple(energy.shape)}")
            e_new = energy.detach().clone()
            idx = torch.nonzero(mask, as_tuple=True)[0]
            if idx.numel():
                e_new[idx.to(e_new.device)] = energy_fn(x_new[idx]).detach().to(e_new)
    logw = log_weights(e_new.to(torch.float64) / float(kT), logq)
    return ReflectedSamples(x=x_new, energy=e_new, logw=logw, n_reflected=int(mask.sum()), mirrored=mask)
