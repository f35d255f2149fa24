"""The ``exact`` reference method: independent draws of a system's exact sampler (the 2-D toys)."""

from __future__ import annotations

from typing import Any

import torch

from molsample.errors import ConfigError
from molsample.mcmc.reference_settings import Draw, ReferenceMethod, at_card_kT, register_reference_method
from molsample.runtime.distributed import World


@register_reference_method
class ExactReference(ReferenceMethod):
    """``system.exact_sampler()`` at the card's kT; every sample independent (τ_int = 1)."""

    name = "exact"
    auto_rank = 0
    refused_options = ("chains", "burn_in", "thin")
    refusal = "--chains/--burn-in/--thin do not apply to the exact sampler; drop them or pick --method mala"

    def picks(self, system: Any, kT: float) -> bool:
        return system.exact_sampler() is not None and at_card_kT(system, kT)

    def check_system(self, system: Any, kT: float) -> None:
        if system.exact_sampler() is None:
            raise ConfigError(f"system {system.name} has no exact sampler; use --method mala, pt or md")
        if not at_card_kT(system, kT):
            raise ConfigError(
                f"the exact sampler of {system.name} draws at the card's kT = {system.kT:g}, not kT = {kT:g}; "
                "use --method mala or pt for another temperature"
            )

    def run(self, system: Any, n: int, *, kT: float, settings: dict[str, Any], seed: int, generator: Any,
            progress: bool, world: World, checkpoint: Any) -> Draw:
        x = system.exact_sampler()(n, generator).to(torch.float64)
        with torch.no_grad():
            e = system.energy.energy(x).to(torch.float64)
        return x, e, {"tau_int": 1.0, "n_energy_evals": n, "acceptance": None}
