"""Regression targets and losses of flow matching and the tilt family (ITM, ETM, WFM, RAM).

All functions take one minibatch of the annealing loop at level a with step h:

* ``v``: ``(B, n, d)`` prediction b̂(t, I_t) of the network being trained (with grad);
* ``v_prev``: ``(B, n, d)`` the frozen level-a field b_a(t, I_t) (no grad);
* ``dxt``: ``(B, n, d)`` the interpolant velocity İ_t;
* ``hr``: ``(B,)`` the scaled, centred reward h·(r(x1) − c).

The constant c may be any number fixed for the level: it leaves the fixed points of ITM, ETM
and WFM unchanged (docs/tilt-matching.md). Each registered loss returns per-sample squared errors
(summed over particles and dimensions), ``(B,)``; :func:`tilt_loss` combines them with per-sample
weights that sum to 1 over the minibatch (1/B, or e^{hr}/Σe^{hr} for WFM). Weights computed on
the whole minibatch let a distributed run split it over ranks without changing the loss.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from molsample.errors import ConfigError
from molsample.flows.weights import ess


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


@dataclasses.dataclass(frozen=True)
class TiltLoss:
    """One registered tilt loss.

    Attributes:
        name: the ``tilt.method`` / ``--method`` name.
        loss: ``loss(v, v_prev, dxt, hr) -> (B,)`` per-sample losses (``v_prev`` is None when
            ``needs_frozen`` is False).
        needs_frozen: whether the loss evaluates the frozen level-a field b_a.
        centring: the default reward centring (``lme`` | ``mean`` | ``none``, see :func:`center_reward`).
        summary: one line for ``--help``.
        weighting: ``mean`` (weights 1/B) or ``softmax`` (self-normalized e^{hr}/Σe^{hr}).
    """

    name: str
    loss: Callable[..., torch.Tensor]
    needs_frozen: bool
    centring: str
    summary: str
    weighting: str = "mean"

    def weights(self, hr: torch.Tensor) -> torch.Tensor:
        """Per-sample weights of a whole minibatch, ``(B,)``, summing to 1."""
        if self.weighting == "softmax":
            return torch.softmax(hr, dim=0)
        return torch.full_like(hr, 1.0 / len(hr))


#: method name → :class:`TiltLoss`; the single source of the names the config and the CLI accept
LOSSES: dict[str, TiltLoss] = {}


WEIGHTINGS = ("mean", "softmax")


def register_loss(name: str, *, needs_frozen: bool, centring: str, summary: str, weighting: str = "mean"):
    """Decorator registering ``loss(v, v_prev, dxt, hr) -> (B,)`` (per-sample losses) under ``name``."""
    if centring not in CENTRINGS:
        raise ValueError(f"centring {centring!r} of loss {name!r} is not one of {CENTRINGS}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r} of loss {name!r} is not one of {WEIGHTINGS}")

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        LOSSES[name] = TiltLoss(name, fn, needs_frozen, centring, summary, weighting)
        return fn
    return wrap


#: reward centrings of :func:`center_reward`
CENTRINGS = ("lme", "mean", "none")


def get_loss(method: str) -> TiltLoss:
    """The registered loss ``method``; :class:`ConfigError` naming the known ones otherwise."""
    try:
        return LOSSES[method]
    except KeyError:
        raise ConfigError(f"unknown tilt method {method!r}; use one of {', '.join(LOSSES)}") from None


@register_loss("itm", needs_frozen=True, centring="lme", summary="implicit Tilt Matching (exact fixed point)")
def _itm_loss(v, v_prev, dxt, hr):
    return _sq(v - itm_target(v, v_prev, dxt, hr))


@register_loss("etm", needs_frozen=True, centring="mean", summary="explicit (first-order) Tilt Matching")
def _etm_loss(v, v_prev, dxt, hr):
    return _sq(v - etm_target(v_prev, dxt, hr))


@register_loss("wfm", needs_frozen=False, centring="lme", summary="weighted flow matching (self-normalized)",
               weighting="softmax")
def _wfm_loss(v, v_prev, dxt, hr):
    return _sq(v - dxt)


@register_loss("ram", needs_frozen=True, centring="none", summary="Reinforce-Adjoint-Matching-style target")
def _ram_loss(v, v_prev, dxt, hr):
    return _sq(v - ram_target(v, v_prev, dxt, hr))


#: the registered method names (kept for callers of the old tuple)
METHODS = tuple(LOSSES)


def tilt_loss(
    method: str,
    v: torch.Tensor,
    v_prev: torch.Tensor | None,
    dxt: torch.Tensor,
    hr: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar loss Σ_i w_i ℓ_i of one minibatch for a registered ``method`` (see :data:`LOSSES`).

    ``weights`` (``(B,)``) default to the loss's own (:meth:`TiltLoss.weights` of ``hr``); a shard
    of a larger minibatch passes its share of the whole minibatch's weights. WFM uses
    self-normalized weights e^{hr}/Σe^{hr} on ‖b̂ − İ_t‖² (it needs no ``v_prev``).
    """
    spec = get_loss(method)
    w = spec.weights(hr) if weights is None else weights
    return (w.to(v.dtype) * spec.loss(v, v_prev, dxt, hr)).sum()


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
