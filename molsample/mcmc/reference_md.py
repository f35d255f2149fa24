"""The ``md`` reference method: OpenMM Langevin dynamics from the card's structure
(:func:`~molsample.mcmc.md.run_md`), one frame every ``steps_per_frame`` steps."""

from __future__ import annotations

from typing import Any

import torch

from molsample.errors import ConfigError
from molsample.mcmc.reference_settings import (Draw, ReferenceMethod, is_openmm, positive_steps,
                                               register_reference_method)
from molsample.runtime.distributed import World
from molsample.systems import units

#: ``molsample reference --chains`` on a method that runs one trajectory per temperature
ONE_TRAJECTORY = ("--chains applies to MCMC methods; {name} runs one trajectory per temperature "
                  "(drop --chains; --set n_replicas=K sets REMD's ladder)")


def check_openmm(system: Any, method: str) -> None:
    """:class:`ConfigError` unless ``system`` is an OpenMM system with a structure."""
    if not is_openmm(system):
        raise ConfigError(f"--method {method} needs an OpenMM system with a structure; {system.name} is not one. "
                          "Use mala or pt")


def check_kj_per_mol(system: Any, method: str) -> None:
    """:class:`ConfigError` unless the energy is in kJ/mol (temperatures in kelvin)."""
    if system.energy_unit != "kJ/mol":
        raise ConfigError(f"{method} needs an energy in kJ/mol, {system.name} is in {system.energy_unit}")


@register_reference_method
class MDReference(ReferenceMethod):
    """Langevin MD in OpenMM: ``equilibration_steps``, then ``n`` frames ``steps_per_frame`` apart."""

    name = "md"
    auto_rank = 1
    aliases = {"burn_in": "equilibration_steps", "thin": "steps_per_frame", "steps": "steps_per_frame"}
    counts = ("steps_per_frame",)
    step_counts = ("equilibration_steps",)
    refused_options = ("chains",)
    refusal = ONE_TRAJECTORY

    def picks(self, system: Any, kT: float) -> bool:
        return is_openmm(system)

    def check_system(self, system: Any, kT: float) -> None:
        check_openmm(system, self.name)

    def defaults(self, system: Any, n: int) -> dict[str, Any]:
        return {"steps_per_frame": 500, "timestep_fs": 1.0, "friction_per_ps": 1.0, "equilibration_steps": 10_000,
                "minimize": True, "platform": str(getattr(system.energy, "platform", "CPU"))}

    def spread_steps(self, n_steps: Any, n: int, settings: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        return {"steps_per_frame": max(1, positive_steps(n_steps) // n)}

    def run(self, system: Any, n: int, *, kT: float, settings: dict[str, Any], seed: int, generator: Any,
            progress: bool, world: World, checkpoint: Any) -> Draw:
        from molsample.mcmc.md import run_md

        check_kj_per_mol(system, self.name)
        keys = ("steps_per_frame", "timestep_fs", "friction_per_ps", "equilibration_steps", "minimize", "platform")
        r = run_md(system.energy.system, system.energy.positions, temperature_K=kT / units.KB_KJ_PER_MOL_K,
                   n_frames=n, seed=seed, progress=progress, **{k: settings[k] for k in keys})
        x = torch.as_tensor(r.frames, dtype=torch.float64)
        if system.remove_com:
            x = x - x.mean(dim=1, keepdim=True)
        e = torch.as_tensor(r.energies, dtype=torch.float64)
        return x, e, {"tau_int": r.tau_int, "n_energy_evals": r.n_steps, "acceptance": None,
                      "temperature_K": r.temperature_K, "platform": r.platform}
