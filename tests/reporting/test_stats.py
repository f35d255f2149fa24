"""Weighted histograms and pair distances of the report against hand-computed values: what counts in
the normalisation (finite values with positive finite weights), empty input, brute-force distances.
(Repetition as weights, mass outside the range and one distance triple are in test_report.py.)"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from molsample.reporting.stats import pair_distances, weighted_histogram


def test_a_hand_computed_weighted_density():
    """Values 0.25, 0.75, 1.5 with weights 1, 1, 2 over the edges (0, 1, 2): each bin holds half the weight."""
    v, w = np.array([0.25, 0.75, 1.5]), np.array([1.0, 1.0, 2.0])
    dens, edges = weighted_histogram(v, w, bins=np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(edges, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(dens, [0.5, 0.5], rtol=1e-15)
    dens, _ = weighted_histogram(v, w, bins=4, range=(0.0, 2.0))
    np.testing.assert_allclose(dens, [0.5, 0.5, 0.0, 1.0], rtol=1e-15)  # bin width 1/2


@pytest.mark.parametrize("value, weight", [(math.nan, 1.0), (math.inf, 1.0), (0.5, math.nan), (0.5, math.inf),
                                           (0.5, 0.0), (0.5, -3.0)])
def test_samples_without_a_finite_value_and_positive_weight_do_not_count(value, weight):
    """Such a sample is dropped from the counts and from the normalising weight alike."""
    v, w = np.array([0.25, 1.5]), np.array([1.0, 3.0])
    clean, edges = weighted_histogram(v, w, bins=2, range=(0.0, 2.0))
    dirty, dirty_edges = weighted_histogram(np.append(v, value), np.append(w, weight), bins=2, range=(0.0, 2.0))
    np.testing.assert_array_equal(dirty_edges, edges)
    np.testing.assert_allclose(dirty, clean, rtol=1e-15)
    np.testing.assert_allclose(clean, [0.25, 0.75], rtol=1e-15)


def test_a_uniform_sample_has_density_one_on_the_unit_interval():
    v = np.random.default_rng(0).uniform(size=40000)
    dens, edges = weighted_histogram(v, None, bins=10, range=(0.0, 1.0))
    assert edges.shape == (11,)
    np.testing.assert_allclose(dens, 1.0, atol=4 * math.sqrt(0.1 * 0.9 / 40000) / 0.1)


def test_no_usable_samples_give_a_zero_density():
    dens, edges = weighted_histogram(np.array([math.nan, 1.0]), np.array([1.0, 0.0]), bins=5)
    assert dens.shape == (5,) and not dens.any() and edges.shape == (6,)


def test_one_weight_per_value_is_required():
    with pytest.raises(ValueError, match="pass one weight per value"):
        weighted_histogram(np.zeros(4), np.ones(3))


def test_pair_distances_against_brute_force_and_rigid_motions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 3))
    d = pair_distances(x)
    assert d.shape == (3, 15)
    brute = [[np.linalg.norm(c[i] - c[j]) for i, j in itertools.combinations(range(6), 2)] for c in x]
    np.testing.assert_allclose(d, brute, rtol=1e-14)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # an orthogonal map (rotation or reflection)
    np.testing.assert_allclose(pair_distances(x @ q.T + np.array([1.0, -2.0, 0.5])), d, rtol=1e-12)
    assert pair_distances(rng.normal(size=(4, 1, 2))).shape == (4, 0)
