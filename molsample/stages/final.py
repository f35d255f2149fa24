"""The final-samples stage: weighted samples through the :class:`FlowSampler`, the chirality fix,
the run file ``samples.h5``.

One recipe serves the tilt job's final stage and ``molsample sample``: :func:`final_sampler` (the
``[final]`` solver), :func:`draw_final` (draw, then the chirality fix) and :func:`write_final_set` (the
main sample set); :func:`append_final_samples` appends batch by batch to an existing run file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from molsample.flows.flow import Flow
from molsample.flows.sampler import FlowSampler, WeightedSamples
from molsample.flows.transform import CartesianTransform, Transform
from molsample.flows.weights import summarize
from molsample.io.hdf5 import RunFile
from molsample.runtime.progress import progress_bar
from molsample.stages.context import Echo, RunContext
from molsample.systems.cards import System

__all__ = ["FinalDraw", "append_final_samples", "draw_final", "final_sampler", "final_stage", "fix_chirality",
           "is_chiral", "transform_layout", "write_final_set"]


@dataclasses.dataclass(frozen=True)
class FinalDraw:
    """Weighted samples drawn by the final stage's recipe (:func:`draw_final`).

    Attributes:
        samples: the samples after the chirality fix on rank 0 (the plain draw on the other ranks).
        n_nonfinite: samples with a non-finite energy or log q, counted before the fix.
        chirality: the fix's run-file attributes (fractions before it; empty without stereocentres).
    """

    samples: WeightedSamples
    n_nonfinite: int
    chirality: dict[str, float]


def final_sampler(ctx: RunContext) -> FlowSampler:
    """The :class:`FlowSampler` of the run's ``[final]`` settings: ``ctx.field`` from ``ctx.base``
    through ``ctx.transform``, weighted against ``ctx.reward``, sharded over ``ctx.world``."""
    fin = ctx.cfg.final
    transform = ctx.transform or CartesianTransform(ctx.base.event_shape)
    return Flow(ctx.field, ctx.base, transform, method=fin.ode_method, steps=fin.ode_steps,
                divergence=fin.divergence).sampler(ctx.reward, dtype=ctx.dtype, device=ctx.device, world=ctx.world)


def draw_final(ctx: RunContext, sampler: FlowSampler, n: int, *, batch_size: int,
               generator: torch.Generator | None, checkpoint: Path | None = None,
               progress: bool = False) -> FinalDraw:
    """``n`` weighted samples from ``sampler`` in batches of ``batch_size`` (resumable per batch with
    ``checkpoint``), with the chirality fix of ``[final] reflect_chirality`` on rank 0.

    Every rank draws its share of every batch; the other ranks get the plain draw.
    """
    ws = sampler.sample(n, batch_size=batch_size, generator=generator, checkpoint=checkpoint, progress=progress)
    if not ctx.world.is_main:
        return FinalDraw(ws, ws.summary.n_nonfinite, {})
    if ctx.cfg.final.divergence == "hutchinson":
        ctx.echo("warning: log-weights use the Hutchinson divergence estimator; ESS and log Z are biased")
    fixed, attrs = fix_chirality(ws, ctx.system, ctx.field, reflect=ctx.cfg.final.reflect_chirality, echo=ctx.echo)
    return FinalDraw(fixed, ws.summary.n_nonfinite, attrs)


def write_final_set(rf: RunFile, ctx: RunContext, ws: WeightedSamples, *, append: bool = False) -> None:
    """Write (or append) ``ws`` as the run file's main sample set, in the system's units, with its
    topology and, for a flow in internal coordinates, ``ws.z`` described by the transform's layout."""
    system = ctx.system
    rf.write_set("samples", ws, energy_unit=system.energy_unit, length_unit=system.length_unit, kT=system.kT,
                 topology=system.topology, layout=transform_layout(ctx.transform) or "", append=append)


