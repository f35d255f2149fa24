"""Build capped alanine tripeptide (ACE-ALA-ALA-NME) in vacuum with amber99sb-ildn, deterministically.

Writes ``molsample/data/systems/ala3.pdb`` (the minimized all-L peptide, 32 atoms) and
``molsample/data/potentials/ala3_vacuum_amber99sbildn.xml`` (the serialized ``openmm.System``).
The recipe is the one of ``build_aldp.py``, whose helpers it imports: heavy atoms from standard
peptide internal coordinates (β/C7eq-like backbone, φ = −80°, ψ = +70° for both residues, trans
amides), hydrogens added by OpenMM for the amber force field (seeded), minimization on the Reference platform.

System settings: no cutoff, NO constraints, no centre-of-mass motion remover (as for alanine dipeptide).

Run from the project root::

    python potentials/build_ala3.py            # rewrite both files
    python potentials/build_ala3.py --check    # rebuild in memory, compare with the files
"""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_aldp import ROOT, build_cli, chirality, create_system, place, reorder  # noqa: E402

PDB_PATH = ROOT / "molsample" / "data" / "systems" / "ala3.pdb"
XML_PATH = ROOT / "molsample" / "data" / "potentials" / "ala3_vacuum_amber99sbildn.xml"

#: Residues in chain order; an atom is keyed by (residue index, atom name).
RESIDUES = ("ACE", "ALA", "ALA", "NME")
_ALA = ("N", "H", "CA", "HA", "CB", "HB1", "HB2", "HB3", "C", "O")
#: Atom order: that of alanine dipeptide (ACE, ALA) with a second ALA inserted before NME, so
#: atoms 0-15 are named as in ``molsample/data/systems/aldp.pdb``.
ATOM_ORDER: list[tuple[int, str]] = (
    [(0, n) for n in ("H1", "CH3", "H2", "H3", "C", "O")]
    + [(1, n) for n in _ALA] + [(2, n) for n in _ALA]
    + [(3, n) for n in ("N", "H", "C", "H1", "H2", "H3")]
)
PHI1, PSI1 = (4, 6, 8, 14), (6, 8, 14, 16)
PHI2, PSI2 = (14, 16, 18, 24), (16, 18, 24, 26)
#: (N, CA, C, CB) of each alanine: signed volume > 0 for L.
CHIRAL = ((6, 8, 14, 10), (16, 18, 24, 20))
#: Residue index -> heavy atoms in topology order.
_HEAVY = {0: ("CH3", "C", "O"), 1: ("N", "CA", "CB", "C", "O"), 2: ("N", "CA", "CB", "C", "O"), 3: ("N", "C")}


def heavy_atoms(phi: float = -80.0, psi: float = 70.0) -> dict[tuple[int, str], np.ndarray]:
    """Heavy-atom positions (Å) of ACE-ALA-ALA-NME from standard bond lengths and angles; both
    residues at (φ, ψ) in degrees, amides trans (ω = 180°), L at both CA."""
    p: dict[tuple[int, str], np.ndarray] = {}
    p[0, "C"] = np.array([0.0, 0.0, 0.0])
    p[1, "N"] = np.array([1.33, 0.0, 0.0])
    helper = np.array([0.0, 1.0, 0.0])  # fixes the orientation of the first peptide plane
    p[1, "CA"] = place(helper, p[0, "C"], p[1, "N"], 1.46, 122.0, 180.0)
    p[0, "CH3"] = place(p[1, "CA"], p[1, "N"], p[0, "C"], 1.52, 116.0, 180.0)
    p[0, "O"] = place(p[1, "CA"], p[1, "N"], p[0, "C"], 1.23, 123.0, 0.0)
    for r in (1, 2):
        nxt = r + 1
        p[r, "C"] = place(p[r - 1, "C"], p[r, "N"], p[r, "CA"], 1.52, 111.0, phi)
        p[nxt, "N"] = place(p[r, "N"], p[r, "CA"], p[r, "C"], 1.33, 116.0, psi)
        ca_next = "CA" if nxt < 3 else "C"  # NME's methyl carbon is named C
        p[nxt, ca_next] = place(p[r, "CA"], p[r, "C"], p[nxt, "N"], 1.46, 122.0, 180.0)
        p[r, "O"] = place(p[nxt, ca_next], p[nxt, "N"], p[r, "C"], 1.23, 123.0, 0.0)
        # L-alanine: improper dihedral N-C-CA-CB ≈ +124° (as in build_aldp.py)
        p[r, "CB"] = place(p[r, "N"], p[r, "C"], p[r, "CA"], 1.53, 110.5, 124.0)
    return p


