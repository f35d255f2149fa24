r"""Wrong-handed flow samples mirrored onto the reference stereoisomer, with energies and weights recomputed.

:func:`molsample.molecules.chirality.reflect_wrong_handed` folds wrong-handed samples onto the
reference stereoisomer by the inversion x ↦ 2x̄ − x and keeps each sample's stored energy and
weight, which is valid only for a reflection-invariant energy
(:func:`molsample.molecules.mirror_energy.energy_is_reflection_invariant`). For any energy,
:func:`reflect_and_reweight` mirrors the wrong-handed samples and recomputes their energies and
hence their log-weights −E/kT − log q. log q is unchanged: the density of an E(3)-equivariant flow
from a CoM-free Gaussian is reflection-invariant, so q(Mx) = q(x).

With recomputed energies the folded samples (density 2q on the reference side) are weighted
against the Boltzmann density restricted to the reference stereoisomer; the self-normalized
weights are exact, and :func:`molsample.molecules.chirality.enantiomer_log_weights` of the result
estimates log Z of that stereoisomer (no longer log Z − log 2 when E(Mx) ≠ E(x)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from molsample.errors import ShapeError
from molsample.flows.weights import log_weights
from molsample.molecules.chirality import ChiralCenter, mirror_where, wrong_handed_mask

__all__ = ["ReflectedSamples", "reflect_and_reweight"]


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
        centers: the stereocentres (:func:`~molsample.molecules.chirality.chiral_centers_for_system`).
        energy: ``(batch,)`` energies of ``x`` when already known: only the mirrored samples are
            evaluated then (else all are).
        reference_signs: the wanted handedness per centre (``None``: the reference structure's).
    Returns:
        :class:`ReflectedSamples`; for a reflection-invariant energy, energies and weights equal
        the inputs' up to the energy function's rounding.
    """
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
