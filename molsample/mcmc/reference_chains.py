"""The MCMC reference methods: ``mala`` (tamed MALA) and ``pt`` (parallel tempering with MALA moves),
both from relaxed lattices, with chains split over the ranks of a distributed run and resumable
from a checkpoint (:class:`~molsample.mcmc.langevin.ChainCheckpoint`)."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from molsample.errors import ConfigError
from molsample.mcmc.initial_configurations import initial_configurations
from molsample.mcmc.mala import ChainCheckpoint, geometric_ladder, mala, parallel_tempering
from molsample.mcmc.reference_settings import (Draw, ReferenceMethod, degrees_of_freedom, energy_type,
                                               positive_steps, register_reference_method)
from molsample.runtime.distributed import World

#: card energy types of double wells (class name for systems built without a card)
DOUBLE_WELLS = ("double_well", "MultiDoubleWell")


def _plain(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.tolist() if v.numel() > 1 else float(v)
    return v


class ChainMethod(ReferenceMethod):
    """What MALA and PT share: chains from :func:`initial_configurations`, ``thin`` steps between kept
    samples after ``burn_in`` steps of step-size adaptation; subclasses run the chains (:meth:`chains`)."""

    aliases = {"steps": "thin", "equilibration_steps": "burn_in"}
    sharded = True
    checkpoints = True
    step_counts = ("burn_in", "relax_steps")
    nullable = ("step_size", "tame")

    def defaults(self, system: Any, n: int) -> dict[str, Any]:
        return {"burn_in": 2000, "thin": 10, "step_size": None, "target_accept": 0.574, "tame": 2.0,
                "init": "lattice", "relax_steps": 200, "init_noise": 0.1}

    def spread_steps(self, n_steps: Any, n: int, settings: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        chains = settings.get("chains") or defaults["chains"]
        return {"thin": max(1, positive_steps(n_steps) // math.ceil(n / chains))}

    def check(self, cfg: dict[str, Any]) -> None:
        super().check(cfg)
        if cfg.get("init") not in (None, "lattice", "random"):
            raise ConfigError(f"reference setting init must be 'lattice' or 'random', got {cfg['init']!r}")

    def chains(self, system: Any, kT: float, x0: Tensor, cfg: dict[str, Any], common: dict[str, Any]
               ) -> tuple[Any, dict[str, Any]]:
        """Run the chains from ``x0``: the sampler's result and this method's own diagnostics."""
        raise NotImplementedError

    def run(self, system: Any, n: int, *, kT: float, settings: dict[str, Any], seed: int, generator: Any,
            progress: bool, world: World, checkpoint: Any) -> Draw:
        cfg = settings
        x0, init_evals = initial_configurations(system, cfg["chains"], init=cfg["init"], noise=cfg["init_noise"],
                                                relax_steps=cfg["relax_steps"], generator=generator)
        n_kept = math.ceil(n / cfg["chains"])
        common = dict(n_steps=n_kept * cfg["thin"], burn_in=cfg["burn_in"], thin=cfg["thin"], step_size=cfg["step_size"],
                      target_accept=cfg["target_accept"], tame=cfg["tame"], remove_com=system.remove_com,
                      generator=generator, progress=progress, world=world,
                      checkpoint=ChainCheckpoint(checkpoint) if checkpoint is not None else None)
        r, diag = self.chains(system, kT, x0, cfg, common)
        diag.update(acceptance=r.acceptance, tau_int=r.tau_int, n_energy_evals=r.n_energy_evals + init_evals,
                    n_chains=r.n_chains)
        return r.samples[:n], r.energies[:n], diag


@register_reference_method
class MALAReference(ChainMethod):
    """Tamed MALA; for Lennard-Jones per evaluation ~5x more efficient than PT at kT = 1."""

    name = "mala"
    auto_rank = 3  # anything no other method picks, Lennard-Jones included
    counts = ("chains", "thin")

    def picks(self, system: Any, kT: float) -> bool:
        return True

    def defaults(self, system: Any, n: int) -> dict[str, Any]:
        if energy_type(system) in ("lennard_jones", "LennardJones"):
            # LJ-13 at kT = 1: τ_int(energy) ≈ 800 steps (docs/benchmarks/reference.md); thin 100 and
            # a burn-in of ~6τ give ≈ 1,300 effective samples per 10,000 in ~15 s on one core
            return {**super().defaults(system, n), "chains": 128, "thin": 100, "burn_in": 5000}
        return {**super().defaults(system, n), "chains": 64}

    def chains(self, system: Any, kT: float, x0: Tensor, cfg: dict[str, Any], common: dict[str, Any]
               ) -> tuple[Any, dict[str, Any]]:
        r = mala(system.energy, kT, x0, **common)
        return r, {"step_size": _plain(r.step_size)}


@register_reference_method
class ParallelTemperingReference(ChainMethod):
    """Parallel tempering over a geometric kT ladder with MALA moves; ``chains`` per temperature."""

    name = "pt"
    auto_rank = 2
    counts = ("chains", "thin", "n_temps")

    def picks(self, system: Any, kT: float) -> bool:
        return energy_type(system) in DOUBLE_WELLS  # pair barriers of 4.4 kT: MALA alone hops too rarely

    def defaults(self, system: Any, n: int) -> dict[str, Any]:
        factor = 5.0 if energy_type(system) in DOUBLE_WELLS else 6.0
        # constant swap acceptance needs Δln kT ~ 1/sqrt(heat capacity) ~ 1/sqrt(dof)
        n_temps = max(4, math.ceil(math.log(factor) * math.sqrt(degrees_of_freedom(system)) / 1.2) + 1)
        return {**super().defaults(system, n), "chains": 32, "n_temps": n_temps, "kT_max_factor": factor,
                "swap_every": 1, "burn_in": 3000}

    def chains(self, system: Any, kT: float, x0: Tensor, cfg: dict[str, Any], common: dict[str, Any]
               ) -> tuple[Any, dict[str, Any]]:
        kts = geometric_ladder(kT, kT * cfg["kT_max_factor"], cfg["n_temps"])
        r = parallel_tempering(system.energy, kts, x0, swap_every=cfg["swap_every"], **common)
        return r, {"swap_rates": r.swap_rates, "kT_ladder": kts, "acceptance_by_kT": r.acceptance_by_kT,
                   "step_size": _plain(r.step_size)}
