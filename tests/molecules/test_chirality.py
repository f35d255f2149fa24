"""Chirality: detection at the alanine Cα, mirror images, the reflection fix and its log-weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from molsample.energies import LennardJones
from molsample.errors import ConfigError, ShapeError
from molsample.flows.distributions import CoMFreeGaussian
from molsample.molecules.chirality import (
    ChiralCenter,
    chiral_centers_for_system,
    chiral_centers_from_card,
    chiral_centers_from_topology,
    chirality,
    chirality_fractions,
    drop_wrong_handed_log_weights,
    enantiomer_log_weights,
    reflect_wrong_handed,
    signed_volumes,
    wrong_handed_mask,
)
from molsample.testing import random_orthogonal

CA, N_, C_, CB, HA = 8, 6, 14, 10, 9  # atom indices of the shipped aldp.pdb


@pytest.fixture(scope="module")
def aldp():
    from molsample.systems.cards import load_system

    try:
        return load_system("aldp")
    except ImportError as exc:  # pragma: no cover - openmm/mdtraj are dependencies
        pytest.skip(f"alanine dipeptide needs OpenMM and mdtraj: {exc}")


@pytest.fixture(scope="module")
def x_l(aldp) -> torch.Tensor:
    """The L structure of the shipped aldp.pdb, (1, 22, 3) in nm."""
    return torch.as_tensor(aldp.energy.positions, dtype=torch.float64)[None]


def _rigid_copies(x: torch.Tensor, k: int, generator: torch.Generator, reflection: bool) -> torch.Tensor:
    qs = torch.stack([random_orthogonal(3, generator, reflection=reflection) for _ in range(k)])
    shift = torch.randn(k, 1, 3, generator=generator, dtype=torch.float64)
    return torch.einsum("kij,bnj->kni", qs, x.expand(k, -1, -1)) + shift


# --------------------------------------------------------------------------- detection


def test_card_and_topology_find_the_alanine_calpha(aldp) -> None:
    from_card = chiral_centers_from_card(aldp.card, aldp.topology)
    from_top = chiral_centers_from_topology(aldp.topology, reference=aldp.energy.positions)
    assert len(from_card) == len(from_top) == 1
    for c in (from_card[0], from_top[0]):
        assert c.center == CA and c.neighbors == (N_, C_, CB)
        assert c.reference_sign == 1 and c.handedness == "L"
    assert chiral_centers_for_system(aldp) == from_card
    # HA (the lowest priority) is the dropped neighbour
    assert HA not in from_top[0].neighbors


def test_the_reference_structure_is_l_alanine(x_l: torch.Tensor) -> None:
    # L-alanine: (N − CA)·((C − CA) × (CB − CA)) > 0 — the CORN rule; the backbone is in C7eq
    n, ca, c, cb = (x_l[0, i].numpy() for i in (N_, CA, C_, CB))
    assert float(np.dot(n - ca, np.cross(c - ca, cb - ca))) > 1e-3


def test_chirality_of_l_and_its_mirror_images(aldp, x_l: torch.Tensor, generator: torch.Generator) -> None:
    centers = chiral_centers_for_system(aldp)
    assert chirality(x_l, centers).tolist() == [[1]]
    assert chirality(-x_l, centers).tolist() == [[-1]]
    plane = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    assert chirality(x_l * plane, centers).tolist() == [[-1]]
    # rigid motions keep the handedness, improper ones invert it
    assert (chirality(_rigid_copies(x_l, 8, generator, reflection=False), centers) == 1).all()
    assert (chirality(_rigid_copies(x_l, 8, generator, reflection=True), centers) == -1).all()
    # the signed volume is rotation invariant and flips sign under reflection
    v = signed_volumes(x_l, centers)
    torch.testing.assert_close(signed_volumes(-x_l, centers), -v)


def test_no_centres_in_atomic_clusters() -> None:
    from molsample.systems.cards import load_system

    lj = load_system("lj13")
    assert chiral_centers_from_topology(lj.topology) == []
    assert chiral_centers_for_system(lj) == []
    x = torch.randn(3, 13, 3)
    assert chirality(x, []).shape == (3, 0)
    x_fixed, n = reflect_wrong_handed(x, [])
    assert n == 0 and torch.equal(x_fixed, x)


def test_topology_detection_without_reference_uses_positive_volume(aldp) -> None:
    (c,) = chiral_centers_from_topology(aldp.topology)
    assert c.reference_sign == 1 and c.handedness == ""


# --------------------------------------------------------------------------- the fix


def test_reflection_fixes_handedness_and_keeps_openmm_energy(aldp, x_l: torch.Tensor,
                                                            generator: torch.Generator) -> None:
    centers = chiral_centers_for_system(aldp)
    x_d = _rigid_copies(x_l, 3, generator, reflection=True)
    x = torch.cat([_rigid_copies(x_l, 3, generator, reflection=False), x_d])[torch.tensor([0, 3, 1, 4, 5, 2])]
    x = x + 0.01 * torch.randn(x.shape, generator=generator, dtype=torch.float64)  # off the minimum
    assert wrong_handed_mask(x, centers).tolist() == [False, True, False, True, True, False]
    x_fixed, n = reflect_wrong_handed(x, centers)
    assert n == 3
    assert (chirality(x_fixed, centers) == 1).all()
    ok = ~wrong_handed_mask(x, centers)
    assert torch.equal(x_fixed[ok], x[ok])
    torch.testing.assert_close(x_fixed.mean(1), x.mean(1))  # centre of mass kept
    torch.testing.assert_close(torch.cdist(x_fixed, x_fixed), torch.cdist(x, x))
    e, e_fixed = aldp.energy.energy(x), aldp.energy.energy(x_fixed)
    torch.testing.assert_close(e_fixed, e, rtol=1e-9, atol=1e-7)
    # targeting the mirror image reflects the others
    x_back, n_back = reflect_wrong_handed(x_fixed, centers, reference_signs=[-1])
    assert n_back == 6 and (chirality(x_back, centers) == -1).all()


def test_reflection_keeps_lj_energy_and_comfree_gaussian_density(generator: torch.Generator) -> None:
    # a 22-particle cloud with an arbitrary "centre" at particle 0
    centers = [ChiralCenter(center=0, neighbors=(1, 2, 3))]
    x = 1.5 * torch.randn(256, 22, 3, generator=generator, dtype=torch.float64) + 2.0
    x_fixed, n = reflect_wrong_handed(x, centers)
    assert 80 < n < 176 and (chirality(x_fixed, centers) == 1).all()
    lj = LennardJones(22, pair_factor=1.0, oscillator_scale=1.0)
    torch.testing.assert_close(lj.energy(x_fixed), lj.energy(x))
    base = CoMFreeGaussian(22, 3)
    torch.testing.assert_close(base.log_prob(x_fixed), base.log_prob(x))
    torch.testing.assert_close(x_fixed.mean(1), x.mean(1))


def test_fractions(aldp, x_l: torch.Tensor, generator: torch.Generator) -> None:
    centers = chiral_centers_for_system(aldp)
    x = torch.cat([_rigid_copies(x_l, 3, generator, reflection=False),
                   _rigid_copies(x_l, 1, generator, reflection=True)])
    f = chirality_fractions(x, centers)
    assert f["n"] == 4 and f["reference"] == 0.75 and f["mirror"] == 0.25 and f["mixed"] == 0.0
    assert f["per_center"] == [0.75] and f["centers"] == ["ALA:CA"]
    assert chirality_fractions(x, centers, reference_signs=[-1])["reference"] == 0.25
    assert math.isnan(chirality_fractions(x[:0], centers)["reference"])


# --------------------------------------------------------------------------- several centres


def _two_centres(generator: torch.Generator, k: int) -> tuple[torch.Tensor, list[ChiralCenter]]:
    """Two tetrahedral groups of 4 atoms (centre + 3 neighbours) in one 8-atom 'molecule'."""
    tet = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    mol = torch.cat([tet, tet + torch.tensor([3.0, 0, 0], dtype=torch.float64)])[None]
    centers = [ChiralCenter(0, (1, 2, 3), name="A"), ChiralCenter(4, (5, 6, 7), name="B")]
    return _rigid_copies(mol, k, generator, reflection=False), centers


def test_diastereomers_are_counted_not_reflected(generator: torch.Generator) -> None:
    x, centers = _two_centres(generator, 3)
    assert (chirality(x, centers) == 1).all()
    enantiomer = -x[1:2]
    diastereomer = x[2:3].clone()
    c_b = diastereomer[:, 4:5]
    diastereomer[:, 5:8] = 2 * c_b - diastereomer[:, 5:8]  # invert group B about its own centre
    batch = torch.cat([x[0:1], enantiomer, diastereomer])
    assert chirality(batch, centers).tolist() == [[1, 1], [-1, -1], [1, -1]]
    x_fixed, n = reflect_wrong_handed(batch, centers)
    assert n == 1 and chirality(x_fixed, centers).tolist() == [[1, 1], [1, 1], [1, -1]]
    f = chirality_fractions(batch, centers)
    assert f["reference"] == pytest.approx(1 / 3) and f["mirror"] == pytest.approx(1 / 3)
    assert f["mixed"] == pytest.approx(1 / 3) and f["per_center"] == pytest.approx([2 / 3, 1 / 3])
    logw = torch.zeros(3, dtype=torch.float64)
    lw = enantiomer_log_weights(logw, x_fixed, centers)
    assert lw[:2].tolist() == [-math.log(2.0)] * 2 and lw[2] == -math.inf


# --------------------------------------------------------------------------- log-weights after folding


def test_folded_weights_estimate_the_single_enantiomer_free_energy(generator: torch.Generator) -> None:
    # target π ∝ exp(−|x − x̄|²/(2σ²)) on the CoM-free space, model q = the standard CoM-free Gaussian:
    # both are reflection invariant, so Z_ref = Z/2 exactly, Z = (2πσ²)^{dof/2}
    n_particles, sigma, n = 6, 0.9, 40000
    base = CoMFreeGaussian(n_particles, 3)
    centers = [ChiralCenter(center=0, neighbors=(1, 2, 3))]
    x = base.sample(n, generator=generator, dtype=torch.float64)
    xc = x - x.mean(1, keepdim=True)
    logw = -(xc * xc).sum((1, 2)) / (2 * sigma**2) - base.log_prob(x)
    x_fixed, n_ref = reflect_wrong_handed(x, centers)
    xf = x_fixed - x_fixed.mean(1, keepdim=True)
    logw_fixed = -(xf * xf).sum((1, 2)) / (2 * sigma**2) - base.log_prob(x_fixed)
    torch.testing.assert_close(logw_fixed, logw)  # weights unchanged by the reflection
    lw = enantiomer_log_weights(logw_fixed, x_fixed, centers)
    assert torch.isfinite(lw).all()
    log_z_ref = float(torch.logsumexp(lw, 0) - math.log(n))
    exact = 0.5 * base.dof * math.log(2 * math.pi * sigma**2) - math.log(2.0)
    assert abs(log_z_ref - exact) < 0.02
    # self-normalized weights are unchanged by the constant shift
    torch.testing.assert_close(torch.softmax(lw, 0), torch.softmax(logw, 0))


def test_egnn_flow_density_is_mirror_symmetric_and_e3nn_is_not(generator: torch.Generator) -> None:
    # the premise of the fix: an E(3)-equivariant flow gives x and its mirror image the same log q
    ode = pytest.importorskip("molsample.flows.ode")
    from molsample.nets.egnn import EGNN

    n_particles = 6
    base = CoMFreeGaussian(n_particles, 3)
    x = base.sample(3, generator=generator, dtype=torch.float64)
    torch.manual_seed(0)
    egnn = EGNN(n_particles, hidden=16, n_layers=2).double()
    kw = {"method": "euler", "steps": 8}
    lq = ode.log_likelihood(egnn, base, x, **kw)
    torch.testing.assert_close(ode.log_likelihood(egnn, base, -x, **kw), lq)
    pytest.importorskip("e3nn")
    from molsample.nets.e3nn_net import E3NNVelocity

    torch.manual_seed(0)
    e3 = E3NNVelocity(n_particles, hidden=8, n_layers=2).double()
    lq3 = ode.log_likelihood(e3, base, x, **kw)
    # at random initialization the gap is ~1e-3, ten orders of magnitude above round-off
    assert (ode.log_likelihood(e3, base, -x, **kw) - lq3).abs().max() > 1e-4


# --------------------------------------------------------------------------- card parsing and errors


def _card(**entry) -> dict:
    base = {"residue": "ALA", "atoms": ["N", "CA", "C", "CB"], "indices": [6, 8, 14, 10], "handedness": "L"}
    base.update(entry)
    return {"name": "t", "chiral_centers": [{k: v for k, v in base.items() if v is not None}]}


def test_card_variants(aldp) -> None:
    top = aldp.topology
    assert chiral_centers_from_card({"name": "t"}, top) == []
    (c,) = chiral_centers_from_card(_card(indices=None), top)  # names only
    assert c.indices == (CA, N_, C_, CB)
    (c,) = chiral_centers_from_card(_card(atoms=None, residue=None, handedness="+"))  # indices only
    assert c.indices == (CA, N_, C_, CB) and c.reference_sign == 1
    (c,) = chiral_centers_from_card(_card(handedness="D"), top)
    assert c.reference_sign == -1
    # with D as the reference, the L structure of the card's PDB is the mirror image
    x = torch.as_tensor(aldp.energy.positions, dtype=torch.float64)[None]
    assert chirality(x, [c]).tolist() == [[-1]] and wrong_handed_mask(x, [c]).tolist() == [True]


@pytest.mark.parametrize("entry, match", [
    ({"handedness": "R"}, "handedness"),
    ({"handedness": None}, "handedness"),
    ({"indices": [6, 8, 14, 9]}, "indices"),
    ({"atoms": ["CA", "N", "C", "CB"], "indices": None}, "needs atoms"),
    ({"atoms": ["N", "CA", "XX", "CB"], "indices": None}, "matches 0 atoms"),
    ({"atoms": ["N", "CA"], "indices": None}, "4 atom names"),
    ({"atoms": None, "indices": None}, "needs atoms"),
])
def test_card_errors_name_the_fix(aldp, entry: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        chiral_centers_from_card(_card(**entry), aldp.topology)


def test_shape_and_argument_errors(x_l: torch.Tensor) -> None:
    centers = [ChiralCenter(CA, (N_, C_, CB))]
    with pytest.raises(ShapeError, match="out of range"):
        chirality(x_l[:, :5], centers)
    with pytest.raises(ShapeError, match=r"\(batch, n_particles, 3\)"):
        chirality(x_l[0], centers)
    with pytest.raises(ConfigError, match="reference_signs"):
        reflect_wrong_handed(x_l, centers, reference_signs=[1, 1])
    with pytest.raises(ConfigError, match="distinct"):
        ChiralCenter(1, (1, 2, 3))


@pytest.mark.parametrize("p_right", [0.5, 0.85])
def test_dropping_wrong_handed_samples_of_a_chiral_model_keeps_log_z(p_right: float,
                                                                     generator: torch.Generator) -> None:
    # a chiral model with a known density: CoM-free Gaussian samples, folded to the reference side,
    # then mirrored with probability 1 − p, so q = 2p·N on the reference side and 2(1 − p)·N on the mirror side
    n_particles, sigma, n = 6, 0.9, 40000
    base = CoMFreeGaussian(n_particles, 3)
    centers = [ChiralCenter(center=0, neighbors=(1, 2, 3))]
    x, _ = reflect_wrong_handed(base.sample(n, generator=generator, dtype=torch.float64), centers)
    flip = torch.rand(n, generator=generator, dtype=torch.float64) > p_right
    x = torch.where(flip[:, None, None], 2 * x.mean(1, keepdim=True) - x, x)
    right = (chirality(x, centers) == 1)[:, 0]
    logq = base.log_prob(x) + torch.where(right, math.log(2 * p_right), math.log(2 * (1 - p_right)))
    xc = x - x.mean(1, keepdim=True)
    logw = -(xc * xc).sum((1, 2)) / (2 * sigma**2) - logq
    lw = drop_wrong_handed_log_weights(logw, x, centers)
    assert torch.equal(torch.isfinite(lw), right)  # mirror images get weight 0
    exact = 0.5 * base.dof * math.log(2 * math.pi * sigma**2)  # log Z of the folded target = log Z
    assert abs(float(torch.logsumexp(lw, 0)) - math.log(n) - exact) < 0.03
    # and the single-enantiomer weights of the result estimate log Z − log 2, as for a folded E(3) model
    l_ref = enantiomer_log_weights(lw, x, centers)
    assert abs(float(torch.logsumexp(l_ref, 0)) - math.log(n) - (exact - math.log(2.0))) < 0.03


def test_dropping_leaves_diastereomers_alone(generator: torch.Generator) -> None:
    x, centers = _two_centres(generator, 3)
    enantiomer = 2 * x[1:2].mean(1, keepdim=True) - x[1:2]
    diastereomer = x[2:3].clone()
    diastereomer[:, 5:8] = 2 * diastereomer[:, 4:5] - diastereomer[:, 5:8]
    batch = torch.cat([x[0:1], enantiomer, diastereomer])
    lw = drop_wrong_handed_log_weights(torch.zeros(3, dtype=torch.float64), batch, centers)
    assert lw.tolist() == [math.log(2.0), -math.inf, 0.0]
