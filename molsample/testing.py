"""Checks that users and the test suite run on energies and velocity fields.

>>> from molsample.testing import assert_equivariant, assert_forces_match_fd
"""

from __future__ import annotations

from typing import Callable

import torch

from molsample.analysis.geometry import random_orthogonal
from molsample.energies.base import Energy

__all__ = ["assert_equivariant", "assert_forces_match_fd", "random_orthogonal"]


def assert_equivariant(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    rotations: bool = True,
    reflections: bool = True,
    translations: bool = True,
    permutations: bool = True,
    n_trials: int = 3,
    atol: float = 1e-8,
    rtol: float = 1e-6,
    seed: int = 0,
) -> None:
    """Assert that a velocity field ``f(x) -> v`` is E(3)- and permutation-equivariant.

    Checks, in float64 with ``x: (batch, n, dim)``:
      * ``f(x Qᵀ) = f(x) Qᵀ`` for random rotations (and reflections when ``reflections``);
      * ``f(x + c) = f(x)`` for a random translation ``c`` (velocities are translation invariant);
      * ``f(x[:, π]) = f(x)[:, π]`` for a random permutation ``π``.

    Raises ``AssertionError`` naming the broken symmetry and the largest deviation.
    For time-dependent fields pass ``lambda x: net(t, x)``.
    """
    g = torch.Generator().manual_seed(seed)
    x = x.to(torch.float64)
    fx = f(x)
    dim, n = x.shape[-1], x.shape[-2]

    def check(name: str, lhs: torch.Tensor, rhs: torch.Tensor) -> None:
        if not torch.allclose(lhs, rhs, atol=atol, rtol=rtol):
            err = (lhs - rhs).abs().max().item()
            raise AssertionError(f"not equivariant under {name}: max deviation {err:.3e} (atol={atol}, rtol={rtol})")

    for _ in range(n_trials):
        if rotations:
            q = random_orthogonal(dim, g, reflection=False)
            check("rotation", f(x @ q.T), fx @ q.T)
        if reflections:
            q = random_orthogonal(dim, g, reflection=True)
            check("reflection", f(x @ q.T), fx @ q.T)
        if translations:
            c = 3.0 * torch.randn(1, 1, dim, generator=g, dtype=torch.float64)
            check("translation", f(x + c), fx)
        if permutations:
            perm = torch.randperm(n, generator=g)
            check("permutation", f(x[:, perm]), fx[:, perm])


def assert_forces_match_fd(
    energy: Energy,
    x: torch.Tensor,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    n_coords: int | None = 12,
    seed: int = 0,
) -> None:
    """Assert that ``energy.force(x)`` equals −∇E by central finite differences.

    Args:
        energy: the Energy (its parameters are compared in float64).
        x: ``(batch, n_particles, dim)`` configurations.
        eps: finite-difference step in length units.
        n_coords: check this many randomly chosen coordinates per configuration (``None``: all).
    """
    x = energy.check_shape(x).to(torch.float64)
    force = energy.force(x).to(torch.float64)
    flat = x.reshape(x.shape[0], -1)
    n_total = flat.shape[1]
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n_total) if n_coords is None or n_coords >= n_total else torch.randperm(n_total, generator=g)[:n_coords]
    fd = torch.empty(x.shape[0], len(idx), dtype=torch.float64)
    for col, k in enumerate(idx.tolist()):
        step = torch.zeros_like(flat)
        step[:, k] = eps
        e_plus = energy.energy((flat + step).reshape(x.shape)).to(torch.float64)
        e_minus = energy.energy((flat - step).reshape(x.shape)).to(torch.float64)
        fd[:, col] = -(e_plus - e_minus) / (2 * eps)
    got = force.reshape(x.shape[0], -1)[:, idx]
    if not torch.allclose(got, fd, rtol=rtol, atol=atol):
        err = (got - fd).abs().max().item()
        raise AssertionError(
            f"{type(energy).__name__}.force differs from −∇E by finite differences: max |Δ| = {err:.3e} "
            f"(rtol={rtol}, atol={atol})"
        )