def append_final_samples(ctx: RunContext, rf: RunFile | None, n: int, *, batch_size: int,
                         generator: torch.Generator | None) -> torch.Tensor:
    """Draw ``n`` samples by :func:`draw_final`, ``batch_size`` at a time, and append each batch to the
    main set of ``rf`` as it is drawn (rank 0; ``None`` on the other ranks, which draw their shares).

    The generator advances as in one call of ``n``, so the samples are those of that call. Returns
    the new samples' log-weights ``(n,)`` after the chirality fix (empty on ranks > 0).
    """
    sampler = final_sampler(ctx)
    logw: list[torch.Tensor] = []
    for start in progress_bar(range(0, n, batch_size), desc="new samples", enabled=ctx.progress,
                              total=-(-n // batch_size)):
        draw = draw_final(ctx, sampler, min(batch_size, n - start), batch_size=batch_size, generator=generator)
        if rf is not None:
            write_final_set(rf, ctx, draw.samples, append=True)
            logw.append(draw.samples.logw)
    return torch.cat(logw) if logw else torch.empty(0, dtype=torch.float64)


def final_stage(ctx: RunContext) -> None:
    """Draw ``final.n_samples`` weighted samples (resumable per batch) and write ``samples.h5``.

    In a distributed run the ranks share every batch and rank 0 alone continues (chirality, the
    run file with ``world_size`` and ``backend``).
    """
    fin = ctx.cfg.final
    draw = draw_final(ctx, final_sampler(ctx), fin.n_samples, batch_size=fin.batch_size,
                      generator=torch.Generator().manual_seed(ctx.cfg.seed + 1),
                      checkpoint=ctx.run_dir / "checkpoints" / "final.pt", progress=ctx.progress)
    if not ctx.world.is_main:
        return
    ctx.samples, ctx.n_nonfinite, ctx.chirality = draw.samples, draw.n_nonfinite, dict(draw.chirality)
    with RunFile(ctx.run_dir / "samples.h5", "w") as rf:
        write_final_set(rf, ctx, draw.samples)
        _write_run_record(rf, ctx)


def _write_run_record(rf: RunFile, ctx: RunContext) -> None:
    """The tilt run's history, config and root attributes beside its final samples."""
    cfg, system, ws = ctx.cfg, ctx.system, ctx.samples
    rf.write_history({k: np.asarray(v, dtype=np.float64) for k, v in ctx.history.items()})
    rf.write_config(cfg.to_dict())
    rf.set_attrs(kind="tilt", system=system.name, method=cfg.tilt.method, mode=ctx.mode, seed=cfg.seed,
                 kT=system.kT, energy_unit=system.energy_unit, divergence=cfg.final.divergence,
                 energy_evals=ctx.reward.n_energy_evals,
                 ess=ws.summary.ess, log_z=ws.summary.log_z, log_z_se=ws.summary.log_z_se,
                 world_size=ctx.world.world_size, backend=ctx.world.backend, **ctx.chirality)
    for key, cost in (("base_data_cost", ctx.base_data_cost), ("pretrain_cost", ctx.pretrain_cost)):
        if cost:  # what reused stage outputs cost when they were made
            rf.set_attrs(**{key: json.dumps(cost)})


def fix_chirality(ws: WeightedSamples, system: System, field: nn.Module, *, reflect: bool,
                  echo: Echo) -> tuple[WeightedSamples, dict[str, float]]:
    """Chirality of the samples of a system with stereocentres (else nothing).

    With ``reflect``, the samples are weighted against the target folded onto the reference
    stereoisomer (docs/chirality.md). For a reflection-invariant net (declared by its class:
    the EGNN and the non-chiral e3nn) wrong-handed samples are mirrored in place; the model density is reflection-invariant,
    so logq stays valid, and so do the energies and logw when the force field is
    (:func:`~molsample.molecules.mirror_energy.energy_is_reflection_invariant`); otherwise (CMAP terms,
    torsion phases other than 0/180°) the mirrored samples' energies and weights are recomputed. For a chiral net the
    mirror-image samples get weight 0 and the others log 2 more
    (:func:`~molsample.molecules.chirality.drop_wrong_handed_log_weights`); the ESS counts the dropped ones
    as wasted. Returns the fixed samples (a new :class:`WeightedSamples`; ``ws`` is left as it was) and
    run-file attributes with the fractions before the fix.
    """
    from molsample.flows.reflection import reflect_and_reweight
    from molsample.molecules.chirality import (chiral_centers_for_system, chirality_fractions,
                                               drop_wrong_handed_log_weights, reflect_wrong_handed)
    from molsample.molecules.mirror_energy import energy_is_reflection_invariant, reflection_variant_terms

    centers = chiral_centers_for_system(system)
    if not centers:
        return ws, {}
    frac = chirality_fractions(ws.x.cpu(), centers)
    attrs = {"chirality_reference_fraction": float(frac["reference"]),
             "chirality_mirror_fraction": float(frac["mirror"])}
    echo(f"chirality: {frac['reference']:.3f} of the samples have the reference handedness, "
         f"{frac['mirror']:.3f} the mirror image")
    if not reflect:
        return ws, attrs
    if is_chiral(field):
        logw = drop_wrong_handed_log_weights(ws.logw, ws.x.cpu(), centers)
        ws = dataclasses.replace(ws, logw=logw, summary=summarize(logw))
        n_dropped = round(frac["mirror"] * frac["n"])
        attrs["chirality_dropped"] = int(n_dropped)
        echo(f"chirality: gave the {n_dropped} mirror-image samples of the chiral net weight 0")
    elif energy_is_reflection_invariant(system):
        x, n_reflected = reflect_wrong_handed(ws.x.cpu(), centers)
        ws = dataclasses.replace(ws, x=x.to(ws.x.device))
        attrs["chirality_reflected"] = int(n_reflected)
        echo(f"chirality: mirrored {n_reflected} wrong-handed samples (weights unchanged: the energy is "
             "reflection-invariant)")
    else:  # CMAP terms, torsion phases other than 0/180°: E(mirror) ≠ E, so energies and weights are recomputed
        rs = reflect_and_reweight(ws.x.cpu(), ws.logq.cpu(), system.energy.energy, system.kT, centers,
                                  energy=ws.energy.cpu())
        logw = rs.logw.to(ws.logw.device)
        ws = dataclasses.replace(ws, x=rs.x.to(ws.x.device), energy=rs.energy.to(ws.energy.device), logw=logw,
                                 summary=summarize(logw))
        attrs["chirality_reflected"] = int(rs.n_reflected)
        attrs["chirality_reweighted"] = int(rs.n_reflected)
        echo(f"chirality: mirrored {rs.n_reflected} wrong-handed samples and recomputed their energies and weights "
             f"(the force field has terms that are not reflection-invariant: {', '.join(reflection_variant_terms(system))})")
    return ws, attrs


def transform_layout(transform: Transform | None) -> str | None:
    """The column layout of a non-Cartesian flow's coordinates (None for a Cartesian flow)."""
    describe = getattr(transform, "describe", None)
    return describe() if describe is not None else None


def is_chiral(field: nn.Module) -> bool:
    """Whether the net's flow can tell mirror images apart (then wrong-handed samples get weight 0 instead
    of being mirrored): not the declared capability ``reflection_invariant``
    (:func:`molsample.nets.capabilities`, through the wrapping nets)."""
    from molsample.nets import capabilities

    return not capabilities(field).reflection_invariant
