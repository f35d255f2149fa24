r"""Flow matching: regress the velocity field on the interpolant's time derivative.

    L_FM = E_{t ~ U[0,1], x0 ~ base, x1 ~ data} ‖b̂_t(I_t) − İ_t‖²,   I_t = α_t x0 + β_t x1

(mean over samples and coordinates), optionally weighted over t (``time_weighting``: ``"endpoint"``
weighs each sample by (1 − t)², which on the linear path makes the loss the endpoint error
‖x̂1 − x1‖² of x̂1 = I_t + (1 − t) b̂_t(I_t)). :func:`train_flow_matching` runs Adam on it with a seeded
generator for all randomness (batches, x0, t), checkpoints atomically and resumes exactly:
an interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one.

Distributed (a :class:`~molsample.runtime.distributed.World` of K ranks): every rank draws the whole
minibatch from the same generator and trains on its shard; DistributedDataParallel averages the
gradients, so the step equals the 1-process step on the whole minibatch. Rank 0 checkpoints.
"""

from __future__ import annotations

import copy
import math
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from molsample.errors import ConfigError, RunFileError, ShapeError
from molsample.flows.distributions import CoMFreeGaussian
from molsample.flows.paths import get_path, path_for_base
from molsample.io.atomic import save_torch_atomic
from molsample.runtime.distributed import World, collective, ddp
from molsample.training.coupling import COUPLINGS, PAIRWISE_COUPLINGS, couple, permutes_particles

__all__ = ["FlowMatchingConfig", "TIME_WEIGHTINGS", "ema_decay_at", "flow_matching_loss", "time_weight",
           "train_flow_matching"]

#: data: a tensor (N, n, d) to draw batches from, or a sampler (n, generator) -> (n, n, d)
Data = Tensor | Callable[[int, torch.Generator], Tensor]


@dataclass
class FlowMatchingConfig:
    """Hyperparameters of :func:`train_flow_matching`.

    Attributes:
        steps: number of gradient steps.
        batch_size: samples per step.
        lr: Adam learning rate.
        ema_decay: decay of an exponential moving average of the weights (``None``: off); the
            average is copied into the field at the end. The decay warms up as
            :func:`ema_decay_at`, so that the average forgets the random initial weights.
        path: interpolant name (``"linear"`` or ``"trig"``).
        checkpoint_every: steps between checkpoints (when a checkpoint path is given).
        seed: seed of the generator that draws batches, base samples and times.
        grad_clip: clip the gradient norm to this value (``None``: no clipping).
        lr_schedule: ``"constant"`` or ``"cosine"`` (lr·½(1 + cos(π k/steps)) at step k, so it
            falls to 0 at the last step).
        coupling: how each minibatch pairs base and data samples (``"independent"``, ``"ot"``,
            ``"equivariant-ot"``, ``"aligned"``; :mod:`molsample.training.coupling`). The
            symmetry-aware ones permute particles only when the field's spec has no atom types and
            the base is permutation-invariant; for molecules they rotate only.
        time_weighting: ``"uniform"`` (the plain velocity regression) or ``"endpoint"`` (each
            sample's squared error times (1 − t)²: on the linear path the error of the predicted
            endpoint; :func:`time_weight`).
    """

    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    ema_decay: float | None = None
    path: str = "linear"
    checkpoint_every: int = 1000
    seed: int = 0
    grad_clip: float | None = None
    lr_schedule: str = "constant"
    coupling: str = "independent"
    time_weighting: str = "uniform"

    def validate(self) -> None:
        """Raise :class:`ConfigError` for out-of-range values."""
        if self.steps < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError(f"steps >= 0, batch_size >= 1 and checkpoint_every >= 1 are required; got {self}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) or None, got {self.ema_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if self.coupling not in COUPLINGS:
            raise ConfigError(f"unknown coupling {self.coupling!r}; choose one of {', '.join(COUPLINGS)}")
        if self.time_weighting not in TIME_WEIGHTINGS:
            raise ConfigError(f"unknown time_weighting {self.time_weighting!r}; choose one of "
                              f"{', '.join(TIME_WEIGHTINGS)}")
        get_path(self.path)

    def key_dict(self) -> dict:
        """The settings as a dict for cache keys: keys added later are left out at their defaults, so
        files keyed before they existed still match."""
        d = dataclasses.asdict(self)
        if d["time_weighting"] == "uniform":
            del d["time_weighting"]
        return d

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if self.lr_schedule == "cosine" and self.steps > 0:
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * step / self.steps))
        return self.lr


