"""The solver gap of log q against a closed-form flow: a constant linear field b(t, x) = A x on a
Gaussian base, whose flow map is e^A (density N(0, e^A e^Aᵀ)) and whose midpoint map is
(I + hA + h²A²/2)^N."""

import math

import pytest
import torch

from molsample.errors import ShapeError
from molsample.flows.distributions import StandardGaussian
from molsample.flows.ode import integrate
from molsample.flows.solver_check import (discrete_gap, discrete_log_det, discrete_map, fine_log_q,
                                          shifted_summaries)
from molsample.flows.weights import summarize
from molsample.nets.affine import AffineVelocity

D = 3
A = torch.tensor([[-0.4, 0.9, 0.0], [-0.3, 0.2, 0.5], [0.1, -0.6, -0.8]], dtype=torch.float64)


def linear_field() -> AffineVelocity:
    field = AffineVelocity(n_particles=1, dim=D, degree=0).double()
    with torch.no_grad():
        field.A[0] = A
    return field


def gaussian_log_density(x: torch.Tensor) -> torch.Tensor:
    """The exact density of the flow: N(0, Σ) with Σ = e^A e^Aᵀ."""
    m = torch.linalg.matrix_exp(A)
    dist = torch.distributions.MultivariateNormal(torch.zeros(D, dtype=torch.float64), m @ m.T)
    return dist.log_prob(x.reshape(len(x), D))


def midpoint_matrix(steps: int) -> torch.Tensor:
    h = 1.0 / steps
    one = torch.eye(D, dtype=torch.float64) + h * A + 0.5 * h * h * A @ A
    return torch.linalg.matrix_power(one, steps)


def coarse_samples(steps: int, n: int = 64):
    base = StandardGaussian((1, D))
    x0 = base.sample(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = integrate(linear_field(), x0, logp0=base.log_prob(x0), method="midpoint", steps=steps, with_logq=True)
    return base, x0, res


def test_the_discrete_map_is_the_solver_map():
    base, x0, res = coarse_samples(7)
    x1 = discrete_map(linear_field(), x0, method="midpoint", steps=7)
    torch.testing.assert_close(x1, res.x1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x1.reshape(-1, D), x0.reshape(-1, D) @ midpoint_matrix(7).T)
    for method in ("euler", "rk4"):
        ref = integrate(linear_field(), x0, method=method, steps=5).x1
        torch.testing.assert_close(discrete_map(linear_field(), x0, method=method, steps=5), ref,
                                   rtol=1e-12, atol=1e-12)


def test_euler_log_det_on_a_linear_field_is_log_det_of_one_step_times_steps():
    x0 = torch.randn(3, 1, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for steps in (1, 4, 10):
        expected = steps * torch.linalg.slogdet(torch.eye(D, dtype=torch.float64) + A / steps)[1]
        got = discrete_log_det(linear_field(), x0, method="euler", steps=steps)
        torch.testing.assert_close(got, expected.expand(3), rtol=1e-12, atol=1e-12)


def test_fine_log_q_matches_the_closed_form_density_and_the_coarse_one_is_off_by_h_squared():
    base = StandardGaussian((1, D))
    diffs = {}
    for steps in (10, 20):
        _, _, res = coarse_samples(steps)
        fine = fine_log_q(linear_field(), base, res.x1, method="rk4", steps=100)
        exact = gaussian_log_density(res.x1)
        torch.testing.assert_close(fine, exact, rtol=0, atol=1e-7)
        diffs[steps] = (res.logq.double() - exact).abs().mean().item()
    assert diffs[10] > 1e-4  # the coarse solver's log q is not the flow's density ...
    assert 3.5 < diffs[10] / diffs[20] < 4.5  # ... and the difference shrinks as h²


def test_discrete_gap_is_log_det_of_the_midpoint_map_minus_the_trace():
    base = StandardGaussian((1, D))
    gaps = {}
    for steps in (10, 20, 40):
        g = discrete_gap(linear_field(), base, 4, method="midpoint", steps=steps,
                         generator=torch.Generator().manual_seed(0))
        expected = torch.linalg.slogdet(midpoint_matrix(steps))[1] - torch.trace(A)
        torch.testing.assert_close(g.gap, expected.expand(4), rtol=0, atol=1e-10)
        gaps[steps] = g.mean
    # O(h²): log det M − tr A = −h² tr(A³)/6 + O(h³)
    assert gaps[10] == pytest.approx(-torch.trace(A @ A @ A).item() / 600, rel=0.1)
    assert 3.5 < gaps[10] / gaps[20] < 4.5 and 3.5 < gaps[20] / gaps[40] < 4.5


def test_discrete_log_det_refuses_large_flows():
    with pytest.raises(ShapeError, match="100 coordinates"):
        discrete_log_det(linear_field(), torch.zeros(1, 101, 1), method="euler", steps=1)


def test_shifted_summaries_move_log_z_by_the_mean_shift_for_a_constant_shift():
    logw = torch.randn(500, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    before, after = shifted_summaries(logw, torch.full((500,), 0.25, dtype=torch.float64))
    assert before.log_z == pytest.approx(summarize(logw).log_z)
    assert after.log_z - before.log_z == pytest.approx(-0.25)
    assert after.ess == pytest.approx(before.ess)
    assert math.isfinite(after.log_z_se)
