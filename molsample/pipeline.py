"""The ``molsample tilt`` job, kept importable under its old name.

The job is the stage list :data:`molsample.stages.run.TILT_STAGES` (base data → pretraining →
tilt → final samples → reference → report) run by :func:`molsample.stages.engine.run_stages`;
weighted sampling lives in :class:`molsample.sampling.flow_sampler.FlowSampler`. This module
re-exports the public names users imported from here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from molsample.devices import resolve_device
from molsample.sampling.flow_sampler import FlowSampler, WeightedSamples
from molsample.stages.context import Echo, RunContext, resolve_mode
from molsample.stages.data import reference_samples, target_reference
from molsample.stages.final import fix_chirality, mcmc_correct, write_samples
from molsample.stages.pretrain import net_spec
from molsample.stages.run import TILT_STAGES, run_tilt, sample_more
from molsample.stages.summary import RunSummary

__all__ = ["Echo", "FlowSampler", "RunContext", "RunSummary", "TILT_STAGES", "WeightedSamples",
           "draw_weighted_samples", "fix_chirality", "mcmc_correct", "net_spec", "reference_samples",
           "resolve_device", "resolve_mode", "run_tilt", "sample_more", "target_reference", "write_samples"]


def draw_weighted_samples(
    field: nn.Module, base, reward, n: int, *, method: str, steps: int, divergence: str = "exact",
    batch_size: int = 1000, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu", progress: bool = False, checkpoint: Path | None = None,
) -> WeightedSamples:
    """``FlowSampler(field, base, reward, ...).sample(n, ...)`` (see :class:`FlowSampler`)."""
    sampler = FlowSampler(field, base, reward, method=method, steps=steps, divergence=divergence, dtype=dtype,
                          device=device)
    return sampler.sample(n, batch_size=batch_size, generator=generator, checkpoint=checkpoint, progress=progress)
