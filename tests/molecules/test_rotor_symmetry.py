"""Rotor symmetry: methyl groups found on the bond graph, cyclic relabellings that keep the energy
(OpenMM) and the handedness of the labelling, augmented frames, and the errors."""

from __future__ import annotations

import mdtraj
import pytest
import torch

from molsample.errors import ConfigError
from molsample.molecules.rotor_symmetry import (augment_frames, check_energy_invariance, rotor_groups,
                                                rotor_permutations)
from molsample.molecules.topology import particle_topology
from molsample.systems.cards import load_system

F64 = torch.float64
METHYLS = [(0, 2, 3), (11, 12, 13), (19, 20, 21)]  # ACE CH3, ALA CB, NME CH3 hydrogens


@pytest.fixture(scope="module")
def aldp():
    """(system, 6 PDB frames + 0.003 nm noise, float64)."""
    system = load_system("aldp")
    pdb = mdtraj.load_pdb(str(system.card_path.parent / system.card["energy"]["structure"]))
    g = torch.Generator().manual_seed(3)
    x = torch.as_tensor(pdb.xyz[0], dtype=F64) + 0.003 * torch.randn(6, 22, 3, generator=g, dtype=F64)
    return system, x


def _handedness(x: torch.Tensor, parent: int, group: tuple[int, ...]) -> torch.Tensor:
    """Sign of the triple product of the group's three bond vectors, in label order: (n,)."""
    v = x[:, list(group)] - x[:, parent, None]
    return torch.sign(torch.linalg.det(v))


def test_groups_of_alanine_dipeptide_are_its_three_methyls(aldp):
    system, _ = aldp
    assert rotor_groups(system.topology) == METHYLS


def test_unbonded_cluster_has_no_groups():
    assert rotor_groups(particle_topology(13)) == []


def test_permutations_are_every_combination_of_cyclic_shifts():
    perms = rotor_permutations(22, METHYLS)
    assert perms.shape == (27, 22)
    assert torch.equal(perms[0], torch.arange(22))
    assert len({tuple(p.tolist()) for p in perms}) == 27  # all different
    assert torch.equal(perms.sort(1).values, torch.arange(22).expand(27, 22))  # each a permutation
    untouched = [i for i in range(22) if not any(i in g for g in METHYLS)]
    assert torch.equal(perms[:, untouched], torch.tensor(untouched).expand(27, -1))
    # each group only moves within itself, by a cyclic shift
    for g in METHYLS:
        rows = {tuple(p) for p in perms[:, list(g)].tolist()}
        assert rows == {(g[0], g[1], g[2]), (g[1], g[2], g[0]), (g[2], g[0], g[1])}


def test_relabelling_keeps_the_energy_and_the_handedness(aldp):
    system, x = aldp
    perms = rotor_permutations(22, METHYLS)
    check_energy_invariance(system.energy.energy, x, perms)  # OpenMM agrees: no error
    aug = augment_frames(x, perms)
    assert aug.shape == (27 * 6, 22, 3)
    assert torch.equal(aug[:6], x)
    e = system.energy.energy(aug).reshape(27, 6)
    torch.testing.assert_close(e, e[:1].expand(27, 6), rtol=1e-9, atol=1e-6)
    for parent, g in zip((1, 10, 18), METHYLS):
        hand = _handedness(aug, parent, g).reshape(27, 6)
        assert torch.equal(hand, hand[:1].expand(27, 6))  # cyclic shifts keep the labels' handedness
    swapped = x[:, [0, 1, 3, 2] + list(range(4, 22))]  # a transposition flips it: why it is not used
    assert torch.equal(_handedness(swapped, 1, METHYLS[0]), -_handedness(x, 1, METHYLS[0]))


def test_a_group_of_inequivalent_atoms_is_refused_by_the_energy(aldp):
    system, x = aldp
    perms = rotor_permutations(22, [(7, 9)])  # amide H and HA: different atoms
    with pytest.raises(ConfigError, match=r"changes the energy.*rotor_augment = false"):
        check_energy_invariance(system.energy.energy, x, perms)


@pytest.mark.parametrize("groups", [[(0, 2), (2, 3)], [(0,)], [(0, 40)], [(1, 1)]])
def test_bad_groups_are_refused(groups):
    with pytest.raises(ConfigError, match="rotor group"):
        rotor_permutations(22, groups)


def test_augment_checks_shapes():
    with pytest.raises(ConfigError, match="do not fit"):
        augment_frames(torch.zeros(2, 22, 3), torch.arange(21)[None])
