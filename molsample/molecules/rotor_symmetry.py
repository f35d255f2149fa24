"""Rotor symmetry: the relabellings of equivalent terminal atoms that leave the Boltzmann density unchanged.

The three hydrogens of a methyl group (or the two oxygens of a carboxylate) are equivalent: they
carry the same force-field parameters, so relabelling them permutes positions without changing the
energy, and a rotation of the group about its bond turns one labelling into the other. A data set of
N frames therefore stands for N × (orbit size) equally likely frames. Only cyclic shifts are used:
for three atoms they are the even permutations, which keep the handedness of the labelling (the
sign of the torsions that place siblings relative to each other), so augmented frames stay in the
same connected region of configuration space as the data.

Groups are found on the bond graph (terminal atoms with the same Weisfeiler–Lehman colour bonded to
one parent); :func:`check_energy_invariance` verifies on frames that the force field agrees.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import torch

from molsample.errors import ConfigError
from molsample.molecules.topology_graph import atomic_number, bond_graph, wl_colours

__all__ = ["augment_frames", "augment_system_frames", "check_energy_invariance", "rotor_groups",
           "rotor_permutations"]


def rotor_groups(topology: Any) -> list[tuple[int, ...]]:
    """Groups of ≥ 2 equivalent terminal atoms (one bond each, same bond-graph colour) on one parent atom.

    Returns atom-index tuples in increasing order, sorted by their first atom; e.g. alanine dipeptide:
    the hydrogens of its three methyl groups, ``[(0, 2, 3), (11, 12, 13), (19, 20, 21)]``.
    """
    nbrs = bond_graph(topology)
    colours = wl_colours([atomic_number(a) for a in topology.atoms], nbrs)
    by_parent: dict[tuple[int, int], list[int]] = {}
    for i, nb in enumerate(nbrs):
        if len(nb) == 1:
            by_parent.setdefault((nb[0], colours[i]), []).append(i)
    return sorted(tuple(sorted(g)) for g in by_parent.values() if len(g) >= 2)


def rotor_permutations(n_atoms: int, groups: list[tuple[int, ...]]) -> torch.Tensor:
    """``(n_perm, n_atoms)`` long: every combination of cyclic shifts of the ``groups`` (identity first).

    Row p is an index map: ``x[:, perms[p]]`` is the relabelled frame. ``n_perm`` = Π len(group).
    """
    seen: set[int] = set()
    for g in groups:
        if len(g) < 2 or any(not 0 <= i < n_atoms for i in g) or seen & set(g) or len(set(g)) != len(g):
            raise ConfigError(f"rotor group {g} is not a set of ≥ 2 distinct atoms among 0..{n_atoms - 1} "
                              "disjoint from the other groups")
        seen |= set(g)
    rows = []
    for shifts in itertools.product(*(range(len(g)) for g in groups)):
        perm = list(range(n_atoms))
        for g, s in zip(groups, shifts):
            for k, i in enumerate(g):
                perm[i] = g[(k + s) % len(g)]
        rows.append(perm)
    return torch.tensor(rows, dtype=torch.long)


def augment_frames(frames: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """``frames (n, n_atoms, 3)`` → ``(n_perm · n, n_atoms, 3)``: every frame under every relabelling
    (block p holds ``frames[:, perms[p]]``; block 0 the frames themselves when ``perms[0]`` is the identity)."""
    if frames.dim() != 3 or perms.dim() != 2 or perms.shape[1] != frames.shape[1]:
        raise ConfigError(f"frames of shape {tuple(frames.shape)} and permutations of shape {tuple(perms.shape)} "
                          "do not fit: expected (n, n_atoms, 3) and (n_perm, n_atoms)")
    return frames[:, perms].transpose(0, 1).reshape(-1, *frames.shape[1:])


def check_energy_invariance(energy: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor,
                            perms: torch.Tensor, *, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """Raise :class:`ConfigError` unless ``energy(frames[:, perm])`` equals ``energy(frames)`` for every
    permutation (``energy``: ``(n, n_atoms, 3)`` → ``(n,)``; a few frames suffice)."""
    e0 = energy(frames)
    for p in perms[1:]:
        e = energy(frames[:, p])
        if not torch.allclose(e, e0, rtol=rtol, atol=atol):
            moved = [i for i, j in enumerate(p.tolist()) if i != j]
            raise ConfigError(f"relabelling atoms {moved} changes the energy by up to "
                              f"{float((e - e0).abs().max()):.3g}: the force field does not treat them as "
                              "equivalent; turn the rotor augmentation off ([flow] rotor_augment = false)")


def augment_system_frames(system: Any, frames: torch.Tensor
                          ) -> tuple[torch.Tensor, list[tuple[int, ...]], torch.Tensor]:
    """``frames (n, n_atoms, 3)`` of ``system`` under every cyclic relabelling of its rotor groups, after
    checking on four frames that the system's energy does not change.

    Returns:
        ``(augmented (n_perm · n, n_atoms, 3), groups, perms)`` (:func:`augment_frames`,
        :func:`rotor_groups`, :func:`rotor_permutations`).
    """
    groups = rotor_groups(system.topology)
    perms = rotor_permutations(frames.shape[1], groups)
    check_energy_invariance(system.energy.energy, frames[:4], perms)
    return augment_frames(frames, perms), groups, perms