def heavy_topology() -> tuple[app.Topology, object]:
    """The heavy-atom topology (bonds of the capped chain) and positions (nm Quantity)."""
    top = app.Topology()
    chain = top.addChain()
    pos = heavy_atoms()
    atoms: dict[tuple[int, str], app.Atom] = {}
    for r, resname in enumerate(RESIDUES):
        res = top.addResidue(resname, chain)
        for name in _HEAVY[r]:
            atoms[r, name] = top.addAtom(name, app.element.Element.getBySymbol(name[0]), res)
    bonds = [((0, "CH3"), (0, "C")), ((0, "C"), (0, "O")), ((0, "C"), (1, "N"))]
    for r in (1, 2):
        bonds += [((r, "N"), (r, "CA")), ((r, "CA"), (r, "CB")), ((r, "CA"), (r, "C")), ((r, "C"), (r, "O")),
                  ((r, "C"), (r + 1, "N"))]
    bonds.append(((3, "N"), (3, "C")))
    for a, b in bonds:
        top.addBond(atoms[a], atoms[b])
    positions = [openmm.Vec3(*(pos[a.residue.index, a.name] / 10.0)) for a in top.atoms()]
    return top, positions * unit.nanometer


def build() -> tuple[str, str, dict]:
    """Return (pdb text, system XML text, summary)."""
    top, pos = heavy_topology()
    modeller = app.Modeller(top, pos)
    saved = random.getstate()
    random.seed(20231)  # addHydrogens starts hydrogens from random offsets: seeded for a reproducible build
    try:
        reference = openmm.Platform.getPlatformByName("Reference")
        modeller.addHydrogens(app.ForceField("amber99sbildn.xml"), pH=7.0, platform=reference)
    finally:
        random.setstate(saved)
    top, xyz = reorder(modeller.topology, modeller.positions, ATOM_ORDER, key=lambda a: (a.residue.index, a.name))
    system = create_system(top)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(xyz)
    e0 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-4, 0)
    xyz = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    xyz = xyz - xyz.mean(axis=0)
    buf = io.StringIO()
    app.PDBFile.writeFile(top, xyz * 10.0 * unit.angstrom, buf, keepIds=False)
    lines = [ln for ln in buf.getvalue().splitlines(keepends=True) if not ln.startswith("REMARK")]
    pdb_text = "REMARK   1 ALANINE TRIPEPTIDE (ACE-ALA-ALA-NME), AMBER99SB-ILDN VACUUM MINIMUM\n" \
               "REMARK   1 REGENERATE WITH: python potentials/build_ala3.py\n" + "".join(lines)
    stored = app.PDBFile(io.StringIO(pdb_text))  # the summary is of the stored positions (0.001 Å)
    sxyz = np.asarray(stored.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    context.setPositions(sxyz)
    e1 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    names = [(a.residue.index, a.name) for a in stored.topology.atoms()]
    if names != ATOM_ORDER:
        raise RuntimeError(f"atom order changed on PDB round trip: {names}")
    import mdtraj

    traj = mdtraj.Trajectory(sxyz[None], mdtraj.Topology.from_openmm(stored.topology))
    dihedrals = np.degrees(mdtraj.compute_dihedrals(traj, [PHI1, PSI1, PHI2, PSI2])[0])
    chis = [chirality(sxyz, *c) for c in CHIRAL]
    if min(chis) <= 0:
        raise RuntimeError(f"built a D residue (signed volumes {chis}); check the CB placement")
    summary = {"energy_start": e0, "energy_min": e1, "chirality": chis,
               **dict(zip(("phi1", "psi1", "phi2", "psi2"), map(float, dihedrals)))}
    return pdb_text, openmm.XmlSerializer.serialize(system), summary


def main(argv: list[str] | None = None) -> int:
    return build_cli(argv, __doc__.splitlines()[0], build, lambda s: (
        f"E(start) = {s['energy_start']:.3f} kJ/mol, E(min) = {s['energy_min']:.3f} kJ/mol, "
        f"phi1 = {s['phi1']:.1f}, psi1 = {s['psi1']:.1f}, phi2 = {s['phi2']:.1f}, psi2 = {s['psi2']:.1f} deg, "
        f"chirality volumes = {s['chirality'][0]:.5f}, {s['chirality'][1]:.5f} nm^3 (L, L)"), PDB_PATH, XML_PATH)


if __name__ == "__main__":
    sys.exit(main())
