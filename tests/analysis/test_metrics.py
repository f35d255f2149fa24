"""Sampler metrics against closed forms, invariances and their unweighted special cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from molsample.analysis.metrics import (
    distance_histogram,
    distance_tv,
    distance_w1,
    energy_w1,
    energy_w2,
    equivariant_w2,
    interatomic_distances,
    sliced_wasserstein,
    wasserstein_1d,
)
from molsample.errors import ConfigError, ShapeError
from molsample.testing import random_orthogonal


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_energy_w2_of_gaussians_matches_closed_form(rng):
    mu1, s1, mu2, s2 = 0.0, 1.0, 0.7, 2.0
    n = 200_000
    q = (np.arange(n) + 0.5) / n  # a quasi-random sample: the test is about the estimator, not noise
    from scipy.stats import norm

    a, b = mu1 + s1 * norm.ppf(q), mu2 + s2 * norm.ppf(rng.permutation(q))
    assert energy_w2(a, b) == pytest.approx(math.sqrt((mu1 - mu2) ** 2 + (s1 - s2) ** 2), rel=1e-3)
    # random samples of different sizes: the weighted-quantile path
    a = rng.normal(mu1, s1, 100_000)
    b = rng.normal(mu2, s2, 150_000)
    assert energy_w2(a, b) == pytest.approx(math.sqrt((mu1 - mu2) ** 2 + (s1 - s2) ** 2), abs=0.02)
    # W1 of a shift is the shift
    assert energy_w1(a, a + 0.3) == pytest.approx(0.3, abs=1e-12)


def test_w1_matches_scipy_with_weights(rng):
    a, b = rng.normal(size=300), rng.gamma(2.0, size=451)
    wa, wb = rng.random(300), rng.random(451)
    assert energy_w1(a, b, wa, wb) == pytest.approx(wasserstein_distance(a, b, wa, wb), rel=1e-12)
    assert energy_w1(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-12)
    assert energy_w1(torch.as_tensor(a), torch.as_tensor(b)) == pytest.approx(wasserstein_distance(a, b), rel=1e-12)


def test_weighted_equals_unweighted_for_uniform_weights(rng):
    a, b = rng.normal(size=500), rng.normal(1.0, 2.0, size=500)
    ones = np.ones(500)
    assert energy_w2(a, b, ones, 3 * ones) == pytest.approx(energy_w2(a, b), rel=1e-12)
    assert energy_w1(a, b, ones, None) == pytest.approx(energy_w1(a, b), rel=1e-12)
    x, y = rng.normal(size=(500, 4, 3)), rng.normal(size=(500, 4, 3))
    assert sliced_wasserstein(x, y, w_a=ones) == pytest.approx(sliced_wasserstein(x, y), rel=1e-10)
    assert distance_w1(x, y, ones, ones) == pytest.approx(distance_w1(x, y), rel=1e-12)
    assert distance_tv(x, y, w_a=ones) == pytest.approx(distance_tv(x, y), abs=1e-12)
    xs, ys = x[:12], y[:12]
    assert equivariant_w2(xs, ys, np.ones(12), np.ones(12)) == pytest.approx(equivariant_w2(xs, ys), rel=1e-6)


def test_weights_equal_resampling(rng):
    """Integer weights are the same as repeating samples."""
    a, b = rng.normal(size=40), rng.normal(size=60)
    k = rng.integers(1, 4, size=40)
    assert energy_w2(a, b, w_a=k) == pytest.approx(energy_w2(np.repeat(a, k), b), rel=1e-12)
    # zero weight = sample absent; a non-finite value gets weight 0
    a2 = np.concatenate([a, [1e6, np.inf]])
    assert energy_w1(a2, b, w_a=np.concatenate([np.ones(40), [0.0, 1.0]])) == pytest.approx(energy_w1(a, b))


def test_sliced_wasserstein_identical_is_zero_and_tutorial_definition(rng):
    x = torch.as_tensor(rng.normal(size=(1000, 1, 2)))
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x[torch.randperm(1000)]) == pytest.approx(0.0, abs=1e-12)
    y = x + torch.tensor([3.0, 4.0], dtype=torch.float64)
    # a shift by c gives sqrt(mean_k (θ_k·c)²) with the tutorial's seeded directions
    g = torch.Generator().manual_seed(0)
    d = torch.randn(128, 2, generator=g, dtype=torch.float32)
    d = (d / d.norm(dim=1, keepdim=True)).double()
    expected = torch.sqrt(((d @ torch.tensor([3.0, 4.0], dtype=torch.float64)) ** 2).mean()).item()
    assert sliced_wasserstein(x, y) == pytest.approx(expected, rel=1e-10)
    # unequal sizes (quantile path) of the same distribution: small
    z = torch.as_tensor(rng.normal(size=(1500, 1, 2)))
    assert sliced_wasserstein(x, z) < 0.1


def test_distance_tv_identical_and_disjoint(rng):
    x = rng.normal(size=(200, 5, 3))
    assert distance_tv(x, x) == 0.0
    # an independent sample of the same distribution: only histogram noise
    assert distance_tv(x, rng.normal(size=(200, 5, 3)), bins=20) < 0.1
    small = rng.uniform(0, 0.1, size=(50, 3, 3))
    big = small + np.array([[[0, 0, 0], [10, 0, 0], [0, 10, 0]]])  # every distance >= 9.8
    assert distance_tv(small, big) == pytest.approx(1.0)
    assert distance_tv(small, big, range=(0.0, 1.0)) == pytest.approx(1.0)  # overflow bin


def test_distance_histogram_and_w1(rng):
    x = rng.normal(size=(300, 4, 3))
    d = interatomic_distances(x)
    assert d.shape == (300, 6)
    h, edges = distance_histogram(x, bins=30)
    assert h.shape == (30,) and edges.shape == (31,)
    assert (h * np.diff(edges)).sum() == pytest.approx(1.0)
    # scaling all coordinates by s scales every distance: W1 = (s − 1)·mean distance
    assert distance_w1(x, 2 * x) == pytest.approx(d.mean().item(), rel=1e-10)
    assert distance_w1(x, x) == 0.0


def _transform(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate (proper), translate and permute the particles of every configuration, shuffle samples."""
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    rot = np.stack([random_orthogonal(x.shape[2], g, reflection=False).numpy() for _ in range(x.shape[0])])
    y = np.einsum("bij,bnj->bni", rot, x) + rng.normal(size=(x.shape[0], 1, x.shape[2]))
    y = np.stack([yk[rng.permutation(x.shape[1])] for yk in y])
    return y[rng.permutation(x.shape[0])]


