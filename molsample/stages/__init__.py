"""The stage engine: a run is a list of :class:`~molsample.stages.engine.Stage` s over one
:class:`~molsample.stages.context.RunContext`, run by :func:`~molsample.stages.engine.run_stages`.

The ``molsample tilt`` job is :data:`molsample.stages.run.TILT_STAGES`.
"""

from molsample.stages.context import RunContext, resolve_mode
from molsample.stages.engine import Stage, run_stages
from molsample.stages.timings import StageTimings

__all__ = ["RunContext", "Stage", "StageTimings", "resolve_mode", "run_stages"]
