"""What every stage of a run sees: the resolved settings, the system and the artefacts so far."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import torch
from torch import nn

from molsample.flows.distributions import base_distribution
from molsample.flows.transform import CartesianTransform, Transform
from molsample.runtime.devices import resolve_device
from molsample.runtime.distributed import World, init_world
from molsample.runtime.progress import show_progress
from molsample.stages.config import RunConfig
from molsample.stages.guards import check_run_guards
from molsample.stages.timings import StageTimings
from molsample.systems.cards import System, load_system

if TYPE_CHECKING:  # the stage outputs' types; imported at run time, they would load the trainer, SMC and sampler
    from molsample.flows.sampler import WeightedSamples
    from molsample.flows.smc import SMCResult
    from molsample.training.rewards import TiltReward
    from molsample.training.tilt import TiltMatching

Echo = Callable[[str], None]
#: An exact sampler of the a = 0 distribution: ``sample(n, generator) -> (n, n_particles, dim)``.
ExactSampler = Callable[[int, torch.Generator | None], torch.Tensor]
#: What reused stage outputs cost when they were made (JSON-able: numbers, names, None where unknown).
Cost = dict[str, str | float | None]

__all__ = ["BaseDistribution", "Cost", "Echo", "ExactSampler", "RunContext", "check_internal_coordinates",
           "resolve_mode"]


class BaseDistribution(Protocol):
    """The flow's distribution at t = 0 (:mod:`molsample.flows.distributions`,
    :class:`~molsample.flows.internal_base.InternalBase`)."""

    @property
    def event_shape(self) -> tuple[int, int]: ...

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` samples ``(n, *event_shape)``."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density ``(batch,)`` of ``x: (batch, *event_shape)``."""


def resolve_mode(cfg: RunConfig, system: System) -> str:
    """The reward mode: the configured one, else ``reward`` for cards with [reward], else ``temperature``."""
    if cfg.mode is not None:
        return cfg.mode
    return "reward" if isinstance(system.card.get("reward"), dict) else "temperature"


@dataclasses.dataclass
class RunContext:
    """The state one run's stages share; each stage reads what earlier ones left and adds its own.

    Attributes:
        cfg, run_dir, system, mode, device, dtype, base: resolved once by :meth:`create`.
        kT0: temperature of the a = 0 distribution (factor·kT in the temperature mode, else kT).
        progress: draw progress bars (already False when stderr is not a terminal, and on ranks > 0).
        world: the ranks of a distributed run (``torchrun``); one process otherwise.
        resume: continue from the run folder's checkpoints.
        command: the command line that started the run (stored with the model).
        transform: the flow's coordinates → Cartesian positions (identity for Cartesian flows; the
            internal-coordinate transform is fitted to the base data by the coordinates stage).

    Stage outputs (None until the stage that makes them has run):
        data: the a = 0 training data ``(n, n_particles, dim)``, or the system's exact sampler (base_data).
        train_frames: ``data`` under every rotor relabelling (coordinates, with ``[flow] rotor_augment``);
            pretraining uses them instead of ``data``.
        base_data_cost, pretrain_cost: what the base data and the pretrained field cost when they were
            made, also when reused from a file (base_data, pretrain; root attributes of the run file).
        field: the velocity net (pretrain, tilt, start); reward: the run's tilt reward and energy counter
            (tilt, start); trainer, history, levels: the annealing loop, its per-level history and levels (tilt).
        samples: the final weighted samples after the chirality fix; n_nonfinite: those with a non-finite
            energy or log q before it; chirality: its run-file attributes (final).
        refine: the SMC result (refine); reference_x: the reference samples ``(n, n_particles, dim)``
            (reference); timings: CPU and wall seconds per stage over every invocation (the engine).
    """

    cfg: RunConfig
    run_dir: Path
    system: System
    mode: str
    device: torch.device
    dtype: torch.dtype
    base: BaseDistribution
    kT0: float
    progress: bool = True
    resume: bool = False
    echo: Echo = print
    command: str = ""
    world: World = dataclasses.field(default_factory=World)
    transform: Transform | None = None
    data: torch.Tensor | ExactSampler | None = None
    train_frames: torch.Tensor | None = None
    base_data_cost: Cost | None = None
    pretrain_cost: Cost | None = None
    field: nn.Module | None = None
    reward: TiltReward | None = None
    trainer: TiltMatching | None = None
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    levels: int = 0
    samples: WeightedSamples | None = None
    n_nonfinite: int = 0
    chirality: dict[str, float] = dataclasses.field(default_factory=dict)
    refine: SMCResult | None = None
    reference_x: torch.Tensor | None = None
    timings: StageTimings | None = None

    def set_mode(self, mode: str) -> None:
        """Switch the reward mode (e.g. to a start model's) and recompute kT0."""
        self.mode = mode
        factor = self.cfg.temperature_factor if mode == "temperature" else 1.0
        self.kT0 = factor * self.system.kT

    @classmethod
    def create(cls, cfg: RunConfig, run_dir: Path, *, progress: bool = True, resume: bool = False,
               echo: Echo = print, command: str = "") -> "RunContext":
        """Resolve system, device, dtype, mode, base and kT0, and join the process group when
        started by ``torchrun``; creates nothing on disk, so a bad setting (e.g. CUDA absent) fails
        before the run folder exists. Ranks > 0 print nothing."""
        system = load_system(cfg.system)
        world, device = init_world(resolve_device(cfg.device))
        if not world.is_main:
            progress, echo = False, _silent
        transform = CartesianTransform(system.event_shape)
        if cfg.flow.coordinates == "internal":
            check_internal_coordinates(system)  # before the run folder exists
        mode = resolve_mode(cfg, system)
        check_run_guards(cfg, system, mode)  # declared net capabilities, reward symmetry: before any write
        kT0 = cfg.temperature_factor * system.kT if mode == "temperature" else system.kT
        return cls(cfg=cfg, run_dir=Path(run_dir), system=system, mode=mode, device=device,
                   dtype=torch.float64 if cfg.dtype == "float64" else torch.float32,
                   base=base_distribution(system, cfg.base.table()), kT0=kT0, progress=show_progress(progress), resume=resume,
                   echo=echo, command=command, world=world, transform=transform)


def _silent(_: str) -> None:
    """The echo of ranks > 0."""


def check_internal_coordinates(system: System) -> None:
    """Refuse internal coordinates for a system without a bond graph (clusters, toys), by name."""
    from molsample.errors import ConfigError

    topology = getattr(system, "topology", None)
    if topology is None or topology.n_bonds == 0 or not system.remove_com:
        raise ConfigError(f"internal coordinates need a molecule with bonds; system {system.name!r} has none "
                          "(clusters and toys are flows in Cartesian coordinates): set coordinates = \"cartesian\"")

