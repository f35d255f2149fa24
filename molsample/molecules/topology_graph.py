"""The bond graph of a topology: neighbour lists, atomic numbers, Weisfeiler–Lehman colours, and an
atom found by its name and residue."""

from __future__ import annotations

from typing import Any

from molsample.errors import ConfigError

__all__ = ["atomic_number", "bond_graph", "find_atom", "wl_colours"]


def bond_graph(topology: Any) -> list[list[int]]:
    """Neighbour lists of the atoms of ``topology`` (mdtraj), from its bonds: ``nbrs[i]`` the atoms bonded to i."""
    nbrs: list[list[int]] = [[] for _ in range(topology.n_atoms)]
    for bond in topology.bonds:
        i, j = bond[0].index, bond[1].index
        if j not in nbrs[i]:
            nbrs[i].append(j)
            nbrs[j].append(i)
    return nbrs


def atomic_number(atom: Any) -> int:
    """The atomic number of an mdtraj atom, 0 when it has no element (a pseudo-atom)."""
    el = getattr(atom, "element", None)
    return int(el.atomic_number) if el is not None and el.atomic_number is not None else 0


def wl_colours(z: list[int], nbrs: list[list[int]]) -> list[int]:
    """Weisfeiler–Lehman refinement of atom colours (element, then neighbourhoods) to a fixed point.

    Two atoms with different colours head non-isomorphic branches; equal colours mark (almost
    always) symmetry-equivalent atoms such as the three hydrogens of a methyl group.
    """
    colours = list(z)
    for _ in range(len(z)):
        keys = [(colours[i], tuple(sorted(colours[j] for j in nbrs[i]))) for i in range(len(z))]
        table = {k: r for r, k in enumerate(sorted(set(keys)))}
        new = [table[k] for k in keys]
        if len(set(new)) == len(set(colours)):
            return new
        colours = new
    return colours


def find_atom(topology: Any, name: str, residue: str | None, resid: int | None, where: str) -> int:
    """The index of the one atom called ``name`` (in ``residue`` and residue number ``resid`` when given);
    a :class:`ConfigError` naming ``where`` and the fix when none or several match."""
    hits = [a.index for a in topology.atoms
            if a.name == name and (residue is None or a.residue.name == residue)
            and (resid is None or a.residue.resSeq == resid)]
    if len(hits) != 1:
        what = f"atom {name!r}" + (f" in residue {residue!r}" if residue else "")
        what += f" {resid}" if resid is not None else ""
        fix = "add resid = <residue number> to the entry" if hits else "check the atom and residue names"
        raise ConfigError(f"{where}: {what} matches {len(hits)} atoms of the topology; {fix}")
    return hits[0]
