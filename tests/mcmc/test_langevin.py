"""The MALA pieces of :mod:`molsample.mcmc.langevin` directly: one transition against a hand-computed
Metropolis–Hastings step, the tamed drift's cap, the zero-CoM projection, energies and forces, a chain
of transitions on a correlated Gaussian, and what a result says about its effective samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from molsample.energies import GaussianEnergy
from molsample.mcmc.langevin import MCMCResult, energy_and_force, mala_transition, project_com, tamed_drift
from molsample.mcmc.mala import mala

F64 = torch.float64


# --------------------------------------------------------------------------- one transition by hand


def _capped(d: np.ndarray, cap: float | None) -> np.ndarray:
    """Each particle's drift (rows of ``d``) scaled down to norm ``cap`` when longer."""
    if cap is None:
        return d
    norms = np.linalg.norm(d, axis=-1, keepdims=True)
    return d * np.minimum(1.0, cap / np.maximum(norms, 1e-300))


def _hand_log_alpha(x, xi, beta, h, k, tame):
    """log α of the step x → y = x + μ-drift + √(2h)ξ for E = ½k|x|², from the textbook ratio
    π(y) q(x|y) / (π(x) q(y|x)) with q(y|x) ∝ exp(−|y − x − d(x)|²/(4h)), d the (capped) drift hβF."""
    dim = x.shape[-1]
    cap = None if tame is None else tame * math.sqrt(2.0 * h * dim)
    drift = lambda z: _capped(h * beta * (-k * z), cap)  # noqa: E731
    y = x + drift(x) + math.sqrt(2.0 * h) * xi
    energy = lambda z: 0.5 * k * float((z * z).sum())  # noqa: E731
    log_q = lambda to, frm: -float(((to - frm - drift(frm)) ** 2).sum()) / (4.0 * h)  # noqa: E731
    return y, -beta * (energy(y) - energy(x)) + log_q(x, y) - log_q(y, x)


@pytest.mark.parametrize("tame", [None, 0.3])
def test_one_transition_is_the_hand_computed_metropolis_hastings_step(tame):
    """Two chains of two 2-D particles in E = ½k|x|² (own β and h each); the uniforms put chain 0
    just below its acceptance probability (accepted) and chain 1 just above (rejected)."""
    k = 3.0
    x = torch.tensor([[[0.9, -0.4], [1.6, 0.3]], [[-1.2, 0.5], [0.2, 2.0]]], dtype=F64)
    xi = torch.tensor([[[0.3, -1.1], [0.5, 0.2]], [[-1.5, 1.2], [1.0, 1.3]]], dtype=F64)
    beta, h = torch.tensor([1.0, 0.5], dtype=F64), torch.tensor([0.15, 0.4], dtype=F64)
    hand = [_hand_log_alpha(x[c].numpy(), xi[c].numpy(), float(beta[c]), float(h[c]), k, tame) for c in range(2)]
    alpha = torch.tensor([min(1.0, math.exp(la)) for _, la in hand], dtype=F64)
    assert alpha[1] < 0.6  # the rejection below is possible
    u = torch.stack([0.9 * alpha[0], alpha[1] + 0.5 * (1 - alpha[1])])

    def evaluate(z):
        return 0.5 * k * (z * z).sum((1, 2)), -k * z

    calls = []
    e, f = evaluate(x)
    out = mala_transition(x, e, f, beta, h, evaluate=evaluate, tame=tame, remove_com=False,
                          randn=lambda: calls.append("randn") or xi, rand=lambda: calls.append("rand") or u)
    x_new, e_new, f_new, acc_prob, accepted = out
    assert calls == ["randn", "rand"]
    torch.testing.assert_close(acc_prob, alpha, rtol=1e-12, atol=1e-14)
    assert accepted.tolist() == [True, False]
    y0 = torch.as_tensor(hand[0][0])
    torch.testing.assert_close(x_new[0], y0, rtol=0, atol=1e-14)
    torch.testing.assert_close(e_new[0], 0.5 * k * (y0 * y0).sum(), rtol=1e-14, atol=0)
    torch.testing.assert_close(f_new[0], -k * y0, rtol=0, atol=1e-14)
    assert torch.equal(x_new[1], x[1]) and e_new[1] == e[1] and torch.equal(f_new[1], f[1])


