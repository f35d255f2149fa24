"""A residual MLP velocity for flows in internal coordinates (bonds, angles, torsions).

The flow state is ``z: (batch, D, 1)`` (see :class:`~molsample.flows.internal.InternalCoordinates`):
standardised bonds and angles, and torsions that are either standardised deviations from their
mean (narrow ones) or angles on the circle (``periodic``). The net sees each periodic coordinate as
(sin z, cos z), so the velocity is 2π-periodic in it and the flow lives on the product of intervals
and circles; the others enter as they are. Time enters as Fourier features.

Input → Linear(hidden) → ``n_layers`` residual blocks (LayerNorm-free: x + W₂ SiLU(W₁ SiLU(x))) →
Linear(D), the output layer initialised to zero (the untrained flow is the identity map).

Internal coordinates are invariant to rotations and translations by construction, so the net needs
no equivariance. It is *chiral*: signed torsions tell a molecule from its mirror image, so a flow
built on it may (and should) put its density on one enantiomer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from molsample.errors import ConfigError, ShapeError
from molsample.nets.common import batch_time, fourier_features

__all__ = ["InternalMLP"]


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Linear(width, width)
        self.outer = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.outer(torch.nn.functional.silu(self.inner(torch.nn.functional.silu(h))))


class InternalMLP(nn.Module):
    """Velocity b(t, z) for ``z: (batch, dim, 1)`` in internal coordinates.

    Args:
        dim: number of internal coordinates D (3·n_atoms − 6).
        periodic: D booleans, True for coordinates on the circle (period 2π).
        hidden: width of the residual blocks.
        n_layers: number of residual blocks (≥ 1).
        n_freqs: Fourier frequencies 2^k π of the time embedding.
    """

    #: capabilities: signed torsions tell mirror images apart; no particles to permute; no centre of mass
    reflection_invariant = False
    takes_atom_types = False
    keeps_centre_of_mass = False

    def __init__(self, dim: int, periodic: list[bool] | None = None, hidden: int = 256, n_layers: int = 4,
                 n_freqs: int = 4) -> None:
        super().__init__()
        periodic = [False] * int(dim) if periodic is None else [bool(p) for p in periodic]
        if dim < 1 or hidden < 1 or n_layers < 1 or n_freqs < 0 or len(periodic) != dim:
            raise ConfigError(f"InternalMLP needs dim >= 1, hidden >= 1, n_layers >= 1, n_freqs >= 0 and one "
                              f"periodic flag per coordinate; got dim={dim}, hidden={hidden}, n_layers={n_layers}, "
                              f"n_freqs={n_freqs}, {len(periodic)} flags")
        self.dim, self.n_freqs = int(dim), int(n_freqs)
        self.spec: dict = {"name": "internal-mlp", "dim": self.dim, "periodic": periodic, "hidden": int(hidden),
                           "n_layers": int(n_layers), "n_freqs": self.n_freqs}
        mask = torch.tensor(periodic, dtype=torch.bool)
        self.register_buffer("periodic_index", torch.nonzero(mask).reshape(-1), persistent=False)
        self.register_buffer("plain_index", torch.nonzero(~mask).reshape(-1), persistent=False)
        d_in = len(self.plain_index) + 2 * len(self.periodic_index) + 1 + 2 * self.n_freqs
        self.inp = nn.Linear(d_in, hidden)
        self.blocks = nn.Sequential(*[_Block(hidden) for _ in range(n_layers)])
        self.out = nn.Linear(hidden, self.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def features(self, t: Tensor | float, z: Tensor) -> Tensor:
        """The net's input ``(batch, d_in)``: plain coordinates, sin/cos of periodic ones, time features."""
        if z.dim() != 3 or tuple(z.shape[1:]) != (self.dim, 1):
            raise ShapeError(f"InternalMLP expects z of shape (batch, {self.dim}, 1), got {tuple(z.shape)}")
        b = z.shape[0]
        flat = z.reshape(b, self.dim)
        ang = flat[:, self.periodic_index]
        tb = batch_time(t, b, z)
        return torch.cat([flat[:, self.plain_index], torch.sin(ang), torch.cos(ang), tb[:, None],
                          fourier_features(tb, self.n_freqs)], dim=-1)

    def forward(self, t: Tensor | float, z: Tensor) -> Tensor:
        """Velocity ``(batch, dim, 1)`` at times ``t`` (float, 0-d or ``(batch,)``)."""
        h = torch.nn.functional.silu(self.inp(self.features(t, z)))
        return self.out(torch.nn.functional.silu(self.blocks(h))).reshape(z.shape)
