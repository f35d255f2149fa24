"""The ``remd`` reference method: replica-exchange MD over OpenMM contexts
(:func:`~molsample.mcmc.remd.remd_frames`). ``auto`` never picks it, but it visits every basin of a
molecule: for alanine dipeptide at 300 K the ground truth of the C7ax/αL basin that plain MD rarely
reaches."""

from __future__ import annotations

from typing import Any

from molsample.errors import ConfigError
from molsample.mcmc.reference_md import ONE_TRAJECTORY, check_kj_per_mol, check_openmm
from molsample.mcmc.reference_settings import REMD_DEFAULTS, Draw, ReferenceMethod, register_reference_method
from molsample.runtime.distributed import World


@register_reference_method
class REMDReference(ReferenceMethod):
    """REMD on a geometric ladder from the target to ``t_max_K``; ``n`` frames of the lowest replica,
    ``exchanges_per_frame`` exchanges of ``steps_per_exchange`` steps apart. Checkpoints every 200
    frames; a resumed run keeps the frames it had and reseeds the thermostats (statistically the same
    run, not bit for bit)."""

    name = "remd"
    checkpoints = True
    aliases = {"burn_in": "equilibration_steps", "thin": "exchanges_per_frame", "steps": "exchanges_per_frame"}
    counts = ("n_replicas", "steps_per_exchange", "exchanges_per_frame")
    step_counts = ("equilibration_steps",)
    refused_options = ("chains",)
    refusal = ONE_TRAJECTORY

    def check_system(self, system: Any, kT: float) -> None:
        check_openmm(system, self.name)

    def defaults(self, system: Any, n: int) -> dict[str, Any]:
        return dict(REMD_DEFAULTS)

    def spread_steps(self, n_steps: Any, n: int, settings: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        raise ConfigError("n_steps does not apply to remd; set exchanges_per_frame and steps_per_exchange")

    def run(self, system: Any, n: int, *, kT: float, settings: dict[str, Any], seed: int, generator: Any,
            progress: bool, world: World, checkpoint: Any) -> Draw:
        from molsample.mcmc.remd import remd_frames

        check_kj_per_mol(system, self.name)
        x, e, diag = remd_frames(system, n, kT=kT, seed=seed, progress=progress, checkpoint=checkpoint, **settings)
        if system.remove_com:
            x = x - x.mean(dim=1, keepdim=True)
        return x, e, dict(diag)
