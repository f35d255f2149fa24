"""The tilt stage: the reward (with its soft energy cap) and the annealing loop, saved as ``model.pt``."""

from __future__ import annotations

import torch

from molsample.flows.flow import save_flow
from molsample.stages.context import RunContext
from molsample.training.rewards import make_reward
from molsample.training.tilt import TiltMatching

__all__ = ["energy_cap", "make_run_reward", "tilt_stage"]


def energy_cap(ctx: RunContext) -> float | None:
    """The soft energy cap of the reward: the configured number, or for ``"auto"`` in the
    temperature mode the highest energy of the a = 0 training data (None otherwise)."""
    cfg, data = ctx.cfg, ctx.data
    if isinstance(cfg.energy_cap, (int, float)):
        return float(cfg.energy_cap)
    if cfg.energy_cap == "none" or ctx.mode != "temperature" or data is None or callable(data):
        return None
    with torch.no_grad():
        e = ctx.system.energy.energy(data.to(torch.float64))
    e = e[torch.isfinite(e)]
    return float(e.max()) if len(e) else None


def make_run_reward(ctx: RunContext, cap: float | None = None):
    """The run's :class:`~molsample.training.rewards.TiltReward` (kT0 from the context)."""
    return make_reward(ctx.system, ctx.mode, kT0=ctx.kT0, beta=ctx.cfg.beta,
                       base_log_prob=ctx.base.log_prob, energy_cap=cap)


def data_at_target(ctx: RunContext) -> bool:
    """Whether the base data are already samples of the target (temperature mode with kT0 = kT):
    the reward is zero and there is nothing to tilt."""
    return ctx.mode == "temperature" and ctx.kT0 == ctx.system.kT


def tilt_stage(ctx: RunContext) -> None:
    """Tilt ``ctx.field`` from a = 0 to a = 1 (resumable from ``checkpoints/tilt.pt``); writes ``model.pt``.
    With the base data at the target (:func:`data_at_target`) the pretrained field is the model."""
    if data_at_target(ctx):
        ctx.reward = make_run_reward(ctx)
        ctx.history, ctx.levels = {}, 0
        if ctx.world.is_main:
            save_flow(ctx.run_dir / "model.pt", ctx.field, ctx.transform, system=ctx.system.name, a=1.0,
                      mode=ctx.mode, config=ctx.cfg.to_dict(), command=ctx.command)
        ctx.echo("tilt: skipped (temperature_factor = 1: the base data are at the target, the reward is zero); "
                 "the pretrained field is the model")
        return
    cap = energy_cap(ctx)
    if cap is not None:
        ctx.echo(f"reward: soft energy cap at {cap:.4g} {ctx.system.energy_unit}")
    ctx.reward = make_run_reward(ctx, cap)
    trainer = TiltMatching(ctx.field, ctx.base, ctx.reward, ctx.cfg.tilt, seed=ctx.cfg.seed, device=ctx.device,
                           coupling=ctx.cfg.pretrain.coupling, world=ctx.world, transform=ctx.transform)
    ctx.history = trainer.run(checkpoint_path=ctx.run_dir / "checkpoints" / "tilt.pt", resume=ctx.resume,
                              progress=ctx.progress)
    ctx.trainer, ctx.levels = trainer, trainer.level
    if ctx.world.is_main:
        save_flow(ctx.run_dir / "model.pt", ctx.field, ctx.transform, system=ctx.system.name, a=trainer.a,
                  mode=ctx.mode, config=ctx.cfg.to_dict(), command=ctx.command)
    ctx.echo(f"tilt: {trainer.level} levels, a = {trainer.a:.4f}, {ctx.reward.n_energy_evals} energy evaluations")
