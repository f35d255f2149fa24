"""Topologies: pseudo-atom topologies for systems without a structure file (Lennard-Jones), and
atom types and bond-graph separations of a topology for the velocity nets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from molsample.errors import ConfigError

if TYPE_CHECKING:
    import mdtraj


def particle_topology(n_particles: int, element: str = "Ar", residue: str = "LJ") -> mdtraj.Topology:
    """An mdtraj Topology of ``n_particles`` unbonded pseudo-atoms in one chain.

    Each particle is its own residue (name ``residue``) so that PDB writers and viewers
    treat the cluster as a set of free atoms. Argon is the default element: a noble-gas
    cluster is the physical system Lennard-Jones models.
    """
    import mdtraj

    top = mdtraj.Topology()
    chain = top.add_chain()
    el = mdtraj.element.get_by_symbol(element)
    for k in range(n_particles):
        res = top.add_residue(residue, chain, resSeq=k + 1)
        top.add_atom(f"{element.upper()}{k + 1}"[:4], el, res)
    return top


def atom_types_from_topology(topology: mdtraj.Topology, by: str = "element") -> list[int]:
    """Integer atom types for the velocity nets (``atom_types`` of EGNN and E3NNVelocity).

    Args:
        topology: ``mdtraj.Topology``.
        by: ``"element"`` (one type per chemical element, numbered in order of first
            appearance; permutations of atoms of the same element stay symmetric) or
            ``"index"`` (every atom its own type: no permutation symmetry, each atom identified).
    Returns:
        one ``int`` per atom, in atom order.
    """
    atoms = list(topology.atoms)
    if by == "index":
        return list(range(len(atoms)))
    if by != "element":
        raise ConfigError(f"atom types by {by!r} are not known; use 'element' or 'index'")
    seen: dict[str, int] = {}
    out = []
    for a in atoms:
        sym = a.element.symbol if a.element is not None else a.name
        out.append(seen.setdefault(sym, len(seen)))
    return out


#: bond-graph separations told apart by the EGNN's edge embedding: 1, 2, …, this many bonds (0: further)
BOND_SEPARATIONS = 3


def bond_separation(n: int, bonds: list[tuple[int, int]], max_sep: int = BOND_SEPARATIONS) -> torch.Tensor:
    """``(n, n)`` long: the number of bonds between atoms i and j when it is 1…``max_sep``, else 0
    (also on the diagonal and between unconnected atoms).

    Raises:
        ConfigError: a bond with an atom index outside 0…n−1 or an atom bonded to itself.
    """
    adj = torch.zeros(n, n, dtype=torch.bool)
    for i, j in bonds:
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise ConfigError(f"bond ({i}, {j}) is not a pair of two different atoms among 0..{n - 1}")
        adj[i, j] = adj[j, i] = True
    sep = torch.zeros(n, n, dtype=torch.long)
    reach = torch.eye(n, dtype=torch.bool)
    frontier = torch.eye(n, dtype=torch.bool)
    for k in range(1, max_sep + 1):
        frontier = ((frontier.float() @ adj.float()) > 0) & ~reach
        sep[frontier] = k
        reach |= frontier
    return sep
