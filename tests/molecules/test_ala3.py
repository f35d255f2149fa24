"""Capped alanine tripeptide (ACE-ALA-ALA-NME): the card, its energy, chirality, the Z-matrix and the
internal-coordinate round trip on a second molecule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch

from molsample.flows.internal import InternalCoordinates, dihedral
from molsample.molecules.chirality import chiral_centers_for_system, chirality
from molsample.molecules.zmatrix import zmatrix_for_system
from molsample.systems.cards import load_system
from molsample.testing import assert_forces_match_fd, random_orthogonal

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ala3():
    """(system, PDB positions (1, 32, 3) float64 nm, bond set, hydrogen flags, Z-matrix)."""
    system = load_system("ala3")
    pdb = mdtraj.load_pdb(str(system.card_path.parent / system.card["energy"]["structure"]))
    x0 = torch.as_tensor(pdb.xyz[:1], dtype=F64)
    bonds = {frozenset((b[0].index, b[1].index)) for b in system.topology.bonds}
    hydrogen = [a.element.symbol == "H" for a in system.topology.atoms]
    return system, x0, bonds, hydrogen, zmatrix_for_system(system)


def test_card_loads(ala3):
    system, _, _, _, _ = ala3
    assert system.n_particles == 32 and system.dim == 3
    assert abs(system.kT - 2.4943) < 1e-3  # kJ/mol at 300 K
    assert system.card["remove_com"] is True
    assert set(system.card["dihedrals"]) == {"phi1", "psi1", "phi2", "psi2"}
    names = [(a.residue.name, a.name) for a in system.topology.atoms]
    for quad in system.card["dihedrals"].values():  # phi = C-N-CA-C, psi = N-CA-C-N
        assert [names[i][1] for i in quad] in (["C", "N", "CA", "C"], ["N", "CA", "C", "N"])


def test_energy_finite_and_forces_match_finite_differences(ala3):
    system, x0, _, _, _ = ala3
    e = system.energy.energy(x0)
    assert torch.isfinite(e).all() and abs(float(e[0]) + 66.065) < 0.01  # kJ/mol, build_ala3.py's minimum
    g = torch.Generator().manual_seed(1)
    x = x0 + 0.003 * torch.randn(3, 32, 3, generator=g, dtype=F64)
    assert_forces_match_fd(system.energy, x, eps=1e-5, rtol=1e-5, atol=1e-4, n_coords=10)


def test_structure_is_l_at_both_ca(ala3):
    system, x0, _, _, _ = ala3
    centers = chiral_centers_for_system(system)
    assert [c.handedness for c in centers] == ["L", "L"]
    assert sorted(c.center for c in centers) == [8, 18]
    assert chirality(x0, centers).tolist() == [[1, 1]]
    assert chirality(-x0, centers).tolist() == [[-1, -1]]  # the mirror image is D at both


def test_backbone_is_c7eq_like(ala3):
    system, x0, _, _, _ = ala3
    for res in ("1", "2"):
        phi = np.degrees(float(dihedral(x0, *system.card["dihedrals"]["phi" + res])[0]))
        psi = np.degrees(float(dihedral(x0, *system.card["dihedrals"]["psi" + res])[0]))
        assert -100 < phi < -60 and 30 < psi < 90, (res, phi, psi)


def test_zmatrix_rows(ala3):
    _, _, bonds, hydrogen, zm = ala3
    assert zm.n_atoms == 32 and len(zm.rows) == 32
    assert sorted(r[0] for r in zm.rows) == list(range(32))
    for k, (atom, b, a, t) in enumerate(zm.rows):
        if k >= 1:
            assert frozenset((atom, b)) in bonds, f"row {k}: bond_ref not bonded"
        if k >= 2:
            assert frozenset((b, a)) in bonds, f"row {k}: angle_ref not bonded to bond_ref"
        if k >= 3:
            assert frozenset((a, t)) in bonds or frozenset((b, t)) in bonds, f"row {k}"
    # the first three rows: a bonded heavy-atom chain
    (a0, *_), (a1, b1, *_), (a2, b2, c2, _) = zm.rows[:3]
    assert not any(hydrogen[i] for i in (a0, a1, a2))
    assert b1 == a0 and {b2, c2} == {a0, a1}
    assert frozenset((a0, a1)) in bonds and frozenset((a2, b2)) in bonds


def test_zmatrix_hydrogens_follow_their_heavy_atom(ala3):
    _, _, _, hydrogen, zm = ala3
    rank = {r[0]: k for k, r in enumerate(zm.rows)}
    heads = {r[0] for r in zm.rows[:3]}
    for k, (atom, parent, *_) in enumerate(zm.rows):
        if not hydrogen[atom]:
            continue
        assert not hydrogen[parent]
        start = 3 if parent in heads else rank[parent] + 1
        assert all(hydrogen[zm.rows[j][0]] for j in range(start, k)), f"row {k}: heavy atom between H and parent"


def test_zmatrix_methyl_hydrogens_use_sibling_torsions(ala3):
    _, _, _, _, zm = ala3
    methyls = {1: (0, 2, 3), 10: (11, 12, 13), 20: (21, 22, 23), 28: (29, 30, 31)}
    by_atom = {r[0]: r for r in zm.rows}
    for carbon, hs in methyls.items():
        rows = sorted((by_atom[h] for h in hs), key=zm.rows.index)
        for atom, parent, _, torsion_ref in rows[1:]:
            assert parent == carbon and torsion_ref == rows[0][0], f"H {atom} on C {carbon}"
        assert rows[0][3] not in hs  # the first H carries the rotor


def _kabsch_max_dev(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest per-atom deviation after the best proper rotation + translation of b onto a."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    u, _, vt = torch.linalg.svd(b.transpose(1, 2) @ a)
    d = torch.sign(torch.linalg.det(u @ vt))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return float((b @ u @ fix @ vt - a).norm(dim=-1).max())


def test_internal_round_trip_float64(ala3):
    _, x0, _, _, zm = ala3
    g = torch.Generator().manual_seed(3)
    x = x0 + 0.01 * torch.randn(40, 32, 3, generator=g, dtype=F64)
    q = random_orthogonal(3, g, reflection=False).to(F64)
    x = x @ q.T + torch.tensor([0.3, -1.0, 2.0], dtype=F64)  # any rigid placement
    t = InternalCoordinates.fit(zm, x)
    z, logdet_inv = t.inverse(x)
    assert z.shape == (40, 3 * 32 - 6, 1)
    y, logdet = t.forward(z)
    assert _kabsch_max_dev(x, y) < 1e-10
    def dists(v: torch.Tensor) -> torch.Tensor:  # exact pairwise distances (cdist's matrix form loses digits)
        return (v[:, :, None] - v[:, None]).norm(dim=-1)
    assert torch.allclose(dists(x), dists(y), atol=1e-10, rtol=0)
    assert torch.allclose(logdet_inv, -logdet, atol=1e-10, rtol=0)
    assert bool(t.in_domain(z).all())


def test_build_check_agrees_with_committed_files():
    out = subprocess.run([sys.executable, str(ROOT / "potentials" / "build_ala3.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "files up to date" in out.stdout


@pytest.mark.parametrize("shift, same", [(0.003, True), (0.02, False)])
def test_the_build_check_tolerates_the_minimisers_last_digit_and_nothing_more(tmp_path, shift, same):
    sys.path.insert(0, str(ROOT / "potentials"))
    from build_aldp import same_build

    pdb = (ROOT / "molsample" / "data" / "systems" / "ala3.pdb").read_text()
    lines = pdb.splitlines(keepends=True)
    i = next(k for k, ln in enumerate(lines) if ln.startswith("ATOM"))
    z = float(lines[i][46:54]) + shift
    moved = "".join(lines[:i] + [lines[i][:46] + f"{z:8.3f}" + lines[i][54:]] + lines[i + 1:])
    (tmp_path / "a.pdb").write_text(pdb)
    (tmp_path / "a.xml").write_text("<System/>")
    assert same_build(tmp_path / "a.pdb", tmp_path / "a.xml", moved, "<System/>") is same
    assert not same_build(tmp_path / "a.pdb", tmp_path / "a.xml", pdb, "<System version='2'/>")
