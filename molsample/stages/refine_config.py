"""The ``[refine]`` table of a run: SMC after the final samples (:mod:`molsample.stages.refine`)."""

from __future__ import annotations

import dataclasses

from molsample.errors import ConfigError
from molsample.mcmc.hmc import LEAPFROG_STEPS
from molsample.mcmc.kernels import KERNELS
from molsample.stages.sections import register_section

__all__ = ["RefineConfig"]


@register_section("refine", stages=("refine",))
@dataclasses.dataclass
class RefineConfig:
    """SMC after the final stage (TOML ``[refine]``, :mod:`molsample.stages.refine`): the final samples
    are carried from ``start_kT`` (energy unit, or ``"auto"``) to the target by annealed SMC with
    ``steps`` MCMC steps per level and ``final_steps`` at kT, in ``groups`` independent groups, each
    level's conditional ESS ``target_cess``; the set ``refined`` is appended to the run file. Off by
    default (``enabled``). ``kernel``: ``"mala"`` or ``"hmc"`` (``leapfrog_steps`` energy evaluations
    per step)."""

    enabled: bool = False
    steps: int = 5
    final_steps: int = 50
    start_kT: float | str = "auto"
    groups: int = 10
    target_cess: float = 0.95
    kernel: str = "mala"
    leapfrog_steps: int = LEAPFROG_STEPS

    def validate(self) -> None:
        for key, value, least in (("steps", self.steps, 0), ("final_steps", self.final_steps, 0),
                                  ("groups", self.groups, 1), ("leapfrog_steps", self.leapfrog_steps, 1)):
            if value < least:
                raise ConfigError(f"refine.{key} = {value} must be >= {least}, e.g. refine.{key} = {max(least, 10)}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"refine.kernel = {self.kernel!r}; use one of {', '.join(KERNELS)}")
        if not 0.0 < self.target_cess < 1.0:
            raise ConfigError(f"refine.target_cess = {self.target_cess} must be in (0, 1), e.g. 0.95")
        if isinstance(self.start_kT, str) and self.start_kT != "auto":
            raise ConfigError(f"refine.start_kT = {self.start_kT!r}; use \"auto\" or a number >= the system's kT")
        if not isinstance(self.start_kT, str) and not self.start_kT > 0:
            raise ConfigError(f"refine.start_kT = {self.start_kT} must be > 0 (>= the system's kT), or \"auto\"")
