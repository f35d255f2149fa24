"""The batched MALA machinery shared by the reference samplers (:mod:`~molsample.mcmc.mala`,
:mod:`~molsample.mcmc.parallel_tempering`): kernel, step adaptation, the sampling loop.

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
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from molsample.analysis.autocorrelation import integrated_autocorrelation_time
from molsample.errors import ConfigError, EnergyError, RunFileError, ShapeError
from molsample.io.atomic import save_torch_atomic
from molsample.runtime.distributed import World

EnergyLike = Callable[[Tensor], Tensor]


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


#: Public names of the two helpers above, for other kernels (:mod:`molsample.mcmc.kernels`).
project_com = _project
energy_and_force = _energy_and_force


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


def tamed_drift(f: Tensor, beta: Tensor, h: Tensor, tame: float | None, remove_com: bool) -> Tensor:
    """MALA's proposal drift h·β·F ``(n, P, d)`` (``beta``, ``h``: ``(n, 1, 1)``), each particle's capped
    at ``tame``·√(2h·dim) when ``tame`` is set (the cap enters both proposal densities, so the chain
    stays exact), then projected on the zero-CoM subspace with ``remove_com``."""
    d = h * beta * f
    if tame is not None:
        cap = tame * torch.sqrt(2.0 * h * f.shape[-1])
        d = d * torch.clamp(cap / d.norm(dim=-1, keepdim=True).clamp_min(1e-300), max=1.0)
    return _project(d, remove_com)


def mala_transition(x: Tensor, e: Tensor, f: Tensor, beta: Tensor, h: Tensor, *,
                    evaluate: Callable[[Tensor], tuple[Tensor, Tensor]], randn: Callable[[], Tensor],
                    rand: Callable[[], Tensor], tame: float | None, remove_com: bool
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One Metropolis-adjusted Langevin step of every chain, exact for exp(−β E).

    ``x (n, P, d)`` with energies ``e (n,)`` and projected forces ``f``; ``beta`` and ``h`` per chain
    ``(n,)``; ``evaluate(y) -> (energies, projected forces)``; ``randn()`` the proposal noise and
    ``rand()`` the ``(n,)`` uniforms of the accept/reject draws, in that order. Proposals with a
    non-finite energy or force are rejected. Returns new ``(x, e, f)``, the acceptance probability and
    the accepted mask, per chain.
    """
    b, hh = beta.reshape(-1, 1, 1).expand(x.shape[0], 1, 1), h.reshape(-1, 1, 1).expand(x.shape[0], 1, 1)
    noise = _project(randn(), remove_com)
    y = _project(x + tamed_drift(f, b, hh, tame, remove_com) + torch.sqrt(2.0 * hh) * noise, remove_com)
    ey, fy = evaluate(y)
    finite = torch.isfinite(ey) & torch.isfinite(fy).flatten(1).all(dim=1)
    ey = torch.where(finite, ey, e)
    fy = torch.where(finite[:, None, None], fy, f)
    log_fwd = -0.5 * (noise * noise).flatten(1).sum(1)
    back = x - y - tamed_drift(fy, b, hh, tame, remove_com)
    log_bwd = -(back * back).flatten(1).sum(1) / (4.0 * hh[:, 0, 0])
    log_alpha = -b[:, 0, 0] * (ey - e) + log_bwd - log_fwd
    log_alpha = torch.where(finite & ~torch.isnan(log_alpha), log_alpha, torch.full_like(log_alpha, -math.inf))
    accept = torch.log(rand()) < log_alpha
    m = accept[:, None, None]
    return (torch.where(m, y, x), torch.where(accept, ey, e), torch.where(m, fy, f),
            torch.exp(log_alpha.clamp(max=0.0)), accept)


