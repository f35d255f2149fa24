"""An affine-in-x velocity field b(t, x) = m(t) + A(t)·x for Gaussian problems.

The exact flow-matching velocity between two Gaussians is affine in x at every t, so this
model can represent it up to the accuracy of its time basis; its regression problems are
linear least squares. It is the model of molsample's closed-form tests (Gaussian tilts).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from molsample.nets.common import batch_time


class AffineVelocity(nn.Module):
    """b(t, x) = m(t) + A(t) x with m, A linear in a polynomial basis of t.

    Args:
        n_particles, dim: event shape; the field acts on the flattened n·dim vector.
        degree: polynomial degree of the time basis (Legendre-like, on [0, 1]).

    Capabilities: a general A(t) does not commute with reflections (A R ≠ R A) and a general m(t)
    is not mirror-symmetric, so the flow is not ``reflection_invariant``; m(t) and the rows of
    A(t) move the centre of mass (not ``keeps_centre_of_mass``); no atom types.
    """

    #: capabilities (see the class docstring; read through :func:`molsample.nets.capabilities`)
    reflection_invariant = False
    takes_atom_types = False
    keeps_centre_of_mass = False

    def __init__(self, n_particles: int = 1, dim: int = 2, degree: int = 8, **_: object) -> None:
        super().__init__()
        self.n_particles, self.dim, self.degree = int(n_particles), int(dim), int(degree)
        d = self.n_particles * self.dim
        self.spec = {"name": "affine", "n_particles": self.n_particles, "dim": self.dim, "degree": self.degree}
        self.m = nn.Parameter(torch.zeros(degree + 1, d))
        self.A = nn.Parameter(torch.zeros(degree + 1, d, d))

    def basis(self, t: Tensor) -> Tensor:
        """Shifted monomials of s = 2t − 1, ``(batch, degree + 1)``."""
        s = 2 * t - 1
        return torch.stack([s**k for k in range(self.degree + 1)], dim=-1)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Velocity ``(batch, n_particles, dim)`` for ``x: (batch, n_particles, dim)``."""
        b = x.shape[0]
        phi = self.basis(batch_time(t, b, x))
        flat = x.reshape(b, -1)
        m = phi @ self.m
        a = torch.einsum("bk,kij->bij", phi, self.A)
        return (m + torch.einsum("bij,bj->bi", a, flat)).reshape(x.shape)
