"""Samples from the reference samplers: the a = 0 training data and the ground truth at the target."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from molsample.flows.weights import resample
from molsample.io.cache import digest, load_cached, save_cached
from molsample.runtime.distributed import World
from molsample.stages.context import Cost, RunContext
from molsample.systems.cards import System
from molsample.training.rewards import TiltReward

__all__ = ["base_data_cost", "base_data_stage", "reference_samples", "target_reference"]


def reference_samples(system: System, dcfg, kT: float, *, seed: int, progress: bool, world: World | None = None):
    """Samples at ``kT`` from the reference sampler (cached in runs/cache/reference/ by settings),
    with the MCMC energies shared by the ranks of ``world``."""
    from molsample.mcmc.reference import load_or_generate_reference, resolve_method

    settings = {k: v for k, v in (("n_steps", dcfg.steps), ("burn_in", dcfg.burn_in)) if v}
    if resolve_method(system, dcfg.method, kT) == "exact":
        settings = {}  # step counts of a preset mean nothing to an exact sampler
    return load_or_generate_reference(system, dcfg.n, kT=kT, method=dcfg.method, seed=seed,
                                      progress=progress, world=world, **settings)


def base_data_stage(ctx: RunContext) -> None:
    """``ctx.data``: samples of the a = 0 distribution, ``(cfg.data.n, n_particles, dim)``, cached
    as ``base_data.pt``; or, when the a = 0 distribution has an exact sampler (reward mode on the
    2-D toys), the sampler itself, so that pretraining draws fresh samples at every step."""
    cfg, system = ctx.cfg, ctx.system
    if ctx.mode == "reward" and system.exact_sampler() is not None:
        ctx.echo("base data: the system's exact sampler (fresh samples at every pretraining step)")
        ctx.data = system.exact_sampler()
        return
    cache = ctx.run_dir / "base_data.pt"
    key = digest({"system": str(system.card_path), "mode": ctx.mode, "data": dataclasses.asdict(cfg.data),
                  "factor": cfg.temperature_factor, "seed": cfg.seed})
    world = ctx.world
    if world.distributed and not _shared_by_ranks(ctx):
        # one trajectory (MD) or an exact sampler: rank 0 makes the data and the others read them
        # (MOLSAMPLE_DIST_TIMEOUT must exceed the time rank 0 takes)
        if world.is_main:
            _make_base_data(ctx, cache, key, World())
        world.barrier("waiting for rank 0's base data")
        if not world.is_main:
            ctx.data = load_cached(cache, key)["x"]
        return
    _make_base_data(ctx, cache, key, world)


def _shared_by_ranks(ctx: RunContext) -> bool:
    """Whether the ranks share the base data's sampler (MCMC chains) rather than wait for rank 0."""
    from molsample.mcmc.reference import SHARDED_METHODS, resolve_method

    return ctx.mode != "prior" and resolve_method(ctx.system, ctx.cfg.data.method, ctx.kT0) in SHARDED_METHODS


def _make_base_data(ctx: RunContext, cache, key: str, world: World) -> None:
    """Reuse ``cache`` or sample the base data (over ``world``) and save them (rank 0)."""
    cfg, system = ctx.cfg, ctx.system
    blob = load_cached(cache, key)
    if blob is not None:
        ctx.echo(f"base data: reusing {len(blob['x'])} cached samples ({cache})")
        ctx.data = blob["x"]
        ctx.base_data_cost = blob.get("cost")
        return
    if ctx.mode == "prior":
        x = ctx.base.sample(cfg.data.n, generator=torch.Generator().manual_seed(cfg.seed), dtype=torch.float64)
        info = "base Gaussian"
        cost = {"method": "base Gaussian", "n": len(x), "n_energy_evals": 0}
    else:
        ref = reference_samples(system, cfg.data, ctx.kT0, seed=cfg.seed, progress=ctx.progress, world=world)
        x = torch.as_tensor(ref.samples, dtype=torch.float64)
        info = f"{ref.method} at kT0 = {ctx.kT0:g} {system.energy_unit}"
        cost = base_data_cost(ref.diagnostics, ctx.kT0)
    if world.is_main:
        save_cached(cache, key, {"x": x, "cost": cost})
    ctx.echo(f"base data: {len(x)} samples ({info})")
    ctx.data = x
    ctx.base_data_cost = cost


#: what :func:`base_data_cost` keeps of a reference run's diagnostics
BASE_DATA_COST_KEYS = ("method", "n", "n_energy_evals", "cpu_time_s", "wall_time_s", "tau_int", "n_effective")


def base_data_cost(diagnostics: dict, kT0: float) -> Cost:
    """What the base data cost when they were made: method, samples, energy evaluations, CPU and
    wall seconds, τ_int and effective samples (``None`` where the sampler does not say), and kT0.

    A reference-cache hit carries the numbers of the run that made the samples, so a run that
    reuses cached base data still counts their price (the run file's ``base_data_cost``)."""
    def plain(key: str, v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        return int(v) if key in ("n", "n_energy_evals") else float(v)

    cost = {k: plain(k, diagnostics.get(k)) for k in BASE_DATA_COST_KEYS}
    cost["kT0"] = float(kT0)
    return cost


def target_reference(ctx: RunContext, reward: TiltReward) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Ground-truth samples of the a = 1 target for the report: reference samples at kT (seed
    ``cfg.seed + 3``, so that they never share a trajectory with the base data of seed ``cfg.seed``), and in
    reward mode those samples resampled (systematically) with weights e^{β f(x)}."""
    cfg, system = ctx.cfg, ctx.system
    ref = reference_samples(system, cfg.reference, system.kT, seed=cfg.seed + 3, progress=ctx.progress)
    x, e = torch.as_tensor(ref.samples), torch.as_tensor(ref.energies)
    info = f"{ref.method} samples at kT = {system.kT:g} {system.energy_unit}"
    if reward.mode == "reward":
        logw = reward.beta * reward.fn(x)
        idx = resample(logw, len(x), generator=torch.Generator().manual_seed(cfg.seed + 4))
        x, e = x[idx], e[idx]
        info += f", resampled with weights exp(β·reward), β = {reward.beta:g}"
    return x, e, info
