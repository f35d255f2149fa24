"""A velocity net that works in units of a length scale σ.

Molecules in nm have bond lengths of 0.1 nm and a spread of ~0.2 nm per coordinate; a net whose
edge features are raw squared distances (the EGNN) and a base Gaussian of std 1 nm fit such data
badly. :class:`ScaledVelocity` runs an inner net on x / σ and scales its output back:

    b(t, x) = σ · b̃(t, x / σ),        ∇·b(t, x) = (∇·b̃)(t, x / σ),

so the divergence (and with it the flow's log-density) needs no correction, and the inner net
keeps its symmetries (x ↦ x/σ commutes with rotations, reflections, translations and
permutations). Pair it with the base Gaussian of std σ (:func:`molsample.flows.distributions.base_distribution`
does this from the system's ``length_scale``). :func:`molsample.nets.build_net` builds it from a
spec with ``"length_scale"`` ≠ 1.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from molsample.errors import ConfigError
from molsample.nets.wrapped import WrappedVelocity

__all__ = ["ScaledVelocity"]


class ScaledVelocity(WrappedVelocity):
    """``b(t, x) = σ · net(t, x / σ)`` for ``x: (batch, n_particles, dim)`` in the system's length unit.

    Args:
        net: the inner velocity net (has ``spec``; its ``velocity_and_divergence`` is used when present).
        length_scale: σ > 0, in the system's length unit.
    """

    def __init__(self, net: nn.Module, length_scale: float) -> None:
        if not (isinstance(length_scale, (int, float)) and math.isfinite(length_scale) and length_scale > 0):
            raise ConfigError(f"length_scale must be a positive number, got {length_scale!r}")
        super().__init__(net)
        self.length_scale = float(length_scale)

    @property
    def spec(self) -> dict:
        """The inner net's spec plus ``"length_scale"`` (``build_net(spec)`` rebuilds this module)."""
        return {**self.net.spec, "length_scale": self.length_scale}

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Velocity ``(batch, n_particles, dim)`` in length units per unit time."""
        return self.net(t, x / self.length_scale) * self.length_scale

    def _velocity_and_divergence(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(b (batch, n, dim), ∇·b (batch,))``: the divergence is the inner net's, unscaled."""
        v, div = self.net.velocity_and_divergence(t, x / self.length_scale)
        return v * self.length_scale, div

    def extra_repr(self) -> str:
        return f"length_scale={self.length_scale:g}"

