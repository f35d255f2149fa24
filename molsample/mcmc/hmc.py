r"""Hamiltonian Monte Carlo transitions of a population of chains, exact for π_β ∝ exp(−β E).

Each chain ``x: (n_particles, dim)`` gets a momentum ``p ~ N(0, I)`` (unit mass, in length unit, so
the kinetic energy is ½|p|² in units of kT) and follows the Hamiltonian

    H(x, p) = β E(x) + ½ |p|²

for ``L`` leapfrog steps of time step ε = √(2h), with ``h`` in length_unit² as for MALA: one leapfrog
step (``L = 1``) is exactly MALA's proposal x + hβF + √(2h)ξ, untamed. The end point is accepted with
probability min(1, exp(−ΔH)); the leapfrog map is volume-preserving and reversible (with the momentum
flipped), so each transition leaves π_β invariant for any fixed h and L. Its energy error over a
trajectory of fixed time Lε is O(ε²) (O(h)).

With ``remove_com`` the momenta are projected on the zero-centre-of-mass subspace, where the states
and the (projected) forces lie, so the chain stays there and the kinetic energy is that of the
subspace. A trajectory that meets a non-finite energy or force at any of its L points is rejected
(its later points start over from the chain's state, so no NaN spreads). Every transition costs
``L`` energy+force evaluations per chain.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from molsample.mcmc.langevin import project_com

__all__ = ["LEAPFROG_STEPS", "hmc_transition", "leapfrog"]

#: Default leapfrog steps L per HMC transition.
LEAPFROG_STEPS = 5

Evaluate = Callable[[Tensor], tuple[Tensor, Tensor]]


def _finite(e: Tensor, f: Tensor) -> Tensor:
    return torch.isfinite(e) & torch.isfinite(f).flatten(1).all(dim=1)


def leapfrog(x: Tensor, p: Tensor, f: Tensor, beta: Tensor, eps: Tensor, steps: int, *, evaluate: Evaluate,
             remove_com: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``steps`` leapfrog steps (kick–drift–kick) of H = βE + ½|p|² for every chain.

    Args:
        x: ``(n, P, d)`` positions; p: ``(n, P, d)`` momenta; f: ``(n, P, d)`` (projected) forces at ``x``.
        beta: ``(n,)`` inverse temperatures (1/energy unit); eps: ``(n,)`` time steps (length unit).
        steps: leapfrog steps L ≥ 1 (L evaluations).
        evaluate: ``y -> (energies (n,), projected forces (n, P, d))``.
    Returns:
        the end positions, momenta, energies ``(n,)`` and forces, and ``(n,)`` bool: every point of the
        trajectory had a finite energy and force (where False the other outputs are meaningless).
    """
    b = beta.reshape(-1, 1, 1)
    dt = eps.reshape(-1, 1, 1)
    x0, f0 = x, f
    ok = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    p = p + 0.5 * dt * b * f
    e = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for k in range(steps):
        x = project_com(x + dt * p, remove_com)
        e, f = evaluate(x)
        ok = ok & _finite(e, f)
        keep = ok[:, None, None]
        x, f, p = torch.where(keep, x, x0), torch.where(keep, f, f0), torch.where(keep, p, torch.zeros_like(p))
        p = p + (0.5 if k == steps - 1 else 1.0) * dt * b * f
    return x, p, e, f, ok


def hmc_transition(x: Tensor, e: Tensor, f: Tensor, beta: Tensor, h: Tensor, *, steps: int, evaluate: Evaluate,
                   randn: Callable[[], Tensor], rand: Callable[[], Tensor], remove_com: bool
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One HMC transition of every chain (module docstring), exact for exp(−β E).

    ``x (n, P, d)`` with energies ``e (n,)`` and projected forces ``f``; ``beta`` and ``h`` (length_unit²,
    ε = √(2h)) per chain ``(n,)``; ``randn()`` the momenta and ``rand()`` the ``(n,)`` uniforms of the
    accept/reject draws, in that order. Returns new ``(x, e, f)``, the acceptance probability
    min(1, exp(−ΔH)) and the accepted mask, per chain.
    """
    p0 = project_com(randn(), remove_com)
    y, p, ey, fy, ok = leapfrog(x, p0, f, beta, torch.sqrt(2.0 * h), steps, evaluate=evaluate,
                                remove_com=remove_com)
    kinetic = 0.5 * ((p * p).flatten(1).sum(1) - (p0 * p0).flatten(1).sum(1))
    log_alpha = -beta * (ey - e) - kinetic
    log_alpha = torch.where(ok & ~torch.isnan(log_alpha), log_alpha, torch.full_like(log_alpha, -math.inf))
    accept = torch.log(rand()) < log_alpha
    m = accept[:, None, None]
    return (torch.where(m, y, x), torch.where(accept, ey, e), torch.where(m, fy, f),
            torch.exp(log_alpha.clamp(max=0.0)), accept)
