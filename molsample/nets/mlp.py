"""A plain MLP velocity field for low-dimensional toys (the 2-D ring of the ITM tutorial).

Input ``[x_flat, sin(2^k π t), cos(2^k π t)]`` (k < n_freqs) → ``n_layers`` hidden SiLU layers of
width ``hidden`` → ``n_particles·dim`` outputs. At the defaults (dim 2) it has 35,714 parameters,
the size of the tutorial's network. It is not equivariant; use :class:`~molsample.nets.EGNN` for
particle systems.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from molsample.errors import ConfigError, ShapeError
from molsample.nets.common import batch_time, fourier_features

__all__ = ["MLPVelocity"]


class MLPVelocity(nn.Module):
    """MLP velocity b(t, x) for ``x: (batch, n_particles, dim)``.

    Args:
        n_particles: particles per configuration (1 for 2-D toys).
        dim: spatial dimension.
        hidden: width of the hidden layers.
        n_freqs: number of Fourier frequencies 2^k π of the time embedding.
        n_layers: number of hidden layers (each Linear + SiLU).

    Capabilities: the MLP sees the flattened coordinates; nothing ties b(t, −x) or b(t, Rx) to
    b(t, x), so its flow need not map mirror images to mirror images (not ``reflection_invariant``);
    its output is not projected to zero mean, so the centre of mass drifts off the CoM-free subspace
    of a particle system's base (not ``keeps_centre_of_mass``); it has no atom types.
    """

    #: capabilities (see the class docstring; read through :func:`molsample.nets.capabilities`)
    reflection_invariant = False
    takes_atom_types = False
    keeps_centre_of_mass = False

    def __init__(self, n_particles: int = 1, dim: int = 2, hidden: int = 128, n_freqs: int = 8,
                 n_layers: int = 3) -> None:
        super().__init__()
        if min(n_particles, dim, hidden, n_layers) < 1 or n_freqs < 0:
            raise ConfigError(
                f"MLPVelocity needs positive n_particles, dim, hidden, n_layers and n_freqs >= 0; got "
                f"n_particles={n_particles}, dim={dim}, hidden={hidden}, n_layers={n_layers}, n_freqs={n_freqs}"
            )
        self.n_particles, self.dim, self.n_freqs = int(n_particles), int(dim), int(n_freqs)
        self.spec: dict = {"name": "mlp", "n_particles": self.n_particles, "dim": self.dim, "hidden": int(hidden),
                           "n_freqs": self.n_freqs, "n_layers": int(n_layers)}
        d_in = self.n_particles * self.dim + 2 * self.n_freqs
        layers: list[nn.Module] = []
        width = d_in
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, self.n_particles * self.dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Velocity ``(batch, n_particles, dim)`` at times ``t`` (float, 0-d or ``(batch,)``)."""
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.n_particles, self.dim):
            raise ShapeError(
                f"MLPVelocity expects x of shape (batch, {self.n_particles}, {self.dim}), got {tuple(x.shape)}"
            )
        b = x.shape[0]
        tb = batch_time(t, b, x)
        inp = torch.cat([x.reshape(b, -1), fourier_features(tb, self.n_freqs)], dim=-1)
        return self.net(inp).reshape(x.shape)
