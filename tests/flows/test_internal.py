"""Internal coordinates: round trips, the log-det against autograd and a Monte Carlo normaliser,
mirror images, degenerate input, state."""

from __future__ import annotations

import math

import mdtraj
import numpy as np
import pytest
import torch

from molsample.errors import ConfigError, ShapeError
from molsample.flows.distributions import CoMFreeGaussian
from molsample.flows.internal import (InternalCoordinates, cartesian_from_internal, dihedral,
                                      internal_from_cartesian)
from molsample.flows.internal_base import InternalBase
from molsample.flows.paths import wrap_angle
from molsample.molecules.zmatrix import ZMatrix, build_zmatrix, zmatrix_for_system
from molsample.systems.cards import load_system

F64 = torch.float64


@pytest.fixture(scope="module")
def aldp():
    """(zmatrix, topology, 50 PDB frames + 0.005 nm noise (float64), transform fitted on them)."""
    system = load_system("aldp")
    zm = zmatrix_for_system(system)
    pdb = mdtraj.load_pdb(str(system.card_path.parent / system.card["energy"]["structure"]))
    g = torch.Generator().manual_seed(7)
    x0 = torch.as_tensor(pdb.xyz[0], dtype=F64)
    x = x0 + 0.005 * torch.randn(50, 22, 3, generator=g, dtype=F64)
    return zm, system.topology, x, InternalCoordinates.fit(zm, x)


