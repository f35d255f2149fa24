"""The loop that runs a list of stages and records each one's CPU and wall time.

A stage is a name and a function of the :class:`~molsample.stages.context.RunContext`; it caches
or checkpoints its own output in the run folder (:mod:`molsample.io.cache`). The loop measures
every stage's CPU time (``time.process_time``: user + system of this process) and wall time and
keeps the totals in ``<run>/timings.json``, which a resumed run (``--resume``) adds to, so the
numbers count every invocation.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

from molsample.io.atomic import write_text_atomic
from molsample.stages.context import RunContext

__all__ = ["Stage", "StageTimings", "run_stages"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One unit of a run: ``run(ctx)`` reads and adds to the context; ``skip(ctx)`` True skips it.

    ``main_only`` stages run on rank 0 alone in a distributed run (the others have finished).
    """

    name: str
    run: Callable[[RunContext], None]
    skip: Callable[[RunContext], bool] = lambda ctx: False
    main_only: bool = False


@dataclasses.dataclass
class StageTimings:
    """CPU and wall seconds per stage name, summed over invocations; stored as JSON."""

    cpu_s: dict[str, float] = dataclasses.field(default_factory=dict)
    wall_s: dict[str, float] = dataclasses.field(default_factory=dict)
    invocations: int = 0

    FILE = "timings.json"

    @classmethod
    def load(cls, run_dir: Path) -> "StageTimings":
        """The totals stored in ``run_dir`` (empty when there are none or the file is unreadable)."""
        path = Path(run_dir) / cls.FILE
        try:
            blob = json.loads(path.read_text())
            return cls({k: float(v) for k, v in blob["cpu_s"].items()},
                       {k: float(v) for k, v in blob["wall_s"].items()}, int(blob.get("invocations", 0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()

    def add(self, name: str, cpu: float, wall: float) -> None:
        self.cpu_s[name] = self.cpu_s.get(name, 0.0) + cpu
        self.wall_s[name] = self.wall_s.get(name, 0.0) + wall

    def save(self, run_dir: Path) -> None:
        write_text_atomic(Path(run_dir) / self.FILE, json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())

    @property
    def total_wall_s(self) -> float:
        return sum(self.wall_s.values())


def run_stages(stages: list[Stage], ctx: RunContext) -> StageTimings:
    """Run ``stages`` in order on ``ctx``, timing each (also when one raises or is interrupted).

    On ``ctx.resume`` the totals continue those stored in the run folder; otherwise they start at 0.
    In a distributed run the CPU seconds are summed over the ranks and the wall seconds are rank 0's.
    """
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    timings = StageTimings.load(ctx.run_dir) if ctx.resume else StageTimings()
    timings.invocations += 1
    ctx.extra["timings"] = timings
    for stage in stages:
        if stage.skip(ctx) or (stage.main_only and not ctx.world.is_main):
            continue
        cpu0, wall0 = time.process_time(), time.perf_counter()
        failed = True
        try:
            stage.run(ctx)
            failed = False
        finally:
            cpu = time.process_time() - cpu0
            if not failed and not stage.main_only:
                cpu = ctx.world.sum(cpu)  # every rank's share (a failed rank cannot take part)
            timings.add(stage.name, cpu, time.perf_counter() - wall0)
            if ctx.world.is_main:
                timings.save(ctx.run_dir)
    return timings
