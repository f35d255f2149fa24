"""Topologies for systems without a structure file (Lennard-Jones pseudo-atoms)."""

from __future__ import annotations

import mdtraj


def particle_topology(n_particles: int, element: str = "Ar", residue: str = "LJ") -> mdtraj.Topology:
    """An mdtraj Topology of ``n_particles`` unbonded pseudo-atoms in one chain.

    Each particle is its own residue (name ``residue``) so that PDB writers and viewers
    treat the cluster as a set of free atoms. Argon is the default element: a noble-gas
    cluster is the physical system Lennard-Jones models.
    """
    top = mdtraj.Topology()
    chain = top.add_chain()
    el = mdtraj.element.get_by_symbol(element)
    for k in range(n_particles):
        res = top.add_residue(residue, chain, resSeq=k + 1)
        top.add_atom(f"{element.upper()}{k + 1}"[:4], el, res)
    return top