#: weightings over t of the flow-matching loss (:attr:`FlowMatchingConfig.time_weighting`)
TIME_WEIGHTINGS = ("uniform", "endpoint")


def time_weight(kind: str, t: Tensor) -> Tensor | None:
    """Per-sample loss weights ``(batch,)`` for times ``t: (batch,)``: ``None`` for ``"uniform"``,
    (1 − t)² for ``"endpoint"`` (mean 1/3 over t ~ U[0, 1])."""
    if kind == "uniform":
        return None
    if kind == "endpoint":
        return (1.0 - t) ** 2
    raise ConfigError(f"unknown time_weighting {kind!r}; choose one of {', '.join(TIME_WEIGHTINGS)}")


def flow_matching_loss(field: nn.Module | Callable, path: Any, x0: Tensor, x1: Tensor, t: Tensor, *,
                       total: int | None = None, weight: Tensor | None = None) -> Tensor:
    """Mean squared error ‖b̂_t(I_t) − İ_t‖² (mean over batch and coordinates), a scalar.

    Args:
        field: velocity ``field(t, x)``.
        path: an interpolant from :func:`molsample.flows.paths.get_path`.
        x0, x1: ``(batch, n, d)`` base and target samples.
        t: ``(batch,)`` times.
        total: size of the whole minibatch when ``x0, x1, t`` are one shard of it: the result is
            then the shard's sum divided by the whole minibatch's number of elements.
        weight: ``(batch,)`` per-sample weights of the squared error (``None``: all 1).
    """
    ps = path.sample(x0, x1, t)
    sq = (field(ps.t, ps.xt) - ps.dxt) ** 2
    if weight is not None:
        sq = sq * weight.reshape(-1, *([1] * (sq.dim() - 1)))
    if total is None:
        return sq.mean()
    return sq.sum() / (total * sq[0].numel())


# config fields that must agree between a checkpoint and the run resuming it
_RESUME_KEYS = ("batch_size", "lr", "ema_decay", "path", "seed", "grad_clip", "lr_schedule", "coupling",
                "time_weighting")

#: learning-rate schedules of :class:`FlowMatchingConfig`
LR_SCHEDULES = ("constant", "cosine")


def ema_decay_at(step: int, decay: float) -> float:
    """The EMA decay after optimizer step ``step`` (1-based): min(decay, (1 + step)/(10 + step)).

    A constant decay keeps a share decay^k of the initial (random) weights after k steps: 5 % after
    3,000 steps at 0.999, enough to spoil a flow that must place bonds to 0.01 nm. The warm-up makes
    the share after k steps (k ≥ 1) at most
    ∏_{j ≤ k} (1 + j)/(10 + j) (2e-12 after 100 steps).
    """
    return min(float(decay), (1.0 + step) / (10.0 + step))


def _data_source(data: Data, event_shape: tuple, centre: bool, device: Any, dtype: torch.dtype
                 ) -> tuple[Tensor | None, Callable | None]:
    """``(pool, sampler)``: the data as a centred tensor on the field's device, or the sampler."""
    if isinstance(data, Tensor):
        if data.dim() != 3 or tuple(data.shape[1:]) != event_shape:
            raise ShapeError(f"data must have shape (N, {event_shape[0]}, {event_shape[1]}), got {tuple(data.shape)}")
        if data.shape[0] == 0:
            raise ShapeError("data is empty; pass at least one sample")
        pool = data.to(device=device, dtype=dtype)
        return (pool - pool.mean(dim=1, keepdim=True) if centre else pool), None
    if callable(data):
        return None, data
    raise ShapeError(f"data must be a tensor (N, n, d) or a sampler function, got {type(data).__name__}")


