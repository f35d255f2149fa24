"""Oracles for the tilt targets on one conditional 'bucket' of discrete samples.

Conditioned on I_t = x, the regression targets' conditional means define the fixed points.
With K samples (İ_k, r_k) in one bucket, the exact tilted velocity is
b* = Σ e^{h r_k} İ_k / Σ e^{h r_k}; these tests check each loss's fixed point against it.
"""

import math

import pytest
import torch

from molsample.training.losses import (
    center_reward,
    choose_step,
    etm_target,
    incremental_ess,
    itm_target,
    ram_target,
    tilt_loss,
)


@pytest.fixture
def bucket():
    g = torch.Generator().manual_seed(0)
    K = 64
    dxt = torch.randn(K, 3, 2, generator=g, dtype=torch.float64)
    r = torch.randn(K, generator=g, dtype=torch.float64) + 0.5 * dxt[:, 0, 0]  # reward correlated with İ
    return dxt, r


def exact_tilt(dxt, r, h):
    w = torch.softmax(h * r, 0)
    return (w[:, None, None] * dxt).sum(0)


@pytest.mark.parametrize("h", [0.1, 1.0, 3.0])
@pytest.mark.parametrize("center", ["lme", "mean", "none"])
def test_itm_fixed_point_is_exact_tilt(bucket, h, center):
    dxt, r = bucket
    b_prev = dxt.mean(0).expand_as(dxt)  # b_a = E[İ | x]
    b_star = exact_tilt(dxt, r, h).expand_as(dxt)
    hr = center_reward(r, h, center)
    target = itm_target(b_star, b_prev, dxt, hr)
    # the conditional mean of the target at b̂ = b* is b* itself
    torch.testing.assert_close(target.mean(0), b_star[0], atol=1e-12, rtol=0)


def test_itm_fixed_point_iteration_converges(bucket):
    dxt, r = bucket
    h = 1.0
    hr = center_reward(r, h, "lme")
    b_prev = dxt.mean(0).expand_as(dxt)
    v = b_prev.clone()
    for _ in range(200):
        v = itm_target(v, b_prev, dxt, hr).mean(0).expand_as(dxt)
    torch.testing.assert_close(v[0], exact_tilt(dxt, r, h), atol=1e-9, rtol=0)


def test_etm_is_first_order(bucket):
    dxt, r = bucket
    b_prev = dxt.mean(0).expand_as(dxt)
    for h in (1e-3, 1e-2):
        target = etm_target(b_prev, dxt, center_reward(r, h, "mean")).mean(0)
        err = (target - exact_tilt(dxt, r, h)).abs().max().item()
        assert err < 5 * h**2 * (dxt.abs().max() * r.abs().max() ** 2).item()
    # and it is biased at h = 1
    target = etm_target(b_prev, dxt, center_reward(r, 1.0, "mean")).mean(0)
    assert (target - exact_tilt(dxt, r, 1.0)).abs().max() > 1e-2


def test_wfm_minimizer_is_exact_tilt(bucket):
    dxt, r = bucket
    h = 2.0
    v = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([v], max_iter=100, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        loss = tilt_loss("wfm", v.expand_as(dxt), None, dxt, center_reward(r, h, "lme"))
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(v.detach(), exact_tilt(dxt, r, h), atol=1e-8, rtol=0)


def test_ram_is_itm_to_first_order(bucket):
    dxt, r = bucket
    b_prev = dxt.mean(0).expand_as(dxt)
    hr = center_reward(r, 1e-4, "none")
    torch.testing.assert_close(ram_target(b_prev, b_prev, dxt, hr), itm_target(b_prev, b_prev, dxt, hr),
                               atol=2e-6, rtol=0)


def test_constant_shift_of_reward_is_invisible_after_centring(bucket):
    _, r = bucket
    for mode in ("lme", "mean"):
        torch.testing.assert_close(center_reward(r + 1234.5, 0.3, mode), center_reward(r, 0.3, mode))


@pytest.mark.parametrize("method", ["itm", "etm", "wfm"])
def test_huge_rewards_stay_finite(bucket, method):
    dxt, r = bucket
    h = 1.0
    huge = 1e4 * r  # |h r| ~ 1e4: e^{hr} overflows float64 without centring
    hr = center_reward(huge, h, "mean" if method == "etm" else "lme")
    v = torch.zeros_like(dxt, requires_grad=True)
    loss = tilt_loss(method, v, dxt.mean(0).expand_as(dxt), dxt, hr.float().double())
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(v.grad).all()
    assert torch.exp(hr).max() <= len(hr) + 1e-6 if method != "etm" else True


def test_incremental_ess_and_adaptive_step():
    r = torch.randn(1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 5
    assert incremental_ess(r, 0.0) == pytest.approx(1.0)
    h = choose_step(r, 0.0, 0.9)
    assert 0 < h < 1
    assert incremental_ess(r, h) == pytest.approx(0.9, abs=2e-3)
    # a flat reward takes the whole remaining step at once
    assert choose_step(torch.zeros(10, dtype=torch.float64), 0.3, 0.9) == pytest.approx(0.7)
    assert choose_step(r, 1.0, 0.9) == 0.0


def test_unknown_method():
    from molsample.errors import ConfigError

    with pytest.raises(ConfigError, match="itm"):
        tilt_loss("xyz", torch.zeros(2, 1, 2), None, torch.zeros(2, 1, 2), torch.zeros(2))
