"""Parallel tempering (replica exchange) with MALA moves, and its temperature ladder."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from molsample.errors import ConfigError
from molsample.mcmc.langevin import (ChainCheckpoint, EnergyLike, MCMCResult, _check_counts, _check_target_accept,
                                     _group_mean, _Langevin, _prepare, _run, _tau)
from molsample.runtime.distributed import World

__all__ = ["geometric_ladder", "parallel_tempering"]


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


def _checked_ladder(kTs: Sequence[float], swap_every: int) -> list[float]:
    """``kTs`` as floats, checked: positive and strictly increasing; ``swap_every`` >= 1."""
    kts = [float(k) for k in kTs]
    if len(kts) < 1 or any(not k > 0 for k in kts):
        raise ConfigError(f"kTs must be positive temperatures, got {list(kTs)}")
    if any(b <= a for a, b in zip(kts, kts[1:])):
        raise ConfigError(f"kTs must increase strictly with kTs[0] the target, got {kts}; sort them")
    if swap_every < 1:
        raise ConfigError(f"swap_every must be >= 1, got {swap_every}")
    return kts


class _Swaps:
    """The exchange move between neighbouring temperatures and its production counts.

    Replicas are temperature-major (replica ``k * chains + c`` is chain c at temperature k); a call
    offers the even pairs (k, k+1) when ``count`` is even, the odd ones otherwise, and returns the
    replicas' states permuted. ``swap_acc``/``swap_try`` ``(n_t − 1,)`` float64 count accepted/offered
    swaps after burn-in.
    """

    def __init__(self, kt_t: Tensor, chains: int, generator: torch.Generator | None) -> None:
        self.beta, self.n_t, self.chains, self.generator = 1.0 / kt_t, kt_t.shape[0], chains, generator
        n_pairs = max(self.n_t - 1, 0)
        self.swap_acc = torch.zeros(n_pairs, dtype=torch.float64)
        self.swap_try = torch.zeros(n_pairs, dtype=torch.float64)

    def __call__(self, x: Tensor, e: Tensor, f: Tensor, count: int, production: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``x (R, n, d)``, energies ``e (R,)`` and forces ``f (R, n, d)`` after the swaps of step ``count``."""
        n_t, chains = self.n_t, self.chains
        if n_t < 2:
            return x, e, f
        ks = torch.arange(count % 2, n_t - 1, 2, device=x.device)
        if ks.numel() == 0:
            return x, e, f
        ee = e.reshape(n_t, chains)
        log_a = (self.beta[ks] - self.beta[ks + 1])[:, None] * (ee[ks] - ee[ks + 1])
        u = torch.rand(log_a.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        acc = (torch.log(u) < log_a) & torch.isfinite(log_a)
        if production:
            self.swap_acc.index_add_(0, ks.cpu(), acc.sum(1).to(torch.float64).cpu())
            self.swap_try.index_add_(0, ks.cpu(), torch.full((ks.numel(),), float(chains), dtype=torch.float64))
        perm = torch.arange(n_t * chains, device=x.device).reshape(n_t, chains)
        lo, hi = perm[ks].clone(), perm[ks + 1].clone()
        new = perm.clone()
        new[ks] = torch.where(acc, hi, lo)
        new[ks + 1] = torch.where(acc, lo, hi)
        idx = new.reshape(-1)
        return x[idx], e[idx], f[idx]

    def rates(self) -> list[float]:
        """Accepted / offered swaps per neighbouring pair (NaN for a pair never offered)."""
        rates = (self.swap_acc / self.swap_try.clamp_min(1)).tolist()
        return [r if t > 0 else float("nan") for r, t in zip(rates, self.swap_try.tolist())]


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
    world: World | None = None,
    checkpoint: ChainCheckpoint | None = None,
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
        world: ranks that share the energy evaluations (each its shard of the replicas).
        checkpoint: save the replicas' state (and the swap counts) there and resume from it
            (:class:`~molsample.mcmc.langevin.ChainCheckpoint`; not with a distributed ``world``).
    """
    _check_counts(n_steps, burn_in, thin)
    _check_target_accept(target_accept)
    kts = _checked_ladder(kTs, swap_every)
    x, remove_com = _prepare(energy, x_init, remove_com)
    n_t = len(kts)
    chains = x.shape[0]
    x = x.repeat(n_t, 1, 1)
    kt_t = torch.tensor(kts, dtype=x.dtype, device=x.device)
    groups = torch.arange(n_t, device=x.device).repeat_interleave(chains)
    kernel = _Langevin(energy, kt_t[groups], remove_com, generator, tame, world)
    swap = _Swaps(kt_t, chains, generator)
    kept_x, kept_e, h, acc, _, _ = _run(
        kernel, x, groups=groups, n_groups=n_t, step_size=step_size, target_accept=target_accept,
        n_steps=n_steps, burn_in=burn_in, thin=thin, record=torch.arange(chains, device=x.device),
        swap=swap, swap_every=swap_every, progress=progress, desc="PT", checkpoint=checkpoint,
        extra_state={"swap_acc": swap.swap_acc, "swap_try": swap.swap_try},
    )
    acc_t = _group_mean(acc, groups, n_t)
    return MCMCResult(
        samples=kept_x.reshape(-1, *x.shape[1:]),
        energies=kept_e.reshape(-1),
        acceptance=float(acc_t[0]) if n_steps > 0 else float("nan"),
        step_size=h,
        n_energy_evals=kernel.n_evals,
        swap_rates=swap.rates(),
        tau_int=_tau(kept_e),
        kT=kts,
        n_chains=chains,
        acceptance_by_kT=[float(a) for a in acc_t] if n_steps > 0 else None,
        energy_trace=kept_e,
    )