@dataclass
class _Training:
    """The state of one flow-matching run: what a checkpoint stores and a resume restores."""

    field: nn.Module
    opt: torch.optim.Optimizer
    ema: nn.Module | None
    gen: torch.Generator
    config: FlowMatchingConfig
    history: dict[str, list] = dataclasses.field(default_factory=lambda: {"step": [], "loss": []})
    start: int = 0
    cpu_before: float = 0.0  # CPU seconds of earlier invocations (all ranks)

    def restore(self, ckpt: Path, device: Any) -> None:
        """Continue from ``ckpt``; its settings must be those of :data:`_RESUME_KEYS`."""
        try:
            state = torch.load(ckpt, map_location=device, weights_only=False)
        except Exception as exc:  # noqa: BLE001
            raise RunFileError(f"cannot read checkpoint {ckpt}: {exc}; delete it to start over") from exc
        saved, config = state.get("config", {}), self.config
        keys = _RESUME_KEYS + (("steps",) if config.lr_schedule == "cosine" else ())  # the schedule spans all steps
        # checkpoints written before these keys
        older = {"lr_schedule": "constant", "coupling": "independent", "time_weighting": "uniform"}
        diff = {k: (saved.get(k, older.get(k)), getattr(config, k)) for k in keys}
        diff = {k: v for k, v in diff.items() if v[0] != v[1]}
        if diff:
            raise ConfigError(
                f"checkpoint {ckpt} was written with different settings {diff} (saved, now); "
                "use the same settings, pass resume=False, or delete the checkpoint"
            )
        self.field.load_state_dict(state["field"])
        self.opt.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.gen.set_state(state["rng"])
        self.history = {"step": list(state["history"]["step"]), "loss": list(state["history"]["loss"])}
        self.start = int(state["step"])
        self.cpu_before = float(state.get("cpu_s") or 0.0)

    def state(self, step: int, cpu_s: float) -> dict:
        """The checkpoint after ``step`` optimizer steps."""
        return {"cpu_s": cpu_s, "step": step, "field": self.field.state_dict(), "optimizer": self.opt.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None, "rng": self.gen.get_state(),
                "history": self.history, "config": dataclasses.asdict(self.config)}


def _minibatch(run: _Training, pool: Tensor | None, sampler: Callable | None, base: Any, event_shape: tuple,
               centre: bool, permute: bool, world: World) -> tuple[Tensor, Tensor, Tensor]:
    """This rank's share ``(x0, x1, t)`` of one coupled minibatch, drawn from the run's generator."""
    config, gen = run.config, run.gen
    device, dtype = _device_dtype(run.field)
    if pool is not None:
        idx = torch.randint(0, pool.shape[0], (config.batch_size,), generator=gen)
        x1 = pool[idx.to(device)]
    else:
        x1 = torch.as_tensor(sampler(config.batch_size, gen)).to(device=device, dtype=dtype)
        if tuple(x1.shape) != (config.batch_size, *event_shape):
            raise ShapeError(f"the data sampler returned {tuple(x1.shape)}, expected "
                             f"({config.batch_size}, {event_shape[0]}, {event_shape[1]})")
        if centre:
            x1 = x1 - x1.mean(dim=1, keepdim=True)
    x0 = base.sample(config.batch_size, generator=gen, dtype=dtype).to(device)
    s = world.shard(config.batch_size)  # every rank drew the whole minibatch; it trains on its shard
    if config.coupling in PAIRWISE_COUPLINGS:
        x0, x1 = couple(config.coupling, x0[s], x1[s], permute=permute)
    else:  # a batch assignment needs the whole minibatch
        x0, x1 = (y[s] for y in couple(config.coupling, x0, x1, permute=permute))
    t = torch.rand(config.batch_size, generator=gen, dtype=dtype).to(device)[s]
    return x0, x1, t


def _device_dtype(field: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(field.parameters())
    return p.device, p.dtype


def _optimizer_step(run: _Training, loss: Tensor, step: int, world: World) -> None:
    """Backward (gradients averaged over the ranks), learning-rate schedule, clipping, Adam, EMA."""
    config = run.config
    run.opt.zero_grad(set_to_none=True)
    with collective(world, "averaging gradients"):
        loss.backward()
    if config.lr_schedule != "constant":
        for group in run.opt.param_groups:
            group["lr"] = config.lr_at(step)
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.field.parameters(), config.grad_clip)
    run.opt.step()
    if run.ema is not None:
        with torch.no_grad():
            for pe, p in zip(run.ema.parameters(), run.field.parameters(), strict=True):
                pe.lerp_(p, 1.0 - ema_decay_at(step + 1, config.ema_decay))


