"""The coordinates stage: for a flow in internal coordinates, the Z-matrix of the molecule and the
transform fitted to the base data (means and spreads of bonds, angles and torsions), and the base
distribution it implies. Cartesian flows skip it."""

from __future__ import annotations

import torch

from molsample.stages.context import RunContext

__all__ = ["coordinates_stage", "uses_internal_coordinates"]


def uses_internal_coordinates(ctx: RunContext) -> bool:
    """Whether the run's flow is in internal coordinates (``[flow] coordinates = "internal"``)."""
    return ctx.cfg.flow.coordinates == "internal"


def coordinates_stage(ctx: RunContext) -> None:
    """``ctx.transform`` and ``ctx.base`` for an internal-coordinate flow, fitted to ``ctx.data``."""
    from molsample.flows.flow import base_for
    from molsample.flows.internal import InternalCoordinates
    from molsample.molecules.zmatrix import zmatrix_for_system

    zmatrix = zmatrix_for_system(ctx.system)
    frames = ctx.data.to(dtype=torch.float64, device="cpu")
    if ctx.cfg.flow.rotor_augment:
        frames = ctx.train_frames = _rotor_augmented(ctx, frames)
    ctx.transform = InternalCoordinates.fit(zmatrix, frames, circular_threshold=ctx.cfg.flow.circular_threshold)
    ctx.base = base_for(ctx.system, ctx.transform)
    n_circ = int(ctx.transform.periodic.sum())
    ctx.echo(f"internal coordinates: {ctx.transform.event_shape[0]} (Z-matrix from atom "
             f"{zmatrix.rows[0][0]}; {n_circ} torsions on the circle)")


def _rotor_augmented(ctx: RunContext, frames: torch.Tensor) -> torch.Tensor:
    """``frames`` under every cyclic relabelling of the system's rotor groups, after checking on four
    frames that the energy does not change (:mod:`molsample.molecules.rotor_symmetry`)."""
    from molsample.molecules.rotor_symmetry import augment_system_frames

    augmented, groups, perms = augment_system_frames(ctx.system, frames)
    ctx.echo(f"rotor augmentation: {len(groups)} groups of equivalent atoms, {len(perms)} relabellings of "
             f"each of {len(frames)} frames")
    return augmented
