"""ODE sampling and log-likelihoods against closed forms; solvers, estimators, round trips."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.errors import ConfigError
from molsample.flows.distributions import CoMFreeGaussian, StandardGaussian
from molsample.flows.ode import SOLVERS, ODEResult, field_divergence, integrate, log_likelihood, sample
from molsample.nets import EGNN, MLPVelocity

# torch emits this from its own forward-mode AD decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class LinearField(torch.nn.Module):
    """b(t, x) = A x on the flattened coordinates; the flow is x(t) = expm(tA) x(0), ∇·b = tr A."""

    def __init__(self, a: torch.Tensor, event_shape: tuple[int, int]) -> None:
        super().__init__()
        self.a, self.event_shape = a, event_shape

    def forward(self, t, x):
        return (x.reshape(x.shape[0], -1) @ self.a.T).reshape(x.shape)


class GaussianBridge(torch.nn.Module):
    """Exact linear-interpolant velocity from N(0, I) (t=0) to N(μ, s²I) (t=1).

    x_t = (1−t) x0 + t x1 has law N(tμ, σ_t² I), σ_t² = (1−t)² + t²s², and
    b_t(x) = μ + (t s² − (1 − t))/σ_t² · (x − tμ).
    """

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, t, x):
        t = torch.as_tensor(t, dtype=x.dtype)
        var = (1 - t) ** 2 + t**2 * self.s**2
        return self.mu + (t * self.s**2 - (1 - t)) / var * (x - t * self.mu)

    def target_log_prob(self, x):
        z = (x - self.mu) / self.s
        d = x[0].numel()
        return -0.5 * (z * z).sum(dim=(1, 2)) - d * math.log(self.s) - 0.5 * d * math.log(2 * math.pi)


@pytest.fixture
def bridge():
    return GaussianBridge(torch.tensor([[1.0, -2.0]], dtype=torch.float64), 0.5)


def random_egnn(n=5, d=3, seed=0):
    torch.manual_seed(seed)
    net = EGNN(n, d, hidden=16, n_layers=3).double()
    for layer in net.layers:
        torch.nn.init.normal_(layer.coord_out.weight, std=0.3)
    return net


def test_linear_field_closed_form(generator):
    a = torch.randn(4, 4, generator=generator, dtype=torch.float64) * 0.5
    field = LinearField(a, (2, 2))
    x0 = torch.randn(6, 2, 2, generator=generator, dtype=torch.float64)
    logp0 = torch.randn(6, generator=generator, dtype=torch.float64)
    res = integrate(field, x0, logp0=logp0, method="rk4", steps=40, with_logq=True)
    expected_x = (x0.reshape(6, 4) @ torch.linalg.matrix_exp(a).T).reshape(6, 2, 2)
    assert isinstance(res, ODEResult) and res.divergence == "exact" and res.nfe == 4 * 40
    assert torch.allclose(res.x1, expected_x, atol=1e-7)
    assert torch.allclose(res.logq, logp0 - torch.trace(a), atol=1e-6)
    # a partial interval: logq changes by −tr(A)·(t1 − t0)
    part = integrate(field, x0, t0=0.2, t1=0.7, method="rk4", steps=10, with_logq=True)
    assert torch.allclose(part.logq, torch.full((6,), -0.5 * float(torch.trace(a)), dtype=torch.float64), atol=1e-12)


def test_log_likelihood_sign_on_a_linear_field(generator):
    # x1 = expm(A) x0, so log q(x1) = log p0(expm(−A) x1) − tr A: the divergence term is subtracted
    a = torch.randn(4, 4, generator=generator, dtype=torch.float64) * 0.5
    base = StandardGaussian((2, 2))
    x1 = torch.randn(5, 2, 2, generator=generator, dtype=torch.float64)
    x0 = (x1.reshape(5, 4) @ torch.linalg.matrix_exp(-a).T).reshape(5, 2, 2)
    ll = log_likelihood(LinearField(a, (2, 2)), base, x1, method="rk4", steps=40)
    assert torch.allclose(ll, base.log_prob(x0) - torch.trace(a), atol=1e-6)


@pytest.mark.parametrize("method, steps, tol", [("euler", 400, 5e-2), ("midpoint", 100, 1e-4),
                                                ("rk4", 100, 1e-7), ("dopri5", None, 1e-5)])
def test_gaussian_to_gaussian_flow(method, steps, tol, bridge, generator):
    base = StandardGaussian((1, 2))
    kwargs = {"steps": steps} if steps else {"atol": 1e-8, "rtol": 1e-8}
    res = sample(bridge, base, 64, generator=generator, dtype=torch.float64, method=method, with_logq=True, **kwargs)
    # the flow is linear: x1 = μ + s·x0 exactly
    assert torch.allclose(res.x1, bridge.mu + bridge.s * res.x0, atol=tol)
    assert torch.allclose(res.logq, bridge.target_log_prob(res.x1), atol=tol)
    stages = {"euler": 1, "midpoint": 2, "rk4": 4}
    if method in stages:
        assert res.nfe == stages[method] * steps
    else:
        assert res.nfe > 0


def test_log_likelihood_of_data_points(bridge, generator):
    base = StandardGaussian((1, 2))
    x1 = bridge.mu + torch.randn(20, 1, 2, generator=generator, dtype=torch.float64) * 0.7
    ll = log_likelihood(bridge, base, x1, method="rk4", steps=100)
    assert torch.allclose(ll, bridge.target_log_prob(x1), atol=1e-7)


def test_reverse_log_likelihood_inverts_sampling(generator):
    net = random_egnn()
    base = CoMFreeGaussian(5, 3)
    res = sample(net, base, 4, generator=generator, dtype=torch.float64, method="rk4", steps=20, with_logq=True)
    assert res.x1.mean(dim=1).abs().max() < 1e-10  # the flow stays on the zero-CoM subspace
    assert (res.logq - base.log_prob(res.x0)).abs().max() > 1e-2  # the divergence is not trivial
    back = integrate(net, res.x1, t0=1.0, t1=0.0, method="rk4", steps=20)
    assert torch.allclose(back.x1, res.x0, atol=1e-5)
    ll = log_likelihood(net, base, res.x1, method="rk4", steps=20)
    assert torch.allclose(ll, res.logq, atol=1e-5)


def test_generic_exact_divergence_matches_egnn_own(generator):
    net = random_egnn()
    x = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64)
    v_own, div_own = field_divergence(net, 0.3, x)
    v_gen, div_gen = field_divergence(lambda t, y: net(t, y), 0.3, x)  # no velocity_and_divergence
    assert torch.allclose(v_own, v_gen, atol=1e-13) and torch.allclose(div_own, div_gen, atol=1e-10)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_agrees_with_exact_in_mean(probe):
    torch.manual_seed(1)
    net = MLPVelocity(n_particles=2, dim=2, hidden=32, n_freqs=2, n_layers=2).double()
    x0 = torch.randn(1, 2, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = integrate(net, x0, method="midpoint", steps=10, with_logq=True)
    many = x0.expand(2000, 2, 2).clone()
    est = integrate(net, many, method="midpoint", steps=10, with_logq=True, divergence="hutchinson", probe=probe,
                    generator=torch.Generator().manual_seed(0))
    assert est.divergence == "hutchinson"
    assert torch.allclose(est.x1, exact.x1.expand_as(est.x1), atol=1e-12)
    se = est.logq.std() / math.sqrt(est.logq.numel())
    assert est.logq.std() > 1e-3  # the estimator is noisy ...
    assert abs(float(est.logq.mean() - exact.logq[0])) < 5 * float(se)  # ... and unbiased
    runs = [integrate(net, many[:50], method="midpoint", steps=10, with_logq=True, divergence="hutchinson",
                      probe=probe, generator=torch.Generator().manual_seed(seed)).logq for seed in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])  # reproducible with a generator


def test_chunking_gives_same_result(generator):
    net = random_egnn(n=4)
    base = CoMFreeGaussian(4, 3)
    x0 = base.sample(5, generator=generator, dtype=torch.float64)
    full = integrate(net, x0, method="euler", steps=5, with_logq=True)
    chunked = integrate(net, x0, method="euler", steps=5, with_logq=True, chunk_size=3)
    assert torch.allclose(full.x1, chunked.x1, atol=1e-13) and torch.allclose(full.logq, chunked.logq, atol=1e-12)
    plain = integrate(net, x0, method="euler", steps=5, chunk_size=2)
    assert plain.logq is None and plain.divergence == "none"
    assert torch.allclose(plain.x1, full.x1, atol=1e-13)


def test_no_autograd_graph_and_float32(generator):
    net = MLPVelocity()
    res = sample(net, StandardGaussian((1, 2)), 16, generator=generator, method="midpoint", steps=4, with_logq=True)
    assert res.x1.dtype == torch.float32 and not res.x1.requires_grad and not res.logq.requires_grad
    assert torch.isfinite(res.logq).all()


def test_errors(bridge):
    x0 = torch.zeros(2, 1, 2, dtype=torch.float64)
    with pytest.raises(ConfigError) as info:
        integrate(bridge, x0, method="rk45")
    assert all(name in str(info.value) for name in SOLVERS)
    with pytest.raises(ConfigError, match="divergence"):
        integrate(bridge, x0, with_logq=True, divergence="skilling")
    with pytest.raises(ConfigError, match="with_logq"):
        integrate(bridge, x0, with_logq=True, divergence="none")
    with pytest.raises(ConfigError, match="steps"):
        integrate(bridge, x0, steps=0)
    with pytest.raises(ConfigError, match="t0"):
        log_likelihood(bridge, StandardGaussian((1, 2)), x0, t0=0.5)
