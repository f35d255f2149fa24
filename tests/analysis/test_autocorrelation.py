"""The integrated autocorrelation time against closed forms (AR(1), i.i.d. noise, a hand-computed
series), its invariances and its answers for short, constant or non-finite series."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from molsample.analysis.autocorrelation import integrated_autocorrelation_time
from molsample.errors import ConfigError, ShapeError


def ar1(phi: float, n: int, chains: int, seed: int) -> np.ndarray:
    """``(n, chains)`` stationary AR(1) series x_t = φ x_{t−1} + ε_t, ε ~ N(0, 1)."""
    eps = np.random.default_rng(seed).normal(size=(n, chains))
    x = np.empty_like(eps)
    x[0] = eps[0] / math.sqrt(1.0 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + eps[t]
    return x


def sokal_error(tau: float, n_total: int, c: float = 5.0) -> float:
    """Standard error of Sokal's estimate, √(2(2M+1)/N)·τ with the window M ≈ c·τ (Sokal 1997)."""
    return tau * math.sqrt(2.0 * (2.0 * c * tau + 1.0) / n_total)


@pytest.mark.parametrize("phi", [0.3, 0.8])
@pytest.mark.parametrize("method", ["sokal", "geyer"])
def test_ar1_matches_the_closed_form_within_the_estimators_error(phi, method):
    n, chains = 20000, 10
    x = ar1(phi, n, chains, seed=11)
    exact = (1.0 + phi) / (1.0 - phi)
    got = integrated_autocorrelation_time(x, method=method)
    assert abs(got - exact) < 4.0 * sokal_error(exact, n * chains), (got, exact)


@pytest.mark.parametrize("method", ["sokal", "geyer"])
def test_independent_noise_has_tau_one(method):
    x = np.random.default_rng(3).normal(size=(10000, 10))
    assert integrated_autocorrelation_time(x, method=method) == pytest.approx(1.0, abs=4.0 * sokal_error(1.0, x.size))


def test_geyer_sees_anticorrelation_below_one():
    """An antithetic AR(1) (φ = −0.5) has τ = (1 + φ)/(1 − φ) = 1/3: Geyer's paired sums keep it."""
    x = ar1(-0.5, 20000, 10, seed=5)
    assert integrated_autocorrelation_time(x, method="geyer") == pytest.approx(1.0 / 3.0, abs=0.02)


def test_a_hand_computed_series():
    """x = (0, 0, 1, 1): autocovariances Σ a_i a_{i+t} / n around the mean 1/2 give ρ = (1, 1/4, −1/2, −1/4).

    Sokal with c = 1: τ(M) = 1 + 2 Σ_{t≤M} ρ(t) = (1, 3/2, 1/2, …) and the first M ≥ τ(M) is M = 2, so
    τ = 1/2. Geyer: the paired sums are (ρ0 + ρ1, ρ2 + ρ3) = (5/4, −3/4); the first is kept, τ = −1 + 2·5/4.
    """
    x = np.array([0.0, 0.0, 1.0, 1.0])
    assert integrated_autocorrelation_time(x, c=1.0) == pytest.approx(0.5, abs=1e-12)
    assert integrated_autocorrelation_time(x, method="geyer") == pytest.approx(1.5, abs=1e-12)


@pytest.mark.parametrize("method", ["sokal", "geyer"])
def test_invariant_under_affine_maps_chain_order_and_input_type(method):
    x = ar1(0.6, 3000, 4, seed=2)
    tau = integrated_autocorrelation_time(x, method=method)
    assert integrated_autocorrelation_time(-3.0 * x + 7.0, method=method) == pytest.approx(tau, rel=1e-9)
    assert integrated_autocorrelation_time(x[:, ::-1], method=method) == pytest.approx(tau, rel=1e-12)
    assert integrated_autocorrelation_time(torch.as_tensor(x), method=method) == pytest.approx(tau, rel=1e-12)
    one = x[:, 0]
    column = integrated_autocorrelation_time(one[:, None], method=method)
    assert integrated_autocorrelation_time(one, method=method) == column


def test_pooled_chains_are_more_precise_than_one():
    """The autocovariance is averaged over chains: 16 chains of φ = 0.5 land closer to τ = 3 than one does."""
    x = ar1(0.5, 2000, 16, seed=8)
    pooled = abs(integrated_autocorrelation_time(x) - 3.0)
    single = np.mean([abs(integrated_autocorrelation_time(x[:, k]) - 3.0) for k in range(16)])
    assert pooled < single
    assert pooled < 4.0 * sokal_error(3.0, x.size)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_series_under_four_steps_give_nan(n):
    assert math.isnan(integrated_autocorrelation_time(np.arange(n, dtype=float)))
    assert math.isnan(integrated_autocorrelation_time(np.ones((n, 3)), method="geyer"))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_value_gives_nan(bad):
    x = ar1(0.5, 200, 2, seed=0)
    x[17, 1] = bad
    assert math.isnan(integrated_autocorrelation_time(x))


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ShapeError, match=r"\(n_steps,\) or \(n_steps, chains\)"):
        integrated_autocorrelation_time(np.zeros((10, 2, 2)))
    with pytest.raises(ConfigError, match="use 'sokal' or 'geyer'"):
        integrated_autocorrelation_time(np.random.default_rng(0).normal(size=50), method="batch-means")
