"""Bond lengths, element-pair groups and the bond RMSD against closed forms on alanine dipeptide."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _run_helpers import aldp_topology

from molsample.errors import ShapeError
from molsample.molecules.bonds import bond_groups, bond_index, bond_lengths, bond_rmsd, compare_bonds
from molsample.molecules.topology import particle_topology


@pytest.fixture(scope="module")
def aldp():
    return aldp_topology()


def test_bond_index_and_groups_of_aldp(aldp):
    top, _ = aldp
    bonds = bond_index(top)
    assert bonds.shape == (21, 2)  # 22 atoms, a tree
    groups = bond_groups(top)
    # ACE-ALA-NME: 10 C–H and 2 N–H (all 12 H), 2 carbonyls, 4 C–N (ACE C–N, N–CA, C–N, N–CH3),
    # 3 C–C (ACE CH3–C, CA–CB, CA–C)
    counts = {g: len(i) for g, i in groups.items()}
    assert counts == {"C–H": 10, "C–N": 4, "C–C": 3, "C–O": 2, "H–N": 2}
    assert list(groups)[0] == "C–H"  # largest first
    np.testing.assert_array_equal(np.sort(np.concatenate(list(groups.values()))), np.arange(21))
    for name, idx in groups.items():  # every bond in a group joins those elements
        for k in idx:
            a, b = top.atom(int(bonds[k, 0])), top.atom(int(bonds[k, 1]))
            assert "–".join(sorted((a.element.symbol, b.element.symbol))) == name


def test_no_bonds():
    assert bond_index(particle_topology(13)).shape == (0, 2)
    assert bond_index(None).shape == (0, 2)
    assert bond_groups(None) == {}


def test_bond_lengths_closed_form_and_tensor_input():
    x = np.zeros((2, 3, 3))
    x[0, 1] = [0.3, 0.4, 0.0]  # |r01| = 0.5
    x[0, 2] = [0.3, 0.4, 1.2]  # |r12| = 1.2
    x[1] = 2 * x[0]
    bonds = np.array([[0, 1], [1, 2]])
    expected = np.array([[0.5, 1.2], [1.0, 2.4]])
    np.testing.assert_allclose(bond_lengths(x, bonds), expected, rtol=1e-14)
    np.testing.assert_allclose(bond_lengths(torch.as_tensor(x), bonds), expected, rtol=1e-14)
    with pytest.raises(ShapeError, match="3 atoms"):
        bond_lengths(x, np.array([[0, 3]]))
    with pytest.raises(ShapeError, match="batch, n_atoms"):
        bond_lengths(x[0], bonds)


def test_weighted_bond_rmsd_equals_repetition():
    rng = np.random.default_rng(0)
    d = rng.normal(0.15, 0.01, (5, 4))
    m = np.full(4, 0.15)
    w = np.array([1, 2, 0, 3, 1])
    assert bond_rmsd(d, m, w) == pytest.approx(bond_rmsd(np.repeat(d, w, axis=0), m), rel=1e-12)
    assert bond_rmsd(d, m) == pytest.approx(np.sqrt(((d - m) ** 2).mean()), rel=1e-12)
    d[1, 0] = np.nan  # a non-finite sample is left out, not propagated
    assert bond_rmsd(d, m) == pytest.approx(bond_rmsd(np.delete(d, 1, axis=0), m), rel=1e-12)
    assert np.isnan(bond_rmsd(d, m, np.zeros(5)))
    with pytest.raises(ShapeError, match="one weight per sample"):
        bond_rmsd(d, m, np.ones(3))


def test_compare_bonds_scales_with_the_perturbation(aldp):
    """Gaussian noise σ per coordinate on both atoms of a bond of length L ≫ σ changes the length
    by ≈ N(0, 2σ²): the RMSD is ≈ σ√2, so a flow twice as noisy as the reference reads 2× thermal."""
    top, x0 = aldp
    rng = np.random.default_rng(1)
    bonds = bond_index(top)
    sigma = 0.002
    ref = x0[None] + sigma * rng.standard_normal((4000, 22, 3))
    flow = x0[None] + 2 * sigma * rng.standard_normal((4000, 22, 3))
    c = compare_bonds(flow, ref, bonds)
    assert c.thermal == pytest.approx(sigma * np.sqrt(2), rel=0.03)
    assert c.ratio == pytest.approx(2.0, rel=0.05) and c.reweighted is None
    # weights that keep only the reference-like half of a mixed set give the thermal value back
    mixed = np.concatenate([flow[:2000], ref[:2000]])
    w = np.r_[np.zeros(2000), np.ones(2000)]
    assert compare_bonds(mixed, ref, bonds, w).reweighted == pytest.approx(bond_rmsd(
        bond_lengths(ref[:2000], bonds), bond_lengths(ref, bonds).mean(0)), rel=1e-12)
