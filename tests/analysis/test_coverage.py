"""Coverage against a reference: a proposal that misses one of two modes is flagged with a missed
share of about one half; a covering proposal is not."""

import numpy as np
import pytest

from molsample.analysis.coverage import cell_coverage, quantile_coverage, weighted_quantiles


def two_modes(n: int, seed: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = np.where(rng.random(n) < 0.5, -3.0, 3.0)
    return centre[:, None] + 0.5 * rng.standard_normal((n, dim))


@pytest.mark.parametrize("dim", [1, 2])
def test_a_proposal_on_one_mode_misses_half_of_the_mass(dim):
    ref = two_modes(20000, 0, dim)
    one_mode = 3.0 + 0.5 * np.random.default_rng(1).standard_normal((5000, dim))
    c = cell_coverage(ref, one_mode, cell=1.0)
    assert c.missed_share == pytest.approx(0.5, abs=0.03)
    assert c.warning() is not None and "% of the reference's mass" in c.warning() and "ESS cannot see it" in c.warning()
    q = quantile_coverage(ref[:, 0], one_mode[:, 0], what="x")
    assert q.missed_share == pytest.approx(0.5, abs=0.05) and q.warning() is not None
    assert q.details["reference_q01"] < -4 and q.details["flow_q01"] > 1


@pytest.mark.parametrize("dim", [1, 2])
def test_a_covering_proposal_gives_no_warning(dim):
    ref = two_modes(20000, 0, dim)
    wide = 4.0 * np.random.default_rng(2).standard_normal((20000, dim))
    c = cell_coverage(ref, wide, cell=0.5)
    assert c.missed_share <= 0.01 and c.warning() is None
    assert quantile_coverage(ref[:, 0], wide[:, 0], what="x").warning() is None


def test_periodic_angles_in_ramachandran_cells():
    rng = np.random.default_rng(3)
    ref = np.concatenate([rng.normal([-80, 150], 10, (3000, 2)), rng.normal([-70, -40], 10, (1000, 2))])
    flow = rng.normal([-80, 150], 10, (3000, 2))  # never visits the alpha-R mode (a quarter of the mass)
    c = cell_coverage(ref + 180, flow + 180, cell=20.0)
    assert c.missed_share == pytest.approx(0.25, abs=0.03)


def test_weighted_quantiles():
    v = np.arange(10.0)
    assert weighted_quantiles(v, [0.5])[0] == 4.0
    w = np.zeros(10)
    w[9] = 1.0
    assert weighted_quantiles(v, [0.01, 0.99], w).tolist() == [9.0, 9.0]
