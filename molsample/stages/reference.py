"""The reference stage: ground-truth samples at the target stored beside the flow samples."""

from __future__ import annotations

from molsample.io.hdf5 import RunFile
from molsample.stages.context import RunContext
from molsample.stages.data import target_reference

__all__ = ["reference_stage", "wants_reference"]


def wants_reference(ctx: RunContext) -> bool:
    """Whether the config asks for reference samples (``reference.n > 0``)."""
    return ctx.cfg.reference.n > 0


def reference_stage(ctx: RunContext) -> None:
    """Append the set ``reference`` (cached by the reference sampler's settings) to ``samples.h5``."""
    system = ctx.system
    x_ref, e_ref, info = target_reference(ctx, ctx.reward)
    with RunFile(ctx.run_dir / "samples.h5", "a") as rf:
        rf.write_samples(x_ref, energy=e_ref, energy_unit=system.energy_unit, length_unit=system.length_unit,
                         topology=system.topology, kT=system.kT, name="reference")
    ctx.reference_x = x_ref
    ctx.echo(f"reference: {len(x_ref)} {info}")
