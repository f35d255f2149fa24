"""Reference MCMC samplers: MALA, parallel tempering (replica exchange) and MALA correction.

All samplers target π(x) ∝ exp(−E(x)/kT) with ``E`` in the energy unit of the system and
``kT`` in the same unit. Many chains run in one batched tensor ``(chains, n_particles, dim)``;
each step costs one energy+force evaluation per chain (the energy and force of the current
state are kept, never recomputed).

MALA proposal with step ``h`` (in length_unit², the Langevin time step):

    y = x − h ∇U(x) + √(2h) ξ,   U = E/kT,  ξ ~ N(0, I)

accepted with probability min(1, π(y) q(x|y) / (π(x) q(y|x))) with the exact Gaussian proposal
densities q(y|x) ∝ exp(−|y − μ(x)|²/(4h)), μ(x) = x − h∇U(x). By default the drift is *tamed*
(truncated MALA, Roberts & Tweedie 1996): each particle's drift is capped at 2·sqrt(2h·dim),
and both proposal densities use the capped drift, so the chain stays exact. Without the cap a
chain that wanders into a stiff state (two Lennard-Jones atoms at 0.7 r_m, forces ~10³) proposes
an overshooting jump at every step and freezes there for good. For particle systems with ``remove_com`` the
noise and the drift are projected on the zero-centre-of-mass subspace, so chains stay there and
the proposal densities are Gaussians on that subspace. Proposals with a non-finite energy or
force are rejected. During burn-in the step size is adapted toward ``target_accept`` by dual
averaging on log h (Hoffman & Gelman 2014), then frozen, so the production chain is a valid
Metropolis-Hastings chain.

Sample order: ``samples[k * n_chains + c]`` is the k-th kept state of chain c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from molsample.errors import ConfigError, EnergyError, ShapeError

EnergyLike = Callable[[Tensor], Tensor]

__all__ = [
    "MCMCResult",
    "geometric_ladder",
    "integrated_autocorrelation_time",
    "mala",
    "mala_correct",
    "parallel_tempering",
]


@dataclass
class MCMCResult:
    """Output of an MCMC sampler.

    Attributes:
        samples: ``(n_samples, n_particles, dim)`` kept states (target temperature only for PT);
            ``samples[k * n_chains + c]`` is the k-th kept state of chain c.
        energies: ``(n_samples,)`` energies of ``samples`` in the energy unit.
        acceptance: fraction of accepted MALA proposals after burn-in (target temperature for PT).
        step_size: the frozen step h (float when shared, ``(chains,)`` or ``(n_temps,)`` tensor otherwise).
        n_energy_evals: energy+force evaluations spent, all chains and replicas, burn-in included.
        swap_rates: PT only: acceptance of swaps between neighbours (kTs[k], kTs[k+1]).
        tau_int: integrated autocorrelation time of the energy, in kept samples (see
            :func:`integrated_autocorrelation_time`), ``None`` when too few samples.
        kT: the temperature (a list of the ladder for PT).
        n_chains: chains at the target temperature.
        acceptance_by_kT: PT only: MALA acceptance at each temperature of the ladder.
        energy_trace: ``(n_kept, n_chains)`` energies of the kept states, for diagnostics.
    """

    samples: Tensor
    energies: Tensor
    acceptance: float
    step_size: float | Tensor
    n_energy_evals: int
    swap_rates: list[float] | None = None
    tau_int: float | None = None
    kT: float | list[float] = 1.0
    n_chains: int = 1
    acceptance_by_kT: list[float] | None = None
    energy_trace: Tensor | None = field(default=None, repr=False)

    @property
    def n_effective(self) -> float:
        """Effective number of independent samples, n/τ_int (n when τ_int is unknown)."""
        n = self.samples.shape[0]
        if self.tau_int is None or not math.isfinite(self.tau_int) or self.tau_int <= 0:
            return float(n)
        return n / max(self.tau_int, 1.0)


# --------------------------------------------------------------------------- helpers


def geometric_ladder(kT_min: float, kT_max: float, n: int) -> list[float]:
    """``n`` temperatures from ``kT_min`` to ``kT_max`` with a constant ratio (kT_min first)."""
    if n < 1:
        raise ConfigError(f"a temperature ladder needs n >= 1 temperatures, got {n}")
    if not (kT_min > 0 and kT_max >= kT_min):
        raise ConfigError(
            f"geometric_ladder needs 0 < kT_min <= kT_max, got kT_min={kT_min}, kT_max={kT_max}"
        )
    if n == 1:
        return [float(kT_min)]
    r = (kT_max / kT_min) ** (1.0 / (n - 1))
    return [float(kT_min * r**k) for k in range(n)]


def integrated_autocorrelation_time(
    series: Tensor | np.ndarray, *, method: str = "sokal", c: float = 5.0
) -> float:
    """Integrated autocorrelation time τ = 1 + 2 Σ_{t≥1} ρ(t) of a (multi-chain) series.

    Args:
        series: ``(n_steps,)`` or ``(n_steps, chains)``; the autocovariance is averaged over
            chains around the grand mean (so chains stuck in different states show up as a
            long τ rather than being hidden).
        method: ``"sokal"`` (automatic window: the smallest M with M ≥ c·τ(M)) or ``"geyer"``
            (initial positive, monotone sequence of paired autocorrelations).
        c: Sokal's window constant.
    Returns:
        τ in steps of the series (1 for independent samples); NaN for a constant or too short series.
    """
    a = torch.as_tensor(series).detach().cpu().numpy() if isinstance(series, Tensor) else np.asarray(series)
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ShapeError(f"series must be (n_steps,) or (n_steps, chains), got shape {a.shape}")
    n = a.shape[0]
    if n < 4 or not np.all(np.isfinite(a)):
        return float("nan")
    a = a - a.mean()
    size = 1 << int(2 * n - 1).bit_length()
    f = np.fft.rfft(a, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n].mean(axis=1) / n
    if not acov[0] > 0:
        return float("nan")
    rho = acov / acov[0]
    if method == "sokal":
        taus = 2.0 * np.cumsum(rho) - 1.0
        ok = np.arange(n) >= c * taus
        m = int(np.argmax(ok)) if ok.any() else n - 1
        return float(max(taus[m], 1e-12))
    if method == "geyer":
        n_pairs = n // 2
        gam = rho[0 : 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]
        neg = np.nonzero(gam <= 0)[0]
        k = int(neg[0]) if neg.size else n_pairs
        gam = np.minimum.accumulate(gam[:k]) if k > 0 else gam[:1]
        return float(max(-1.0 + 2.0 * gam.sum(), 1e-12))
    raise ConfigError(f"unknown autocorrelation method '{method}'; use 'sokal' or 'geyer'")


def _project(v: Tensor, remove_com: bool) -> Tensor:
    """Remove the mean over particles (zero-CoM subspace) when ``remove_com``."""
    return v - v.mean(dim=1, keepdim=True) if remove_com else v


def _energy_and_force(energy: EnergyLike, x: Tensor) -> tuple[Tensor, Tensor]:
    if hasattr(energy, "energy_and_force"):
        e, f = energy.energy_and_force(x)  # type: ignore[attr-defined]
        return e.detach().to(x.dtype), f.detach().to(x.dtype)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        e = energy(xg)
        (g,) = torch.autograd.grad(e.sum(), xg)
    return e.detach(), -g.detach()


def _event_shape(energy: EnergyLike, x: Tensor) -> tuple[int, int]:
    shape = getattr(energy, "event_shape", None)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ShapeError(
            f"initial positions have shape {tuple(x.shape)}, the energy expects (chains, {shape[0]}, {shape[1]}); "
            f"reshape x_init to (chains, {shape[0]}, {shape[1]})"
        )
    if x.dim() != 3:
        raise ShapeError(f"initial positions must be (chains, n_particles, dim), got {tuple(x.shape)}")
    return int(x.shape[1]), int(x.shape[2])


def _progress(iterable: range, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


class _Langevin:
    """Batched MALA kernel; each chain b has its own kT[b] and step h[b]."""

    def __init__(self, energy: EnergyLike, kT: Tensor, remove_com: bool, generator: torch.Generator | None,
                 tame: float | None = 2.0):
        self.energy = energy
        self.kT = kT
        self.remove_com = remove_com
        self.generator = generator
        self.tame = tame
        self.n_evals = 0

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        e, f = _energy_and_force(self.energy, x)
        self.n_evals += x.shape[0]
        return e, _project(f, self.remove_com)

    def initial_step(self, x: Tensor, f: Tensor, dof: int) -> Tensor:
        """A first guess h0 per chain from the curvature along a random direction (one extra evaluation)."""
        v = _project(torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device), self.remove_com)
        v = v / v.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]
        eps = 1e-3
        _, f2 = self.evaluate(x + eps * v)
        kT = self.kT.to(x)
        curv = -((f2 - f) * v).flatten(1).sum(1) / eps / kT
        curv = torch.where(torch.isfinite(curv) & (curv > 0), curv, torch.full_like(curv, float("nan")))
        med = torch.nanmedian(curv) if torch.isfinite(curv).any() else torch.tensor(float("nan"))
        h0 = dof ** (-1.0 / 3.0) / med.item() if math.isfinite(med.item()) else 1e-3
        h0 = min(max(h0, 1e-10), 1e4)
        return torch.full_like(kT, h0)

    def drift(self, f: Tensor, kT: Tensor, hh: Tensor) -> Tensor:
        """Proposal drift h·F/kT, each particle's capped at ``tame``·sqrt(2h·dim) (then projected)."""
        d = hh * f / kT
        if self.tame is not None:
            cap = self.tame * torch.sqrt(2.0 * hh * f.shape[-1])
            norm = d.norm(dim=-1, keepdim=True)
            d = d * torch.clamp(cap / norm.clamp_min(1e-300), max=1.0)
        return _project(d, self.remove_com)

    def step(self, x: Tensor, e: Tensor, f: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One MALA step. Returns new (x, e, f), acceptance probability and accepted mask, each per chain."""
        kT = self.kT.to(x)[:, None, None]
        hh = h.to(x)[:, None, None]
        noise = _project(torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device), self.remove_com)
        y = _project(x + self.drift(f, kT, hh) + torch.sqrt(2.0 * hh) * noise, self.remove_com)
        ey, fy = self.evaluate(y)
        finite = torch.isfinite(ey) & torch.isfinite(fy).flatten(1).all(dim=1)
        ey_s = torch.where(finite, ey, e)
        fy_s = torch.where(finite[:, None, None], fy, f)
        log_fwd = -0.5 * (noise * noise).flatten(1).sum(1)
        back = x - y - self.drift(fy_s, kT, hh)
        log_bwd = -(back * back).flatten(1).sum(1) / (4.0 * h.to(x))
        log_alpha = -(ey_s - e) / kT[:, 0, 0] + log_bwd - log_fwd
        log_alpha = torch.where(finite & ~torch.isnan(log_alpha), log_alpha, torch.full_like(log_alpha, -math.inf))
        u = torch.rand(log_alpha.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        accept = torch.log(u) < log_alpha
        m = accept[:, None, None]
        x_new = torch.where(m, y, x)
        e_new = torch.where(accept, ey_s, e)
        f_new = torch.where(m, fy_s, f)
        return x_new, e_new, f_new, torch.exp(log_alpha.clamp(max=0.0)), accept


class _DualAveraging:
    """Dual averaging of log step size per group (Hoffman & Gelman 2014, Alg. 5)."""

    def __init__(self, log_h0: Tensor, target: float, gamma: float = 0.05, t0: float = 10.0, kappa: float = 0.75):
        self.mu = log_h0 + math.log(10.0)
        self.log_h = log_h0.clone()
        self.log_h_avg = log_h0.clone()
        self.h_bar = torch.zeros_like(log_h0)
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.t = 0

    def update(self, accept_prob: Tensor) -> Tensor:
        self.t += 1
        t = self.t
        eta = 1.0 / (t + self.t0)
        self.h_bar = (1 - eta) * self.h_bar + eta * (self.target - accept_prob)
        self.log_h = (self.mu - math.sqrt(t) / self.gamma * self.h_bar).clamp(-30.0, 12.0)
        w = t ** (-self.kappa)
        self.log_h_avg = w * self.log_h + (1 - w) * self.log_h_avg
        return self.log_h.exp()

    def final(self) -> Tensor:
        return self.log_h_avg.exp()


def _group_mean(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    out = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(0, groups, values)
    cnt = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(0, groups, torch.ones_like(values))
    return out / cnt


def _check_target_accept(target_accept: float) -> None:
    if not 0.0 < target_accept < 1.0:
        raise ConfigError(f"target_accept must be in (0, 1), got {target_accept}; 0.574 is optimal for MALA")


def _check_counts(n_steps: int, burn_in: int, thin: int) -> None:
    if n_steps < 0 or burn_in < 0:
        raise ConfigError(f"n_steps and burn_in must be >= 0, got n_steps={n_steps}, burn_in={burn_in}")
    if thin < 1:
        raise ConfigError(f"thin must be >= 1, got {thin}")


def _run(
    kernel: _Langevin,
    x: Tensor,
    *,
    groups: Tensor,
    n_groups: int,
    step_size: float | Sequence[float] | Tensor | None,
    target_accept: float,
    n_steps: int,
    burn_in: int,
    thin: int,
    record: Tensor,
    swap: Callable[[Tensor, Tensor, Tensor, int, bool], tuple[Tensor, Tensor, Tensor]] | None,
    swap_every: int,
    progress: bool,
    desc: str,
    allow_nonfinite: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Shared loop of MALA and PT.

    Returns kept states ``(n_kept, len(record), n, d)``, their energies ``(n_kept, len(record))``,
    the frozen per-group step ``(n_groups,)``, production acceptance per chain, and the final
    states and energies of all chains.
    """
    b, n, d = x.shape
    dof = (n - 1) * d if kernel.remove_com else n * d
    e, f = kernel.evaluate(x)
    bad = ~torch.isfinite(e)
    if allow_nonfinite:
        # such a state has zero target density: any finite proposal is accepted, and with a zero
        # force the first proposals are a plain random walk out of it
        e = torch.where(bad, torch.full_like(e, math.inf), e)
        f = torch.where(torch.isfinite(f) & ~bad[:, None, None], f, torch.zeros_like(f))
    elif bad.any():
        idx = torch.nonzero(bad).flatten()[:5].tolist()
        raise EnergyError(
            f"{int(bad.sum())} initial configurations have a non-finite energy (chains {idx} ...); "
            "start from relaxed or well-separated configurations"
        )
    if step_size is None:
        if burn_in == 0:
            raise ConfigError("step_size=None needs burn_in > 0 to adapt the step; pass step_size or burn_in")
        h0 = kernel.initial_step(x, f, dof)
        log_h0 = _group_mean(h0.log(), groups, n_groups)
        adapt: _DualAveraging | None = _DualAveraging(log_h0, target_accept)
        h_group = log_h0.exp()
    else:
        h_group = torch.as_tensor(step_size, dtype=x.dtype, device=x.device).flatten()
        if h_group.numel() == 1:
            h_group = h_group.expand(n_groups).clone()
        if h_group.numel() != n_groups or not torch.all(h_group > 0):
            raise ConfigError(f"step_size must be positive (one value or one per group of {n_groups}), got {step_size}")
        adapt = None

    n_kept = n_steps // thin
    kept_x = torch.empty((n_kept, record.numel(), n, d), dtype=x.dtype, device=x.device)
    kept_e = torch.empty((n_kept, record.numel()), dtype=x.dtype, device=x.device)
    acc = torch.zeros(b, dtype=x.dtype, device=x.device)
    k = 0
    for it in _progress(range(burn_in + n_steps), progress, desc):
        production = it >= burn_in
        if adapt is not None and it == burn_in:
            h_group = adapt.final()
            adapt = None
        x, e, f, alpha, accepted = kernel.step(x, e, f, h_group[groups])
        if adapt is not None:
            h_group = adapt.update(_group_mean(alpha, groups, n_groups))
        if production:
            acc += accepted.to(acc.dtype)
        if swap is not None and (it + 1) % swap_every == 0:
            x, e, f = swap(x, e, f, (it + 1) // swap_every, production)
        if production and (it - burn_in + 1) % thin == 0 and k < n_kept:
            kept_x[k] = x[record]
            kept_e[k] = e[record]
            k += 1
    if adapt is not None:  # n_steps == 0: report the adapted step
        h_group = adapt.final()
    acc = acc / max(n_steps, 1)
    return kept_x, kept_e, h_group, acc, x, e


def _tau(trace: Tensor) -> float | None:
    if trace.shape[0] < 8:
        return None
    tau = integrated_autocorrelation_time(trace)
    return tau if math.isfinite(tau) else None


def _prepare(energy: EnergyLike, x_init: Tensor, remove_com: bool) -> tuple[Tensor, bool]:
    if not isinstance(x_init, Tensor):
        raise ShapeError(f"x_init must be a torch.Tensor (chains, n_particles, dim), got {type(x_init).__name__}")
    n, _ = _event_shape(energy, x_init)
    remove_com = bool(remove_com) and n > 1  # a single particle has no internal coordinates to keep
    x = x_init.detach().clone()
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return _project(x, remove_com), remove_com


# --------------------------------------------------------------------------- samplers


def mala(
    energy: EnergyLike,
    kT: float,
    x_init: Tensor,
    *,
    n_steps: int,
    burn_in: int,
    thin: int = 1,
    step_size: float | None = None,
    target_accept: float = 0.574,
    adapt: str = "global",
    remove_com: bool = True,
    tame: float | None = 2.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> MCMCResult:
    """Metropolis-adjusted Langevin sampling of exp(−E/kT) with many chains in one tensor.

    Args:
        energy: an :class:`~molsample.energies.Energy` (or a callable ``x -> (batch,)`` energies).
        kT: thermal energy in the energy's unit.
        x_init: ``(chains, n_particles, dim)`` starting states (float64 recommended).
        n_steps: production steps after burn-in; every ``thin``-th state of each chain is kept.
        burn_in: steps first run and discarded; the step size is adapted during them.
        step_size: fixed h (length²); ``None`` adapts it toward ``target_accept`` during burn-in.
        adapt: ``"global"`` (one step for all chains) or ``"chain"`` (one per chain).
        remove_com: keep particle systems on the zero-centre-of-mass subspace (ignored for one particle).
        tame: cap each particle's drift at ``tame``·sqrt(2h·dim) (truncated MALA); ``None`` = plain MALA.
        generator: torch random generator (seed it for reproducible chains).
        progress: show a tqdm bar.
    Returns:
        :class:`MCMCResult` with ``chains · (n_steps // thin)`` samples.
    """
    _check_counts(n_steps, burn_in, thin)
    _check_target_accept(target_accept)
    if not kT > 0:
        raise ConfigError(f"kT must be positive, got {kT}")
    x, remove_com = _prepare(energy, x_init, remove_com)
    b = x.shape[0]
    if adapt == "global":
        groups, n_groups = torch.zeros(b, dtype=torch.long, device=x.device), 1
    elif adapt == "chain":
        groups, n_groups = torch.arange(b, device=x.device), b
    else:
        raise ConfigError(f"adapt must be 'global' or 'chain', got {adapt!r}")
    kernel = _Langevin(energy, torch.full((b,), float(kT), dtype=x.dtype, device=x.device), remove_com, generator, tame)
    kept_x, kept_e, h, acc, _, _ = _run(
        kernel, x, groups=groups, n_groups=n_groups, step_size=step_size, target_accept=target_accept,
        n_steps=n_steps, burn_in=burn_in, thin=thin, record=torch.arange(b, device=x.device),
        swap=None, swap_every=1, progress=progress, desc="MALA",
    )
    return MCMCResult(
        samples=kept_x.reshape(-1, *x.shape[1:]),
        energies=kept_e.reshape(-1),
        acceptance=float(acc.mean()) if n_steps > 0 else float("nan"),
        step_size=float(h[0]) if n_groups == 1 else h,
        n_energy_evals=kernel.n_evals,
        tau_int=_tau(kept_e),
        kT=float(kT),
        n_chains=b,
        energy_trace=kept_e,
    )


def parallel_tempering(
    energy: EnergyLike,
    kTs: Sequence[float],
    x_init: Tensor,
    *,
    n_steps: int,
    burn_in: int,
    thin: int = 1,
    swap_every: int = 1,
    step_size: float | Sequence[float] | None = None,
    target_accept: float = 0.574,
    remove_com: bool = True,
    tame: float | None = 2.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> MCMCResult:
    """Replica exchange with MALA moves; returns the samples at ``kTs[0]`` (the target).

    All ``len(kTs) · chains`` replicas live in one tensor (temperature-major: replica
    ``k * chains + c`` is chain c at kTs[k]). Every ``swap_every`` steps neighbours
    (kTs[k], kTs[k+1]) of each chain try to exchange states, even pairs and odd pairs in turn,
    accepted with min(1, exp((1/kT_k − 1/kT_{k+1})(E_k − E_{k+1}))). Step sizes are adapted per
    temperature during burn-in.

    Args:
        kTs: increasing temperatures in the energy unit, ``kTs[0]`` the target (see :func:`geometric_ladder`).
        x_init: ``(chains, n, d)``, copied to every temperature.
        step_size: fixed step, one value or one per temperature; ``None`` adapts during burn-in.
    """
    _check_counts(n_steps, burn_in, thin)
    _check_target_accept(target_accept)
    kts = [float(k) for k in kTs]
    if len(kts) < 1 or any(not k > 0 for k in kts):
        raise ConfigError(f"kTs must be positive temperatures, got {list(kTs)}")
    if any(b <= a for a, b in zip(kts, kts[1:])):
        raise ConfigError(f"kTs must increase strictly with kTs[0] the target, got {kts}; sort them")
    if swap_every < 1:
        raise ConfigError(f"swap_every must be >= 1, got {swap_every}")
    x, remove_com = _prepare(energy, x_init, remove_com)
    n_t = len(kts)
    chains = x.shape[0]
    x = x.repeat(n_t, 1, 1)
    kt_t = torch.tensor(kts, dtype=x.dtype, device=x.device)
    groups = torch.arange(n_t, device=x.device).repeat_interleave(chains)
    kernel = _Langevin(energy, kt_t[groups], remove_com, generator, tame)
    beta = 1.0 / kt_t
    n_pairs = max(n_t - 1, 0)
    swap_acc = torch.zeros(n_pairs, dtype=torch.float64)
    swap_try = torch.zeros(n_pairs, dtype=torch.float64)

    def swap(x: Tensor, e: Tensor, f: Tensor, count: int, production: bool) -> tuple[Tensor, Tensor, Tensor]:
        if n_t < 2:
            return x, e, f
        parity = count % 2
        ks = torch.arange(parity, n_t - 1, 2, device=x.device)
        if ks.numel() == 0:
            return x, e, f
        ee = e.reshape(n_t, chains)
        log_a = (beta[ks] - beta[ks + 1])[:, None] * (ee[ks] - ee[ks + 1])
        u = torch.rand(log_a.shape, generator=generator, dtype=x.dtype, device=x.device)
        acc = (torch.log(u) < log_a) & torch.isfinite(log_a)
        if production:
            swap_acc.index_add_(0, ks.cpu(), acc.sum(1).to(torch.float64).cpu())
            swap_try.index_add_(0, ks.cpu(), torch.full((ks.numel(),), float(chains), dtype=torch.float64))
        perm = torch.arange(n_t * chains, device=x.device).reshape(n_t, chains)
        lo, hi = perm[ks].clone(), perm[ks + 1].clone()
        new = perm.clone()
        new[ks] = torch.where(acc, hi, lo)
        new[ks + 1] = torch.where(acc, lo, hi)
        idx = new.reshape(-1)
        return x[idx], e[idx], f[idx]

    kept_x, kept_e, h, acc, _, _ = _run(
        kernel, x, groups=groups, n_groups=n_t, step_size=step_size, target_accept=target_accept,
        n_steps=n_steps, burn_in=burn_in, thin=thin, record=torch.arange(chains, device=x.device),
        swap=swap, swap_every=swap_every, progress=progress, desc="PT",
    )
    acc_t = _group_mean(acc, groups, n_t)
    rates = (swap_acc / swap_try.clamp_min(1)).tolist()
    rates = [r if t > 0 else float("nan") for r, t in zip(rates, swap_try.tolist())]
    return MCMCResult(
        samples=kept_x.reshape(-1, *x.shape[1:]),
        energies=kept_e.reshape(-1),
        acceptance=float(acc_t[0]) if n_steps > 0 else float("nan"),
        step_size=h,
        n_energy_evals=kernel.n_evals,
        swap_rates=rates,
        tau_int=_tau(kept_e),
        kT=kts,
        n_chains=chains,
        acceptance_by_kT=[float(a) for a in acc_t] if n_steps > 0 else None,
        energy_trace=kept_e,
    )


def mala_correct(
    energy: EnergyLike,
    kT: float,
    x: Tensor,
    *,
    n_steps: int,
    step_size: float | None = None,
    target_accept: float = 0.574,
    pilot_steps: int = 100,
    remove_com: bool = True,
    tame: float | None = 2.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> MCMCResult:
    """MCMC correction of (approximate) samples: ``n_steps`` MALA steps from each sample.

    Each sample is a chain; the result holds the final state of every chain, in the input
    order, so ``samples`` has the shape of ``x``. With ``step_size=None`` the step is chosen
    by a pilot run (``pilot_steps`` adapted steps on a copy of up to 256 of the samples with a
    finite energy), then the correction runs with that step frozen, so exact samples of the
    target stay exact. Samples with a non-finite energy are allowed: their first finite proposal
    is accepted; those that never find one keep an infinite energy (weight 0 downstream).

    Args:
        x: ``(batch, n_particles, dim)`` samples, e.g. the final flow samples.
        n_steps: MALA steps per sample (0 returns ``x``, centred for particle systems, with its energies).
    Returns:
        :class:`MCMCResult`; ``n_energy_evals`` includes the pilot run.
    """
    if n_steps < 0:
        raise ConfigError(f"n_steps must be >= 0, got {n_steps}")
    xs, rc = _prepare(energy, x, remove_com)
    evals = 0
    if step_size is None:
        if n_steps == 0:
            step_size = float("nan")
        else:
            e0, _ = _energy_and_force(energy, xs)
            evals += xs.shape[0]
            ok = torch.nonzero(torch.isfinite(e0)).flatten()[:256]
            if ok.numel() == 0:
                raise EnergyError("mala_correct: every sample has a non-finite energy; nothing to adapt a step on. "
                                  "Pass step_size, or fix the samples")
            pilot = mala(
                energy, kT, xs[ok].clone(), n_steps=0, burn_in=max(pilot_steps, 1),
                target_accept=target_accept, remove_com=remove_com, tame=tame, generator=generator,
            )
            step_size = float(pilot.step_size)
            evals += pilot.n_energy_evals
    b = xs.shape[0]
    kernel = _Langevin(energy, torch.full((b,), float(kT), dtype=xs.dtype, device=xs.device), rc, generator, tame)
    if n_steps == 0:
        e, _ = kernel.evaluate(xs)
        return MCMCResult(samples=xs, energies=e, acceptance=float("nan"), step_size=float(step_size),
                          n_energy_evals=kernel.n_evals, kT=float(kT), n_chains=b)
    _, _, h, acc, x_final, e_final = _run(
        kernel, xs, groups=torch.zeros(b, dtype=torch.long, device=xs.device), n_groups=1, step_size=step_size,
        target_accept=target_accept, n_steps=n_steps, burn_in=0, thin=1, record=torch.arange(0, device=xs.device),
        swap=None, swap_every=1, progress=progress, desc="MALA correction", allow_nonfinite=True,
    )
    return MCMCResult(
        samples=x_final,
        energies=e_final,
        acceptance=float(acc.mean()),
        step_size=float(h[0]),
        n_energy_evals=kernel.n_evals + evals,
        kT=float(kT),
        n_chains=b,
    )