def train_flow_matching(
    field: nn.Module,
    data: Data,
    base: Any,
    config: FlowMatchingConfig | None = None,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    progress: bool = True,
    resume: bool = True,
    callback: Callable[[int, float], None] | None = None,
    world: World | None = None,
) -> dict:
    """Train ``field`` by flow matching from ``base`` (t = 0) to ``data`` (t = 1), in place.

    Args:
        field: the velocity net (its parameters are updated).
        data: ``(N, n, d)`` target samples (batches are drawn with replacement), or a sampler
            ``data(n, generator) -> (n, n, d)`` such as ``system.exact_sampler()``.
        base: the base distribution (``sample``/``log_prob``); with a :class:`CoMFreeGaussian`
            the data are centred (x1 − mean over particles) first.
        config: hyperparameters (default :class:`FlowMatchingConfig`).
        checkpoint_path: file for checkpoints (field, optimizer, EMA, step, generator state,
            history, and ``cpu_s``: the training's CPU seconds over all ranks and every invocation
            so far), written atomically every ``config.checkpoint_every`` steps and at the end.
        progress: show a progress bar.
        resume: continue from ``checkpoint_path`` when it exists.
        callback: ``callback(step, loss)`` after every step (step counts from 1).
        world: the ranks that share each minibatch (default: this process alone).
    Returns:
        history ``{"step": [...], "loss": [...]}`` over all steps (including resumed ones).
    Raises:
        ConfigError: bad hyperparameters, or a checkpoint written with different ones.
        ShapeError: data that does not match the base's event shape.
    """
    config = config or FlowMatchingConfig()
    config.validate()
    path = path_for_base(config.path, base)
    if not list(field.parameters()):
        raise ConfigError("the field has no parameters to train")
    device, dtype = _device_dtype(field)
    event_shape = tuple(base.event_shape)
    centre = isinstance(base, CoMFreeGaussian)
    permute = permutes_particles(getattr(field, "spec", {}) or {}, base)  # molecules: couplings rotate only
    pool, sampler = _data_source(data, event_shape, centre, device, dtype)

    ema: nn.Module | None = None
    if config.ema_decay is not None:
        ema = copy.deepcopy(field)
        for p in ema.parameters():
            p.requires_grad_(False)
    run = _Training(field, torch.optim.Adam(field.parameters(), lr=config.lr), ema,
                    torch.Generator().manual_seed(int(config.seed)), config)
    cpu0 = time.process_time()
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        run.restore(ckpt, device)

    world = world or World()
    trained = ddp(field, world)

    def save(step: int) -> None:
        if ckpt is None:
            return
        cpu_s = run.cpu_before + world.sum(time.process_time() - cpu0)  # every rank calls save: a collective
        if world.is_main:
            save_torch_atomic(run.state(step, cpu_s), ckpt)

    bar = None
    if run.start < config.steps:  # a bar on a terminal, plain lines in a log file (molsample.runtime.progress)
        from molsample.runtime.progress import progress_bar

        bar = progress_bar(total=config.steps, initial=run.start, desc="flow matching", mininterval=1.0,
                           enabled=progress)
    field.train()
    for step in range(run.start, config.steps):
        x0, x1, t = _minibatch(run, pool, sampler, base, event_shape, centre, permute, world)
        w = time_weight(config.time_weighting, t)
        if world.distributed:  # DDP averages the ranks' gradients: scale the shard's share of the mean by K
            loss = flow_matching_loss(trained, path, x0, x1, t, total=config.batch_size, weight=w) * world.world_size
        else:
            loss = flow_matching_loss(field, path, x0, x1, t, weight=w)
        _optimizer_step(run, loss, step, world)
        value = world.sum(float(loss.detach())) / world.world_size
        run.history["step"].append(step + 1)
        run.history["loss"].append(value)
        if bar is not None:
            bar.update(1)
            if (step + 1) % 100 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        if callback is not None:
            callback(step + 1, value)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save(step + 1)
    if bar is not None:
        bar.close()
    save(max(run.start, config.steps))
    field.eval()
    if ema is not None:
        field.load_state_dict(ema.state_dict())
    return run.history
