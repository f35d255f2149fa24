"""MDTraj HDF5 topology JSON → ``mdtraj.Topology`` (the reader side of the run file's ``/topology``)."""

from __future__ import annotations

import json
from typing import Any


def topology_from_json(text: str) -> Any:
    """Decode MDTraj HDF5 topology JSON into an ``mdtraj.Topology`` (as mdtraj's reader does)."""
    import mdtraj
    from mdtraj.core import element as elem

    d = json.loads(text)
    top = mdtraj.Topology()
    for chain_d in sorted(d["chains"], key=lambda c: c["index"]):
        chain = top.add_chain(chain_id=chain_d.get("chain_id"))
        for res_d in sorted(chain_d["residues"], key=lambda r: r["index"]):
            res = top.add_residue(res_d["name"], chain, resSeq=res_d.get("resSeq"),
                                  segment_id=res_d.get("segmentID", ""))
            for atom_d in sorted(res_d["atoms"], key=lambda a: a["index"]):
                try:
                    el = elem.get_by_symbol(atom_d["element"])
                except KeyError:
                    el = elem.virtual
                top.add_atom(atom_d["name"], el, res, formal_charge=atom_d.get("formal_charge"))
    atoms = list(top.atoms)
    meta = d.get("bond_metadata")
    for k, (i, j) in enumerate(d["bonds"]):
        if meta:
            from mdtraj.core.topology import bond_name_to_type  # type: ignore[attr-defined]

            top.add_bond(atoms[i], atoms[j], order=meta[k]["order"], type=bond_name_to_type(meta[k]["type"]))
        else:
            top.add_bond(atoms[i], atoms[j])
    return top
