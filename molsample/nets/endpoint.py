r"""The endpoint (x1-prediction) parametrisation of a velocity field on the linear path.

On the linear interpolant I_t = (1 − t) x0 + t x1 the flow-matching velocity is
b_t(x) = E[x1 | I_t = x] − x over (1 − t), so a net may predict the displacement to the endpoint,
d(t, x) = x̂1(t, x) − x, instead of the velocity:

    b(t, x) = d(t, x) / g(t),      ∇·b(t, x) = (∇·d)(t, x) / g(t),      g(t) = max(1 − t, g_min).

The gap g is clamped at ``g_min`` (:data:`ENDPOINT_MIN_GAP`) so that the field stays finite at
t = 1 (an ODE solver evaluates there). The divergence needs no correction beyond 1/g, so the exact
log q of the flow is unchanged in kind, and the inner net keeps its symmetries (1/g is a scalar).
Near t = 1 the net's output is a displacement of the size of the remaining distance, not a
velocity that grows as the sample settles: what the net must resolve there (bond lengths of a
molecule) is in its output directly.

:func:`molsample.nets.build_net` wraps a net in :class:`EndpointVelocity` for a spec with
``"parametrisation": "endpoint"`` (run config ``[net] parametrisation = "endpoint"``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from molsample.nets.wrapped import WrappedVelocity

__all__ = ["ENDPOINT_MIN_GAP", "PARAMETRISATIONS", "EndpointVelocity"]

#: the clamp g_min of the gap 1 − t: the field is d / 0.05 = 20·d at t ≥ 0.95
ENDPOINT_MIN_GAP = 0.05

#: the parametrisations of a velocity net (``[net] parametrisation``)
PARAMETRISATIONS = ("velocity", "endpoint")


class EndpointVelocity(WrappedVelocity):
    """``b(t, x) = net(t, x) / max(1 − t, g_min)`` for ``x: (batch, n_particles, dim)``.

    Args:
        net: the inner net, whose output ``(batch, n_particles, dim)`` is the displacement
            x̂1 − x to the predicted endpoint (in the length unit of ``x``); its
            ``velocity_and_divergence`` is used when present.
        min_gap: g_min in (0, 1].
    """

    def __init__(self, net: nn.Module, min_gap: float = ENDPOINT_MIN_GAP) -> None:
        if not 0.0 < float(min_gap) <= 1.0:
            from molsample.errors import ConfigError

            raise ConfigError(f"min_gap must be in (0, 1], got {min_gap!r}")
        super().__init__(net)
        self.min_gap = float(min_gap)

    @property
    def spec(self) -> dict:
        """The inner net's spec plus ``"parametrisation": "endpoint"`` (``build_net(spec)`` rebuilds this)."""
        return {**self.net.spec, "parametrisation": "endpoint"}

    def gap(self, t: Tensor | float, x: Tensor) -> Tensor:
        """g(t) = max(1 − t, g_min): a 0-d tensor for scalar ``t``, ``(batch,)`` for ``t: (batch,)``."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return (1.0 - t).clamp_min(self.min_gap)

    def endpoint(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The predicted endpoint x̂1 = x + net(t, x), ``(batch, n_particles, dim)``."""
        return x + self.net(t, x)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Velocity ``(batch, n_particles, dim)`` in length units per unit time."""
        g = self.gap(t, x)
        return self.net(t, x) / (g.reshape(-1, 1, 1) if g.dim() else g)

    def _velocity_and_divergence(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(b (batch, n, dim), ∇·b (batch,))``: the inner net's divergence over the gap."""
        d, div = self.net.velocity_and_divergence(t, x)
        g = self.gap(t, x)
        return d / (g.reshape(-1, 1, 1) if g.dim() else g), div / g

    def extra_repr(self) -> str:
        return f"min_gap={self.min_gap:g}"
