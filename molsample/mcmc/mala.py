"""Reference MCMC samplers: MALA and the MALA correction of flow samples.

The batched MALA kernel (tamed drift, dual-averaging step adaptation, exact Metropolis-Hastings
after burn-in) lives in :mod:`~molsample.mcmc.langevin`; parallel tempering in
:mod:`~molsample.mcmc.parallel_tempering` and τ_int in :mod:`~molsample.analysis.autocorrelation`
(all re-exported here).

Sample order: ``samples[k * n_chains + c]`` is the k-th kept state of chain c.
"""

from __future__ import annotations

import torch
from torch import Tensor

from molsample.analysis.autocorrelation import integrated_autocorrelation_time
from molsample.errors import ConfigError, EnergyError
from molsample.mcmc.langevin import (ChainCheckpoint, EnergyLike, MCMCResult, _check_counts,
                                     _check_target_accept, _energy_and_force, _Langevin, _prepare, _run, _tau)
from molsample.mcmc.parallel_tempering import geometric_ladder, parallel_tempering
from molsample.runtime.distributed import World

__all__ = [
    "ChainCheckpoint",
    "MCMCResult",
    "geometric_ladder",
    "integrated_autocorrelation_time",
    "mala",
    "mala_correct",
    "parallel_tempering",
]


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
    world: World | None = None,
    checkpoint: ChainCheckpoint | None = None,
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
        world: ranks that share the energy evaluations (each its shard of the chains).
        checkpoint: save the chains' state there and resume from it (:class:`ChainCheckpoint`;
            not with a distributed ``world``).
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
    kernel = _Langevin(energy, torch.full((b,), float(kT), dtype=x.dtype, device=x.device), remove_com, generator, tame,
                       world)
    kept_x, kept_e, h, acc, _, _ = _run(
        kernel, x, groups=groups, n_groups=n_groups, step_size=step_size, target_accept=target_accept,
        n_steps=n_steps, burn_in=burn_in, thin=thin, record=torch.arange(b, device=x.device),
        swap=None, swap_every=1, progress=progress, desc="MALA", checkpoint=checkpoint,
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
