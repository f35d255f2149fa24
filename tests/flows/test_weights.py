"""Importance weights: ESS limits, log Z against a known normalizer, non-finite handling, resampling."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import EnergyError, ShapeError
from molsample.flows.weights import WeightSummary, ess, log_partition, log_weights, resample, summarize


def test_ess_limits():
    n = 50
    assert ess(torch.full((n,), -3.7)) == pytest.approx(1.0)
    one = torch.full((n,), -math.inf)
    one[17] = 2.0
    assert ess(one) == pytest.approx(1.0 / n)
    assert ess(torch.full((n,), -math.inf)) == 0.0
    # two equal weights out of n: (2w)²/(n·2w²) = 2/n; huge log-weights do not overflow
    two = torch.full((n,), -math.inf, dtype=torch.float64)
    two[[3, 9]] = 1e4
    assert ess(two) == pytest.approx(2.0 / n)


def test_log_weights_formula_and_nonfinite():
    e = torch.tensor([1.0, 2.0, math.inf, math.nan, 0.5])
    lq = torch.tensor([-1.0, 0.5, 0.0, 0.0, math.nan])
    lw = log_weights(e, lq)
    assert lw.dtype == torch.float64
    assert lw[:2].tolist() == [0.0, -2.5]
    assert torch.isneginf(lw[2:]).all()
    s = summarize(lw)
    assert isinstance(s, WeightSummary)
    assert (s.n, s.n_nonfinite) == (5, 3)
    # zero weights stay in n: ESS of weights (1, e^-2.5, 0, 0, 0)
    w = torch.tensor([1.0, math.exp(-2.5)], dtype=torch.float64)
    assert s.ess == pytest.approx(float(w.sum() ** 2 / (5 * (w * w).sum())))
    assert s.log_z == pytest.approx(math.log(float(w.sum()) / 5))
    with pytest.raises(ShapeError):
        log_weights(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("d, sigma_q, sigma", [(1, 1.5, 1.0), (3, 1.2, 0.8)])
def test_log_z_of_known_normalizer(d, sigma_q, sigma):
    """Proposal N(0, σ_q² I), target exp(−|x|²/2σ²) with Z = (2πσ²)^{d/2}."""
    g = torch.Generator().manual_seed(11)
    x = sigma_q * torch.randn(20000, d, generator=g, dtype=torch.float64)
    reduced = (x * x).sum(-1) / (2 * sigma**2)
    logq = -(x * x).sum(-1) / (2 * sigma_q**2) - 0.5 * d * math.log(2 * math.pi * sigma_q**2)
    log_z, se = log_partition(log_weights(reduced, logq))
    true = 0.5 * d * math.log(2 * math.pi * sigma**2)
    assert 0 < se < 0.02
    assert abs(log_z - true) < 4 * se
    # when the proposal equals the target the weights are constant: exact answer, zero error
    exact_logq = -reduced - true
    log_z, se = log_partition(log_weights(reduced, exact_logq))
    assert log_z == pytest.approx(true, abs=1e-12) and se == pytest.approx(0.0, abs=1e-12)


def test_log_partition_edge_cases():
    assert log_partition(torch.full((4,), -math.inf)) == (-math.inf, math.inf)
    log_z, se = log_partition(torch.tensor([0.3]))
    assert log_z == pytest.approx(0.3) and se == math.inf


def test_systematic_resampling():
    lw = torch.log(torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0], dtype=torch.float64))
    idx = resample(lw, 1000, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (1000,) and idx.dtype == torch.int64
    counts = torch.bincount(idx, minlength=5)
    # systematic resampling: each count is floor or ceil of n·w_i; zero weights are never drawn
    for c, w in zip(counts.tolist(), [0.5, 0.0, 0.3, 0.2, 0.0], strict=True):
        assert math.floor(1000 * w) <= c <= math.ceil(1000 * w)
    again = resample(lw, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)


def test_resample_no_weight_raises():
    with pytest.raises(EnergyError, match="every weight is zero"):
        resample(torch.tensor([math.nan, -math.inf]), 3)
