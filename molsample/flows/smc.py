r"""Annealed Sequential Monte Carlo from a flow's weighted samples to the Boltzmann target.

The particles are the flow's samples ``x: (n, P, d)`` with their model log-density ``logq: (n,)``.
They start as importance samples of π₀ ∝ exp(−E/kT_s), kT_s ≥ kT, with log-weights
``−E/kT_s − log q`` (a non-finite energy or log q gives weight 0 and is counted), and are carried
through inverse temperatures β_s = β_0 < β_1 < … < β_K = 1/kT:

* **reweight**: each next β_k is found by bisection so that the *conditional* ESS of the incremental
  weights exp(−(β_k − β_{k−1}) E), (Σ W_i w_i)² / Σ W_i w_i², is ``target_cess`` (the smallest
  over the groups; the last step goes straight to 1/kT when that keeps it above the target);
* **resample** (systematic) a group whose ESS fell below ``resample_threshold``;
* **move**: ``mcmc_steps`` steps of an MCMC kernel (:data:`~molsample.mcmc.kernels.KERNELS`: MALA,
  one evaluation per step, or HMC, L) invariant for π_k ∝ exp(−β_k E); ``final_steps`` at 1/kT at the
  end. The step size of each group is rescaled by β_{k−1}/β_k at each level and adapted after every
  step from the group's mean acceptance probability a toward the kernel's ``target_accept``
  (h ← h·exp(a − target); 0.574 for MALA, 0.65 for HMC).

**Groups.** The n particles are split into G contiguous groups of m = n // G (a remainder is
dropped, with a warning). Each group is weighted, resampled and moved within itself (ancestors never
cross groups); they share only the temperature schedule. Group g estimates the partition function
Z = ∫ exp(−E/kT) by

    log Ẑ_g = log mean_{i∈g} w₀,i + Σ_k log Σ_{i∈g} W_{k−1,i} exp(−(β_k − β_{k−1}) E_i),

(W the normalized weights before level k; the first term includes the flow's weights), and the
overall estimate is log Ẑ = log mean_g Ẑ_g, with the standard error of the mean of the G estimates
by the delta method, se(log Ẑ) = sd(Ẑ_g) / (√G · mean Ẑ_g) (sample sd, G − 1), computed after
dividing every Ẑ_g by the largest. The final weighted set pools the groups with log-weights
log Ẑ_g + log(m W_i), so that ``logsumexp(logw) − log n`` is log Ẑ again.

**Processes.** With a distributed ``world`` every rank runs the whole algorithm on the whole
population with the same generator; only the energy evaluations are split (each rank its shard of the
particles, gathered in rank order by the kernel), so K processes give the one-process result.

After resampling, the refined set's weights are (nearly) uniform: its ESS counts distinct
*copies*, not independent samples, and is not comparable to a flow's ESS — the number of unique
ancestors and the spread of the group estimates are the honest diagnostics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from molsample.errors import ConfigError, EnergyError, ShapeError
from molsample.flows.smc_state import SMCCheckpoint, SMCState, read_checkpoint, write_checkpoint
from molsample.flows.weights import log_partition
from molsample.mcmc.kernels import KERNELS
from molsample.mcmc.langevin import project_com
from molsample.runtime.distributed import World

__all__ = ["AUTO_KT_FACTORS", "SMCResult", "choose_start_kT", "conditional_ess", "next_beta", "smc_refine",
           "systematic_resample", "SMCCheckpoint"]

#: kT_s / kT tried by ``kT_start="auto"``.
AUTO_KT_FACTORS = (1.0, 1.05, 1.1, 1.2, 1.35, 1.5, 2.0)
HISTORY_KEYS = ("kT", "ess", "cess", "acceptance", "step_size", "resampled")


@dataclass
class SMCResult:
    """Output of :func:`smc_refine`.

    Attributes:
        x: ``(n, P, d)`` final particles (n = groups × particles per group).
        energies: ``(n,)`` their energies (energy unit).
        logw: ``(n,)`` log-weights at kT (pooled over groups, see the module docstring).
        log_z, log_z_se: log Ẑ of exp(−E/kT) and its standard error from the group spread.
        log_z_groups: ``(G,)`` each group's log Ẑ_g.
        history: per level (a block of MCMC moves): ``kT``, ``ess`` (mean within-group ESS before
            resampling), ``cess`` (smallest conditional ESS of the reweighting that led there; NaN at
            the start), ``acceptance``, ``step_size`` (mean over groups), ``resampled`` (fraction of groups).
        ancestors: ``(n,)`` index of each final particle's initial flow sample.
        unique_ancestors: distinct flow samples among the ancestors.
        n_resamplings: group resamplings in all.
        n_energy_evals: energy+force evaluations (all particles, the start included; L per HMC step).
        cpu_s: CPU seconds (user + system) of the call (summed over the ranks).
        kT_start, kT: first and final temperature (energy unit).
        n_nonfinite: flow samples with a non-finite energy or log q (weight 0).
        groups: G.
        start_ess: ``{kT_s/kT: ESS}`` of the flow's weights at each candidate start (auto only).
        warnings: loud lines (few unique ancestors, dropped samples).
    """

    x: Tensor
    energies: Tensor
    logw: Tensor
    log_z: float
    log_z_se: float
    log_z_groups: Tensor
    history: dict[str, list[float]]
    ancestors: Tensor
    unique_ancestors: int
    n_resamplings: int
    n_energy_evals: int
    cpu_s: float
    kT_start: float
    kT: float
    n_nonfinite: int
    groups: int
    start_ess: dict[float, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_levels(self) -> int:
        """Temperatures visited (blocks of MCMC moves), the start and the final one included."""
        return len(self.history["kT"])


# --------------------------------------------------------------------------- building blocks


def _lse(v: Tensor, dim: int = -1) -> Tensor:
    return torch.logsumexp(v, dim=dim)


def _normalize(logw: Tensor) -> Tensor:
    """Log-weights normalized within each row of ``(G, m)``."""
    return logw - _lse(logw)[:, None]


def group_ess(logW: Tensor) -> Tensor:
    """ESS fraction (Σw)²/(m Σw²) of each row of ``(G, m)`` log-weights, ``(G,)``."""
    return torch.exp(2 * _lse(logW) - _lse(2 * logW)) / logW.shape[1]


def conditional_ess(logW: Tensor, energy: Tensor, dbeta: float) -> Tensor:
    """Conditional ESS fraction (Σ W w)² / Σ W w² of w = exp(−dbeta·E) per group, ``(G,)``.

    Args:
        logW: ``(G, m)`` normalized log-weights (−∞ for weight 0).
        energy: ``(G, m)`` energies (finite where the weight is not 0).
        dbeta: increment of the inverse temperature (1/energy unit).
    """
    inc = -dbeta * _centred(logW, energy)[0]
    return torch.exp(2 * _lse(logW + inc) - _lse(logW + 2 * inc))


def _centred(logW: Tensor, energy: Tensor) -> tuple[Tensor, Tensor]:
    """Energies minus each group's lowest energy of a live particle (zero-weight entries set to 0),
    and that lowest energy ``(G,)``."""
    live = torch.isfinite(logW)
    e_min = torch.where(live, energy, torch.full_like(energy, math.inf)).min(dim=1, keepdim=True).values
    return torch.where(live, energy - e_min, torch.zeros_like(energy)), e_min[:, 0]


def next_beta(logW: Tensor, energy: Tensor, beta: float, beta_end: float, target: float) -> tuple[float, float]:
    """The next inverse temperature and its conditional ESS (smallest over groups).

    ``beta_end`` when that keeps every group's conditional ESS ≥ ``target``, else the β in
    (beta, beta_end) where the smallest one equals ``target`` (bisection, 60 halvings).
    """
    c_end = float(conditional_ess(logW, energy, beta_end - beta).min())
    if c_end >= target:
        return beta_end, c_end
    lo, hi = 0.0, beta_end - beta
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(conditional_ess(logW, energy, mid).min()) >= target:
            lo = mid
        else:
            hi = mid
    db = lo if lo > 0 else hi
    return beta + db, float(conditional_ess(logW, energy, db).min())


def systematic_resample(logW: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Systematic resampling within each group: ``(G, m)`` log-weights → ``(G, m)`` local indices.

    One uniform u per group and the points (u + k)/m; particle i is drawn ⌊m W_i⌋ or ⌈m W_i⌉
    times, m W_i in expectation; zero-weight particles never.
    """
    G, m = logW.shape
    W = torch.softmax(logW.to(torch.float64), dim=1)
    cdf = torch.cumsum(W, dim=1)
    cols = torch.arange(m, device=W.device)
    last = torch.where(W > 0, cols, torch.zeros_like(cols)).max(dim=1).values
    cdf = torch.where(cols[None] >= last[:, None], torch.ones_like(cdf), cdf)  # rounding never picks a trailing 0
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand((G, 1), generator=generator, dtype=torch.float64, device=gdev).to(W.device)
    points = (u + cols[None].to(torch.float64)) / m
    return torch.searchsorted(cdf, points.contiguous(), right=True).clamp_(max=m - 1)


