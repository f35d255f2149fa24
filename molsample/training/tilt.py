"""The annealed Tilt Matching loop (the algorithm: docs/tilt-matching.md).

One level a_k → a_{k+1} = a_k + h_k:

1. freeze a copy b_{a_k} of the network b̂;
2. draw ``n_endpoints`` samples x1 from the frozen level by integrating its ODE (no grad) and
   evaluate r(x1) once each (non-finite rewards are dropped and counted);
3. choose h_k (fixed, or adaptively so that the ESS of e^{h r} on those samples hits a target);
4. ``steps_per_level`` gradient steps on minibatches of ``endpoints_per_step`` endpoints, each
   paired with ``draws_per_endpoint`` fresh (t, x0) draws, regressing b̂(t, I_t) on the ITM /
   ETM / RAM target (or the WFM weighted loss) built from b_{a_k};
5. record the level's diagnostics and checkpoint atomically.

Samples, control variate and weights all come from the same frozen level a_k.

Distributed (a :class:`~molsample.runtime.distributed.World` of K ranks): every rank draws the same random
numbers; each integrates and evaluates the reward of its shard of the endpoints, the shards are
gathered (so every rank chooses the same h), each rank regresses on its shard of every minibatch
with that minibatch's weights, and DistributedDataParallel sums the gradients. Rank 0 checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from molsample.errors import ConfigError
from molsample.flows.paths import path_for_base
from molsample.flows.sampler import FlowSampler
from molsample.flows.transform import Transform
from molsample.flows.weights import ess
from molsample.io.atomic import save_torch_atomic
from molsample.runtime.distributed import World, collective, ddp
from molsample.runtime.progress import progress_bar
from molsample.training.coupling import TILT_COUPLINGS, couple, permutes_particles
from molsample.training.losses import (CENTRINGS, LOSSES, center_reward, choose_step, get_loss, incremental_ess,
                                       tilt_loss)
from molsample.training.rewards import TiltReward

#: share of a level's endpoints above the soft energy cap from which the level warns
CAPPED_WARNING_FRACTION = 0.9


@dataclasses.dataclass
class TiltConfig:
    """Settings of the annealing loop.

    Attributes:
        method: a registered loss (:data:`~molsample.training.losses.LOSSES`: itm | etm | wfm | ram).
        h: fixed annealing step; ``None`` chooses h_k adaptively from ``target_ess``.
        target_ess: ESS of the incremental weights e^{h r} aimed at by the adaptive step.
        min_h: smallest adaptive step (guarantees progress).
        max_levels: hard cap on the number of levels.
        n_endpoints: samples x1 drawn from each frozen level (reward evaluations per level).
        endpoints_per_step, draws_per_endpoint: minibatch = endpoints × (t, x0) draws.
        steps_per_level: gradient steps per level (the fixed-point regression).
        lr: Adam learning rate; grad_clip: max gradient norm (``None``: off).
        center: reward centring per level: auto | lme | mean | none (auto: the loss's registered
            default, :data:`~molsample.training.losses.LOSSES`).
        ode_method, ode_steps: solver that draws the level's samples.
        full_ess_every: every this many levels, the ESS with exact log-weights against the
            level's target (needs the divergence; 0 disables).
        n_probe: probe batch size for ‖b̂ − b_{a_k}‖ (drawn from the training generator) and the
            full ESS (drawn from a generator of its own).
        path: interpolant name.
    """

    method: str = "itm"
    h: float | None = None
    target_ess: float = 0.9
    min_h: float = 1e-4
    max_levels: int = 200
    n_endpoints: int = 256
    endpoints_per_step: int = 32
    draws_per_endpoint: int = 4
    steps_per_level: int = 30
    lr: float = 1e-3
    grad_clip: float | None = 10.0
    center: str = "auto"
    ode_method: str = "euler"
    ode_steps: int = 25
    full_ess_every: int = 0
    n_probe: int = 256
    path: str = "linear"

    def validate(self) -> None:
        if self.method not in LOSSES:
            raise ConfigError(f"tilt.method = {self.method!r}; use one of {', '.join(LOSSES)}")
        if self.h is not None and not 0 < self.h <= 1:
            raise ConfigError(f"tilt.h = {self.h} must be in (0, 1]; or leave it unset for the adaptive step")
        if not 0 < self.target_ess < 1:
            raise ConfigError(f"tilt.target_ess = {self.target_ess} must be in (0, 1), e.g. 0.9")
        if self.center != "auto" and self.center not in CENTRINGS:
            raise ConfigError(f"tilt.center = {self.center!r}; use auto, {', '.join(CENTRINGS)}")
        for key in ("n_endpoints", "endpoints_per_step", "draws_per_endpoint", "steps_per_level", "max_levels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"tilt.{key} must be >= 1, got {getattr(self, key)}")

    @property
    def centring(self) -> str:
        """The centring used: ``center``, or for ``auto`` the registered loss's default."""
        if self.center != "auto":
            return self.center
        return get_loss(self.method).centring


