"""Parallel tempering against exact answers: a double well's moments at kT = 1 by quadrature, the
swap acceptance between Gaussian replicas in closed form, per-temperature step sizes, the swap
rates it reports and its bookkeeping. (Resuming from a checkpoint is in test_mala.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from molsample.energies import Energy, GaussianEnergy
from molsample.errors import ConfigError
from molsample.mcmc.parallel_tempering import geometric_ladder, parallel_tempering

F64 = torch.float64


class TiltedDoubleWell(Energy):
    """E(x) = barrier·(x² − 1)² + tilt·x for one particle in 1-D: the left well the deeper one."""

    def __init__(self, barrier: float = 5.0, tilt: float = 0.8) -> None:
        super().__init__(1, 1)
        self.barrier, self.tilt = barrier, tilt

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0, 0]
        return self.barrier * (s * s - 1.0) ** 2 + self.tilt * s


def quadrature_moments(energy: Energy, kT: float) -> dict[str, float]:
    """⟨x⟩, ⟨x²⟩ and P(x > 0) under exp(−E/kT) on a fine grid over [−3, 3]."""
    s = torch.linspace(-3.0, 3.0, 200001, dtype=F64)
    p = torch.exp(-energy.energy(s[:, None, None]) / kT)
    p = p / p.sum()
    return {"mean": float((p * s).sum()), "second": float((p * s * s).sum()), "right": float(p[s > 0].sum())}


def test_the_target_chain_has_the_double_wells_moments():
    """Every chain starts in the shallower right well; across 32 independent chains (a chain only
    swaps with its own replicas) the kT = 1 means of x, x² and 1[x > 0] are within 4.5 standard
    errors of the quadrature values."""
    well = TiltedDoubleWell()
    chains = 32
    r = parallel_tempering(well, geometric_ladder(1.0, 10.0, 4), torch.ones(chains, 1, 1, dtype=F64),
                           n_steps=1000, burn_in=200, generator=torch.Generator().manual_seed(1))
    x = r.samples[:, 0, 0].reshape(-1, chains)  # samples[k * chains + c]: (kept, chains)
    exact = quadrature_moments(well, 1.0)
    assert exact["right"] < 0.2  # most of the mass is in the well no chain started in
    for name, per_chain in (("mean", x.mean(0)), ("second", (x * x).mean(0)), ("right", (x > 0).double().mean(0))):
        se = float(per_chain.std()) / math.sqrt(chains)
        assert abs(float(per_chain.mean()) - exact[name]) < 4.5 * se, (name, float(per_chain.mean()), exact[name], se)
    assert len(r.swap_rates) == 3 and all(0.0 < s < 1.0 for s in r.swap_rates)


def expected_swap_rate(kT_lo: float, kT_hi: float, dof: int, n: int = 1_000_000) -> float:
    """E[min(1, exp((1/kT_lo − 1/kT_hi)(E_lo − E_hi)))] for independent Gaussian replicas with ``dof``
    degrees of freedom, whose energies are E = kT·χ²_dof/2 (Monte Carlo, standard error < 5e-4)."""
    rng = np.random.default_rng(0)
    e_lo, e_hi = kT_lo * rng.chisquare(dof, n) / 2, kT_hi * rng.chisquare(dof, n) / 2
    return float(np.minimum(1.0, np.exp((1 / kT_lo - 1 / kT_hi) * (e_lo - e_hi))).mean())


def test_swap_rates_match_the_closed_form_for_gaussian_replicas():
    """E = ½x², kTs (1, 2, 4): both neighbour pairs (ratio 2) accept 0.783 of their swaps; the
    opposite sign of the exchange exponent would give 0.908. The target replicas stay N(0, 1)."""
    gauss = GaussianEnergy([0.0], [[1.0]])
    kts = [1.0, 2.0, 4.0]
    r = parallel_tempering(gauss, kts, torch.zeros(200, 1, 1, dtype=F64), n_steps=400, burn_in=100,
                           generator=torch.Generator().manual_seed(0))
    exact = expected_swap_rate(1.0, 2.0, 1)
    assert exact == pytest.approx(expected_swap_rate(2.0, 4.0, 1), abs=2e-3)  # only the ratio matters
    assert r.swap_rates == pytest.approx([exact, exact], abs=0.02)
    n_eff = r.samples.shape[0] / r.tau_int
    assert float(r.samples.var()) == pytest.approx(1.0, abs=4.0 * math.sqrt(2.0 / n_eff))
    # MALA on exp(−E/kT) for a Gaussian: the adapted step scales with kT, one step per temperature
    h = torch.as_tensor(r.step_size)
    assert h.shape == (3,)
    assert (h[1:] / h[:-1]).tolist() == pytest.approx([2.0, 2.0], rel=0.15)
    assert len(r.acceptance_by_kT) == 3 and all(0.5 < a < 0.65 for a in r.acceptance_by_kT)
    assert r.acceptance == r.acceptance_by_kT[0]


def test_a_pair_never_offered_a_swap_has_rate_nan():
    """Swaps alternate between even pairs (count even) and odd pairs; one production step offers
    only the odd pair (kT 2, 4), and a swap interval longer than the run offers none."""
    gauss = GaussianEnergy([0.0], [[1.0]])
    x0 = torch.zeros(8, 1, 1, dtype=F64)
    one = parallel_tempering(gauss, [1.0, 2.0, 4.0], x0, n_steps=1, burn_in=0, step_size=0.1,
                             generator=torch.Generator().manual_seed(0))
    assert math.isnan(one.swap_rates[0]) and 0.0 <= one.swap_rates[1] <= 1.0
    none = parallel_tempering(gauss, [1.0, 2.0, 4.0], x0, n_steps=5, burn_in=0, swap_every=6, step_size=0.1)
    assert all(math.isnan(s) for s in none.swap_rates)


@pytest.mark.parametrize("thin", [1, 3])
def test_bookkeeping_of_samples_energies_and_evaluations(thin):
    well = TiltedDoubleWell()
    chains, n_steps, burn_in, n_t = 6, 30, 10, 3
    r = parallel_tempering(well, [1.0, 1.5, 2.25], torch.ones(chains, 1, 1, dtype=F64), n_steps=n_steps,
                           burn_in=burn_in, thin=thin, step_size=[0.05, 0.08, 0.1],
                           generator=torch.Generator().manual_seed(2))
    kept = n_steps // thin
    assert r.samples.shape == (kept * chains, 1, 1) and r.energies.shape == (kept * chains,)
    assert r.energy_trace.shape == (kept, chains)
    torch.testing.assert_close(r.energies, well.energy(r.samples), rtol=1e-12, atol=1e-12)
    # a fixed step: the initial state and one evaluation per replica and step, no step-size probe
    assert r.n_energy_evals == n_t * chains * (n_steps + burn_in + 1)
    assert torch.as_tensor(r.step_size).tolist() == pytest.approx([0.05, 0.08, 0.1])
    assert r.kT == [1.0, 1.5, 2.25] and r.n_chains == chains


def test_the_same_seed_gives_the_same_chains():
    well = TiltedDoubleWell()
    x0 = torch.ones(4, 1, 1, dtype=F64)

    def run(seed: int):
        return parallel_tempering(well, [1.0, 2.0], x0, n_steps=20, burn_in=10,
                                  generator=torch.Generator().manual_seed(seed))

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.samples, b.samples) and a.swap_rates == b.swap_rates
    assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kTs=[1.0, 2.0], swap_every=0), "swap_every must be >= 1"),
    (dict(kTs=[0.0, 2.0]), "kTs must be positive"),
    (dict(kTs=[1.0, 1.0]), "increase strictly"),
    (dict(kTs=[]), "kTs must be positive"),
])
def test_bad_ladders_are_one_line_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        parallel_tempering(GaussianEnergy([0.0], [[1.0]]), x_init=torch.zeros(2, 1, 1, dtype=F64), n_steps=1,
                           burn_in=1, **kwargs)


def test_geometric_ladder_has_a_constant_ratio():
    lad = geometric_ladder(0.5, 40.0, 6)
    ratios = [b / a for a, b in zip(lad, lad[1:])]
    assert lad[0] == 0.5 and lad[-1] == pytest.approx(40.0)
    assert ratios == pytest.approx([80.0 ** 0.2] * 5)
    with pytest.raises(ConfigError, match="n >= 1"):
        geometric_ladder(1.0, 2.0, 0)
    with pytest.raises(ConfigError, match="0 < kT_min"):
        geometric_ladder(0.0, 2.0, 3)
