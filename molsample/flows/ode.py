r"""Integrate a velocity field from the base (t = 0) to the target (t = 1), with the log-density.

Along a trajectory of dx/dt = b_t(x) the model density obeys d log q_t(x_t)/dt = −∇·b_t(x_t), so

    log q_1(x_1) = log q_0(x_0) − ∫_0^1 ∇·b_t(x_t) dt.

:func:`integrate` solves x and log q jointly with torchdiffeq; :func:`sample` starts from base
samples; :func:`log_likelihood` runs the ODE backwards from given points to the base.

Divergence estimators (``divergence=``):

* ``"exact"`` — the trace of the Jacobian. Fields that define ``velocity_and_divergence(t, x)``
  (the :class:`~molsample.nets.EGNN`) compute it themselves; any other field gets forward-mode
  JVPs along all n·dim coordinate directions (``torch.func.jvp`` vmapped over basis vectors).
* ``"hutchinson"`` — εᵀ(∂b/∂x)ε with one probe ε per sample, fixed for the whole solve
  (Rademacher by default, ``probe="gaussian"`` for normal probes; ``generator`` makes it
  reproducible). Unbiased for log q but the noise makes importance weights exp(−E − log q)
  **biased**: do not use it for ESS or free energies.

For systems on the zero-centre-of-mass subspace the full-space divergence equals the divergence
on the subspace provided the field is translation invariant (the EGNN is): then J·1 = 0 and
tr(P J P) = tr(J) for the projection P.

Everything runs under ``torch.no_grad``: the field's parameters are not trained through the ODE.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from molsample.errors import ConfigError, ShapeError

__all__ = ["ODEResult", "SOLVERS", "DIVERGENCES", "integrate", "sample", "log_likelihood", "field_divergence"]

#: solver names accepted by :func:`integrate` (fixed step: euler, midpoint, rk4; adaptive: dopri5)
SOLVERS: tuple[str, ...] = ("euler", "midpoint", "rk4", "dopri5")
#: divergence estimators
DIVERGENCES: tuple[str, ...] = ("exact", "hutchinson", "none")
_FIXED = ("euler", "midpoint", "rk4")
_PROBES = ("rademacher", "gaussian")

#: element budget for the generic (vmapped JVP) exact divergence of one field evaluation
GENERIC_DIV_MAX_ELEMENTS = 2**24

Field = Callable[[Tensor, Tensor], Tensor]


@dataclass
class ODEResult:
    """Result of one ODE solve.

    Attributes:
        x0: ``(batch, n, d)`` the initial state (at ``t0``).
        x1: ``(batch, n, d)`` the final state (at ``t1``).
        logq: ``(batch,)`` log-density of ``x1``: ``logp0 − ∫_{t0}^{t1} ∇·b dt`` (with ``logp0 = 0``
            when not given, i.e. the change of log-density), or ``None`` without ``with_logq``.
            For :func:`sample` it is the model log-density of the generated ``x1``.
        nfe: number of field evaluations along the solve (each evaluation covers the whole batch).
        divergence: ``"exact"``, ``"hutchinson"`` or ``"none"``.
        method: the solver.
    """

    x0: Tensor
    x1: Tensor
    logq: Tensor | None
    nfe: int
    divergence: str
    method: str = "euler"


def _check_method(method: str) -> str:
    if method not in SOLVERS:
        raise ConfigError(f"unknown ODE solver '{method}'; choose one of {', '.join(SOLVERS)}")
    return method


@functools.cache
def _load_jvp_decompositions() -> None:
    """Import torch's forward-mode decompositions once, hiding the torch.jit deprecation warning it emits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import torch._decomp.decompositions_for_jvp  # noqa: F401
        except ImportError:  # pragma: no cover - other torch versions
            pass


