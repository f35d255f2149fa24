"""MALA, parallel tempering, MALA correction and the autocorrelation time against exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from molsample.energies import Energy, GaussianEnergy, LennardJones
from molsample.errors import ConfigError, EnergyError, ShapeError
from molsample.mcmc.mala import (
    geometric_ladder,
    integrated_autocorrelation_time,
    mala,
    mala_correct,
    parallel_tempering,
)

MEAN = [1.0, -0.5, 2.0]
COV = [[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]]


@pytest.fixture
def gaussian() -> GaussianEnergy:
    return GaussianEnergy(MEAN, COV)


class DoubleWell1D(Energy):
    """E(x) = barrier·(x² − 1)² + tilt·x for one particle in 1-D: two wells, the left one deeper."""

    def __init__(self, barrier: float = 6.0, tilt: float = 1.0) -> None:
        super().__init__(1, 1)
        self.barrier, self.tilt = barrier, tilt

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0, 0]
        return self.barrier * (s * s - 1.0) ** 2 + self.tilt * s


def assert_cov_close(x: torch.Tensor, cov: list[list[float]], n_eff: float, k: float = 4.0) -> None:
    """Sample covariance of ``x (n, d)`` equals ``cov`` within k standard errors √((ΣiiΣjj + Σij²)/n_eff)."""
    c = torch.tensor(cov, dtype=torch.float64)
    se = torch.sqrt((torch.diag(c)[:, None] * torch.diag(c)[None, :] + c * c) / n_eff)
    assert torch.all((torch.cov(x.T) - c).abs() < k * se), (torch.cov(x.T), c)


def exact_right_fraction(e: DoubleWell1D, kT: float) -> float:
    s = torch.linspace(-3, 3, 200001, dtype=torch.float64)
    p = torch.exp(-e.energy(s[:, None, None]) / kT)
    return float(p[s > 0].sum() / p.sum())


def test_mala_gaussian_mean_and_covariance(gaussian, generator):
    x0 = torch.zeros(64, 1, 3, dtype=torch.float64)
    r = mala(gaussian, 1.0, x0, n_steps=800, burn_in=300, generator=generator)
    x = r.samples[:, 0, :]
    assert r.samples.shape == (64 * 800, 1, 3) and r.energies.shape == (64 * 800,)
    # an exact MH chain: mean within ~4 Monte Carlo errors, covariance within a few percent
    err = 4 * torch.sqrt(torch.diag(torch.tensor(COV)) * r.tau_int / x.shape[0])
    assert torch.all((x.mean(0) - torch.tensor(MEAN, dtype=torch.float64)).abs() < err)
    assert_cov_close(x, COV, x.shape[0] / r.tau_int)
    # the step was adapted toward the target acceptance during burn-in, then frozen
    assert abs(r.acceptance - 0.574) < 0.05
    assert isinstance(r.step_size, float) and r.step_size > 0
    # one evaluation per chain per step (+ initial state + one for the first step guess)
    assert r.n_energy_evals == 64 * (800 + 300 + 2)
    # energies are the energies of the returned samples
    assert torch.allclose(r.energies, gaussian.energy(r.samples))


@pytest.mark.parametrize("step_size", [0.8, 1.2])
def test_mala_exact_with_large_fixed_step(gaussian, generator, step_size):
    """At these steps unadjusted Langevin diverges and an MH step without the proposal-density
    ratio halves the variances; the exact MH correction keeps them."""
    x0 = torch.zeros(64, 1, 3, dtype=torch.float64)
    r = mala(gaussian, 1.0, x0, n_steps=1000, burn_in=100, step_size=step_size, generator=generator)
    var = torch.var(r.samples[:, 0, :], dim=0)
    assert torch.allclose(var, torch.diag(torch.tensor(COV, dtype=torch.float64)), rtol=0.1)
    assert r.step_size == pytest.approx(step_size)


def test_tamed_drift_is_still_exact(gaussian, generator):
    """A strongly capped drift is a different (still exact) proposal: same target moments."""
    x0 = torch.zeros(64, 1, 3, dtype=torch.float64)
    r = mala(gaussian, 1.0, x0, n_steps=1000, burn_in=100, step_size=0.8, tame=0.1, generator=generator)
    var = torch.var(r.samples[:, 0, :], dim=0)
    assert torch.allclose(var, torch.diag(torch.tensor(COV, dtype=torch.float64)), rtol=0.1)


def test_taming_unfreezes_stiff_states(generator):
    """Two LJ atoms at 0.72 r_m: the plain MALA drift overshoots at every step and the chain freezes."""
    lj = LennardJones(3, 3, pair_factor=2.0, oscillator_scale=1.0)
    x0 = torch.tensor([[0.0, 0.0, 0.0], [0.72, 0.0, 0.0], [0.3, 1.0, 0.0]], dtype=torch.float64).repeat(16, 1, 1)
    plain = mala(lj, 1.0, x0, n_steps=200, burn_in=0, step_size=5e-4, tame=None, generator=generator)
    tamed = mala(lj, 1.0, x0, n_steps=200, burn_in=0, step_size=5e-4, generator=generator)
    assert plain.acceptance < 0.01
    assert tamed.acceptance > 0.3


def test_mala_temperature_scales_variance(generator):
    e = GaussianEnergy([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    r = mala(e, 2.5, torch.zeros(64, 1, 2, dtype=torch.float64), n_steps=600, burn_in=200, generator=generator)
    assert torch.var(r.samples[:, 0, :], dim=0) == pytest.approx(torch.full((2,), 2.5, dtype=torch.float64), rel=0.1)


def test_mala_keeps_centre_of_mass_at_zero(generator):
    lj = LennardJones(5, 3, oscillator_scale=1.0)
    x0 = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=torch.float64)
    x0 = (x0 + 3.0).repeat(8, 1, 1)  # off-centre start: it is centred first
    r = mala(lj, 0.5, x0, n_steps=100, burn_in=50, generator=generator)
    assert r.samples.mean(dim=1).abs().max() < 1e-12
    assert 0.3 < r.acceptance < 0.8


def test_mala_rejects_non_finite_proposals(generator):
    class Wall(Energy):
        """Harmonic well with an infinite wall at x > 1 (NaN beyond x > 2)."""

        def __init__(self):
            super().__init__(1, 1)

        def _energy(self, x):
            s = x[:, 0, 0]
            e = 0.5 * s * s
            e = torch.where(s > 1.0, torch.full_like(e, math.inf), e)
            return torch.where(s > 2.0, torch.full_like(e, math.nan), e)

    r = mala(Wall(), 1.0, torch.zeros(32, 1, 1, dtype=torch.float64), n_steps=400, burn_in=100,
             step_size=0.5, generator=generator)
    assert torch.isfinite(r.samples).all() and torch.isfinite(r.energies).all()
    assert r.samples.max() <= 1.0
    # truncated standard normal on (−∞, 1]: mean −φ(1)/Φ(1)
    expected = -math.exp(-0.5) / math.sqrt(2 * math.pi) / (0.5 * (1 + math.erf(1 / math.sqrt(2))))
    assert r.samples.mean().item() == pytest.approx(expected, abs=0.05)


def test_pt_recovers_both_wells_that_mala_misses(generator):
    e = DoubleWell1D(barrier=10.0, tilt=1.0)
    exact = exact_right_fraction(e, 1.0)
    x0 = torch.ones(32, 1, 1, dtype=torch.float64)  # every chain starts in the shallower well
    pt = parallel_tempering(e, geometric_ladder(1.0, 16.0, 5), x0, n_steps=1500, burn_in=300, generator=generator)
    frac = (pt.samples[:, 0, 0] > 0).double().mean().item()
    assert frac == pytest.approx(exact, abs=0.04)
    assert len(pt.swap_rates) == 4 and all(0.2 < s <= 1.0 for s in pt.swap_rates)
    assert pt.samples.shape == (32 * 1500, 1, 1)
    assert pt.kT == geometric_ladder(1.0, 16.0, 5)
    assert pt.n_energy_evals == 5 * 32 * (1500 + 300 + 2)
    plain = mala(e, 1.0, x0, n_steps=1500, burn_in=300, generator=generator)
    assert (plain.samples[:, 0, 0] > 0).double().mean().item() > exact + 0.5


def test_pt_single_temperature_is_mala(gaussian, generator):
    r = parallel_tempering(gaussian, [1.0], torch.zeros(32, 1, 3, dtype=torch.float64), n_steps=500, burn_in=200,
                           generator=generator)
    assert r.swap_rates == []
    assert torch.allclose(r.samples[:, 0].mean(0), torch.tensor(MEAN, dtype=torch.float64), atol=0.15)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_tau_int_of_ar1(rho):
    g = np.random.default_rng(0)
    n, chains = 40000, 8
    eps = g.normal(size=(n, chains))
    x = np.empty_like(eps)
    x[0] = eps[0] / math.sqrt(1 - rho**2)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + eps[t]
    exact = (1 + rho) / (1 - rho)
    assert integrated_autocorrelation_time(x) == pytest.approx(exact, rel=0.1)
    assert integrated_autocorrelation_time(torch.as_tensor(x), method="geyer") == pytest.approx(exact, rel=0.1)
    assert integrated_autocorrelation_time(x[:, 0]) == pytest.approx(exact, rel=0.3)


def test_tau_int_degenerate_and_stuck_chains():
    assert math.isnan(integrated_autocorrelation_time(np.ones(100)))
    # two chains stuck at different values: never decorrelate
    g = np.random.default_rng(1)
    stuck = np.stack([g.normal(size=500), 10 + g.normal(size=500)], axis=1)
    assert integrated_autocorrelation_time(stuck) > 50


def test_mala_correct_keeps_exact_samples_exact(gaussian, generator):
    x = gaussian.sample(4000, generator)
    r = mala_correct(gaussian, 1.0, x, n_steps=20, generator=generator)
    assert r.samples.shape == x.shape
    assert torch.allclose(r.samples[:, 0].mean(0), torch.tensor(MEAN, dtype=torch.float64), atol=0.1)
    assert_cov_close(r.samples[:, 0], COV, 4000)
    assert 0.4 < r.acceptance < 0.75
    assert torch.allclose(r.energies, gaussian.energy(r.samples))
    # the chains moved
    assert (r.samples - x).abs().max() > 0.5


def test_mala_correct_moves_wrong_samples_to_target(gaussian, generator):
    x = torch.zeros(2000, 1, 3, dtype=torch.float64)  # a collapsed "flow"
    r = mala_correct(gaussian, 1.0, x, n_steps=150, step_size=0.4, generator=generator)
    assert torch.allclose(r.samples[:, 0].mean(0), torch.tensor(MEAN, dtype=torch.float64), atol=0.1)
    assert torch.allclose(torch.var(r.samples[:, 0], 0), torch.diag(torch.tensor(COV, dtype=torch.float64)), rtol=0.15)
    none = mala_correct(gaussian, 1.0, x, n_steps=0)
    assert torch.equal(none.samples, x)


def test_mala_correct_tolerates_non_finite_samples(generator):
    """A flow sample with overlapping atoms (here: NaN energy) does not stop the correction."""
    lj = LennardJones(4, 3, pair_factor=2.0, oscillator_scale=1.0)
    good = torch.tensor([[0, 0, 0], [1, 0, 0], [0.5, 0.87, 0], [0.5, 0.29, 0.82]], dtype=torch.float64)
    x = good.repeat(8, 1, 1) + 0.02 * torch.randn(8, 4, 3, generator=generator, dtype=torch.float64)
    x[3, 1] = float("nan")
    r = mala_correct(lj, 0.5, x, n_steps=30, generator=generator)
    assert r.samples.shape == x.shape
    ok = torch.arange(8) != 3
    assert torch.isfinite(r.energies[ok]).all() and torch.isfinite(r.samples[ok]).all()


def test_geometric_ladder():
    lad = geometric_ladder(1.0, 8.0, 4)
    assert lad == pytest.approx([1.0, 2.0, 4.0, 8.0])
    assert geometric_ladder(2.0, 5.0, 1) == [2.0]
    with pytest.raises(ConfigError):
        geometric_ladder(2.0, 1.0, 3)


def test_user_errors(gaussian):
    x0 = torch.zeros(4, 1, 3, dtype=torch.float64)
    with pytest.raises(ShapeError, match="reshape"):
        mala(gaussian, 1.0, torch.zeros(4, 2, 3), n_steps=1, burn_in=1)
    with pytest.raises(ConfigError, match="step_size"):
        mala(gaussian, 1.0, x0, n_steps=1, burn_in=0)
    with pytest.raises(ConfigError, match="increase"):
        parallel_tempering(gaussian, [2.0, 1.0], x0, n_steps=1, burn_in=1)
    with pytest.raises(EnergyError, match="non-finite"):
        mala(LennardJones(3, 3), 1.0, torch.full((4, 3, 3), math.nan, dtype=torch.float64), n_steps=1, burn_in=1)


# --------------------------------------------------------------------------- checkpoint and resume


class _Stop(Exception):
    pass


class _StopAfter(Energy):
    """An energy that raises after ``calls`` evaluations: a run killed part-way."""

    def __init__(self, inner: Energy, calls: int) -> None:
        super().__init__(inner.n_particles, inner.dim)
        self.inner, self.calls = inner, calls

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        self.calls -= 1
        if self.calls < 0:
            raise _Stop
        return self.inner._energy(x)


@pytest.mark.parametrize("sampler", ["mala", "pt"])
def test_a_stopped_chain_resumes_to_the_same_samples(tmp_path, sampler):
    from molsample.mcmc.mala import ChainCheckpoint

    well = DoubleWell1D()
    x0 = torch.full((6, 1, 1), -1.0, dtype=torch.float64)

    def run(energy, checkpoint=None):
        kw = dict(n_steps=60, burn_in=40, thin=3, generator=torch.Generator().manual_seed(7), remove_com=False,
                  checkpoint=checkpoint)
        if sampler == "mala":
            return mala(energy, 0.5, x0, **kw)
        return parallel_tempering(energy, [0.5, 1.0, 2.0], x0, swap_every=2, **kw)

    full = run(well)
    ckpt = ChainCheckpoint(tmp_path / "chains.ckpt.pt", every_s=0.0)
    with pytest.raises(_Stop):  # stopped in production, after burn-in and some kept samples
        run(_StopAfter(well, 75), ckpt)
    assert ckpt.path.is_file()
    resumed = run(well, ckpt)
    assert torch.equal(resumed.samples, full.samples) and torch.equal(resumed.energies, full.energies)
    assert resumed.n_energy_evals == full.n_energy_evals and resumed.acceptance == full.acceptance
    assert torch.equal(torch.as_tensor(resumed.step_size), torch.as_tensor(full.step_size))
    if sampler == "pt":
        assert resumed.swap_rates == full.swap_rates
    assert not ckpt.path.exists()  # removed once the run completed
    with pytest.raises(_Stop):  # stopped during burn-in (the step size still adapting)
        run(_StopAfter(well, 20), ckpt)
    assert torch.equal(run(well, ckpt).samples, full.samples)


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    from molsample.mcmc.mala import ChainCheckpoint

    well = DoubleWell1D()
    x0 = torch.full((4, 1, 1), -1.0, dtype=torch.float64)
    ckpt = ChainCheckpoint(tmp_path / "c.pt", every_s=0.0)
    with pytest.raises(_Stop):
        mala(_StopAfter(well, 30), 0.5, x0, n_steps=40, burn_in=20, remove_com=False, checkpoint=ckpt)
    with pytest.raises(ConfigError, match="other settings"):
        mala(well, 0.5, x0, n_steps=80, burn_in=20, remove_com=False, checkpoint=ckpt)
