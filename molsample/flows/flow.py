"""A flow as one object: base distribution + coordinate transform + velocity field + solver.

:class:`Flow` is what a model file holds: ``save_flow`` writes the field with the transform's state
(and the base it implies), ``load_flow`` rebuilds all of it, so a run folder can be sampled again
without knowing how it was built. :meth:`Flow.sampler` gives the
:class:`~molsample.flows.sampler.FlowSampler` that draws weighted samples:

    log w = −E(T(z))/kT + log|det J(z)| − log q(z).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from molsample.flows.distributions import base_distribution
from molsample.flows.sampler import FlowSampler
from molsample.flows.transform import CartesianTransform, Transform, transform_from_state
from molsample.nets import load_model, save_model
from molsample.runtime.distributed import World

__all__ = ["Flow", "base_for", "load_flow", "save_flow"]


def base_for(system: Any, transform: Transform, table: dict | None = None) -> Any:
    """The base distribution of a flow in ``transform``'s coordinates: the system's
    (:func:`~molsample.flows.distributions.base_distribution`, card ``[base]`` overridden by ``table``) for
    Cartesian flows, :class:`~molsample.flows.internal_base.InternalBase` for internal coordinates."""
    if transform.is_identity:
        return base_distribution(system, table)
    from molsample.flows.internal_base import InternalBase

    return InternalBase(transform.periodic)


@dataclasses.dataclass
class Flow:
    """Base + transform + field + solver.

    Attributes:
        field: velocity net ``field(t, z)`` on the flow's coordinates.
        base: base distribution of z (``sample``/``log_prob``).
        transform: z ↦ Cartesian positions with log|det J| (:class:`CartesianTransform`: identity).
        method, steps, divergence: the ODE solver and the divergence of log q.
    """

    field: nn.Module
    base: Any
    transform: Transform
    method: str = "midpoint"
    steps: int = 20
    divergence: str = "exact"

    def sampler(self, target: Any = None, *, dtype: torch.dtype = torch.float32, device: Any = "cpu",
                world: World | None = None) -> FlowSampler:
        """The :class:`FlowSampler` of this flow, weighting against ``target``."""
        return FlowSampler(self.field, self.base, target, method=self.method, steps=self.steps,
                           divergence=self.divergence, dtype=dtype, device=device, world=world,
                           transform=self.transform)


def save_flow(file: str | os.PathLike, field: nn.Module, transform: Transform | None, /, **meta: Any) -> Path:
    """Write ``field`` with the state of ``transform`` (None: Cartesian) and ``meta`` atomically."""
    if transform is not None and not transform.is_identity:
        meta["transform"] = transform.state()
    return save_model(file, field, **meta)


def load_flow(path: str | os.PathLike, system: Any, *, device: Any = "cpu", base_table: dict | None = None,
              method: str = "midpoint", steps: int = 20, divergence: str = "exact") -> tuple[Flow, dict]:
    """``(flow, payload)`` from a model file of ``system`` (the transform from the file, Cartesian
    for files without one; the base the transform implies)."""
    field, payload = load_model(path, device)
    state = payload.get("transform")
    transform = transform_from_state(state) if state else CartesianTransform(system.event_shape)
    flow = Flow(field, base_for(system, transform, base_table), transform, method=method, steps=steps,
                divergence=divergence)
    return flow, payload
