"""Z-matrices: the automatic choice on alanine dipeptide, validation errors, card overrides."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from molsample.errors import ConfigError
from molsample.molecules.zmatrix import ZMatrix, build_zmatrix, zmatrix_for_system
from molsample.systems.cards import load_system


@pytest.fixture(scope="module")
def aldp():
    system = load_system("aldp")
    bonds = {frozenset((b[0].index, b[1].index)) for b in system.topology.bonds}
    hydrogen = [a.element.symbol == "H" for a in system.topology.atoms]
    return system, zmatrix_for_system(system), bonds, hydrogen


def test_aldp_places_every_atom_once_with_bonded_references(aldp):
    system, zm, bonds, _ = aldp
    assert zm.n_atoms == 22 and len(zm.rows) == 22
    assert sorted(r[0] for r in zm.rows) == list(range(22))
    for k, (atom, b, a, t) in enumerate(zm.rows):
        if k >= 1:
            assert frozenset((atom, b)) in bonds, f"row {k}: bond_ref not bonded"
        if k >= 2:
            assert frozenset((b, a)) in bonds, f"row {k}: angle_ref not bonded to bond_ref"
        if k >= 3:  # torsion_ref bonded to the angle_ref (proper) or to the bond_ref (a sibling)
            assert frozenset((a, t)) in bonds or frozenset((b, t)) in bonds, f"row {k}"
    assert zm.validate(22) is zm


def test_aldp_first_rows_are_a_bonded_heavy_chain(aldp):
    _, zm, bonds, hydrogen = aldp
    (a0, *_), (a1, b1, *_), (a2, b2, c2, _) = zm.rows[:3]
    assert not any(hydrogen[i] for i in (a0, a1, a2))
    assert b1 == a0 and {b2, c2} == {a0, a1}
    assert frozenset((a0, a1)) in bonds and frozenset((a2, b2)) in bonds
    assert (a0, a1, a2) == (1, 4, 6)  # ACE CH3, ACE C, ALA N: an end of the longest heavy-atom path


def test_aldp_hydrogens_follow_their_heavy_atom(aldp):
    _, zm, _, hydrogen = aldp
    rank = {r[0]: k for k, r in enumerate(zm.rows)}
    heads = {r[0] for r in zm.rows[:3]}  # the hydrogens of the first chain of three come after it
    for k, (atom, parent, *_) in enumerate(zm.rows):
        if not hydrogen[atom]:
            continue
        assert not hydrogen[parent]
        start = 3 if parent in heads else rank[parent] + 1
        between = [zm.rows[j] for j in range(start, k)]
        assert all(hydrogen[r[0]] for r in between), f"row {k}: a heavy atom between H {atom} and its parent"
        assert all(r[1] == parent or (parent in heads and r[1] in heads) for r in between)


def test_aldp_methyl_hydrogens_use_sibling_torsions(aldp):
    _, zm, _, hydrogen = aldp
    methyls = {1: (0, 2, 3), 10: (11, 12, 13), 18: (19, 20, 21)}
    by_atom = {r[0]: r for r in zm.rows}
    for carbon, hs in methyls.items():
        rows = sorted((by_atom[h] for h in hs), key=zm.rows.index)
        first = rows[0][0]
        for atom, parent, _, torsion_ref in rows[1:]:
            assert parent == carbon and torsion_ref == first, f"H {atom} on C {carbon}"
        assert rows[0][3] not in hs  # the first H carries the rotor


def test_validate_errors_name_the_row():
    zm = ZMatrix(((0, -1, -1, -1), (1, 0, -1, -1), (2, 1, 0, -1), (3, 2, 1, 0)))
    with pytest.raises(ConfigError, match="atom.*3.*missing"):
        ZMatrix(zm.rows[:3]).validate(4)
    with pytest.raises(ConfigError, match="row 3 places atom 1 again"):
        ZMatrix(zm.rows[:3] + ((1, 2, 0, -1),)).validate(4)
    with pytest.raises(ConfigError, match="row 2 .*torsion_ref.*-1"):
        ZMatrix(zm.rows[:2] + ((2, 1, 0, 3), zm.rows[3])).validate(4)
    with pytest.raises(ConfigError, match="row 2 \\(atom 3\\): bond_ref 2 is not .*earlier row"):
        ZMatrix(zm.rows[:2] + ((3, 2, 1, -1), (2, 1, 0, 3))).validate(4)
    with pytest.raises(ConfigError, match="distinct"):
        ZMatrix(zm.rows[:3] + ((3, 2, 1, 2),)).validate(4)
    with pytest.raises(ConfigError, match="outside"):
        ZMatrix(zm.rows[:3] + ((7, 2, 1, 0),)).validate(4)


def test_build_errors():
    with pytest.raises(ConfigError, match="need a bond graph; system 'toy' has none.*cartesian"):
        build_zmatrix(5, [], name="toy")
    with pytest.raises(ConfigError, match="2 components of 3, 2 atoms"):
        build_zmatrix(5, [(0, 1), (1, 2), (3, 4)])
    with pytest.raises(ConfigError, match="at least 3 atoms"):
        build_zmatrix(2, [(0, 1)])
    with pytest.raises(ConfigError, match="bond \\(0, 9\\)"):
        build_zmatrix(4, [(0, 1), (1, 2), (0, 9)])


def test_rings_and_small_molecules():
    # benzene: a 6-ring of carbons with one H each; the ring-closing bond is left to geometry
    ring = [(i, (i + 1) % 6) for i in range(6)] + [(i, i + 6) for i in range(6)]
    zm = build_zmatrix(12, ring, ["C"] * 6 + ["H"] * 6)
    assert sorted(r[0] for r in zm.rows) == list(range(12))
    assert all(r[0] < 6 for r in zm.rows[:3])
    # water: fewer than three heavy atoms falls back to the whole graph
    water = build_zmatrix(3, [(0, 1), (0, 2)], ["O", "H", "H"])
    assert water.rows == ((0, -1, -1, -1), (1, 0, -1, -1), (2, 0, 1, -1))
    # a chosen root heads the matrix
    assert build_zmatrix(4, [(0, 1), (1, 2), (2, 3)], root=2).rows[0][0] == 2


def test_override_from_card_round_trips(aldp):
    system, zm, _, _ = aldp
    lists = zm.as_lists()
    assert ZMatrix.from_lists(lists) == zm
    chain = [[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1]] + [[i, i - 1, i - 2, i - 3] for i in range(3, 22)]
    fake = SimpleNamespace(name="aldp", n_particles=22, topology=system.topology, card={"internal": {"zmatrix": chain}})
    assert zmatrix_for_system(fake).as_lists() == chain
    fake.card = {"internal": {"zmatrix": chain[:-1]}}
    with pytest.raises(ConfigError, match="missing"):
        zmatrix_for_system(fake)
    with pytest.raises(ConfigError, match="row 1"):
        ZMatrix.from_lists([[0, -1, -1, -1], [1, 0]])
    no_top = SimpleNamespace(name="lj", n_particles=13, topology=None, card={})
    with pytest.raises(ConfigError, match="system 'lj' has none"):
        zmatrix_for_system(no_top)


def test_describe_names_atoms(aldp):
    system, zm, _, _ = aldp
    names = [a.name for a in system.topology.atoms]
    text = zm.describe(names)
    assert len(text.splitlines()) == 23
    assert "CH3(1)" in text.splitlines()[1] and "HB2(12)" in text
