"""The HMC kernel: exact for exp(−βE) (a correlated Gaussian, a double well), a reversible leapfrog
with an O(h²) energy error, the zero-CoM subspace, non-finite trajectories rejected, L evaluations a step."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.energies.base import Energy
from molsample.errors import ConfigError
from molsample.mcmc.hmc import leapfrog
from molsample.mcmc.kernels import KERNELS, HMCKernel, MALAKernel

# a correlated 3-D Gaussian: covariance C, energy ½ xᵀ C⁻¹ x
COV = torch.tensor([[1.0, 0.5, 0.2], [0.5, 0.8, -0.2], [0.2, -0.2, 0.6]], dtype=torch.float64)
MEAN = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)


class Gaussian(Energy):
    def __init__(self) -> None:
        super().__init__(1, 3)
        self.prec = torch.linalg.inv(COV)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, 0] - MEAN
        return 0.5 * torch.einsum("bi,ij,bj->b", d, self.prec, d)


class DoubleWell(Energy):
    """E = a (x² − 1)² per coordinate (1-D by default): wells at ±1, barrier a."""

    def __init__(self, a: float = 2.0, n_particles: int = 1, dim: int = 1) -> None:
        super().__init__(n_particles, dim)
        self.a = a

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * ((x**2 - 1.0) ** 2).flatten(1).sum(1)


def _chain(kernel, x, beta, h, steps):
    e, f = kernel.evaluate(x)
    acc = 0.0
    for _ in range(steps):
        out = kernel.step(x, e, f, beta, h)
        x, e, f = out.x, out.energy, out.force
        acc += float(out.accept_prob.mean())
    return x, acc / steps


def test_registry_names_both_kernels_with_their_target_acceptance():
    assert KERNELS == {"mala": MALAKernel, "hmc": HMCKernel}
    assert MALAKernel.target_accept == 0.574 and HMCKernel.target_accept == 0.65
    with pytest.raises(ConfigError, match="leapfrog_steps must be an integer >= 1"):
        HMCKernel(Gaussian(), remove_com=False, leapfrog_steps=0)


def test_one_leapfrog_step_is_mala_without_taming():
    """L = 1 with ε = √(2h) is MALA's proposal and its Metropolis–Hastings ratio, draw for draw."""
    energy = DoubleWell(1.5, 3, 2)
    x = torch.randn(200, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = []
    for kernel in (HMCKernel(energy, remove_com=True, generator=torch.Generator().manual_seed(5), leapfrog_steps=1),
                   MALAKernel(energy, remove_com=True, generator=torch.Generator().manual_seed(5), tame=None)):
        xs = x - x.mean(1, keepdim=True)
        e, f = kernel.evaluate(xs)
        probs = []
        for _ in range(5):
            out = kernel.step(xs, e, f, 0.8, 0.05)
            xs, e, f = out.x, out.energy, out.force
            probs.append(out.accept_prob)
        runs.append((xs, torch.stack(probs)))
    assert 0.2 < float(runs[0][1].mean()) < 0.95
    torch.testing.assert_close(runs[0][0], runs[1][0], atol=1e-10, rtol=0)
    torch.testing.assert_close(runs[0][1], runs[1][1], atol=1e-9, rtol=0)


def _flow(energy, x, p, beta, eps, steps):
    k = HMCKernel(energy, remove_com=False)
    _, f = k.evaluate(x)
    n = x.shape[0]
    return leapfrog(x, p, f, torch.full((n,), beta, dtype=x.dtype), torch.full((n,), eps, dtype=x.dtype), steps,
                    evaluate=k.evaluate, remove_com=False)


def test_the_leapfrog_is_reversible():
    g = torch.Generator().manual_seed(1)
    energy = DoubleWell(2.0, 2, 2)
    x0 = torch.randn(50, 2, 2, generator=g, dtype=torch.float64)
    p0 = torch.randn(50, 2, 2, generator=g, dtype=torch.float64)
    x1, p1, _, _, ok = _flow(energy, x0, p0, 1.3, 0.05, 40)
    assert ok.all() and (x1 - x0).abs().max() > 0.1
    x2, p2, _, _, _ = _flow(energy, x1, -p1, 1.3, 0.05, 40)
    torch.testing.assert_close(x2, x0, atol=1e-10, rtol=0)
    torch.testing.assert_close(p2, -p0, atol=1e-10, rtol=0)


def test_the_leapfrog_energy_error_shrinks_as_h_squared():
    """Over a trajectory of fixed time T = L ε the error of H = βE + ½|p|² is O(ε²) = O(h)."""
    g = torch.Generator().manual_seed(2)
    energy = DoubleWell(1.0, 1, 2)
    x0 = torch.randn(400, 1, 2, generator=g, dtype=torch.float64)
    p0 = torch.randn(400, 1, 2, generator=g, dtype=torch.float64)
    beta = 1.0
    h0 = beta * energy.energy(x0) + 0.5 * (p0**2).flatten(1).sum(1)
    errors = []
    for eps in (0.04, 0.02, 0.01):
        x, p, e, _, ok = _flow(energy, x0, p0, beta, eps, round(1.0 / eps))
        assert ok.all()
        errors.append(float((beta * e + 0.5 * (p**2).flatten(1).sum(1) - h0).abs().mean()))
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(3.6 < r < 4.4 for r in ratios), (errors, ratios)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_hmc_samples_a_correlated_gaussian(beta):
    """Chains started far off relax to N(μ, C/β): mean and covariance of the last states (independent
    chains) within 4 standard errors; a large step, so that only the accept/reject makes it exact."""
    n = 4000
    g = torch.Generator().manual_seed(3)
    k = HMCKernel(Gaussian(), remove_com=False, generator=g, leapfrog_steps=5)
    x = torch.full((n, 1, 3), 2.0, dtype=torch.float64)
    x, acc = _chain(k, x, beta, 0.18 / beta, 60)
    assert 0.3 < acc < 0.95
    flat = x[:, 0]
    cov = COV / beta
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((flat.mean(0) - MEAN).abs() / se_mean).max() < 4.0
    emp = torch.cov(flat.T)
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((emp - cov).abs() / se_cov).max() < 4.0, emp
    assert k.n_evals == n * (1 + 5 * 60)  # L evaluations per step, plus the start


def test_hmc_samples_a_double_well_in_both_wells():
    """1-D E = 2(x² − 1)² at β = 1 from every chain in the right well: the histogram of the last
    states matches the exact density (χ² over 16 bins) and half the chains end in the left well."""
    n = 4000
    g = torch.Generator().manual_seed(4)
    k = HMCKernel(DoubleWell(2.0), remove_com=False, generator=g, leapfrog_steps=8)
    x, acc = _chain(k, torch.ones(n, 1, 1, dtype=torch.float64), 1.0, 0.02, 150)
    assert acc > 0.6
    grid = torch.linspace(-2.5, 2.5, 200_001, dtype=torch.float64)
    dens = torch.exp(-2.0 * (grid**2 - 1.0) ** 2)
    edges = torch.linspace(-2.0, 2.0, 17, dtype=torch.float64)
    idx = torch.bucketize(grid, edges)
    probs = torch.zeros(18, dtype=torch.float64).index_add_(0, idx, dens) / dens.sum()
    counts = torch.zeros(18, dtype=torch.float64).index_add_(0, torch.bucketize(x.flatten(), edges),
                                                             torch.ones(n, dtype=torch.float64))
    expected = n * probs
    use = expected > 5
    chi2 = float((((counts - expected) ** 2 / expected)[use]).sum())
    dof = int(use.sum()) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)
    assert abs(float((x < 0).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / n)


def test_hmc_stays_on_the_zero_com_subspace_with_per_particle_steps():
    g = torch.Generator().manual_seed(1)
    energy = DoubleWell(0.5, 4, 2)  # an external field: only the projection keeps the CoM at 0
    x = torch.randn(500, 4, 2, generator=g, dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    k = HMCKernel(energy, remove_com=True, generator=g, leapfrog_steps=4)
    h = torch.linspace(0.005, 0.05, 500, dtype=torch.float64)
    x, acc = _chain(k, x, 1.0, h, 20)
    assert acc > 0.5 and x.mean(1).abs().max() < 1e-12


class NanOnCall(Energy):
    """½x², except that chain 0 gets a NaN energy on evaluation number ``bad_call``."""

    def __init__(self, bad_call: int) -> None:
        super().__init__(1, 2)
        self.calls, self.bad_call = 0, bad_call

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        e = 0.5 * (x**2).flatten(1).sum(1)
        if self.calls == self.bad_call:
            e = torch.cat([torch.full_like(e[:1], math.nan), e[1:]])
        return e


def test_a_trajectory_through_a_non_finite_point_is_rejected():
    """A NaN in the middle of chain 0's trajectory (its end is finite) rejects chain 0 alone; an
    infinite energy outside |x| < 2 rejects every proposal that lands there."""
    energy = NanOnCall(bad_call=3)  # call 1: the start; calls 2–5: the four leapfrog points
    x = torch.randn(64, 1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = HMCKernel(energy, remove_com=False, generator=torch.Generator().manual_seed(1), leapfrog_steps=4)
    e, f = k.evaluate(x)
    out = k.step(x, e, f, 1.0, 0.01)
    assert energy.calls == 5
    assert not out.accepted[0] and out.accept_prob[0] == 0 and torch.equal(out.x[0], x[0]) and out.energy[0] == e[0]
    assert out.accepted[1:].float().mean() > 0.9 and torch.isfinite(out.energy).all()

    class Walled(Energy):
        def _energy(self, x):
            e = 0.5 * (x**2).flatten(1).sum(1)
            return torch.where(x.norm(dim=-1).amax(1) < 2.0, e, torch.full_like(e, math.inf))

    k = HMCKernel(Walled(1, 2), remove_com=False, generator=torch.Generator().manual_seed(2), leapfrog_steps=3)
    x = torch.zeros(32, 1, 2, dtype=torch.float64)
    e, f = k.evaluate(x)
    out = k.step(x, e, f, 1.0, 5000.0)  # every trajectory leaves the box at its first step
    assert not out.accepted.any() and torch.equal(out.x, x) and (out.accept_prob == 0).all()
