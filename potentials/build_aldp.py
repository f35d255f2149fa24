"""Build alanine dipeptide (ACE-ALA-NME) in vacuum with amber99sb-ildn, deterministically.

Writes ``molsample/data/systems/aldp.pdb`` (the minimized L-enantiomer, 22 atoms) and
``molsample/data/potentials/aldp_vacuum_amber99sbildn.xml`` (the serialized ``openmm.System``).
Nothing is downloaded: the heavy atoms are placed from standard peptide internal
coordinates (C7eq backbone, φ = −80°, ψ = +70°), hydrogens are added by OpenMM for the
amber force field, and the structure is minimized on the deterministic Reference platform.

System settings: no cutoff, NO constraints (every atom moves freely, as Boltzmann-generator
sampling needs: a constrained bond has no energy term, so its length would be undefined
by the density), no centre-of-mass motion remover (irrelevant for energies).

Run from the project root::

    python potentials/build_aldp.py            # rewrite both files
    python potentials/build_aldp.py --check    # rebuild in memory, compare with the files
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import openmm
from openmm import app, unit

ROOT = Path(__file__).resolve().parent.parent
PDB_PATH = ROOT / "molsample" / "data" / "systems" / "aldp.pdb"
XML_PATH = ROOT / "molsample" / "data" / "potentials" / "aldp_vacuum_amber99sbildn.xml"

#: Atom order of the alanine dipeptide files common in the literature (openmmtools test
#: systems, the Boltzmann-generator data sets): φ = atoms (4, 6, 8, 14), ψ = (6, 8, 14, 16).
ATOM_ORDER = [
    ("ACE", "H1"), ("ACE", "CH3"), ("ACE", "H2"), ("ACE", "H3"), ("ACE", "C"), ("ACE", "O"),
    ("ALA", "N"), ("ALA", "H"), ("ALA", "CA"), ("ALA", "HA"), ("ALA", "CB"),
    ("ALA", "HB1"), ("ALA", "HB2"), ("ALA", "HB3"), ("ALA", "C"), ("ALA", "O"),
    ("NME", "N"), ("NME", "H"), ("NME", "C"), ("NME", "H1"), ("NME", "H2"), ("NME", "H3"),
]
PHI = (4, 6, 8, 14)
PSI = (6, 8, 14, 16)


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float, dihedral_deg: float) -> np.ndarray:
    """Position of atom d with |cd| = bond, angle b-c-d and dihedral a-b-c-d (NeRF)."""
    angle, dihedral = np.radians(angle_deg), np.radians(dihedral_deg)
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = np.array([-bond * np.cos(angle), bond * np.sin(angle) * np.cos(dihedral), bond * np.sin(angle) * np.sin(dihedral)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def heavy_atoms(phi: float = -80.0, psi: float = 70.0) -> dict[tuple[str, str], np.ndarray]:
    """Heavy-atom positions (Å) of ACE-ALA-NME from standard bond lengths and angles."""
    p: dict[tuple[str, str], np.ndarray] = {}
    p["ACE", "C"] = np.array([0.0, 0.0, 0.0])
    p["ALA", "N"] = np.array([1.33, 0.0, 0.0])
    helper = np.array([0.0, 1.0, 0.0])  # fixes the orientation of the peptide plane
    p["ALA", "CA"] = place(helper, p["ACE", "C"], p["ALA", "N"], 1.46, 122.0, 180.0)
    p["ACE", "CH3"] = place(p["ALA", "CA"], p["ALA", "N"], p["ACE", "C"], 1.52, 116.0, 180.0)  # ω = 180°
    p["ACE", "O"] = place(p["ALA", "CA"], p["ALA", "N"], p["ACE", "C"], 1.23, 123.0, 0.0)
    p["ALA", "C"] = place(p["ACE", "C"], p["ALA", "N"], p["ALA", "CA"], 1.52, 111.0, phi)
    p["NME", "N"] = place(p["ALA", "N"], p["ALA", "CA"], p["ALA", "C"], 1.33, 116.0, psi)
    p["NME", "C"] = place(p["ALA", "CA"], p["ALA", "C"], p["NME", "N"], 1.46, 122.0, 180.0)  # ω = 180°
    p["ALA", "O"] = place(p["NME", "C"], p["NME", "N"], p["ALA", "C"], 1.23, 123.0, 0.0)
    # L-alanine: improper dihedral N-C-CA-CB ≈ +124° (as in natural proteins).
    p["ALA", "CB"] = place(p["ALA", "N"], p["ALA", "C"], p["ALA", "CA"], 1.53, 110.5, 124.0)
    return p


def chirality(xyz: np.ndarray, n: int, ca: int, c: int, cb: int) -> float:
    """Signed volume (N−CA)·((C−CA)×(CB−CA)); positive for L amino acids."""
    return float(np.dot(xyz[n] - xyz[ca], np.cross(xyz[c] - xyz[ca], xyz[cb] - xyz[ca])))


def heavy_topology() -> tuple[app.Topology, list[openmm.Vec3]]:
    top = app.Topology()
    chain = top.addChain()
    pos = heavy_atoms()
    atoms = {}
    for resname, names in (("ACE", ["CH3", "C", "O"]), ("ALA", ["N", "CA", "CB", "C", "O"]), ("NME", ["N", "C"])):
        res = top.addResidue(resname, chain)
        for name in names:
            atoms[resname, name] = top.addAtom(name, app.element.Element.getBySymbol(name[0]), res)
    for a, b in [(("ACE", "CH3"), ("ACE", "C")), (("ACE", "C"), ("ACE", "O")), (("ACE", "C"), ("ALA", "N")),
                 (("ALA", "N"), ("ALA", "CA")), (("ALA", "CA"), ("ALA", "CB")), (("ALA", "CA"), ("ALA", "C")),
                 (("ALA", "C"), ("ALA", "O")), (("ALA", "C"), ("NME", "N")), (("NME", "N"), ("NME", "C"))]:
        top.addBond(atoms[a], atoms[b])
    positions = [openmm.Vec3(*(pos[a.residue.name, a.name] / 10.0)) for a in top.atoms()]
    return top, positions * unit.nanometer


def reorder(top: app.Topology, positions, atom_order: list | None = None,
            key: Callable[[Any], tuple] = lambda a: (a.residue.name, a.name)) -> tuple[app.Topology, np.ndarray]:
    """A copy of ``top`` with atoms in ``atom_order`` (default :data:`ATOM_ORDER`; each entry is the
    ``key`` of an atom, (residue name, atom name) by default) and positions (nm) to match. Residues
    keep their names and come in the order of their first atom in ``atom_order``."""
    atom_order = ATOM_ORDER if atom_order is None else atom_order
    xyz = np.asarray(positions.value_in_unit(unit.nanometer))
    index = {key(a): a for a in top.atoms()}
    missing = [k for k in atom_order if k not in index]
    if missing or len(index) != len(atom_order):
        raise RuntimeError(f"unexpected atoms after addHydrogens: missing {missing}, have {sorted(index)}")
    new = app.Topology()
    chain = new.addChain()
    residues: dict[int, app.Residue] = {}
    new_atoms = {}
    for k in atom_order:
        old = index[k]
        if old.residue.index not in residues:
            residues[old.residue.index] = new.addResidue(old.residue.name, chain)
        new_atoms[old.index] = new.addAtom(k[1], old.element, residues[old.residue.index])
    for bond in top.bonds():
        new.addBond(new_atoms[bond[0].index], new_atoms[bond[1].index])
    order = [index[k].index for k in atom_order]
    return new, xyz[order]


def create_system(topology: app.Topology) -> openmm.System:
    ff = app.ForceField("amber99sbildn.xml")
    return ff.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None,
                           rigidWater=False, removeCMMotion=False)


def build() -> tuple[str, str, dict]:
    """Return (pdb text, system XML text, summary)."""
    top, pos = heavy_topology()
    modeller = app.Modeller(top, pos)
    # addHydrogens starts hydrogens from random offsets (Python's ``random``) and relaxes them:
    # seed it and use the Reference platform so that the build is reproducible.
    saved = random.getstate()
    random.seed(20231)
    try:
        reference = openmm.Platform.getPlatformByName("Reference")
        modeller.addHydrogens(app.ForceField("amber99sbildn.xml"), pH=7.0, platform=reference)
    finally:
        random.setstate(saved)
    top, xyz = reorder(modeller.topology, modeller.positions)
    system = create_system(top)
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(xyz)
    e0 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-4, 0)
    state = context.getState(getEnergy=True, getPositions=True)
    xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    xyz = xyz - xyz.mean(axis=0)
    buf = io.StringIO()
    app.PDBFile.writeFile(top, xyz * 10.0 * unit.angstrom, buf, keepIds=False)
    # Replace OpenMM's dated REMARK so that a rebuild gives byte-identical files.
    lines = [ln for ln in buf.getvalue().splitlines(keepends=True) if not ln.startswith("REMARK")]
    pdb_text = "REMARK   1 ALANINE DIPEPTIDE (ACE-ALA-NME), AMBER99SB-ILDN VACUUM MINIMUM\n" \
               "REMARK   1 REGENERATE WITH: python potentials/build_aldp.py\n" + "".join(lines)
    # Summary on the positions as they are stored (PDB precision 0.001 Å).
    stored = app.PDBFile(io.StringIO(pdb_text))
    sxyz = np.asarray(stored.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    context.setPositions(sxyz)
    e1 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    import mdtraj

    traj = mdtraj.Trajectory(sxyz[None], mdtraj.Topology.from_openmm(stored.topology))
    phi, psi = np.degrees(mdtraj.compute_dihedrals(traj, [PHI, PSI])[0])
    names = [(a.residue.name, a.name) for a in stored.topology.atoms()]
    if names != ATOM_ORDER:
        raise RuntimeError(f"atom order changed on PDB round trip: {names}")
    chi = chirality(sxyz, 6, 8, 14, 10)
    summary = {"energy_start": e0, "energy_min": e1, "phi": float(phi), "psi": float(psi), "chirality": chi}
    if chi <= 0:
        raise RuntimeError(f"built the D enantiomer (signed volume {chi}); check the CB placement")
    return pdb_text, openmm.XmlSerializer.serialize(system), summary


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


#: how far a rebuilt atom may lie from the committed one: the minimiser's last digit (0.001 Å in the PDB)
#: differs between CPUs
CHECK_ATOL_ANGSTROM = 0.005


def same_build(pdb_path: Path, xml_path: Path, pdb_text: str, xml_text: str) -> bool:
    """Whether the committed files hold this build: the same force-field XML and PDB records, the atom
    positions equal to within :data:`CHECK_ATOL_ANGSTROM`."""
    if not (pdb_path.exists() and xml_path.exists()) or xml_path.read_text() != xml_text:
        return False
    old, new = pdb_path.read_text().splitlines(), pdb_text.splitlines()
    if len(old) != len(new):
        return False
    for a, b in zip(old, new):
        if a.startswith(("ATOM", "HETATM")) and b.startswith(("ATOM", "HETATM")):
            if a[:30] != b[:30] or a[54:] != b[54:]:
                return False
            xyz_a = [float(a[i:i + 8]) for i in (30, 38, 46)]
            xyz_b = [float(b[i:i + 8]) for i in (30, 38, 46)]
            if max(abs(u - v) for u, v in zip(xyz_a, xyz_b)) > CHECK_ATOL_ANGSTROM:
                return False
        elif a != b:
            return False
    return True


def build_cli(argv: list[str] | None, description: str, build, summary, pdb_path: Path, xml_path: Path) -> int:
    """The command line of a build script: ``build()`` → (pdb text, xml text, summary dict), print
    ``summary(dict)``, then write both files atomically or, with ``--check``, compare (exit 1 if they differ)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    pdb_text, xml_text, s = build()
    print(summary(s))
    if args.check:
        same = same_build(pdb_path, xml_path, pdb_text, xml_text)
        print("files up to date" if same else "files differ from a fresh build")
        return 0 if same else 1
    write_atomic(pdb_path, pdb_text)
    write_atomic(xml_path, xml_text)
    print(f"wrote {pdb_path.relative_to(ROOT)} and {xml_path.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return build_cli(argv, __doc__.splitlines()[0], build, lambda s: (
        f"E(start) = {s['energy_start']:.3f} kJ/mol, E(min) = {s['energy_min']:.3f} kJ/mol, "
        f"phi = {s['phi']:.1f} deg, psi = {s['psi']:.1f} deg, chirality volume = {s['chirality']:.5f} nm^3 (L)"),
        PDB_PATH, XML_PATH)


if __name__ == "__main__":
    sys.exit(main())