def choose_start_kT(energy: Tensor, logq: Tensor, kT: float,
                    factors: tuple[float, ...] = AUTO_KT_FACTORS) -> tuple[float, dict[float, float]]:
    """The start temperature kT·f (f in ``factors``) where the flow's weights exp(−E/(kT f))/q have
    the highest ESS; returns it and ``{f: ESS}``."""
    from molsample.flows.weights import ess, log_weights

    table = {float(f): ess(log_weights(energy / (kT * f), logq)) for f in factors}
    best = max(table, key=lambda f: (table[f], -f))
    return kT * best, table


# --------------------------------------------------------------------------- the run


def _check_args(kT: float, kT_start: float | str, target_cess: float, resample_threshold: float, mcmc_steps: int,
                final_steps: int, groups: int, kernel: str) -> None:
    if not 0.0 < target_cess < 1.0:
        raise ConfigError(f"target_cess must be in (0, 1), got {target_cess}; 0.95 is a safe choice")
    if not 0.0 < resample_threshold <= 1.0:
        raise ConfigError(f"resample_threshold must be in (0, 1], got {resample_threshold}; e.g. 0.5")
    if mcmc_steps < 0 or final_steps < 0:
        raise ConfigError(f"MCMC steps must be >= 0, got mcmc_steps={mcmc_steps}, final_steps={final_steps}")
    if groups < 1:
        raise ConfigError(f"groups must be >= 1, got {groups}")
    if kernel not in KERNELS:
        raise ConfigError(f"unknown MCMC kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if kT_start != "auto" and not (isinstance(kT_start, (int, float)) and kT_start >= kT):
        raise ConfigError(f"kT_start {kT_start!r} is below the target kT {kT:g}; start at kT or hotter "
                          "(or 'auto')")


def _prepare(x: Tensor, logq: Tensor, groups: int, remove_com: bool,
             dtype: torch.dtype) -> tuple[Tensor, Tensor, list[str]]:
    """Particles as ``dtype`` (centred with ``remove_com``), logq float64, a remainder dropped."""
    if x.dim() != 3 or logq.shape != (x.shape[0],):
        raise ShapeError(f"x must be (n, n_particles, dim) and logq (n,), got {tuple(x.shape)} and "
                         f"{tuple(logq.shape)}")
    n = x.shape[0]
    m = n // groups
    if m < 2:
        raise ConfigError(f"{n} samples in {groups} groups leave fewer than 2 per group; use fewer groups "
                          f"(at most {n // 2})")
    warnings = []
    if m * groups < n:
        warnings.append(f"dropped the last {n - m * groups} of {n} samples to split them into {groups} groups "
                        f"of {m}")
    x = project_com(x[: m * groups].to(dtype), remove_com)
    return x, logq[: m * groups].to(device=x.device, dtype=torch.float64), warnings


def _start(x: Tensor, logq: Tensor, mover: Any, kT: float, kT_start: float | str, groups: int) -> SMCState:
    """Energies, start temperature, initial weights and log Ẑ_g; zero-weight particles get a finite copy."""
    e, f = mover.evaluate(x)
    ok = torch.isfinite(e) & torch.isfinite(f).flatten(1).all(dim=1) & torch.isfinite(logq)
    e64 = torch.where(ok, e.to(torch.float64), torch.full_like(logq, math.inf))
    kT_s, start_ess = (choose_start_kT(e64, logq, kT) if kT_start == "auto" else (float(kT_start), {}))
    logw = torch.where(ok, -e64 / kT_s - logq, torch.full_like(logq, -math.inf)).reshape(groups, -1)
    empty = int((~torch.isfinite(logw).any(dim=1)).sum())
    if empty:
        raise EnergyError(f"{empty} of {groups} groups have no sample with a finite energy and log q; use fewer "
                          "groups, or check the samples (all-NaN energies mean a broken flow)")
    m = logw.shape[1]
    best = logw.argmax(dim=1) + torch.arange(groups, device=logw.device) * m  # a live particle of each group
    fill = torch.where(ok, torch.arange(len(ok), device=ok.device), best.repeat_interleave(m))
    x, e, f = x[fill], e[fill], f[fill]
    h0 = mover.initial_step(x, f, 1.0 / kT_s)
    state = SMCState(x=x, e=e, f=f, logW=_normalize(logw), log_z=_lse(logw) - math.log(m),
                     anc=torch.arange(len(ok), device=x.device), h=torch.full((groups,), h0, dtype=torch.float64),
                     beta=1.0 / kT_s, history={k: [] for k in HISTORY_KEYS})
    state.meta = {"kT_start": kT_s, "start_ess": start_ess, "n_nonfinite": int((~ok).sum())}
    return state


def _block(st: SMCState, mover: Any, steps: int, threshold: float, generator: torch.Generator | None) -> None:
    """Resample the groups whose ESS is below ``threshold``, then ``steps`` kernel moves at ``st.beta``."""
    G, m = st.logW.shape
    ess_g = group_ess(st.logW)
    redo = ess_g < threshold
    if bool(redo.any()):
        local = systematic_resample(st.logW, generator)
        local = torch.where(redo[:, None], local, torch.arange(m, device=local.device)[None])
        idx = (local + torch.arange(G, device=local.device)[:, None] * m).reshape(-1)
        st.x, st.e, st.f, st.anc = st.x[idx], st.e[idx], st.f[idx], st.anc[idx]
        st.logW = torch.where(redo[:, None], torch.full_like(st.logW, -math.log(m)), st.logW)
        st.n_resamplings += int(redo.sum())
    acc_sum = torch.zeros(G, dtype=torch.float64)
    for _ in range(steps):
        out = mover.step(st.x, st.e, st.f, st.beta, st.h.repeat_interleave(m).to(st.x))
        st.x, st.e, st.f = out.x, out.energy, out.force
        a = out.accept_prob.to(torch.float64).reshape(G, m).mean(dim=1).cpu()
        acc_sum += a
        st.h = st.h * torch.exp(a - mover.target_accept)
    hist = st.history
    for k, v in zip(HISTORY_KEYS, (1.0 / st.beta, float(ess_g.mean()), st.cess,
                                    float(acc_sum.mean() / steps) if steps else math.nan,
                                    float(st.h.mean()), float(redo.double().mean()))):
        hist[k].append(v)


def _reweight(st: SMCState, beta_end: float, target_cess: float) -> None:
    """Next β by bisection on the conditional ESS; incremental weights and log Ẑ_g updates."""
    G, m = st.logW.shape
    e = st.e.to(torch.float64).reshape(G, m)
    beta_new, st.cess = next_beta(st.logW, e, st.beta, beta_end, target_cess)
    ec, e_min = _centred(st.logW, e)
    db = beta_new - st.beta
    inc = -db * ec
    st.log_z = st.log_z + _lse(st.logW + inc) - db * e_min
    st.logW = _normalize(st.logW + inc)
    st.h = st.h * (st.beta / beta_new)
    st.beta = beta_new


def _result(st: SMCState, kT: float, cpu_s: float, n_evals: int, warnings: list[str]) -> SMCResult:
    G, m = st.logW.shape
    lz = st.log_z
    log_z, se = log_partition(lz)  # the spread of the G groups' log Ẑ_g
    logw = (lz[:, None] + st.logW + math.log(m)).reshape(-1)
    unique = int(torch.unique(st.anc).numel())
    warnings = list(warnings) + list(st.meta.get("warnings", []))
    if unique < 0.1 * len(st.anc):
        warnings.append(f"only {unique} of {len(st.anc)} final particles have distinct flow ancestors (< 10 %): "
                        "the refined set rests on few flow samples; take more MCMC steps (--steps) or more samples")
    if G == 1:
        warnings.append("one group: log Z has no error bar; use groups >= 2 (e.g. 10)")
    return SMCResult(x=st.x, energies=st.e, logw=logw, log_z=log_z, log_z_se=se, log_z_groups=lz,
                     history=st.history, ancestors=st.anc, unique_ancestors=unique, n_resamplings=st.n_resamplings,
                     n_energy_evals=n_evals, cpu_s=cpu_s, kT_start=float(st.meta["kT_start"]), kT=float(kT),
                     n_nonfinite=int(st.meta["n_nonfinite"]), groups=G, start_ess=dict(st.meta["start_ess"]),
                     warnings=warnings)


def smc_refine(
    x: Tensor,
    logq: Tensor,
    energy_fn: Callable[[Tensor], Tensor],
    kT: float,
    *,
    kT_start: float | str = "auto",
    target_cess: float = 0.95,
    resample_threshold: float = 0.5,
    mcmc_steps: int = 5,
    final_steps: int = 50,
    groups: int = 10,
    kernel: str = "mala",
    kernel_options: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    remove_com: bool = False,
    progress: bool = False,
    checkpoint: SMCCheckpoint | None = None,
    dtype: torch.dtype = torch.float64,
    world: World | None = None,
) -> SMCResult:
    """Annealed SMC from the flow's weighted samples at kT_start to exp(−E/kT) (module docstring).

    Args:
        x: ``(n, P, d)`` flow samples (length unit of the energy); logq: ``(n,)`` their model log-density.
        energy_fn: the system's :class:`~molsample.energies.Energy` (needs forces); its dtype must match ``dtype``.
        kT: target temperature (energy unit); kT_start: a float ≥ kT or ``"auto"`` (:func:`choose_start_kT`).
        target_cess: conditional ESS of each tempering step; resample_threshold: ESS fraction that triggers
            resampling of a group.
        mcmc_steps: kernel steps per tempering level; final_steps: steps at kT at the end.
        groups: independent groups G (n // G particles each) for the error bar of log Z.
        kernel: a name in :data:`~molsample.mcmc.kernels.KERNELS`; kernel_options: its settings
            (e.g. ``{"leapfrog_steps": 5}`` for ``"hmc"``).
        remove_com: the particles live on the zero-centre-of-mass subspace.
        checkpoint: resume/save the state after every level (:class:`SMCCheckpoint`; rank 0 writes it).
        world: the ranks that share the energy evaluations (module docstring); every rank gets the result.
    Returns:
        :class:`SMCResult`.
    Raises:
        ConfigError: a setting out of range; EnergyError: no usable sample in a group, or no forces.
    """
    _check_args(kT, kT_start, target_cess, resample_threshold, mcmc_steps, final_steps, groups, kernel)
    world = world or World()
    mover = _kernel(kernel, kernel_options, energy_fn, remove_com, generator, world)
    t0 = time.process_time()
    x, logq, warnings = _prepare(x, logq, groups, remove_com, dtype)
    key = {"shape": list(x.shape), "x_sum": float(x.double().sum()), "logq_sum": float(logq.sum()), "kT": float(kT),
           "kT_start": kT_start, "settings": [target_cess, resample_threshold, mcmc_steps, final_steps, groups, kernel,
                                              sorted((kernel_options or {}).items())],
           "rng": _rng_digest(generator)}  # another seed starts over
    st = read_checkpoint(checkpoint, key, generator)
    if st is None:
        st = _start(x, logq, mover, kT, kT_start, groups)
    mover.n_evals = max(mover.n_evals, st.n_evals)
    beta_end = 1.0 / kT
    bar = _bar(progress)
    while True:
        last = st.beta >= beta_end
        _block(st, mover, final_steps if last else mcmc_steps, resample_threshold, generator)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(kT=f"{1.0 / st.beta:.4g}")
        if last:
            break
        _reweight(st, beta_end, target_cess)
        st.n_evals, st.cpu_s = mover.n_evals, st.cpu_s + world.sum(time.process_time() - t0)
        t0 = time.process_time()
        if world.is_main:
            write_checkpoint(checkpoint, key, st, generator)
    if bar is not None:
        bar.close()
    if checkpoint is not None and world.is_main:
        Path(checkpoint.path).unlink(missing_ok=True)
    return _result(st, kT, st.cpu_s + world.sum(time.process_time() - t0), mover.n_evals, warnings)


def _kernel(name: str, options: Mapping[str, Any] | None, energy_fn: Callable[[Tensor], Tensor], remove_com: bool,
            generator: torch.Generator | None, world: World) -> Any:
    """The kernel ``name`` of :data:`KERNELS` with ``options``; an unknown option is a :class:`ConfigError`."""
    try:
        return KERNELS[name](energy_fn, remove_com=remove_com, generator=generator, world=world, **dict(options or {}))
    except TypeError:
        raise ConfigError(f"kernel {name!r} takes no option(s) {sorted(options or {})}; "
                          f"e.g. kernel_options={{'leapfrog_steps': 5}} with kernel 'hmc'") from None


def _rng_digest(generator: torch.Generator | None) -> str | None:
    """A digest of the generator's state at the start (the seed's fingerprint in the checkpoint key)."""
    if generator is None:
        return None
    import hashlib

    return hashlib.sha256(generator.get_state().cpu().numpy().tobytes()).hexdigest()[:16]


def _bar(progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc="SMC levels", leave=False)
