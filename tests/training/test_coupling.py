"""Minibatch couplings of flow matching (molsample.training.coupling) and what they do to the tilt."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ConfigError
from molsample.flows.distributions import CoMFreeGaussian
from molsample.nets import build_net
from molsample.testing import random_orthogonal
from molsample.training.coupling import COUPLINGS, align_pairs, couple, radial_cost, transport_cost
from molsample.training.flow_matching import FlowMatchingConfig, train_flow_matching


def _rotate_permute(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each configuration of ``x (B, n, 3)`` under its own random proper rotation and permutation."""
    out = torch.empty_like(x)
    for k in range(x.shape[0]):
        r = random_orthogonal(3, gen, reflection=False, dtype=x.dtype)
        out[k] = x[k][torch.randperm(x.shape[1], generator=gen)] @ r.T
    return out


def _configs(b: int, n: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(b, n, 3, generator=gen, dtype=torch.float64)
    return x - x.mean(1, keepdim=True)


def test_align_recovers_rotated_permuted_copy():
    g = torch.Generator().manual_seed(0)
    x1 = _configs(32, 13, g)
    x0 = _rotate_permute(x1, g)
    aligned, d2 = align_pairs(x0, x1)
    assert d2.max() < 1e-18
    assert torch.allclose(aligned, x1, atol=1e-10)
    # the aligned copy is a rotated, permuted x0: same sorted distances from the centroid
    assert torch.allclose(torch.sort(aligned.norm(dim=2)).values, torch.sort(x0.norm(dim=2)).values)


def test_align_uses_proper_rotations_only():
    g = torch.Generator().manual_seed(1)
    x1 = _configs(16, 6, g)
    mirror = x1 * torch.tensor([1.0, 1.0, -1.0], dtype=x1.dtype)
    _, d2 = align_pairs(mirror, x1)
    assert (d2 > 1e-3).all()  # a chiral configuration is not its mirror image


def test_equivariant_ot_pairs_each_copy_with_its_original():
    g = torch.Generator().manual_seed(2)
    x1 = _configs(24, 13, g)
    x0 = _rotate_permute(x1, g)[torch.randperm(24, generator=g)]
    a, b = couple("equivariant-ot", x0, x1)
    assert transport_cost(a, b).max() < 1e-18
    assert torch.allclose(a, b, atol=1e-10)


def _rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each configuration of ``x (B, n, 3)`` under its own random proper rotation (atom order kept)."""
    return torch.stack([xk @ random_orthogonal(3, gen, reflection=False, dtype=x.dtype).T for xk in x])


def test_rotation_only_alignment_is_kabsch_and_keeps_the_atom_order():
    g = torch.Generator().manual_seed(11)
    x1 = _configs(16, 8, g)
    aligned, d2 = align_pairs(_rotate(x1, g), x1, permute=False)  # a rotated copy comes back exactly
    assert d2.max() < 1e-18 and torch.allclose(aligned, x1, atol=1e-10)
    x0 = _configs(16, 8, g)
    aligned, d2 = align_pairs(x0, x1, permute=False)
    # a rotation of x0 with the atoms in their order: every internal distance of each atom pair kept
    assert torch.allclose(torch.cdist(aligned, aligned), torch.cdist(x0, x0), atol=1e-10)
    assert torch.allclose(d2, transport_cost(aligned, x1), atol=1e-10)
    # the optimum over rotations: no random rotation of x0 comes closer to x1
    for _ in range(20):
        assert (transport_cost(_rotate(x0, g), x1) >= d2 - 1e-10).all()
    # and permuting would have come closer still: the molecule's coupling did not permute
    _, d2_perm = align_pairs(x0, x1, permute=True)
    assert (d2_perm <= d2 + 1e-10).all() and (d2_perm < d2 - 1e-6).any()


def test_rotation_only_equivariant_ot_minimizes_the_aligned_batch_cost():
    import itertools

    g = torch.Generator().manual_seed(12)
    x0, x1 = _configs(5, 6, g), _configs(5, 6, g)
    a, b = couple("equivariant-ot", x0, x1, permute=False)
    achieved = float(transport_cost(a, b).sum())
    best = min(float(align_pairs(x0[list(p)], x1, permute=False)[1].sum()) for p in itertools.permutations(range(5)))
    assert achieved == pytest.approx(best, rel=1e-10)
    # each x0 was used once and only rotated: its internal distances are among the x0's
    d0 = torch.cdist(x0, x0)
    for k in range(5):
        assert min(float((torch.cdist(a[k], a[k]) - d0[j]).abs().max()) for j in range(5)) < 1e-10
    # rotated, shuffled copies are paired back with their originals
    y0 = _rotate(x1, g)[torch.tensor([3, 0, 4, 1, 2])]
    a, b = couple("equivariant-ot", y0, x1, permute=False)
    assert torch.allclose(a, x1, atol=1e-10)


def test_permutes_particles():
    from molsample.flows.distributions import HarmonicPrior
    from molsample.training.coupling import permutes_particles

    assert permutes_particles({"name": "egnn"}, CoMFreeGaussian(4, 3))
    assert not permutes_particles({"name": "egnn", "atom_types": [0, 1, 2, 3]}, CoMFreeGaussian(4, 3))
    assert not permutes_particles({"name": "egnn"}, HarmonicPrior(4, 3, [(0, 1), (1, 2), (2, 3)]))


@pytest.mark.parametrize("kind", ["ot", "aligned", "equivariant-ot"])
def test_couplings_shorten_the_pairs(kind):
    g = torch.Generator().manual_seed(3)
    x0 = CoMFreeGaussian(13, 3).sample(64, generator=g, dtype=torch.float64)
    x1 = 0.5 * _configs(64, 13, g) + 0.3
    x1 = x1 - x1.mean(1, keepdim=True)
    independent = transport_cost(x0, x1).sum()
    a, b = couple(kind, x0, x1)
    assert transport_cost(a, b).sum() <= independent
    if kind == "ot":  # the exact batch assignment beats every other pairing, e.g. reversed order
        assert transport_cost(a, b).sum() <= transport_cost(x0.flip(0), x1).sum()


def test_radial_cost_is_a_lower_bound_of_the_aligned_cost():
    g = torch.Generator().manual_seed(4)
    x0, x1 = _configs(20, 7, g), _configs(20, 7, g)
    _, d2 = align_pairs(x0, x1)
    assert (torch.diagonal(radial_cost(x0, x1)) <= d2 + 1e-12).all()
    assert torch.allclose(radial_cost(_rotate_permute(x0, g), x1), radial_cost(x0, x1))


@pytest.mark.parametrize("kind", ["aligned", "equivariant-ot"])
def test_aligned_base_samples_keep_the_base_law(kind):
    """With data invariant in law (random rotation + permutation of a fixed shape), the pooled
    aligned x0 are still the CoM-free standard Gaussian: mean 0, covariance (I − 11ᵀ/n) ⊗ I."""
    g = torch.Generator().manual_seed(5)
    n, b, reps = 4, 64, 40
    shape = _configs(1, n, g)[0] * 1.5
    base = CoMFreeGaussian(n, 3)
    pooled, pooled_fixed = [], []
    for _ in range(reps):
        x1 = _rotate_permute(shape.expand(b, n, 3).clone(), g)
        pooled.append(couple(kind, base.sample(b, generator=g, dtype=torch.float64), x1)[0])
        pooled_fixed.append(couple(kind, base.sample(b, generator=g, dtype=torch.float64), shape.expand(b, n, 3))[0])
    x = torch.cat(pooled).flatten(1)
    cov = torch.cov(x.T)
    expected = torch.kron(torch.eye(n) - torch.full((n, n), 1.0 / n), torch.eye(3)).double()
    assert x.mean(0).abs().max() < 0.1
    assert (cov - expected).abs().max() < 0.12
    # the check has power: aligned to one fixed (non-invariant) shape, the x0 are not the base
    xf = torch.cat(pooled_fixed).flatten(1)
    assert (xf.mean(0).abs().max() > 0.3) or ((torch.cov(xf.T) - expected).abs().max() > 0.3)


def test_couple_is_deterministic_and_keeps_shapes():
    g = torch.Generator().manual_seed(6)
    x0 = CoMFreeGaussian(5, 3).sample(16, generator=g)
    x1 = _configs(16, 5, g).float()
    for kind in COUPLINGS:
        a1, b1 = couple(kind, x0, x1)
        a2, b2 = couple(kind, x0, x1)
        assert a1.shape == x0.shape and a1.dtype == x0.dtype and b1 is x1
        assert torch.equal(a1, a2) and torch.equal(b1, b2)
    with pytest.raises(ConfigError, match="unknown coupling"):
        couple("sinkhorn", x0, x1)
    with pytest.raises(ConfigError, match="centred"):
        couple("equivariant-ot", x0, x1 + 1.0)


def test_flow_matching_with_equivariant_ot_trains():
    g = torch.Generator().manual_seed(7)
    data = _configs(64, 4, g).float()
    torch.manual_seed(0)
    net = build_net({"name": "egnn", "n_particles": 4, "dim": 3, "hidden": 16, "n_layers": 2})
    hist = train_flow_matching(net, data, CoMFreeGaussian(4, 3),
                               FlowMatchingConfig(steps=3, batch_size=16, coupling="equivariant-ot"), progress=False)
    assert len(hist["loss"]) == 3 and all(math.isfinite(v) for v in hist["loss"])
    with pytest.raises(ConfigError, match="unknown coupling"):
        train_flow_matching(net, data, CoMFreeGaussian(4, 3), FlowMatchingConfig(steps=1, coupling="x"),
                            progress=False)


# ------------------------------------------------------------------ the tilt's fixed point (1-D Gaussians)
#
# ITM's fixed point is the weighted regression b(x) = E[e^{hr(x1)} İ | I_t = x] / E[e^{hr} | I_t = x]
# over the level's pairs (docs/tilt-matching.md). Base N(0, 1), level ρ_a = N(m, s²), reward r(x) = x:
# the tilted law is N(m + h s², s²).


def _weighted_line(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    """Weighted least squares y ≈ c0 + c1 x: (c0, c1)."""
    a = torch.stack([torch.ones_like(x), x], 1)
    sw = w.sqrt()[:, None]
    sol = torch.linalg.lstsq(a * sw, y[:, None] * sw[:, 0:1]).solution[:, 0]
    return float(sol[0]), float(sol[1])


def _field_line(kind: str, mu: float, s: float, t: float) -> tuple[float, float]:
    """(intercept, slope) of E[İ | I_t = x] for base N(0,1) → N(mu, s²), linear interpolant."""
    if kind == "independent":
        k = (t * s * s - (1 - t)) / ((1 - t) ** 2 + t * t * s * s)
    else:  # the monotone (OT) map x1 = mu + s x0
        k = (s - 1) / (1 - t + t * s)
    return mu - k * t * mu, k


def _couple_1d(kind: str, x0: torch.Tensor, x1: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The project's :func:`couple` on minibatches of scalar samples ``(n,)``; the re-paired x0 ``(n,)``."""
    col = lambda z: z[:, None, None]  # noqa: E731 - (B, 1 particle, 1 dim)
    return torch.cat([couple(kind, col(x0[k:k + batch]), col(x1[k:k + batch]))[0]
                      for k in range(0, x0.numel(), batch)])[:, 0, 0]


def test_itm_fixed_point_holds_for_independent_pairs_and_fails_for_ot():
    """The ITM fixed point of pairs from the project's couplings: the tilted law's field for
    independent pairs; minibatch OT pairs (monotone within each minibatch) stay near the untilted map."""
    g = torch.Generator().manual_seed(8)
    n, m, s, h, t = 200_000, 1.0, 0.5, 1.0, 0.5
    x0 = torch.randn(n, generator=g, dtype=torch.float64)
    x1 = m + s * torch.randn(n, generator=g, dtype=torch.float64)
    tilted = m + h * s * s
    for kind in ("independent", "ot"):
        a = _couple_1d(kind, x0, x1)
        if kind == "ot":  # the project's OT coupling re-pairs x0 monotonically within each minibatch
            assert torch.equal(torch.sort(a[:64]).values, torch.sort(x0[:64]).values)
            assert bool((torch.argsort(a[:64]) == torch.argsort(x1[:64])).all())
        else:
            assert torch.equal(a, x0)
        w = torch.exp(h * (x1 - m))
        fit = _weighted_line((1 - t) * a + t * x1, x1 - a, w)
        want = _field_line(kind, tilted, s, t)
        untilted = _field_line(kind, m, s, t)
        if kind == "independent":  # the fixed point is the field of the tilted law
            assert fit == pytest.approx(want, abs=0.01)
        else:  # OT: the weights only move x0; the fixed point stays near the untilted map's field
            assert fit == pytest.approx(untilted, abs=0.03)  # minibatches of 64: not the exact monotone map
            assert abs(fit[0] - want[0]) > 0.25
            assert float((w * a).sum() / w.sum()) == pytest.approx(h * s, abs=0.03)  # x0 law is no longer N(0,1)


def test_tilting_the_aligned_coupling_keeps_the_base_law():
    """The group {±1} as two centred particles on a line, (z, −z), swapped by a permutation; ρ
    symmetric, reward even. The project's aligned coupling (x0 → sign(x1)|x0|) keeps the base law
    under the tilt weights; its minibatch OT coupling (monotone pairs) does not."""
    g = torch.Generator().manual_seed(9)
    n, h = 100_000, 0.5
    x0 = torch.randn(n, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    x1 = sign * (1.5 + 0.4 * torch.randn(n, generator=g, dtype=torch.float64))
    w = torch.exp(h * x1**2)
    w = w / w.sum()
    pair = lambda z: torch.stack([z, -z], 1)[:, :, None]  # noqa: E731 - (n, 2 particles, 1 dim), centred
    aligned = couple("aligned", pair(x0), pair(x1))[0][:, 0, 0]
    assert torch.allclose(aligned, torch.sign(x1) * x0.abs())
    ot = torch.cat([couple("ot", pair(x0[k:k + 64]), pair(x1[k:k + 64]))[0] for k in range(0, n, 64)])[:, 0, 0]
    for z, keeps in ((aligned, True), (ot, False)):
        var, kurt = float((w * z**2).sum()), float((w * z**4).sum())
        if keeps:
            assert abs(float((w * z).sum())) < 0.01 and var == pytest.approx(1.0, abs=0.02)
            assert kurt == pytest.approx(3.0, abs=0.1)
        else:
            assert var > 1.3


def test_registry_capabilities_give_the_derived_lists():
    from molsample.training.coupling import PAIRWISE_COUPLINGS, PERMUTING_COUPLINGS, TILT_COUPLINGS
    from molsample.training.tilt import TILT_COUPLINGS as TRAINER_COUPLINGS

    assert list(COUPLINGS) == ["independent", "ot", "equivariant-ot", "aligned"]
    assert PAIRWISE_COUPLINGS == ("independent", "aligned") and PERMUTING_COUPLINGS == ("equivariant-ot", "aligned")
    assert TILT_COUPLINGS == TRAINER_COUPLINGS == ("independent", "aligned")
    assert set(TILT_COUPLINGS) <= set(PAIRWISE_COUPLINGS)  # the tilt couples each rank's shard on its own


@pytest.mark.parametrize("kind", list(COUPLINGS))
def test_pairwise_flag_is_what_the_coupling_does(kind):
    """A pairwise coupling of a batch is the coupling of its halves; a batch assignment is not."""
    gen = torch.Generator().manual_seed(5)
    x0, x1 = _configs(16, 5, gen), _configs(16, 5, gen)
    whole = couple(kind, x0, x1)[0]
    halves = torch.cat([couple(kind, x0[:8], x1[:8])[0], couple(kind, x0[8:], x1[8:])[0]])
    assert torch.allclose(whole, halves) == COUPLINGS[kind].pairwise


@pytest.mark.parametrize("kind", list(COUPLINGS))
def test_centred_flag_is_what_the_coupling_checks(kind):
    gen = torch.Generator().manual_seed(6)
    x0, x1 = _configs(4, 5, gen), _configs(4, 5, gen) + 1.0
    if COUPLINGS[kind].centred:
        with pytest.raises(ConfigError, match="needs centred configurations"):
            couple(kind, x0, x1)
    else:
        couple(kind, x0, x1)


def test_a_registered_coupling_is_accepted_by_couple():
    from molsample.training.coupling import register_coupling

    @register_coupling("test-reversed", pairwise=False)
    def _reversed(x0, x1, *, batch_cost, permute):
        return x0.flip(0), x1

    try:
        x0, x1 = torch.randn(3, 2, 2), torch.randn(3, 2, 2)
        assert torch.equal(couple("test-reversed", x0, x1)[0], x0.flip(0))
        with pytest.raises(ValueError, match="registered twice"):
            register_coupling("test-reversed")(_reversed)
    finally:
        COUPLINGS.pop("test-reversed")