HISTORY_KEYS = (
    "level", "a", "h", "mean_reward", "mean_energy", "loss", "update_norm",
    "ess_incremental", "ess", "n_nonfinite", "reward_evals", "cpu_s", "wall_s",
)
#: offset of the seed of the full-ESS probes' own generator (so that they never shift the training draws)
FULL_ESS_SEED_OFFSET = 7919


class TiltMatching:
    """Anneal a pretrained velocity field from a = 0 to a = 1 along ρ_1·e^{a r}.

    Args:
        field: the velocity network b̂(t, x) (``forward(t, x)``, x: (batch, n, d)), pretrained
            on the a = 0 distribution; trained in place.
        base: base distribution (``sample(n, generator=...)``, ``log_prob``).
        reward: the :class:`~molsample.training.rewards.TiltReward`.
        config: :class:`TiltConfig`.
        seed: seed of the trainer's own generator (all its random draws).
        device: torch device of the field.
        coupling: pairing of the regression's (x0, x1), one of :data:`TILT_COUPLINGS`; must be the
            pretraining's coupling, since the fixed point continues the pretrained field.
        world: the ranks that share the work (default: this process alone).
    """

    def __init__(self, field: nn.Module, base, reward: TiltReward, config: TiltConfig, *,
                 seed: int = 0, device: str | torch.device = "cpu", coupling: str = "independent",
                 world: World | None = None, transform: Transform | None = None) -> None:
        config.validate()
        if coupling not in TILT_COUPLINGS:
            raise ConfigError(f"the tilt pairs (x0, x1) {' or '.join(TILT_COUPLINGS)}, not {coupling!r}: other "
                              "couplings break the ITM fixed point (docs/couplings.md)")
        self.coupling = coupling
        self._permute = permutes_particles(getattr(field, "spec", {}) or {}, base)  # molecules: rotate only
        self.world = world or World()
        self.field = field
        #: flow coordinates → Cartesian positions (None: the flow is Cartesian); rewards see positions
        self.transform = transform
        self._trained: nn.Module | None = None  # the field, wrapped for data-parallel training when distributed
        self.base = base
        self.reward = reward
        self.config = config
        self.device = torch.device(device)
        self.path = path_for_base(config.path, base)
        self.dtype = next(field.parameters()).dtype
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(field.parameters(), lr=config.lr)
        self.a = 0.0
        self.level = 0
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}

    # ------------------------------------------------------------------ random draws
    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, dtype=self.dtype).to(self.device)

    def _base(self, n: int) -> torch.Tensor:
        return self.base.sample(n, generator=self.generator, dtype=self.dtype).to(self.device)

    def _randperm(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator).to(self.device)

    # ------------------------------------------------------------------ one level
    def sampler(self, field: nn.Module) -> FlowSampler:
        """The :class:`FlowSampler` of ``field`` with the level solver of the config."""
        return FlowSampler(field, self.base, self.reward, method=self.config.ode_method,
                           steps=self.config.ode_steps, dtype=self.dtype, device=self.device, world=self.world,
                           transform=self.transform)

    def _warn_if_capped(self, e: torch.Tensor) -> None:
        """Warn when nearly every endpoint lies above the reward's soft energy cap: there the
        reward is almost flat, the incremental weights stay uniform, and the level learns nothing."""
        cap = getattr(self.reward, "energy_cap", None)
        if cap is None or not len(e):
            return
        above = float((e > cap).to(torch.float64).mean())
        if above >= CAPPED_WARNING_FRACTION:
            warnings.warn(f"level {self.level}: {100 * above:.0f}% of the endpoints have energies above the soft "
                          f"energy cap {cap:.4g}, where the reward is nearly flat, so the tilt cannot tell them apart; "
                          "the flow's samples are far from the target (overlapping atoms?) — pretrain longer or "
                          "on more data before tilting", RuntimeWarning, stacklevel=3)

    def step_level(self) -> dict[str, float]:
        """Run one annealing level: freeze, draw and reward endpoints, choose h, regress, record."""
        cfg = self.config
        cpu0, wall0 = time.process_time(), time.perf_counter()
        frozen = copy.deepcopy(self.field).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        x1, r, e, n_bad = self._endpoints(frozen)
        h = cfg.h if cfg.h is not None else choose_step(r, self.a, cfg.target_ess, h_min=cfg.min_h)
        h = min(h, 1.0 - self.a)
        probe = self._probe_batch(x1)
        losses = self._regress(frozen, x1, center_reward(r, h, cfg.centring))
        row = {
            "level": float(self.level),
            "a": self.a + h,
            "h": h,
            "mean_reward": float(r.mean()),
            "mean_energy": float(e.mean()),
            "loss": self.world.sum(sum(losses)) / len(losses),
            "update_norm": self._update_norm(frozen, probe),
            "ess_incremental": incremental_ess(r, h),
            "ess": math.nan,
            "n_nonfinite": float(n_bad),
            "reward_evals": float(self.reward.n_energy_evals),
            "cpu_s": math.nan,
            "wall_s": math.nan,
        }
        self.a = min(1.0, self.a + h)
        if self.a > 1.0 - 1e-9:
            self.a = 1.0
        self.level += 1
        if cfg.full_ess_every and (self.level % cfg.full_ess_every == 0 or self.a >= 1.0):
            row["ess"] = self.full_ess(self.a)
        row["cpu_s"] = time.process_time() - cpu0
        row["wall_s"] = time.perf_counter() - wall0
        for k in HISTORY_KEYS:
            self.history[k].append(row[k])
        return row

    def _endpoints(self, frozen: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The level's endpoints x1 of the frozen flow (flow coordinates) with their rewards and energies,
        those with a non-finite reward dropped: ``(x1, r, e, n_dropped)``, gathered over the ranks."""
        cfg, world = self.config, self.world
        sampler = self.sampler(frozen)
        x1 = sampler.draw_shard(cfg.n_endpoints, generator=self.generator)[0]
        # the reward of a temperature tilt is free of the Jacobian: it cancels in π_kT / π_kT0
        r, e = self.reward.evaluate(sampler.to_cartesian(x1)[0])
        self.reward.n_energy_evals += cfg.n_endpoints - len(x1)  # the other ranks' shards
        x1 = world.gather(x1)
        r, e = world.gather(r.detach().to(self.dtype), what="rewards"), world.gather(e.detach().to(self.dtype))
        ok = torch.isfinite(r)
        n_bad = int((~ok).sum())
        if n_bad:
            warnings.warn(f"level {self.level}: {n_bad} of {len(r)} samples have a non-finite reward "
                          "(non-finite energy); they are dropped from this level", RuntimeWarning, stacklevel=3)
        x1, r, e = x1[ok], r[ok], e[ok]
        if len(r) < 2:
            raise ConfigError(f"level {self.level}: fewer than 2 samples with a finite reward; the flow "
                              "produces invalid configurations — pretrain longer or lower the ODE step")
        self._warn_if_capped(e)
        return x1, r, e, n_bad

    def _regress(self, frozen: nn.Module, x1: torch.Tensor, hr_level: torch.Tensor) -> list[float]:
        """``steps_per_level`` Adam steps of the tilt loss on minibatches of the level's endpoints."""
        cfg, world = self.config, self.world
        losses = []
        loss_spec = get_loss(cfg.method)
        if self._trained is None:
            self._trained = ddp(self.field, world)
        self.field.train()
        for _ in range(cfg.steps_per_level):
            idx = self._randperm(len(hr_level))[: cfg.endpoints_per_step]
            idx = idx.repeat_interleave(cfg.draws_per_endpoint)
            xb1, hrb = x1[idx], hr_level[idx]
            t, x0 = self._rand(len(idx)), self._base(len(idx))
            s = world.shard(len(idx))  # every rank drew the whole minibatch; it trains on its shard
            weights = loss_spec.weights(hrb)[s] * world.world_size  # DDP averages the ranks' gradients
            x0, xb1 = couple(self.coupling, x0[s], xb1[s], permute=self._permute)
            ps = self.path.sample(x0, xb1, t[s])
            with torch.no_grad():
                v_prev = frozen(ps.t, ps.xt) if loss_spec.needs_frozen else None
            v = self._trained(ps.t, ps.xt)
            loss = tilt_loss(cfg.method, v, v_prev, ps.dxt, hrb[s], weights=weights)
            self.optimizer.zero_grad(set_to_none=True)
            with collective(world, "averaging gradients"):
                loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.field.parameters(), cfg.grad_clip)
            self.optimizer.step()
            losses.append(float(loss.detach()) / world.world_size)
        self.field.eval()
        return losses

    @torch.no_grad()
    def _update_norm(self, frozen: nn.Module, probe: tuple[torch.Tensor, torch.Tensor]) -> float:
        """RMS over the probe points of ‖b_{a+h} − b_a‖, the level's change of the field."""
        t, xt = probe
        s = self.world.shard(len(t))
        diff = self.field(t[s], xt[s]) - frozen(t[s], xt[s])
        sq = self.world.gather(diff.pow(2).flatten(1).sum(-1), what="update norms")
        return float(sq.mean().sqrt())

    def _probe_batch(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(self.config.n_probe, len(x1))
        t = self._rand(n)
        ps = self.path.sample(self._base(n), x1[:n], t)
        return ps.t, ps.xt

    @torch.no_grad()
    def full_ess(self, a: float) -> float:
        """ESS of exact log-weights of the current field against the level-``a`` target.

        The target uses the true energy (not the soft-capped one the reward sees), so at a = 1
        this is the ESS of the final weights. The probes come from a generator of their own,
        seeded by the trainer's seed and the level, so that computing them (or changing
        ``full_ess_every`` on resume) never shifts the training draws.
        """
        g = torch.Generator().manual_seed(self.seed + FULL_ESS_SEED_OFFSET * (1 + self.level))
        n = self.config.n_probe
        sampler = self.sampler(self.field)
        z, logq = sampler.draw_shard(n, generator=g, with_logq=True)
        x, logdet = sampler.to_cartesian(z)
        e = self.reward.energy(x).to(self.dtype)
        self.reward.n_energy_evals += n - len(x)  # the other ranks' shards
        logw = self.reward.log_level_target(x, e, a) - (logq - logdet.to(logq.dtype))
        return ess(self.world.gather(logw, what="log-weights"))

    # ------------------------------------------------------------------ loop, checkpoints
    def state_dict(self) -> dict:
        return {
            "field": self.field.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "seed": self.seed,
            "a": self.a,
            "level": self.level,
            "history": self.history,
            "reward_evals": self.reward.n_energy_evals,
            "config": {**dataclasses.asdict(self.config), "coupling": self.coupling},
        }

    def load_state_dict(self, state: dict) -> None:
        self.field.load_state_dict(state["field"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.seed = int(state.get("seed", self.seed))
        self.a = float(state["a"])
        self.level = int(state["level"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        n_done = len(self.history.get("level", []))
        for k in HISTORY_KEYS:  # checkpoints written before a key existed
            self.history.setdefault(k, [math.nan] * n_done)
        self.reward.n_energy_evals = int(state["reward_evals"])

    #: settings that may change between an interrupted run and its resumption without changing the
    #: trained weights: the level cap, and the full-ESS probes (own generator, see :meth:`full_ess`).
    #: ``n_probe`` also sizes the update-norm probe drawn from the training generator, so it is not free.
    RESUME_FREE = ("max_levels", "full_ess_every")

    def _check_resumable(self, stored: dict, path: Path) -> None:
        now = {**dataclasses.asdict(self.config), "coupling": self.coupling}
        stored = {"coupling": "independent", **stored}  # checkpoints written before the coupling existed
        changed = sorted(k for k in now if k not in self.RESUME_FREE and k in stored and stored[k] != now[k])
        if changed:
            diffs = ", ".join(f"tilt.{k}: {stored[k]!r} → {now[k]!r}" for k in changed)
            raise ConfigError(f"cannot resume from {path}: the settings changed ({diffs}); restore them, "
                              "or start a new run without --resume")

    def run(
        self,
        *,
        checkpoint_path: Path | None = None,
        resume: bool = False,
        progress: bool = True,
        callback: Callable[[dict[str, float]], None] | None = None,
    ) -> dict[str, list[float]]:
        """Anneal until a = 1 (or ``max_levels``); returns the per-level history.

        With ``checkpoint_path`` the trainer's full state is written atomically after every
        level; ``resume=True`` continues from it, giving the same result as an uninterrupted
        run with the same seed.
        """
        if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
            state = torch.load(checkpoint_path, map_location=self.device, weights_only=False)
            self._check_resumable(state.get("config", {}), checkpoint_path)
            self.load_state_dict(state)
        bar = progress_bar(total=1.0, desc=f"tilt ({self.config.method})", enabled=progress,
                   bar_format="{l_bar}{bar}| a={n:.3f} [{elapsed}<{remaining}{postfix}]")
        bar.update(self.a)
        while self.a < 1.0 and self.level < self.config.max_levels:
            row = self.step_level()
            bar.update(row["h"])
            bar.set_postfix(h=f"{row['h']:.3g}", ess_inc=f"{row['ess_incremental']:.2f}",
                            r=f"{row['mean_reward']:.3g}")
            if checkpoint_path is not None and self.world.is_main:
                save_torch_atomic(self.state_dict(), checkpoint_path)
            if callback is not None:
                callback(row)
        bar.close()
        if self.a < 1.0:
            warnings.warn(f"stopped at a = {self.a:.4f} after max_levels = {self.config.max_levels}; "
                          "raise tilt.max_levels or lower tilt.target_ess", RuntimeWarning, stacklevel=2)
        return self.history