@pytest.mark.parametrize("dim", [2, 3])
def test_equivariant_w2_invariances(rng, dim):
    xa = rng.normal(size=(10, 5, dim))
    xb = rng.normal(size=(10, 5, dim))
    w = equivariant_w2(xa, xb)
    assert w > 0.5
    assert equivariant_w2(xa, _transform(xb, rng)) == pytest.approx(w, rel=1e-8)
    assert equivariant_w2(_transform(xa, rng), xb) == pytest.approx(w, rel=1e-8)
    assert equivariant_w2(xa, _transform(xa, rng)) == pytest.approx(0.0, abs=1e-6)
    # the E(3)-aware cost is at most the plain W2 between the raw configurations
    from scipy.optimize import linear_sum_assignment

    c = ((xa[:, None] - xb[None]) ** 2).sum(axis=(2, 3))
    r, k = linear_sum_assignment(c)
    assert w <= math.sqrt(c[r, k].mean()) + 1e-12


def test_equivariant_w2_weighted_lp(rng):
    xa = rng.normal(size=(6, 4, 3))
    xb = rng.normal(size=(9, 4, 3))
    # a point mass against a set: W2² is the weighted mean squared aligned distance
    from molsample.analysis.metrics import aligned_squared_distance

    wb = rng.random(9)
    d2 = aligned_squared_distance(torch.as_tensor(xa[:1]).repeat(9, 1, 1), torch.as_tensor(xb)).numpy()
    assert equivariant_w2(xa[:1], xb, None, wb) == pytest.approx(math.sqrt((d2 * wb).sum() / wb.sum()), rel=1e-6)
    # weight on one configuration only = distance to that one
    onehot = np.zeros(9)
    onehot[4] = 1.0
    assert equivariant_w2(xa[:1], xb, None, onehot) == pytest.approx(math.sqrt(d2[4]), rel=1e-6)
    assert equivariant_w2(xa, xb) > 0


def test_metric_user_errors(rng):
    with pytest.raises(ConfigError, match="negative"):
        energy_w1([1.0, 2.0], [1.0], w_a=[1.0, -1.0])
    with pytest.raises(ShapeError, match="one weight per sample"):
        energy_w2([1.0, 2.0], [1.0], w_a=[1.0])
    with pytest.raises(ConfigError, match="all weights are zero"):
        wasserstein_1d([1.0, 2.0], [1.0], w_a=[0.0, 0.0])
    with pytest.raises(ShapeError, match="at least 2 particles"):
        distance_w1(rng.normal(size=(5, 1, 2)), rng.normal(size=(5, 1, 2)))
    with pytest.raises(ShapeError):
        sliced_wasserstein(rng.normal(size=(5, 2)), rng.normal(size=(5, 3)))
