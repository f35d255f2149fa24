"""The ``[refine]`` table of a run: SMC after the final samples (:mod:`molsample.stages.refine`)."""

from __future__ import annotations

import dataclasses

from molsample.errors import ConfigError

__all__ = ["RefineConfig"]


@dataclasses.dataclass
class RefineConfig:
    """SMC after the final stage (TOML ``[refine]``, :mod:`molsample.stages.refine`): the final samples
    are carried from ``start_kT`` (energy unit, or ``"auto"``) to the target by annealed SMC with
    ``steps`` MALA steps per level and ``final_steps`` at kT, in ``groups`` independent groups, each
    level's conditional ESS ``target_cess``; the set ``refined`` is appended to the run file. Off by
    default (``enabled``)."""

    enabled: bool = False
    steps: int = 5
    final_steps: int = 50
    start_kT: float | str = "auto"
    groups: int = 10
    target_cess: float = 0.95

    def validate(self) -> None:
        for key, value, least in (("steps", self.steps, 0), ("final_steps", self.final_steps, 0),
                                  ("groups", self.groups, 1)):
            if value < least:
                raise ConfigError(f"refine.{key} = {value} must be >= {least}, e.g. refine.{key} = {max(least, 10)}")
        if not 0.0 < self.target_cess < 1.0:
            raise ConfigError(f"refine.target_cess = {self.target_cess} must be in (0, 1), e.g. 0.95")
        if isinstance(self.start_kT, str) and self.start_kT != "auto":
            raise ConfigError(f"refine.start_kT = {self.start_kT!r}; use \"auto\" or a number >= the system's kT")
        if not isinstance(self.start_kT, str) and not self.start_kT > 0:
            raise ConfigError(f"refine.start_kT = {self.start_kT} must be > 0 (>= the system's kT), or \"auto\"")
