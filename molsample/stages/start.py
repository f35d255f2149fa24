"""Start from an already tilted model (``[start] model = FILE`` or ``package:NAME``): the base data,
pretraining and tilt stages are skipped and the run goes straight to its final samples."""

from __future__ import annotations

from molsample.errors import ConfigError
from molsample.flows.flow import load_flow
from molsample.runtime.resources import package_file
from molsample.stages.context import RunContext
from molsample.stages.tilt import make_run_reward

__all__ = ["start_from_model", "starts_from_model"]


def starts_from_model(ctx: RunContext) -> bool:
    """Whether the run reuses a tilted model instead of training one."""
    return ctx.cfg.start.model is not None


def start_from_model(ctx: RunContext) -> None:
    """``ctx.field`` and ``ctx.reward`` from the model file named by ``cfg.start.model``."""
    ref = ctx.cfg.start.model
    path = package_file(ref)
    flow, meta = load_flow(path, ctx.system, device=ctx.device, base_table=ctx.cfg.base.table())
    field = flow.field
    ctx.base, ctx.transform = flow.base, flow.transform
    if meta.get("system") not in (None, ctx.system.name):
        raise ConfigError(f"start model {ref} was trained for system {meta.get('system')!r}, not "
                          f"{ctx.system.name!r}; pick a model of this system or drop [start] model")
    if ctx.cfg.mode is None and meta.get("mode"):
        ctx.set_mode(meta["mode"])  # unless the config says otherwise, the model's mode is the run's
    if meta.get("mode") not in (None, ctx.mode):
        raise ConfigError(f"start model {ref} was tilted in {meta.get('mode')!r} mode, this run is {ctx.mode!r}; "
                          f"pass --mode {meta.get('mode')}")
    ctx.field = field.to(ctx.dtype)
    ctx.reward = make_run_reward(ctx)
    a = float(meta.get("a", 1.0))
    what = "shipped model" if ref.startswith("package:") else "model"
    how = meta.get("command") or "unknown command"
    ctx.echo(f"reused: {what} {ref} (a = {a:g}), trained by `{how}`; base data, pretraining and tilt skipped")
    if a < 1.0:
        ctx.echo(f"warning: the start model reached only a = {a:.4f}; its samples are weighted against a = 1 anyway")