class _Langevin:
    """Batched MALA kernel; each chain b has its own kT[b] and step h[b].

    With a distributed ``world`` every rank holds all chains and draws the same random numbers;
    the energies and forces (the expensive part) are evaluated per rank on its shard of the
    chains and gathered, so the chains are those of one process.
    """

    def __init__(self, energy: EnergyLike, kT: Tensor, remove_com: bool, generator: torch.Generator | None,
                 tame: float | None = 2.0, world: World | None = None):
        self.energy = energy
        self.kT = kT
        self.remove_com = remove_com
        self.generator = generator
        self.tame = tame
        self.world = world or World()
        self.n_evals = 0

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.world.distributed:
            e, f = _energy_and_force(self.energy, x[self.world.shard(len(x))])
            e, f = self.world.gather(e, what="energies"), self.world.gather(f, what="forces")
        else:
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


    def step(self, x: Tensor, e: Tensor, f: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One MALA step. Returns new (x, e, f), acceptance probability and accepted mask, each per chain."""
        g = self.generator
        return mala_transition(
            x, e, f, 1.0 / self.kT.to(x), h.to(x), evaluate=self.evaluate, tame=self.tame, remove_com=self.remove_com,
            randn=lambda: torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device),
            rand=lambda: torch.rand(x.shape[0], generator=g, dtype=x.dtype, device=x.device))


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

    def to(self, device: torch.device) -> _DualAveraging:
        """Move the adaptation's tensors to ``device`` (a checkpoint read on another device)."""
        self.mu, self.log_h, self.log_h_avg, self.h_bar = (
            v.to(device) for v in (self.mu, self.log_h, self.log_h_avg, self.h_bar))
        return self


@dataclass
class ChainCheckpoint:
    """Where a long MCMC run (:func:`~molsample.mcmc.mala.mala`,
    :func:`~molsample.mcmc.parallel_tempering.parallel_tempering`) saves its state.

    ``path`` is written atomically at most every ``every_s`` seconds of wall time (0: after every
    step) and read at the start when it exists and was written by a run of the same shape and
    length; the run then continues where it stopped, drawing the same random numbers an
    uninterrupted run would (the generator state is part of the checkpoint), so the samples are
    the same. The file is deleted when the run completes.
    """

    path: str | os.PathLike
    every_s: float = 120.0


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
    checkpoint: ChainCheckpoint | None = None,
    extra_state: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Shared loop of MALA and PT.

    Returns kept states ``(n_kept, len(record), n, d)``, their energies ``(n_kept, len(record))``,
    the frozen per-group step ``(n_groups,)``, production acceptance per chain, and the final
    states and energies of all chains. With ``checkpoint`` the loop saves and resumes its state
    (:class:`ChainCheckpoint`); ``extra_state`` are the caller's tensors (PT's swap counts) saved
    and restored with it, in place.
    """
    ckpt = Path(checkpoint.path) if checkpoint is not None and not kernel.world.distributed else None
    key = {"shape": list(x.shape), "n_groups": n_groups, "n_steps": n_steps, "burn_in": burn_in, "thin": thin,
           "record": record.tolist(), "step_size": None if step_size is None else torch.as_tensor(step_size).tolist(),
           "target_accept": target_accept, "desc": desc}
    state = _read_chain_checkpoint(ckpt, key, x.device)
    if state is None:
        state = _start_state(kernel, x, groups=groups, n_groups=n_groups, step_size=step_size,
                             target_accept=target_accept, burn_in=burn_in, n_kept=n_steps // thin, record=record,
                             allow_nonfinite=allow_nonfinite)
    else:  # resumed: the generator, the evaluation count and the caller's counters come back too
        _set_rng(kernel.generator, state["rng"])
        kernel.n_evals = state["n_evals"]
        for name, t in (extra_state or {}).items():
            t.copy_(state["extra"][name])
    x, e, f, h_group, adapt = state["x"], state["e"], state["f"], state["h_group"], state["adapt"]
    kept_x, kept_e, acc, k = state["kept_x"], state["kept_e"], state["acc"], state["k"]
    last_save = time.monotonic()
    total = burn_in + n_steps
    for it in _progress(range(state["it"], total), progress, desc):
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
        if production and (it - burn_in + 1) % thin == 0 and k < kept_x.shape[0]:
            kept_x[k] = x[record]
            kept_e[k] = e[record]
            k += 1
        if ckpt is not None and it + 1 < total and time.monotonic() - last_save >= checkpoint.every_s:
            save_torch_atomic({"key": key, "state": {
                "it": it + 1, "x": x, "e": e, "f": f, "h_group": h_group, "adapt": adapt,
                "kept_x": kept_x, "kept_e": kept_e, "acc": acc, "k": k, "rng": _get_rng(kernel.generator),
                "n_evals": kernel.n_evals, "extra": {n: t.clone() for n, t in (extra_state or {}).items()}}}, ckpt)
            last_save = time.monotonic()
    if adapt is not None:  # n_steps == 0: report the adapted step
        h_group = adapt.final()
    acc = acc / max(n_steps, 1)
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return kept_x, kept_e, h_group, acc, x, e


def _start_state(kernel: _Langevin, x: Tensor, *, groups: Tensor, n_groups: int,
                 step_size: float | Sequence[float] | Tensor | None, target_accept: float, burn_in: int,
                 n_kept: int, record: Tensor, allow_nonfinite: bool) -> dict:
    """The loop state of :func:`_run` at step 0: energies and forces of ``x``, the first step size
    (and its adaptation), empty sample buffers."""
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
    return {"it": 0, "x": x, "e": e, "f": f, "h_group": h_group, "adapt": adapt,
            "kept_x": torch.empty((n_kept, record.numel(), n, d), dtype=x.dtype, device=x.device),
            "kept_e": torch.empty((n_kept, record.numel()), dtype=x.dtype, device=x.device),
            "acc": torch.zeros(b, dtype=x.dtype, device=x.device), "k": 0}


def _read_chain_checkpoint(ckpt: Path | None, key: dict, device: torch.device) -> dict | None:
    """The saved loop state (tensors on ``device``) when ``ckpt`` exists and was written with
    ``key``, else ``None``."""
    if ckpt is None or not ckpt.is_file():
        return None
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise RunFileError(f"cannot read the MCMC checkpoint {ckpt}: {exc}; delete it to start over") from exc
    if saved.get("key") != key:
        raise ConfigError(f"the MCMC checkpoint {ckpt} was written by a run with other settings "
                          f"({saved.get('key')} against {key}); delete it to start over")
    state = {k: v.to(device) if isinstance(v, Tensor) and k != "rng" else v for k, v in saved["state"].items()}
    if state["adapt"] is not None:
        state["adapt"].to(device)
    return state


def _get_rng(generator: torch.Generator | None) -> Tensor:
    return generator.get_state() if generator is not None else torch.get_rng_state()


def _set_rng(generator: torch.Generator | None, rng: Tensor) -> None:
    if generator is not None:
        generator.set_state(rng)
    else:
        torch.set_rng_state(rng)


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
