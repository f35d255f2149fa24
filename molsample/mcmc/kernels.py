"""MCMC kernels that move a whole population one step, for SMC (:mod:`molsample.flows.smc`).

A kernel targets π_β(x) ∝ exp(−β E(x)) with ``β`` in 1/energy unit, one value per particle
(a float is broadcast), on ``x: (n, n_particles, dim)`` in the system's length unit. It keeps the
energies and forces of the current states, so one step costs one energy+force evaluation per
particle. ``KERNELS`` maps a name to a kernel class; :func:`~molsample.flows.smc.smc_refine`
picks its kernel from it.

:class:`MALAKernel` (Metropolis-adjusted Langevin, the same proposal as
:mod:`molsample.mcmc.langevin`'s chains) proposes

    y = x + h β F(x) + √(2h) ξ,   ξ ~ N(0, I)

with a step ``h`` (length_unit²) per particle, and accepts with the exact Metropolis–Hastings
ratio, so each step leaves π_β invariant for any fixed h. The drift is tamed: each particle's
(atom's) drift is capped at ``tame``·√(2h·dim) in both proposal densities, which keeps the chain
exact and stops it freezing in stiff states. With ``remove_com`` the noise and the drift are
projected on the zero-centre-of-mass subspace (:func:`~molsample.mcmc.langevin.project_com`),
where the states must already lie. Proposals with a non-finite energy or force are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from molsample.errors import EnergyError
from molsample.mcmc.langevin import energy_and_force, mala_transition, project_com

__all__ = ["KERNELS", "KernelStep", "MALAKernel"]

EnergyLike = Callable[[Tensor], Tensor]


@dataclass
class KernelStep:
    """One kernel step of a population.

    Attributes:
        x: ``(n, n_particles, dim)`` new states.
        energy: ``(n,)`` their energies (energy unit).
        force: ``(n, n_particles, dim)`` their (projected) forces.
        accept_prob: ``(n,)`` Metropolis–Hastings acceptance probability of each proposal.
        accepted: ``(n,)`` bool, whether each proposal was accepted.
    """

    x: Tensor
    energy: Tensor
    force: Tensor
    accept_prob: Tensor
    accepted: Tensor


class MALAKernel:
    """Batched, tamed MALA at inverse temperature β (per particle) with a step h (per particle).

    Args:
        energy: the system's :class:`~molsample.energies.Energy` (or any callable ``(n, P, d) → (n,)``
            that autograd can differentiate).
        remove_com: project noise and forces on the zero-centre-of-mass subspace.
        generator: torch generator of the proposals and the accept/reject draws.
        tame: cap of each particle's drift in units of √(2h·dim); ``None`` for plain MALA.

    Attributes:
        n_evals: energy+force evaluations so far (one per configuration).
    """

    name = "mala"

    def __init__(self, energy: EnergyLike, *, remove_com: bool, generator: torch.Generator | None = None,
                 tame: float | None = 2.0) -> None:
        self.energy = energy
        self.remove_com = bool(remove_com)
        self.generator = generator
        self.tame = tame
        self.n_evals = 0

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``(n,)`` and projected forces ``(n, P, d)`` of ``x``, in ``x``'s dtype.

        Raises:
            EnergyError: the energy gives no forces (not differentiable); MALA needs them.
        """
        try:
            e, f = energy_and_force(self.energy, x)
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            raise EnergyError(
                f"the energy gives no forces ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                "MALA needs −∇E: use a differentiable (torch) energy or one with energy_and_force") from None
        self.n_evals += int(x.shape[0])
        return e.to(x.dtype), project_com(f.to(x.dtype), self.remove_com)

    def initial_step(self, x: Tensor, f: Tensor, beta: float | Tensor) -> float:
        """A first step h from the median curvature of βE along a random direction (one evaluation per particle)."""
        v = project_com(self._randn(x), self.remove_com)
        v = v / v.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]
        eps = 1e-4
        _, f2 = self.evaluate(x + eps * v)
        b = torch.as_tensor(beta, dtype=x.dtype, device=x.device)
        curv = -b * ((f2 - f) * v).flatten(1).sum(1) / eps
        curv = curv[torch.isfinite(curv) & (curv > 0)]
        if curv.numel() == 0:
            return 1e-3
        dof = x[0].numel() - (x.shape[-1] if self.remove_com else 0)
        return float(min(max(dof ** (-1.0 / 3.0) / float(curv.median()), 1e-10), 1e4))

    def _randn(self, x: Tensor) -> Tensor:
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)

    def step(self, x: Tensor, energy: Tensor, force: Tensor, beta: float | Tensor, h: float | Tensor) -> KernelStep:
        """One MALA step of every particle.

        Args:
            x: ``(n, P, d)`` current states (on the zero-CoM subspace when ``remove_com``).
            energy: ``(n,)`` their energies; force: ``(n, P, d)`` their (projected) forces.
            beta: inverse temperature 1/kT, a float or ``(n,)``.
            h: step size (length_unit²), a float or ``(n,)`` (per particle, e.g. ``h_group[groups]``).
        """
        n = x.shape[0]
        b = torch.as_tensor(beta, dtype=x.dtype, device=x.device).expand(n)
        hh = torch.as_tensor(h, dtype=x.dtype, device=x.device).expand(n)
        g = self.generator
        x, e, f, prob, acc = mala_transition(
            x, energy, force, b, hh, evaluate=self.evaluate, tame=self.tame, remove_com=self.remove_com,
            randn=lambda: self._randn(x), rand=lambda: torch.rand(n, generator=g, dtype=x.dtype, device=x.device))
        return KernelStep(x=x, energy=e, force=f, accept_prob=prob, accepted=acc)


#: kernel name → class; each takes ``(energy, remove_com=, generator=)`` and has ``evaluate``,
#: ``initial_step`` and ``step`` as :class:`MALAKernel`.
KERNELS: dict[str, type] = {"mala": MALAKernel}