def _generic_exact_divergence(f: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(x), tr ∂f/∂x)`` by forward-mode JVPs along all basis directions (vmapped)."""
    _load_jvp_decompositions()
    B = x.shape[0]
    D = math.prod(x.shape[1:])
    basis = torch.eye(D, dtype=x.dtype, device=x.device).reshape(D, 1, *x.shape[1:]).expand(D, *x.shape)

    def column(e: Tensor) -> tuple[Tensor, Tensor]:
        return torch.func.jvp(f, (x,), (e,))

    chunk = max(1, GENERIC_DIV_MAX_ELEMENTS // max(1, B * D * 8))
    v, cols = torch.func.vmap(column, chunk_size=chunk if chunk < D else None)(basis)
    # cols[k, b] = ∂f(x_b)/∂x_{b,k}: take the diagonal entries k
    diag = cols.reshape(D, B, D).diagonal(dim1=0, dim2=2)  # (B, D)
    return v[0], diag.sum(-1)


def field_divergence(field: Field, t: Tensor | float, x: Tensor, *, method: str = "exact",
               probe: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Velocity and divergence of ``field`` at ``(t, x)``: ``(v (batch, n, d), div (batch,))``.

    Args:
        method: ``"exact"`` or ``"hutchinson"`` (then ``probe`` of the shape of ``x`` is required).
    """
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if method == "exact":
        own = getattr(field, "velocity_and_divergence", None)
        if own is not None:
            return own(t, x)
        return _generic_exact_divergence(lambda y: field(t, y), x)
    if method == "hutchinson":
        if probe is None:
            raise ConfigError("the Hutchinson divergence needs a probe tensor of the shape of x")
        _load_jvp_decompositions()
        v, jv = torch.func.jvp(lambda y: field(t, y), (x,), (probe,))
        return v, (probe * jv).reshape(x.shape[0], -1).sum(-1)
    raise ConfigError(f"unknown divergence '{method}'; choose one of exact, hutchinson")


def _chunks(batch: int, chunk_size: int | None) -> list[slice]:
    if chunk_size is None or chunk_size >= batch:
        return [slice(0, batch)]
    return [slice(i, min(batch, i + chunk_size)) for i in range(0, batch, chunk_size)]


def _make_probe(x: Tensor, kind: str, generator: torch.Generator | None) -> Tensor:
    gdev = generator.device if generator is not None else x.device
    if kind == "gaussian":
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=gdev)
    else:
        z = torch.randint(0, 2, x.shape, generator=generator, device=gdev).to(x.dtype) * 2.0 - 1.0
    return z.to(x.device)


