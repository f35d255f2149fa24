"""The final-samples stage: weighted samples through the :class:`FlowSampler`, the chirality fix,
the run file ``samples.h5``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
from torch import nn

from molsample.flows.flow import Flow
from molsample.flows.sampler import FlowSampler, WeightedSamples
from molsample.flows.transform import CartesianTransform, Transform
from molsample.flows.weights import summarize
from molsample.io.hdf5 import RunFile
from molsample.runtime.distributed import World
from molsample.stages.context import Echo, RunContext
from molsample.systems.cards import System

__all__ = ["final_sampler", "final_stage", "fix_chirality", "is_chiral", "transform_layout", "write_samples"]


def final_sampler(field: nn.Module, base, reward, fin, *, dtype: torch.dtype, device,
                  world: World | None = None, transform: Transform | None = None) -> FlowSampler:
    """The :class:`FlowSampler` of the ``[final]`` settings ``fin`` (sharded over ``world``)."""
    return Flow(field, base, transform or CartesianTransform(base.event_shape), method=fin.ode_method,
                steps=fin.ode_steps, divergence=fin.divergence).sampler(reward, dtype=dtype, device=device,
                                                                        world=world)


def final_stage(ctx: RunContext) -> None:
    """Draw ``final.n_samples`` weighted samples (resumable per batch) and write ``samples.h5``.

    In a distributed run the ranks share every batch and rank 0 alone continues (chirality, the
    run file with ``world_size`` and ``backend``).
    """
    cfg, fin, system = ctx.cfg, ctx.cfg.final, ctx.system
    g = torch.Generator().manual_seed(cfg.seed + 1)
    sampler = final_sampler(ctx.field, ctx.base, ctx.reward, fin, dtype=ctx.dtype, device=ctx.device, world=ctx.world,
                            transform=ctx.transform)
    ws = sampler.sample(fin.n_samples, batch_size=fin.batch_size, generator=g, progress=ctx.progress,
                        checkpoint=ctx.run_dir / "checkpoints" / "final.pt")
    if not ctx.world.is_main:
        return
    if fin.divergence == "hutchinson":
        ctx.echo("warning: log-weights use the Hutchinson divergence estimator; ESS and log Z are biased")
    ctx.n_nonfinite = ws.summary.n_nonfinite  # before the chirality fix gives mirror images weight 0
    ws, chiral_attrs = fix_chirality(ws, system, ctx.field, reflect=fin.reflect_chirality, echo=ctx.echo)
    ctx.samples, ctx.attrs = ws, dict(chiral_attrs)
    with RunFile(ctx.run_dir / "samples.h5", "w") as rf:
        write_samples(rf, system, ws, layout=transform_layout(ctx.transform))
        rf.write_history({k: np.asarray(v, dtype=np.float64) for k, v in ctx.history.items()})
        rf.write_config(cfg.to_dict())
        rf.set_attrs(kind="tilt", system=system.name, method=cfg.tilt.method, mode=ctx.mode, seed=cfg.seed,
                     kT=system.kT, energy_unit=system.energy_unit, divergence=fin.divergence,
                     energy_evals=ctx.reward.n_energy_evals,
                     ess=ws.summary.ess, log_z=ws.summary.log_z, log_z_se=ws.summary.log_z_se,
                     world_size=ctx.world.world_size, backend=ctx.world.backend, **chiral_attrs)
        for key in ("base_data_cost", "pretrain_cost"):  # what reused stage outputs cost when they were made
            if ctx.extra.get(key):
                rf.set_attrs(**{key: json.dumps(ctx.extra[key])})


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
    describe = getattr(transform, "describe", None)
    return describe() if describe is not None else None


def is_chiral(field: nn.Module) -> bool:
    """Whether the net's flow can tell mirror images apart (then wrong-handed samples get weight 0 instead
    of being mirrored): not the declared capability ``reflection_invariant``
    (:func:`molsample.nets.capabilities`, through the wrapping nets)."""
    from molsample.nets import capabilities

    return not capabilities(field).reflection_invariant


def write_samples(rf, system: System, ws: WeightedSamples, *, append: bool = False, layout: str | None = None) -> None:
    """Write :class:`WeightedSamples` as the run file's main sample set (and ``ws.z``, described by
    ``layout``, when the flow is not Cartesian)."""
    rf.write_samples(ws.x.double().cpu(), logw=ws.logw.cpu(), logq=ws.logq.cpu(), energy=ws.energy.cpu(),
                     energy_unit=system.energy_unit, length_unit=system.length_unit,
                     topology=system.topology, kT=system.kT, append=append)
    if ws.z is not None:  # a flow in internal coordinates: its own coordinates beside the positions
        rf.write_internal_coordinates(ws.z.cpu(), layout=layout or "", append=append)
