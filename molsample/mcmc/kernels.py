"""MCMC kernels that move a whole population one step, for SMC (:mod:`molsample.flows.smc`).

A kernel targets π_β(x) ∝ exp(−β E(x)) with ``β`` in 1/energy unit, one value per particle
(a float is broadcast), on ``x: (n, n_particles, dim)`` in the system's length unit, with a step
``h`` (length_unit²) per particle. It keeps the energies and forces of the current states.
``KERNELS`` maps a name to a kernel class; :func:`~molsample.flows.smc.smc_refine` picks its
kernel from it and adapts ``h`` toward the kernel's ``target_accept``.

:class:`MALAKernel` (Metropolis-adjusted Langevin, the same proposal as
:mod:`molsample.mcmc.langevin`'s chains) proposes

    y = x + h β F(x) + √(2h) ξ,   ξ ~ N(0, I)

and accepts with the exact Metropolis–Hastings ratio, so each step leaves π_β invariant for any
fixed h; one energy+force evaluation per particle and step. The drift is tamed: each particle's
(atom's) drift is capped at ``tame``·√(2h·dim) in both proposal densities, which keeps the chain
exact and stops it freezing in stiff states.

:class:`HMCKernel` (Hamiltonian Monte Carlo, :mod:`molsample.mcmc.hmc`) follows ``leapfrog_steps``
= L leapfrog steps of time step √(2h) with unit mass and accepts with exp(−ΔH); L evaluations per
particle and step (L = 1 is MALA without taming).

With ``remove_com`` the noise, momenta and forces are projected on the zero-centre-of-mass subspace
(:func:`~molsample.mcmc.langevin.project_com`), where the states must already lie. Proposals with a
non-finite energy or force are rejected. With a distributed ``world`` every rank holds the whole
population and draws the same random numbers; each rank evaluates the energies and forces of its
shard of the particles and the shards are gathered in rank order, so the chains are those of one
process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from molsample.errors import ConfigError, EnergyError
from molsample.mcmc.hmc import LEAPFROG_STEPS, hmc_transition
from molsample.mcmc.langevin import energy_and_force, mala_transition, project_com
from molsample.runtime.distributed import World

__all__ = ["KERNELS", "HMCKernel", "KernelStep", "MALAKernel"]

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


class _ForceKernel:
    """What the kernels share: batched (and sharded) energy+force evaluation, counted, and a first step.

    Class attributes of a kernel: ``name``; ``target_accept``, the acceptance probability its step
    adaptation aims at; ``step_exponent`` p of the first step h₀ = dof^(−p) / (median curvature of βE).
    """

    name = ""
    target_accept = 0.574
    step_exponent = 1.0 / 3.0

    def __init__(self, energy: EnergyLike, *, remove_com: bool, generator: torch.Generator | None = None,
                 world: World | None = None) -> None:
        self.energy = energy
        self.remove_com = bool(remove_com)
        self.generator = generator
        self.world = world or World()
        self.n_evals = 0

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``(n,)`` and projected forces ``(n, P, d)`` of ``x``, in ``x``'s dtype (this rank
        evaluates its shard, the shards are gathered).

        Raises:
            EnergyError: the energy gives no forces (not differentiable); the kernel needs them.
        """
        w = self.world
        local = x[w.shard(len(x))] if w.distributed else x
        try:
            e, f = energy_and_force(self.energy, local)
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            raise EnergyError(
                f"the energy gives no forces ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                f"{self.name.upper()} needs −∇E: use a differentiable (torch) energy or one with "
                "energy_and_force") from None
        if w.distributed:
            e, f = w.gather(e, what="energies"), w.gather(f, what="forces")
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
        return float(min(max(dof ** (-self.step_exponent) / float(curv.median()), 1e-10), 1e4))

    def _randn(self, x: Tensor) -> Tensor:
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)

    def _rand(self, x: Tensor) -> Tensor:
        return torch.rand(x.shape[0], generator=self.generator, dtype=x.dtype, device=x.device)

    @staticmethod
    def _per_chain(x: Tensor, beta: float | Tensor, h: float | Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        return (torch.as_tensor(beta, dtype=x.dtype, device=x.device).expand(n),
                torch.as_tensor(h, dtype=x.dtype, device=x.device).expand(n))


class MALAKernel(_ForceKernel):
    """Batched, tamed MALA at inverse temperature β (per particle) with a step h (per particle).

    Args:
        energy: the system's :class:`~molsample.energies.Energy` (or any callable ``(n, P, d) → (n,)``
            that autograd can differentiate).
        remove_com: project noise and forces on the zero-centre-of-mass subspace.
        generator: torch generator of the proposals and the accept/reject draws.
        world: the ranks that share the energy evaluations (one process by default).
        tame: cap of each particle's drift in units of √(2h·dim); ``None`` for plain MALA.

    Attributes:
        n_evals: energy+force evaluations so far (one per configuration).
    """

    name = "mala"
    target_accept = 0.574  # optimal for MALA (Roberts & Rosenthal 1998)

    def __init__(self, energy: EnergyLike, *, remove_com: bool, generator: torch.Generator | None = None,
                 world: World | None = None, tame: float | None = 2.0) -> None:
        super().__init__(energy, remove_com=remove_com, generator=generator, world=world)
        self.tame = tame

    def step(self, x: Tensor, energy: Tensor, force: Tensor, beta: float | Tensor, h: float | Tensor) -> KernelStep:
        """One MALA step of every particle.

        Args:
            x: ``(n, P, d)`` current states (on the zero-CoM subspace when ``remove_com``).
            energy: ``(n,)`` their energies; force: ``(n, P, d)`` their (projected) forces.
            beta: inverse temperature 1/kT, a float or ``(n,)``.
            h: step size (length_unit²), a float or ``(n,)`` (per particle, e.g. ``h_group[groups]``).
        """
        b, hh = self._per_chain(x, beta, h)
        x, e, f, prob, acc = mala_transition(
            x, energy, force, b, hh, evaluate=self.evaluate, tame=self.tame, remove_com=self.remove_com,
            randn=lambda: self._randn(x), rand=lambda: self._rand(x))
        return KernelStep(x=x, energy=e, force=f, accept_prob=prob, accepted=acc)


class HMCKernel(_ForceKernel):
    """Batched Hamiltonian Monte Carlo (:mod:`molsample.mcmc.hmc`) at inverse temperature β with a step
    h (length_unit², leapfrog time step √(2h)), both per particle; unit mass.

    Args:
        energy, remove_com, generator, world: as for :class:`MALAKernel`.
        leapfrog_steps: L leapfrog steps per transition (L evaluations per particle).

    Attributes:
        n_evals: energy+force evaluations so far (L per configuration and step).
    """

    name = "hmc"
    target_accept = 0.65  # optimal for HMC (Beskos et al. 2013)
    step_exponent = 0.5  # the optimal leapfrog step shrinks like dof^(−1/4), MALA's like dof^(−1/6)

    def __init__(self, energy: EnergyLike, *, remove_com: bool, generator: torch.Generator | None = None,
                 world: World | None = None, leapfrog_steps: int = LEAPFROG_STEPS) -> None:
        if isinstance(leapfrog_steps, bool) or not isinstance(leapfrog_steps, int) or leapfrog_steps < 1:
            raise ConfigError(f"leapfrog_steps must be an integer >= 1, got {leapfrog_steps!r}; e.g. 10")
        super().__init__(energy, remove_com=remove_com, generator=generator, world=world)
        self.leapfrog_steps = leapfrog_steps

    def step(self, x: Tensor, energy: Tensor, force: Tensor, beta: float | Tensor, h: float | Tensor) -> KernelStep:
        """One HMC transition (L leapfrog steps) of every particle; arguments as :meth:`MALAKernel.step`."""
        b, hh = self._per_chain(x, beta, h)
        x, e, f, prob, acc = hmc_transition(
            x, energy, force, b, hh, steps=self.leapfrog_steps, evaluate=self.evaluate, remove_com=self.remove_com,
            randn=lambda: self._randn(x), rand=lambda: self._rand(x))
        return KernelStep(x=x, energy=e, force=f, accept_prob=prob, accepted=acc)


#: kernel name → class; each takes ``(energy, remove_com=, generator=, world=, **options)`` and has
#: ``evaluate``, ``initial_step``, ``step``, ``n_evals`` and ``target_accept`` as :class:`MALAKernel`.
KERNELS: dict[str, type[_ForceKernel]] = {"mala": MALAKernel, "hmc": HMCKernel}