def integrate(
    field: Field,
    x0: Tensor,
    *,
    logp0: Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    method: str = "euler",
    steps: int = 50,
    with_logq: bool = False,
    divergence: str = "exact",
    chunk_size: int | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    generator: torch.Generator | None = None,
    probe: str = "rademacher",
) -> ODEResult:
    """Solve dx/dt = field(t, x) from ``t0`` to ``t1`` (either direction), optionally with log q.

    Args:
        field: velocity ``field(t, x)``, ``t`` a 0-d tensor, ``x: (batch, n, d)``.
        x0: ``(batch, n, d)`` initial state at ``t0``.
        logp0: ``(batch,)`` log-density of ``x0`` (default 0: ``logq`` is then the change).
        method: one of :data:`SOLVERS`; euler/midpoint/rk4 take ``steps`` equal steps,
            dopri5 adapts its steps to ``atol``/``rtol`` (on x and log q jointly).
        with_logq: integrate d log q/dt = −∇·b alongside x.
        divergence: ``"exact"`` or ``"hutchinson"`` (biased for importance weights), used with ``with_logq``.
        chunk_size: evaluate the field on at most this many samples at a time (bounds memory).
        generator: random numbers of the Hutchinson probes.
        probe: ``"rademacher"`` or ``"gaussian"`` Hutchinson probes.
    Returns:
        :class:`ODEResult`.
    Raises:
        ConfigError: an unknown solver/divergence/probe or a non-positive ``steps``.
    """
    from torchdiffeq import odeint

    _check_method(method)
    if divergence not in DIVERGENCES:
        raise ConfigError(f"unknown divergence '{divergence}'; choose one of {', '.join(DIVERGENCES)}")
    if probe not in _PROBES:
        raise ConfigError(f"unknown Hutchinson probe '{probe}'; choose one of {', '.join(_PROBES)}")
    if with_logq and divergence == "none":
        raise ConfigError("with_logq=True needs divergence='exact' or 'hutchinson', not 'none'")
    if method in _FIXED and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if not isinstance(x0, Tensor) or x0.dim() != 3:
        shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ShapeError(f"x0 must be a (batch, n_particles, dim) tensor, got {shape}")
    div_mode = divergence if with_logq else "none"
    batch = x0.shape[0]
    parts = _chunks(batch, chunk_size)
    nfe = 0

    with torch.no_grad():
        probes = _make_probe(x0, probe, generator) if div_mode == "hutchinson" else None
        if logp0 is not None:
            if logp0.shape != (batch,):
                raise ShapeError(f"logp0 must have shape ({batch},), got {tuple(logp0.shape)}")
            logp0 = logp0.to(x0.dtype)
        if float(t0) == float(t1) or batch == 0:
            lq = (logp0.clone() if logp0 is not None else x0.new_zeros(batch)) if with_logq else None
            return ODEResult(x0=x0, x1=x0.clone(), logq=lq, nfe=0, divergence=div_mode, method=method)

        def velocity(t: Tensor, x: Tensor) -> Tensor:
            if len(parts) == 1:
                return field(t, x)
            return torch.cat([field(t, x[s]) for s in parts])

        def velocity_div(t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
            outs = [field_divergence(field, t, x[s], method=div_mode, probe=None if probes is None else probes[s])
                    for s in parts]
            if len(outs) == 1:
                return outs[0]
            return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

        if with_logq:
            def func(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
                nonlocal nfe
                nfe += 1
                v, div = velocity_div(t, state[0])
                return v, -div

            y0: Any = (x0, logp0 if logp0 is not None else x0.new_zeros(batch))
        else:
            def func(t: Tensor, x: Tensor) -> Tensor:  # type: ignore[misc]
                nonlocal nfe
                nfe += 1
                return velocity(t, x)

            y0 = x0

        tt = torch.tensor([float(t0), float(t1)], dtype=x0.dtype, device=x0.device)
        if method in _FIXED:
            # an explicit grid: exactly `steps` steps (a step_size could round to one extra step)
            options = {"grid_constructor": lambda f, y, t: torch.linspace(t[0], t[-1], steps + 1,
                                                                          dtype=t.dtype, device=t.device)}
            sol = odeint(func, y0, tt, method=method, options=options)
        else:
            sol = odeint(func, y0, tt, method=method, atol=atol, rtol=rtol)
        if with_logq:
            x1, logq = sol[0][-1], sol[1][-1]
        else:
            x1, logq = sol[-1], None
    return ODEResult(x0=x0, x1=x1, logq=logq, nfe=nfe, divergence=div_mode, method=method)


def sample(
    field: Field,
    base: Any,
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    **integrate_kwargs: Any,
) -> ODEResult:
    """Draw ``n`` samples: x0 ~ ``base``, integrate from t = 0 to 1.

    With ``with_logq=True`` the result's ``logq`` is the model log-density of ``x1``:
    ``base.log_prob(x0) − ∫ ∇·b dt``. Other keyword arguments go to :func:`integrate`;
    ``generator`` drives both the base samples and the Hutchinson probes.
    """
    for key in ("x0", "logp0"):
        if key in integrate_kwargs:
            raise ConfigError(f"sample() draws x0 from the base itself; do not pass '{key}' (use integrate())")
    x0 = base.sample(int(n), generator=generator, dtype=dtype, device=device)
    logp0 = base.log_prob(x0) if integrate_kwargs.get("with_logq", False) else None
    return integrate(field, x0, logp0=logp0, generator=generator, **integrate_kwargs)


def log_likelihood(field: Field, base: Any, x1: Tensor, **integrate_kwargs: Any) -> Tensor:
    """Model log-density of given points ``x1: (batch, n, d)``, ``(batch,)``.

    Integrates backwards from t = 1 to 0 with the divergence and evaluates the base at the end:
    log q(x1) = log p0(x0) − ∫_0^1 ∇·b(x_t, t) dt (the density shrinks where the field spreads
    points out: d/dt log q_t(x_t) = −∇·b). Keyword arguments go to :func:`integrate`
    (``method``, ``steps``, ``divergence``, ``chunk_size``, ``atol``, ``rtol``, ``generator``).
    """
    for key in ("t0", "t1", "with_logq", "logp0"):
        if key in integrate_kwargs:
            raise ConfigError(f"log_likelihood() sets '{key}' itself; remove it from the arguments")
    res = integrate(field, x1, t0=1.0, t1=0.0, with_logq=True, **integrate_kwargs)
    # res.logq = −∫_1^0 ∇·b dt = +∫_0^1 ∇·b dt; res.x1 is the point reached at t = 0
    delta = res.logq if res.logq is not None else x1.new_zeros(x1.shape[0])
    return base.log_prob(res.x1) - delta