def _kabsch_rmsd_max(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest per-atom deviation after the best proper rotation + translation of b onto a."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    u, _, vt = torch.linalg.svd(b.transpose(1, 2) @ a)
    d = torch.sign(torch.linalg.det(u @ vt))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return float((b @ u @ fix @ vt - a).norm(dim=-1).max())


def _branched(n_circular: int = 1, seed: int = 0) -> InternalCoordinates:
    """6 atoms, a chain 0-1-2-3-4 with a branch 5 on 2; random statistics, some torsions circular."""
    zm = build_zmatrix(6, [(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)])
    g = torch.Generator().manual_seed(seed)
    d = 12
    mean = torch.cat([0.10 + 0.05 * torch.rand(5, generator=g, dtype=F64),
                      1.7 + 0.4 * torch.rand(4, generator=g, dtype=F64),
                      torch.rand(3, generator=g, dtype=F64) * 2 - 1])
    std = torch.cat([0.005 + 0.02 * torch.rand(5, generator=g, dtype=F64),
                     0.05 + 0.3 * torch.rand(d - 5, generator=g, dtype=F64)])
    circular = torch.zeros(d, dtype=torch.bool)
    circular[d - n_circular:] = True
    return InternalCoordinates(zm, mean, std, circular)


def test_dihedral_matches_mdtraj(aldp):
    zm, top, x, _ = aldp
    quads = np.array([r for r in zm.rows[3:]])
    ref = mdtraj.compute_dihedrals(mdtraj.Trajectory(x.numpy().astype(np.float32), top), quads)
    got = dihedral(x, *torch.as_tensor(quads).T)
    assert np.abs(ref - got.numpy()).max() < 1e-5
    assert dihedral(x, 4, 6, 8, 14).shape == (50,)


def test_round_trip_aldp_float64(aldp):
    zm, _, x, t = aldp
    z, logdet_inv = t.inverse(x)
    assert z.shape == (50, 60, 1) and z.dtype == F64
    y, logdet = t.forward(z)
    assert _kabsch_rmsd_max(x, y) < 1e-10
    assert torch.allclose(torch.cdist(x, x), torch.cdist(y, y), atol=1e-10, rtol=0)
    assert y.mean(1).abs().max() < 1e-12  # centre-free
    z2, logdet_inv2 = t.inverse(y)
    assert torch.allclose(z, z2, atol=1e-10, rtol=0)
    assert torch.allclose(logdet_inv, -logdet, atol=1e-10, rtol=0)
    assert torch.allclose(logdet_inv2, logdet_inv, atol=1e-10, rtol=0)
    # the fitted standardisation: the training frames have z of mean 0 (torsions: about, the circular
    # mean is not the linear one) and std 1 (all torsions are narrow for frames this close together)
    assert z[:, :41, 0].mean(0).abs().max() < 1e-10 and z[:, 41:, 0].mean(0).abs().max() < 0.01
    assert torch.allclose(z[..., 0].std(0, correction=0), torch.ones(60, dtype=F64), atol=0.02)
    assert not t.periodic.any()


def test_round_trip_float32(aldp):
    _, _, x, t = aldp
    z, _ = t.inverse(x.float())
    y, logdet = t.forward(z)
    assert y.dtype == torch.float32 and logdet.dtype == torch.float32
    assert _kabsch_rmsd_max(x, y.double()) < 1e-4


def test_canonical_frame(aldp):
    zm, _, x, _ = aldp
    b, a, tor = internal_from_cartesian(x, zm)
    y = cartesian_from_internal(b, a, tor, zm)
    first, second, third = (r[0] for r in zm.rows[:3])
    assert y[:, first].abs().max() == 0
    assert (y[:, second, 0] > 0).all() and y[:, second, 1:].abs().max() < 1e-15
    assert (y[:, third, 1] > 0).all() and y[:, third, 2].abs().max() < 1e-15


def _euler(abc: torch.Tensor) -> torch.Tensor:
    """Z-Y-Z rotation matrix R(α, β, γ) = Rz(α) Ry(β) Rz(γ)."""
    def rz(t):
        c, s, o, i = torch.cos(t), torch.sin(t), torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([torch.stack([c, -s, o]), torch.stack([s, c, o]), torch.stack([o, o, i])])

    def ry(t):
        c, s, o, i = torch.cos(t), torch.sin(t), torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([torch.stack([c, o, s]), torch.stack([o, i, o]), torch.stack([-s, o, c])])
    return rz(abc[0]) @ ry(abc[1]) @ rz(abc[2])


@pytest.mark.parametrize("tail", [False, True], ids=["domain", "gaussian-tail"])
def test_logdet_against_autograd(tail):
    """(translation, Euler angles, z) -> x in R^{3n} is square; its log|det| − log sin β is the z part."""
    t = _branched(n_circular=1)
    n, d = 6, 12
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        z0 = torch.randn(d, generator=g, dtype=F64).clamp(-2.5, 2.5)
        if tail:  # a negative bond and an angle beyond π: still finite, |b| and |sin θ| in the log-det
            z0[1] = -(t.mean[1] + 0.03) / t.std[1]
            z0[5] = (math.pi + 0.3 - t.mean[5]) / t.std[5]
        params = torch.cat([torch.randn(3, generator=g, dtype=F64),
                            torch.tensor([0.7, 1.1, -2.0], dtype=F64), z0])

        def full(p):
            y, _ = t.forward(p[6:].view(1, d, 1))
            return (y[0] @ _euler(p[3:6]).T + p[:3]).reshape(-1)

        jac = torch.autograd.functional.jacobian(full, params)
        assert jac.shape == (3 * n, 3 * n)
        lhs = torch.linalg.slogdet(jac)[1] - math.log(abs(math.sin(1.1)))
        _, logdet = t.forward(z0.view(1, d, 1))
        rhs = logdet[0] - math.log(8 * math.pi**2) + 1.5 * math.log(n)
        assert torch.isfinite(rhs) and abs(float(lhs - rhs)) < 1e-8
        assert bool(t.in_domain(z0.view(1, d, 1))) is not tail


def test_normaliser_by_monte_carlo():
    """∫ p(x) dx = 1 for the centre-free Gaussian of 4 atoms, estimated through the transform."""
    s = 0.7
    zm = ZMatrix(((0, -1, -1, -1), (1, 0, -1, -1), (2, 1, 0, -1), (3, 2, 1, 0)))
    # a broad proposal: bonds wider than the target's (variance 2s² per direction, so the weights stay
    # bounded in the tail), angles around π/2, the torsion uniform
    mean = torch.tensor([2.2 * s, 2.2 * s, 2.2 * s, 0.5 * math.pi, 0.5 * math.pi, 0.0], dtype=F64)
    std = torch.tensor([1.6 * s, 1.6 * s, 1.6 * s, 0.9, 0.9, 1.0], dtype=F64)
    t = InternalCoordinates(zm, mean, std, [False] * 5 + [True])
    q = InternalBase(t.periodic)
    target = CoMFreeGaussian(4, 3, std=s)
    z = q.sample(200_000, generator=torch.Generator().manual_seed(11), dtype=F64)
    x, logdet = t.forward(z)
    w = torch.where(t.in_domain(z), torch.exp(target.log_prob(x) + logdet - q.log_prob(z)), torch.zeros(()).double())
    est, se = float(w.mean()), float(w.std() / math.sqrt(w.numel()))
    assert se < 0.01 and abs(est - 1.0) < 3 * se, (est, se)


def test_density_in_internal_coordinates(aldp):
    """log p(x) of z ~ InternalBase pushed forward = log q(z) − log|det J|, recovered through inverse."""
    _, _, _, t = aldp
    q = InternalBase(t.periodic)
    z = q.sample(64, generator=torch.Generator().manual_seed(5), dtype=F64)
    x, logdet = t.forward(z)
    z2, logdet_inv = t.inverse(x)
    assert torch.allclose(q.log_prob(z2) + logdet_inv, q.log_prob(z) - logdet, atol=1e-9, rtol=0)


def test_mirror_image_negates_torsions(aldp):
    zm, _, x, _ = aldp
    _, _, torsions = internal_from_cartesian(x, zm)
    t = InternalCoordinates.fit(zm, x, circular_threshold=float(torsions.std(0).median()))
    circ = t.periodic
    assert 0 < int(circ.sum()) < 19  # both kinds of torsion
    z, logdet_inv = t.inverse(x)
    zm_, logdet_inv_m = t.inverse(-x)
    z, zm_ = z[..., 0], zm_[..., 0]
    k = 2 * 22 - 3
    assert torch.allclose(z[:, :k], zm_[:, :k], atol=1e-10, rtol=0)
    assert torch.allclose(logdet_inv, logdet_inv_m, atol=1e-10, rtol=0)
    mu, sd = t.mean[k:], t.std[k:]
    phi = mu + sd * z[:, k:]
    expected = torch.where(circ[k:], -z[:, k:], wrap_angle(-phi - mu) / sd)
    assert torch.allclose(zm_[:, k:], expected, atol=1e-9, rtol=0)


def test_collinear_references_raise():
    zm = ZMatrix(((0, -1, -1, -1), (1, 0, -1, -1), (2, 1, 0, -1), (3, 2, 1, 0)))
    x = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.25, 0.1, 0.0]]], dtype=F64)
    t = InternalCoordinates(zm, torch.zeros(6), torch.ones(6), [False] * 6)
    with pytest.raises(ConfigError, match="row 3 \\(atom 3\\).*collinear"):
        t.inverse(x)
    with pytest.raises(ConfigError, match="collinear"):
        InternalCoordinates.fit(zm, x)


def test_state_round_trip_and_text(aldp):
    _, _, x, t = aldp
    t2 = InternalCoordinates.from_state(t.state())
    assert t2.zmatrix == t.zmatrix and torch.equal(t2.mean, t.mean) and torch.equal(t2.std, t.std)
    assert torch.equal(t2.periodic, t.periodic) and t2.periodic.shape == (60,) and t2.periodic.dtype == torch.bool
    z, _ = t.inverse(x[:4])
    assert torch.equal(t2.forward(z)[0], t.forward(z)[0])
    assert t.event_shape == (60, 1) and t.name == "internal" and not t.is_identity
    assert "22 atoms" in t.describe() and "19 torsions" in t.describe()
    with pytest.raises(ShapeError):
        t.forward(torch.zeros(2, 60))
    with pytest.raises(ShapeError):
        t.inverse(torch.zeros(2, 21, 3, dtype=F64))
    with pytest.raises(ConfigError, match="only torsions"):
        InternalCoordinates(t.zmatrix, t.mean, t.std, [True] + [False] * 59)
