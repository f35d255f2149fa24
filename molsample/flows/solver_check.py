r"""How far a flow's log q is from the density of its samples: the solver gap.

A sample is x1 = Φ_h(x0), the fixed-step solver's discrete map of a base sample x0; its density is
log p0(x0) − log|det ∂Φ_h/∂x0|. The log q that molsample stores is the continuous-time change of
variables, log p0(x0) − ∫∇·b dt, integrated with the same solver and steps. Two checks measure
what that costs:

* **the shift of log q** (:func:`fine_log_q`): log q of the stored samples recomputed by a finer
  solver, integrating backwards from x1 (:func:`~molsample.flows.ode.log_likelihood`). The shift
  fine − stored moves every log-weight by −shift, so it moves log Ẑ and the ESS
  (:func:`shifted_summaries`).
* **the discrete-map gap** (:func:`discrete_gap`): for a handful of fresh base samples, the exact
  log|det ∂Φ_h/∂x0| by ``torch.func.jacrev`` in float64 against the solver's own log q;
  gap = log q_solver − log q_discrete. It is O(h²) for midpoint and O(h⁴) for rk4; its mean is a
  bias of every log-weight (and of log Ẑ) that no standard error covers.

The discrete map is rebuilt here step by step with the tableaux of the solvers behind
:func:`~molsample.flows.ode.integrate` (torchdiffeq: euler, midpoint, and rk4 by the 3/8 rule) on
the same time grid, so it is the map that drew the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from molsample.errors import ConfigError, ShapeError
from molsample.flows.ode import integrate, log_likelihood
from molsample.flows.weights import WeightSummary, summarize

__all__ = ["MAX_JACOBIAN_DIM", "DiscreteGap", "discrete_gap", "discrete_log_det", "discrete_map", "fine_log_q",
           "shifted_summaries", "solver_step"]

#: the discrete-map Jacobian is formed only up to this many flow coordinates (one reverse pass each)
MAX_JACOBIAN_DIM = 100

_STEPPED = ("euler", "midpoint", "rk4")


def solver_step(method: str) -> Callable[[Callable[[Tensor, Tensor], Tensor], Tensor, Tensor, Tensor], Tensor]:
    """One step ``step(f, t0, dt, y) -> y_next`` of the fixed-step solver ``method`` (the tableau of
    :func:`~molsample.flows.ode.integrate`: euler, midpoint, rk4 by the 3/8 rule)."""
    def euler(f, t0, dt, y):
        return y + dt * f(t0, y)

    def midpoint(f, t0, dt, y):
        return y + dt * f(t0 + 0.5 * dt, y + 0.5 * dt * f(t0, y))

    def rk4(f, t0, dt, y):
        k1 = f(t0, y)
        k2 = f(t0 + dt / 3, y + dt * k1 / 3)
        k3 = f(t0 + 2 * dt / 3, y + dt * (k2 - k1 / 3))
        k4 = f(t0 + dt, y + dt * (k1 - k2 + k3))
        return y + (k1 + 3 * (k2 + k3) + k4) * dt * 0.125

    steps = {"euler": euler, "midpoint": midpoint, "rk4": rk4}
    if method not in steps:
        raise ConfigError(f"the discrete-map check takes a fixed-step solver ({', '.join(_STEPPED)}), "
                          f"not {method!r}")
    return steps[method]


def discrete_map(field: nn.Module, x0: Tensor, *, method: str, steps: int) -> Tensor:
    """Φ_h(x0): ``steps`` solver steps from t = 0 to 1, ``(batch, n, d)``, differentiable in ``x0``."""
    step = solver_step(method)
    grid = torch.linspace(0.0, 1.0, int(steps) + 1, dtype=x0.dtype, device=x0.device)
    y = x0
    for k in range(int(steps)):
        y = step(field, grid[k], grid[k + 1] - grid[k], y)
    return y


def discrete_log_det(field: nn.Module, x0: Tensor, *, method: str, steps: int) -> Tensor:
    """log|det ∂Φ_h/∂x0| per sample, ``(batch,)`` float64, by ``torch.func.jacrev`` in float64.

    Raises:
        ShapeError: more than :data:`MAX_JACOBIAN_DIM` coordinates per sample.
    """
    shape = tuple(x0.shape[1:])
    dim = math.prod(shape)
    if dim > MAX_JACOBIAN_DIM:
        raise ShapeError(f"the discrete-map Jacobian has {dim} × {dim} entries per sample; it is formed only up to "
                         f"{MAX_JACOBIAN_DIM} coordinates (skip it: --discrete 0)")
    field64 = field.to(torch.float64)

    def flat_map(v: Tensor) -> Tensor:
        return discrete_map(field64, v.reshape(1, *shape), method=method, steps=steps).reshape(dim)

    out = []
    for v in x0.to(torch.float64).reshape(-1, dim):
        jac = torch.func.jacrev(flat_map)(v)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out) if out else x0.new_zeros(0, dtype=torch.float64)


@dataclass(frozen=True)
class DiscreteGap:
    """The solver's log q against the exact density of its discrete map, on fresh base samples.

    Attributes:
        gap: ``(k,)`` log q_solver − log q_discrete (nats) per sample.
        method, steps: the solver checked.
    """

    gap: Tensor
    method: str
    steps: int

    @property
    def mean(self) -> float:
        return float(self.gap.mean()) if self.gap.numel() else math.nan

    @property
    def std(self) -> float:
        return float(self.gap.std(correction=1)) if self.gap.numel() > 1 else math.nan


def discrete_gap(field: nn.Module, base: Any, n: int, *, method: str, steps: int,
                 generator: torch.Generator | None = None) -> DiscreteGap:
    """The gap log q_solver − log q_discrete on ``n`` fresh base samples, float64 throughout.

    log q_solver is :func:`~molsample.flows.ode.integrate`'s (exact divergence, ``method`` × ``steps``);
    log q_discrete = log p0(x0) − log|det ∂Φ_h/∂x0| (:func:`discrete_log_det`).
    """
    field64 = field.to(torch.float64)
    x0 = base.sample(int(n), generator=generator, dtype=torch.float64)
    logp0 = base.log_prob(x0).to(torch.float64)
    res = integrate(field64, x0, logp0=logp0, method=method, steps=steps, with_logq=True)
    exact = logp0 - discrete_log_det(field64, x0, method=method, steps=steps)
    return DiscreteGap(gap=(res.logq.double() - exact).detach(), method=method, steps=int(steps))


def fine_log_q(field: nn.Module, base: Any, z: Tensor, *, method: str, steps: int,
               chunk_size: int | None = 64) -> Tensor:
    """log q of given samples ``z: (m, *event_shape)`` in the flow's coordinates by a finer solver,
    integrated backwards from t = 1 (exact divergence, float64), ``(m,)``."""
    field64 = field.to(torch.float64)
    return log_likelihood(field64, base, z.to(torch.float64), method=method, steps=steps,
                          chunk_size=chunk_size).double()


def shifted_summaries(logw: Tensor, shift: Tensor) -> tuple[WeightSummary, WeightSummary]:
    """``(stored, fine)`` weight summaries of a subset: the stored log-weights ``(m,)`` and those with
    log q raised by ``shift`` ``(m,)`` (log w − shift)."""
    lw = torch.as_tensor(logw, dtype=torch.float64)
    return summarize(lw), summarize(lw - torch.as_tensor(shift, dtype=torch.float64))
