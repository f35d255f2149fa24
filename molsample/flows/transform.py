r"""The coordinate seam of a flow: the map z ↦ x from the flow's coordinates to Cartesian positions.

A flow integrates its ODE in coordinates z of shape ``(batch, *event_shape)``; a :class:`Transform`
maps them to the system's positions ``x: (batch, n_particles, dim)`` and returns log|det J(z)|, the
log volume factor between the flow's measure and the Cartesian one, so that the importance weights
of a flow sample are

    log w = −E(T(z))/kT + log|det J(z)| − log q(z).

:class:`CartesianTransform` is the identity (log|det J| = 0): clusters and every Cartesian flow.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Transform", "CartesianTransform", "TRANSFORMS", "transform_from_state"]


class Transform:
    """Base class of the flow-coordinate maps.

    Attributes:
        event_shape: shape of one configuration in flow coordinates, e.g. ``(60, 1)``.
        periodic: ``(prod(event_shape),)`` bool mask of the flow coordinates that live on a circle
            of period 2π (torsions), flattened in row-major order; all False for Cartesian flows.
        name: registry name stored with the model.
    """

    name: str = "base"
    event_shape: tuple[int, int]

    @property
    def periodic(self) -> Tensor:
        return torch.zeros(self.event_shape[0] * self.event_shape[1], dtype=torch.bool)

    @property
    def is_identity(self) -> bool:
        return False

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(x (batch, n_particles, dim), log|det ∂x/∂z| (batch,))``."""
        raise NotImplementedError

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z (batch, *event_shape), log|det ∂z/∂x| (batch,))`` = minus the forward log-det at z."""
        raise NotImplementedError

    def in_domain(self, z: Tensor) -> Tensor:
        """``(batch,)`` bool: where :meth:`forward` is one-to-one (samples outside get weight 0)."""
        return torch.ones(z.shape[0], dtype=torch.bool, device=z.device)

    def state(self) -> dict:
        """What :func:`transform_from_state` needs to rebuild this transform (plain tensors and numbers)."""
        raise NotImplementedError


class CartesianTransform(Transform):
    """The identity: the flow runs on Cartesian positions ``(n_particles, dim)``."""

    name = "cartesian"

    def __init__(self, event_shape: tuple[int, int]) -> None:
        self.event_shape = (int(event_shape[0]), int(event_shape[1]))

    @property
    def is_identity(self) -> bool:
        return True

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z, z.new_zeros(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, x.new_zeros(x.shape[0])

    def state(self) -> dict:
        return {"name": self.name, "event_shape": list(self.event_shape)}

    @classmethod
    def from_state(cls, state: dict) -> "CartesianTransform":
        return cls(tuple(state["event_shape"]))

    def __repr__(self) -> str:
        return f"CartesianTransform(event_shape={self.event_shape})"


#: transform name → "module:Class" with a ``from_state(state)`` classmethod (imported on first use)
TRANSFORMS: dict[str, str] = {
    "cartesian": "molsample.flows.transform:CartesianTransform",
    "internal": "molsample.flows.internal:InternalCoordinates",
}


def transform_from_state(state: dict) -> Transform:
    """Rebuild a transform from :meth:`Transform.state` (as stored in a model file)."""
    import importlib

    from molsample.errors import RunFileError

    target = TRANSFORMS.get(str(state.get("name")))
    if target is None:
        raise RunFileError(f"unknown flow coordinates {state.get('name')!r} in the model file; known: "
                           f"{', '.join(TRANSFORMS)} (a model file of a newer molsample?)")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr).from_state(state)