@pytest.mark.parametrize("bad", ["energy", "force"])
def test_a_non_finite_proposal_is_rejected_whatever_the_uniform(bad):
    x = torch.tensor([[[0.5]], [[-0.5]]], dtype=F64)
    e, f = 0.5 * (x * x).sum((1, 2)), -x

    def evaluate(y):
        ey, fy = 0.5 * (y * y).sum((1, 2)), -y.clone()
        if bad == "energy":
            ey[0] = math.inf
        else:
            fy[0, 0, 0] = math.nan
        return ey, fy

    one = torch.ones(2, dtype=F64)
    x_new, e_new, f_new, acc_prob, accepted = mala_transition(
        x, e, f, one, 0.1 * one, evaluate=evaluate, tame=None, remove_com=False,
        randn=lambda: torch.zeros_like(x), rand=lambda: torch.full((2,), 1e-300, dtype=F64))
    assert accepted.tolist() == [False, True] and acc_prob[0] == 0.0
    assert torch.equal(x_new[0], x[0]) and e_new[0] == e[0] and torch.equal(f_new[0], f[0])
    assert torch.isfinite(f_new).all()


# --------------------------------------------------------------------------- the tamed drift


def test_the_cap_binds_each_particle_alone_and_keeps_its_direction():
    h, beta, tame = 0.02, 2.0, 1.5
    f = torch.tensor([[[300.0, -400.0], [0.3, 0.4], [0.0, 0.0]]], dtype=F64)  # |hβF| = 20, 0.02, 0
    cap = tame * math.sqrt(2 * h * 2)
    d = tamed_drift(f, torch.full((1, 1, 1), beta, dtype=F64), torch.full((1, 1, 1), h, dtype=F64), tame, False)
    torch.testing.assert_close(d[0, 0], cap * torch.tensor([0.6, -0.8], dtype=F64), rtol=1e-14, atol=0)
    torch.testing.assert_close(d[0, 1:], h * beta * f[0, 1:], rtol=1e-14, atol=0)
    plain = tamed_drift(f, torch.full((1, 1, 1), beta, dtype=F64), torch.full((1, 1, 1), h, dtype=F64), None, False)
    torch.testing.assert_close(plain, h * beta * f, rtol=1e-14, atol=0)


def test_the_cap_follows_each_chains_step_and_temperature():
    """Per-chain h and β ``(n, 1, 1)``: chain c's drift is h_c β_c F, capped at tame·√(2 h_c d)."""
    g = torch.Generator().manual_seed(0)
    f = 50.0 * torch.randn(6, 4, 3, generator=g, dtype=F64)
    h = torch.linspace(1e-3, 0.2, 6, dtype=F64).reshape(-1, 1, 1)
    beta = torch.linspace(0.5, 2.0, 6, dtype=F64).reshape(-1, 1, 1)
    d = tamed_drift(f, beta, h, 2.0, False)
    norms = d.norm(dim=-1)
    cap = (2.0 * torch.sqrt(2.0 * h * 3)).reshape(-1, 1)
    raw = (h * beta * f).norm(dim=-1)
    torch.testing.assert_close(norms, torch.minimum(raw, cap.expand_as(raw)), rtol=1e-12, atol=0)
    cos = (d * f).sum(-1) / (norms * f.norm(dim=-1))
    torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-12)


def test_the_tamed_drift_is_projected_after_capping():
    g = torch.Generator().manual_seed(1)
    f = 40.0 * torch.randn(3, 5, 3, generator=g, dtype=F64)
    beta, h = torch.ones(3, 1, 1, dtype=F64), torch.full((3, 1, 1), 0.05, dtype=F64)
    d = tamed_drift(f, beta, h, 1.0, True)
    capped = tamed_drift(f, beta, h, 1.0, False)
    assert d.mean(1).abs().max() < 1e-14
    torch.testing.assert_close(d, capped - capped.mean(1, keepdim=True), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- projection, energies and forces


def test_project_com_removes_the_mean_and_keeps_relative_vectors():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(4, 6, 3, generator=g, dtype=F64) + torch.tensor([5.0, -2.0, 1.0], dtype=F64)
    p = project_com(v, True)
    assert p.mean(1).abs().max() < 1e-14
    torch.testing.assert_close(p[:, 1:] - p[:, :1], v[:, 1:] - v[:, :1], rtol=0, atol=1e-14)
    torch.testing.assert_close(project_com(p, True), p, rtol=0, atol=1e-15)  # zero-CoM vectors stay
    assert project_com(v, False) is v


class _HarmonicCallable:
    """A plain callable E(x) = Σ c_i |x_i|² (no energy_and_force): the forces come from autograd."""

    def __init__(self, c: torch.Tensor) -> None:
        self.c = c

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.c[None, :, None] * x * x).sum((1, 2))


class _Float32Energy:
    """An energy whose own energy_and_force answers in float32."""

    def energy_and_force(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x * x).sum((1, 2)).float(), (-2.0 * x).float()


