"""Regression targets and losses of flow matching and the tilt family (ITM, ETM, WFM, RAM).

All functions take one minibatch of the annealing loop at level a with step h:

* ``v``: ``(B, n, d)`` prediction b̂(t, I_t) of the network being trained (with grad);
* ``v_prev``: ``(B, n, d)`` the frozen level-a field b_a(t, I_t) (no grad);
* ``dxt``: ``(B, n, d)`` the interpolant velocity İ_t;
* ``hr``: ``(B,)`` the scaled, centred reward h·(r(x1) − c).

The constant c may be any number fixed for the level: it leaves the fixed points of ITM, ETM
and WFM unchanged (docs/tilt-matching.md). Per-sample squared errors are summed over particles
and dimensions and averaged over the batch.
"""

from __future__ import annotations

import torch

from molsample.sampling.weights import ess

METHODS = ("itm", "etm", "wfm", "ram")


def _sq(err: torch.Tensor) -> torch.Tensor:
    """Per-sample squared norm, ``(B,)``."""
    return err.pow(2).flatten(1).sum(-1)


def _bcast(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return c.reshape(-1, *([1] * (like.dim() - 1)))


def flow_matching_target(dxt: torch.Tensor) -> torch.Tensor:
    """Flow matching regresses b̂(t, I_t) on İ_t."""
    return dxt


def itm_target(v: torch.Tensor, v_prev: torch.Tensor, dxt: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Implicit Tilt Matching target T = b_a + (e^{hr} − 1)(İ_t − sg[b̂]).

    Its fixed point b̂ = E[e^{hr} İ | x] / E[e^{hr} | x] is exactly b_{a+h}.
    """
    return v_prev + _bcast(torch.expm1(hr), v) * (dxt - v.detach())


def etm_target(v_prev: torch.Tensor, dxt: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Explicit (first-order) Tilt Matching target T = b_a + h r (İ_t − b_a)."""
    return v_prev + _bcast(hr, v_prev) * (dxt - v_prev)


def ram_target(v: torch.Tensor, v_prev: torch.Tensor, dxt: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Reinforce-Adjoint-Matching-style target T = b_a + h r (İ_t − sg[b̂]) (ITM to first order in hr)."""
    return v_prev + _bcast(hr, v) * (dxt - v.detach())


def tilt_loss(
    method: str,
    v: torch.Tensor,
    v_prev: torch.Tensor | None,
    dxt: torch.Tensor,
    hr: torch.Tensor,
) -> torch.Tensor:
    """Scalar loss of one minibatch for ``method`` in :data:`METHODS`.

    WFM uses self-normalized weights e^{hr}/Σe^{hr} on ‖b̂ − İ_t‖² (it needs no ``v_prev``).
    """
    if method == "itm":
        target = itm_target(v, v_prev, dxt, hr)
    elif method == "etm":
        target = etm_target(v_prev, dxt, hr)
    elif method == "ram":
        target = ram_target(v, v_prev, dxt, hr)
    elif method == "wfm":
        w = torch.softmax(hr, dim=0)
        return (w * _sq(v - dxt)).sum()
    else:
        from molsample.errors import ConfigError

        raise ConfigError(f"unknown tilt method {method!r}; use one of {', '.join(METHODS)}")
    return _sq(v - target).mean()


def log_mean_exp(x: torch.Tensor) -> torch.Tensor:
    """log(mean(exp(x))) computed stably."""
    return torch.logsumexp(x, dim=0) - torch.log(torch.tensor(float(x.numel()), dtype=x.dtype, device=x.device))


def center_reward(r: torch.Tensor, h: float, mode: str) -> torch.Tensor:
    """Return h·(r − c) for the level, with c chosen by ``mode``.

    * ``"lme"``: c = (1/h)·log mean e^{hr} over the level's samples, so the incremental weights
      e^{h(r−c)} average to exactly 1 and none exceeds the number of samples — no overflow for
      any finite reward;
    * ``"mean"``: c = mean r;
    * ``"none"``: c = 0 (the raw reward, e.g. for RAM as published).
    """
    hr = h * r
    if mode == "lme":
        return hr - log_mean_exp(hr)
    if mode == "mean":
        return hr - hr.mean()
    if mode == "none":
        return hr
    from molsample.errors import ConfigError

    raise ConfigError(f"unknown reward centring {mode!r}; use lme, mean or none")


def incremental_ess(r: torch.Tensor, h: float) -> float:
    """Normalized ESS of the incremental weights e^{h r} over a level's samples, in [1/n, 1]."""
    return ess(h * r)


def choose_step(r: torch.Tensor, a: float, target_ess: float, *, h_min: float = 1e-6, tol: float = 1e-3) -> float:
    """Adaptive step: the largest h ≤ 1 − a with ESS(e^{h r}) ≥ ``target_ess`` (bisection).

    No divergence is needed: the incremental weights only involve the reward of the level's
    samples (adaptive tempering as in SMC). Returns at least ``h_min`` so the loop always advances.
    """
    h_max = 1.0 - a
    if h_max <= 0:
        return 0.0
    if incremental_ess(r, h_max) >= target_ess:
        return h_max
    lo, hi = 0.0, h_max
    while hi - lo > tol * max(lo, h_min):
        mid = 0.5 * (lo + hi)
        if incremental_ess(r, mid) >= target_ess:
            lo = mid
        else:
            hi = mid
        if hi < h_min:
            break
    return min(max(lo, h_min), h_max)
