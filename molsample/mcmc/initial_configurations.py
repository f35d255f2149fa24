"""Starting configurations of reference chains: particles on a lattice at the pair-potential's length
scale, relaxed by capped gradient steps so that no chain starts in a stiff overlap."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor



def _length_scale(energy: Any) -> float:
    for attr in ("r_m", "d0"):
        if hasattr(energy, attr):
            return float(getattr(energy, attr))
    return 1.0


def _lattice(n: int, dim: int, spacing: float) -> Tensor:
    """The n points of a simple cubic (square) lattice closest to its centre, centred, ``(n, dim)``."""
    side = math.ceil(n ** (1.0 / dim)) + 1
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * dim, indexing="ij"), -1).reshape(-1, dim)
    grid = grid - grid.mean(0)
    order = torch.argsort(grid.norm(dim=1) + 1e-6 * torch.arange(grid.shape[0]))  # deterministic ties
    pts = grid[order[:n]] * spacing
    return pts - pts.mean(0)


def initial_configurations(
    system: Any,
    chains: int,
    *,
    init: str = "lattice",
    noise: float = 0.1,
    relax_steps: int = 200,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    """Starting states ``(chains, n_particles, dim)`` float64 and the energy evaluations spent.

    Particles start on a simple cubic/square lattice with the system's pair length (LJ r_m,
    DW d0) as spacing (``init="lattice"``) or uniformly in a ball of that density
    (``"random"``), perturbed by ``noise``·spacing per chain, centred, then relaxed by
    ``relax_steps`` of capped steepest descent. Systems with a structure start from it (plus
    ``noise``·0.01 length units of noise), without relaxation.
    """
    n, d = system.event_shape
    energy = system.energy
    structure = getattr(energy, "positions", None)
    scale = _length_scale(energy)
    if structure is not None:
        base = torch.as_tensor(np.asarray(structure), dtype=torch.float64)[None].repeat(chains, 1, 1)
        x = base + noise * 0.01 * torch.randn(base.shape, generator=generator, dtype=torch.float64)
    elif n == 1:
        x = torch.randn(chains, 1, d, generator=generator, dtype=torch.float64)
    elif init == "lattice":
        x = _lattice(n, d, scale)[None] + noise * scale * torch.randn(chains, n, d, generator=generator, dtype=torch.float64)
    else:
        x = _random_in_ball(chains, n, d, scale, generator)
    if system.remove_com and n > 1:
        x = x - x.mean(dim=1, keepdim=True)
    evals = 0
    if relax_steps > 0 and n > 1 and structure is None:
        x, evals = _relax(energy, x, relax_steps, max_move=0.05 * scale, remove_com=system.remove_com)
    return x, evals


#: random starts keep particles this many pair lengths apart (LJ energies are floored at 0.2 r_m, where
#: two atoms feel no force between them and no relaxation separates them)
MIN_START_DISTANCE = 0.7
_PLACEMENT_TRIES = 200


def _random_in_ball(chains: int, n: int, d: int, scale: float, generator: torch.Generator | None) -> Tensor:
    """``(chains, n, d)`` points uniform in a ball of radius 0.6·n^(1/d)·scale, placed one particle at a
    time (all chains at once) and redrawn while closer than :data:`MIN_START_DISTANCE`·scale to an
    earlier one (random sequential placement; after 200 tries a point is kept as drawn)."""
    radius = scale * (n ** (1.0 / d)) * 0.6

    def draw(m: int) -> Tensor:
        u = torch.randn(m, d, generator=generator, dtype=torch.float64)
        r = radius * torch.rand(m, 1, generator=generator, dtype=torch.float64) ** (1.0 / d)
        return u / u.norm(dim=-1, keepdim=True) * r

    x = torch.zeros(chains, n, d, dtype=torch.float64)
    for k in range(n):  # particles, not samples: every chain is placed at once
        x[:, k] = draw(chains)
        for _ in range(_PLACEMENT_TRIES):
            close = (x[:, :k] - x[:, k:k + 1]).norm(dim=-1).lt(MIN_START_DISTANCE * scale).any(dim=1)
            if not bool(close.any()):
                break
            x[close, k] = draw(int(close.sum()))
    return x


def _relax(energy: Any, x: Tensor, steps: int, max_move: float, remove_com: bool) -> tuple[Tensor, int]:
    """Capped steepest descent: every particle moves at most ``max_move`` per step along its force."""
    lr = torch.full((x.shape[0], 1, 1), max_move, dtype=x.dtype)
    e, f = energy.energy_and_force(x)
    evals = x.shape[0]
    for _ in range(steps):
        fmax = f.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True).clamp_min(1e-12)
        step = lr * f / fmax
        y = x + step
        if remove_com:
            y = y - y.mean(dim=1, keepdim=True)
        ey, fy = energy.energy_and_force(y)
        evals += x.shape[0]
        better = (torch.isfinite(ey) & (ey <= e))[:, None, None]
        x = torch.where(better, y, x)
        e = torch.where(better[:, 0, 0], ey, e)
        f = torch.where(better, fy, f)
        lr = torch.where(better, (lr * 1.2).clamp(max=max_move), lr * 0.5)
    return x.detach(), evals
