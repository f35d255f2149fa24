"""The base of the nets that wrap an inner velocity net (:mod:`~molsample.nets.scaled`,
:mod:`~molsample.nets.endpoint`): they transform its input or output and keep its exact divergence."""

from __future__ import annotations

from torch import nn

__all__ = ["WrappedVelocity"]


class WrappedVelocity(nn.Module):
    """A velocity field built on ``net`` (kept as ``self.net``, so its parameters are ``net.*``).

    When the inner net has its own ``velocity_and_divergence`` (the exact divergence in one pass),
    the wrapper offers it too, through the subclass's ``_velocity_and_divergence``; otherwise it
    has none, and the sampler falls back to the generic divergence.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        if hasattr(net, "velocity_and_divergence"):
            # an instance attribute, so that fields without their own divergence keep the generic one
            self.velocity_and_divergence = self._velocity_and_divergence
