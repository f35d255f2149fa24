"""The loop that runs a list of stages and records each one's CPU and wall time.

A stage is a name and a function of the :class:`~molsample.stages.context.RunContext`; it caches
or checkpoints its own output in the run folder (:mod:`molsample.io.cache`). The loop measures
every stage's CPU time (``time.process_time``: user + system of this process) and wall time and
keeps the totals (:class:`~molsample.stages.timings.StageTimings`) in ``<run>/timings.json``, which
a resumed run (``--resume``) adds to, so the numbers count every invocation.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from molsample.stages.context import RunContext
from molsample.stages.timings import StageTimings

__all__ = ["Stage", "run_stages"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One unit of a run: ``run(ctx)`` reads and adds to the context; ``skip(ctx)`` True skips it.

    ``main_only`` stages run on rank 0 alone in a distributed run (the others have finished).
    """

    name: str
    run: Callable[[RunContext], None]
    skip: Callable[[RunContext], bool] = lambda ctx: False
    main_only: bool = False


def run_stages(stages: list[Stage], ctx: RunContext) -> StageTimings:
    """Run ``stages`` in order on ``ctx``, timing each (also when one raises or is interrupted).

    On ``ctx.resume`` the totals continue those stored in the run folder; otherwise they start at 0.
    In a distributed run the CPU seconds are summed over the ranks and the wall seconds are rank 0's.
    """
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    timings = StageTimings.load(ctx.run_dir) if ctx.resume else StageTimings()
    timings.invocations += 1
    ctx.timings = timings
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
