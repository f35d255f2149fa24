"""The report stage and the run file's timing attributes."""

from __future__ import annotations

import json

from molsample.io.hdf5 import RunFile
from molsample.stages.context import RunContext
from molsample.stages.timings import StageTimings

__all__ = ["record_timings", "report_stage", "timing_attrs", "wants_report"]


def wants_report(ctx: RunContext) -> bool:
    return bool(ctx.cfg.report)


def record_timings(ctx: RunContext) -> None:
    """Write the stage timings so far (all invocations of a resumed run) to the run file's root
    attributes: ``stage_cpu_s`` and ``stage_wall_s`` (JSON: stage → seconds), ``cpu_time_s`` and
    ``wall_time_s`` (their sums)."""
    t = ctx.timings
    path = ctx.run_dir / "samples.h5"
    if t is None or not path.is_file():
        return
    with RunFile(path, "a") as rf:
        rf.set_attrs(**timing_attrs(t))


def timing_attrs(t: StageTimings) -> dict:
    """The run file's timing attributes of ``t`` (see :func:`record_timings`)."""
    return dict(stage_cpu_s=json.dumps(t.cpu_s), stage_wall_s=json.dumps(t.wall_s), cpu_time_s=t.total_cpu_s,
                wall_time_s=t.total_wall_s, invocations=t.invocations)


def report_stage(ctx: RunContext) -> None:
    """The report (figures + page) of the run file."""
    from molsample.reporting.report import make_report

    record_timings(ctx)  # so that the report shows the time spent so far
    rep = make_report(ctx.run_dir)
    ctx.echo(f"report: {rep.html}")