def test_energy_and_force_of_a_callable_is_minus_the_gradient():
    c = torch.tensor([0.5, 2.0, 3.0], dtype=F64)
    x = torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    e, f = energy_and_force(_HarmonicCallable(c), x)
    torch.testing.assert_close(e, (c[None, :, None] * x * x).sum((1, 2)), rtol=1e-14, atol=0)
    torch.testing.assert_close(f, -2.0 * c[None, :, None] * x, rtol=1e-14, atol=0)
    assert not e.requires_grad and not f.requires_grad and not x.requires_grad


def test_energy_and_force_uses_the_energys_own_and_casts_to_the_positions_dtype():
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    e, f = energy_and_force(_Float32Energy(), x)
    assert e.dtype == F64 and f.dtype == F64
    torch.testing.assert_close(f, -2.0 * x, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- a chain of transitions


@pytest.mark.parametrize("tame", [None, 0.5])
def test_transitions_keep_a_correlated_gaussian_at_each_chains_temperature(tame):
    """Chains at β = 1 and β = 1/2 in one batch, started in equilibrium: after 25 large steps (h = 0.6,
    the cap binding when set) each group has mean μ and covariance Σ/β within 4 standard errors."""
    mu = torch.tensor([1.0, -0.5], dtype=F64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=F64)
    gauss = GaussianEnergy(mu.tolist(), cov.tolist())
    n = 3000
    beta = torch.cat([torch.ones(n, dtype=F64), torch.full((n,), 0.5, dtype=F64)])
    g = torch.Generator().manual_seed(5)
    chol = torch.linalg.cholesky(cov)
    x = (mu + (torch.randn(2 * n, 2, generator=g, dtype=F64) @ chol.T) / beta.sqrt()[:, None])[:, None, :]

    def evaluate(z):
        return energy_and_force(gauss, z)

    e, f = evaluate(x)
    h = torch.full((2 * n,), 0.6, dtype=F64)
    acc = 0.0
    for _ in range(25):
        x, e, f, p, _ = mala_transition(x, e, f, beta, h, evaluate=evaluate, tame=tame, remove_com=False,
                                        randn=lambda: torch.randn(x.shape, generator=g, dtype=F64),
                                        rand=lambda: torch.rand(x.shape[0], generator=g, dtype=F64))
        acc += float(p.mean()) / 25
    assert 0.2 < acc < 0.95
    torch.testing.assert_close(e, gauss.energy(x), rtol=1e-12, atol=1e-12)  # the kept energies are x's
    for group, b in ((slice(0, n), 1.0), (slice(n, 2 * n), 0.5)):
        s = x[group, 0, :]
        c = cov / b
        se_mean = torch.sqrt(torch.diag(c) / n)
        assert torch.all((s.mean(0) - mu).abs() < 4 * se_mean), (s.mean(0), mu)
        se_cov = torch.sqrt((torch.diag(c)[:, None] * torch.diag(c)[None, :] + c * c) / n)
        assert torch.all((torch.cov(s.T) - c).abs() < 4 * se_cov), (torch.cov(s.T), c)


# --------------------------------------------------------------------------- what a result says


def _result(n: int, tau: float | None) -> MCMCResult:
    return MCMCResult(samples=torch.zeros(n, 1, 1), energies=torch.zeros(n), acceptance=0.5, step_size=0.1,
                      n_energy_evals=n, tau_int=tau)


@pytest.mark.parametrize("tau, expected", [(4.0, 25.0), (1.0, 100.0), (0.25, 100.0), (None, 100.0),
                                           (math.nan, 100.0), (math.inf, 100.0), (-2.0, 100.0)])
def test_effective_samples_are_n_over_tau_at_most_n(tau, expected):
    assert _result(100, tau).n_effective == expected


@pytest.mark.parametrize("kept, has_tau", [(7, False), (8, True)])
def test_tau_int_needs_eight_kept_states(kept, has_tau):
    """Under 8 kept states a chain's τ_int is not estimated (None) and every sample counts as effective."""
    gauss = GaussianEnergy([0.0], [[1.0]])
    r = mala(gauss, 1.0, torch.zeros(16, 1, 1, dtype=F64), n_steps=kept, burn_in=0, step_size=0.5,
             generator=torch.Generator().manual_seed(6))
    assert r.energy_trace.shape == (kept, 16)
    assert (r.tau_int is not None) is has_tau
    if has_tau:
        assert math.isfinite(r.tau_int) and r.tau_int > 0
    else:
        assert r.n_effective == 16 * kept
