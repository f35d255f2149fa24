"""The sampling room: one object that draws samples of a flow, with exact log q and importance weights.

:class:`FlowSampler` owns batching, the model log-density (the divergence integrated with the same
fixed-step solver), the log-weights against the target, per-batch atomic checkpoints and the count
of energy evaluations. It knows nothing about training: the tilt trainer, the tilt job's final
stage, ``molsample sample`` and the benchmarks all draw through it.

In a distributed run (a :class:`~molsample.runtime.distributed.World` of K processes) every rank draws the
same base samples from the same generator, integrates only its shard of them, and the shards are
gathered in rank order: the samples, their order and the generator state are those of one process.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from molsample.errors import ConfigError
from molsample.flows.ode import integrate, sample as ode_sample
from molsample.flows.paths import wrap_angle
from molsample.flows.transform import Transform
from molsample.flows.weights import WeightSummary, log_weights, summarize
from molsample.io.atomic import save_torch_atomic
from molsample.io.cache import digest, load_cached
from molsample.runtime.distributed import World

__all__ = ["FlowSampler", "Target", "WeightedSamples", "field_fingerprint"]


class Target(Protocol):
    """What the sampler weights against (e.g. :class:`molsample.training.rewards.TiltReward`)."""

    n_energy_evals: int

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x), ``(batch,)`` in the system's unit; counts the evaluations."""

    def log_final_target(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Unnormalized log-density of the target given the true energies, ``(batch,)``."""


@dataclasses.dataclass
class WeightedSamples:
    """Flow samples with everything needed to reweight them to the target.

    Attributes:
        x: ``(n, n_particles, dim)`` samples; logq: ``(n,)`` model log-density;
        energy: ``(n,)`` in the system's unit; logw: ``(n,)`` log importance weights
        (−inf for non-finite energies); summary: ESS, log Z ± se, counts; z: the samples in the
        flow's coordinates ``(n, *event_shape)`` when those are not Cartesian (then ``x`` = T(z) and
        ``logq`` is the density of x, log q(z) − log|det J(z)|), else None.
    """

    x: torch.Tensor
    logq: torch.Tensor
    energy: torch.Tensor
    logw: torch.Tensor
    summary: WeightSummary
    z: torch.Tensor | None = None


def field_fingerprint(field: nn.Module) -> list[float]:
    """Cheap identity of a field's weights (sums of |θ| and θ over all parameters)."""
    with torch.no_grad():
        params = [p.detach().double() for p in field.parameters()]
        return [float(sum(p.abs().sum() for p in params)), float(sum(p.sum() for p in params))]


class FlowSampler:
    """Draw samples of the flow of ``field`` from ``base``, weighted against ``target``.

    Args:
        field: velocity net ``field(t, x)``, ``x: (batch, n_particles, dim)``.
        base: base distribution (``sample(n, generator=, dtype=, device=)``, ``log_prob``).
        target: a :class:`Target` (energies and the log-density of the weights); only
            :meth:`sample` needs it.
        method, steps: fixed-step solver (``euler`` | ``midpoint`` | ``rk4``) and its number of steps.
        divergence: ``exact`` or ``hutchinson`` (the latter biases the weights).
        dtype, device: of the base samples and the integration.
        world: the ranks that share the work (default: this process alone).
        transform: the map from the flow's coordinates to Cartesian positions
            (:class:`~molsample.flows.transform.Transform`; None: the flow is Cartesian). The target
            sees positions; weights carry its log|det J|.
    """

    def __init__(self, field: nn.Module, base: Any, target: Target | None = None, *, method: str = "rk4",
                 steps: int = 50, divergence: str = "exact", dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", world: World | None = None,
                 transform: Transform | None = None) -> None:
        self.field, self.base, self.target = field, base, target
        self.transform = None if transform is None or transform.is_identity else transform
        self.method, self.steps, self.divergence = method, int(steps), divergence
        self.dtype, self.device = dtype, device
        self.world = world or World()
        if self.world.distributed and divergence == "hutchinson":
            raise ConfigError("the Hutchinson divergence draws its probes per process and is not sharded; "
                              "use divergence = \"exact\" in a distributed run")

    def draw_shard(self, n: int, *, generator: torch.Generator | None = None, with_logq: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's shard of ``n`` samples (all of them in one process) and its log q (or None).

        The base samples of all ``n`` are drawn, so the generator advances as in one process.
        """
        if not self.world.distributed:
            res = ode_sample(self.field, self.base, n, generator=generator, dtype=self.dtype, device=self.device,
                             method=self.method, steps=self.steps, with_logq=with_logq, divergence=self.divergence)
        else:
            x0 = self.base.sample(int(n), generator=generator, dtype=self.dtype, device=self.device)
            x0 = x0[self.world.shard(n)]
            res = integrate(self.field, x0, logp0=self.base.log_prob(x0) if with_logq else None, method=self.method,
                            steps=self.steps, with_logq=with_logq, divergence=self.divergence)
        z = res.x1.detach()
        periodic = getattr(self.base, "periodic", None)
        if periodic is not None:  # torsions back to (−π, π]: the density on the circle is unchanged
            mask = torch.as_tensor(periodic, device=z.device).reshape(z.shape[1:])
            z = torch.where(mask, wrap_angle(z), z)
        return z, None if res.logq is None else res.logq.detach()

    def to_cartesian(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions x = T(z) ``(batch, n_particles, dim)`` and log|det J(z)| ``(batch,)`` (float64 for a
        non-Cartesian flow; ``z`` itself and zeros for a Cartesian one)."""
        if self.transform is None:
            return z, z.new_zeros(z.shape[0])
        return self.transform.forward(z.double())

    @torch.no_grad()
    def draw(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples without log q (e.g. an annealing level's), ``(n, n_particles, dim)``."""
        return self.world.gather(self.draw_shard(n, generator=generator)[0])

    @torch.no_grad()
    def draw_with_logq(self, n: int, *, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples and their model log-density, ``((n, n_particles, dim), (n,))``, one batch."""
        x, logq = self.draw_shard(n, generator=generator, with_logq=True)
        return self.world.gather(x), self.world.gather(logq)

    def _key(self, n: int, batch_size: int, generator: torch.Generator | None) -> str:
        keyed = {"n": n, "method": self.method, "steps": self.steps, "divergence": self.divergence,
                 "batch_size": batch_size, "dtype": str(self.dtype), "field": field_fingerprint(self.field),
                 "spec": getattr(self.field, "spec", None),
                 "generator": None if generator is None else generator.initial_seed()}
        if self.transform is not None:
            keyed["transform"] = repr(self.transform)
        return digest(keyed)

    @torch.no_grad()
    def sample(self, n: int, *, batch_size: int = 1000, generator: torch.Generator | None = None,
               checkpoint: Path | None = None, progress: bool = False) -> WeightedSamples:
        """``n`` samples with exact log q, energies and log-weights against the target.

        logw = log π(x) − log q(x) with log π the target's unnormalized log-density. Batches of
        ``batch_size`` bound memory. With ``checkpoint``, the batches done so far (and the
        generator state) are saved there atomically after each batch, and a later call with the
        same field and settings continues from them: the result equals an uninterrupted call.
        The file is removed at the end. Energies are counted in ``target.n_energy_evals``
        (those of resumed batches too, and those of the other ranks). In a distributed run each rank
        integrates and evaluates its shard of every batch, every rank receives all samples, and
        rank 0 alone writes the checkpoint.
        """
        from molsample.runtime.progress import progress_bar

        if self.target is None:
            raise ValueError("FlowSampler.sample needs a target to weight against; use draw() for plain samples")
        xs: list[torch.Tensor] = []
        logqs: list[torch.Tensor] = []
        es: list[torch.Tensor] = []
        key = self._key(n, batch_size, generator)
        blob = load_cached(checkpoint, key) if checkpoint is not None else None
        if blob is not None:
            xs, logqs, es = blob["x"], blob["logq"], blob["energy"]
            if generator is not None:
                generator.set_state(blob["generator"])
        done = sum(len(b) for b in xs)
        self.target.n_energy_evals += done  # evaluated by the interrupted call
        for start in progress_bar(range(done, n, batch_size), desc="final samples", enabled=progress,
                                  initial=done // batch_size, total=-(-n // batch_size)):
            m = min(batch_size, n - start)
            x, logq = self.draw_shard(m, generator=generator, with_logq=True)
            e = self.target.energy(self.to_cartesian(x)[0]).detach()
            self.target.n_energy_evals += m - len(x)  # the other ranks' shards
            xs.append(self.world.gather(x))
            logqs.append(self.world.gather(logq))
            es.append(self.world.gather(e, what="energies"))
            if checkpoint is not None and start + m < n and self.world.is_main:
                save_torch_atomic({"key": key, "x": xs, "logq": logqs, "energy": es,
                                   "generator": None if generator is None else generator.get_state()}, checkpoint)
        if checkpoint is not None and self.world.is_main:
            Path(checkpoint).unlink(missing_ok=True)
        z, logq, e = torch.cat(xs), torch.cat(logqs).double(), torch.cat(es).double()
        x, logdet = self.to_cartesian(z)
        logq = logq - logdet.to(logq)  # the density of the positions x (= log q(z) for a Cartesian flow)
        logw = log_weights(-self.target.log_final_target(x.double(), e), logq)
        if self.transform is not None:  # a duplicate of a configuration inside the domain: weight 0 (exact)
            logw = torch.where(self.transform.in_domain(z).to(logw.device), logw, -math.inf)
        return WeightedSamples(x=x, logq=logq, energy=e, logw=logw, summary=summarize(logw),
                               z=None if self.transform is None else z)
