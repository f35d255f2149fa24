"""The ``molsample tilt`` job as a list of stages, and ``molsample sample`` on a finished run.

    base data → (internal coordinates) → pretraining → tilt → final samples → (refine) → reference → report

Each stage caches or checkpoints its output in the run folder, so an interrupted job resumes where
it stopped (``resume=True``) and a finished stage is never recomputed:

    runs/<run>/config.toml            resolved configuration
    runs/<run>/base_data.pt           samples of the a = 0 distribution (pretraining data)
    runs/<run>/pretrained.pt          the pretrained field (a = 0)
    runs/<run>/checkpoints/pretrain-<key>.pt   flow-matching checkpoints (key: net, settings, data)
    runs/<run>/checkpoints/tilt.pt    the annealing loop's state after every level
    runs/<run>/checkpoints/final.pt   the final samples drawn so far (per batch)
    runs/<run>/checkpoints/refine.pt  the SMC state after every level ([refine], removed at the end)
    runs/<run>/model.pt               the tilted field (a = 1)
    runs/<run>/samples.h5             samples with log-weights, energies, history, config, timings
    runs/<run>/timings.json           CPU and wall seconds per stage over all invocations

With ``[start] model`` the first three stages are replaced by loading that (tilted) model.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from molsample.io.atomic import write_text_atomic
from molsample.io.toml_writer import dumps_toml
from molsample.stages.config import RunConfig
from molsample.stages.context import Echo, RunContext
from molsample.stages.coordinates import coordinates_stage, uses_internal_coordinates
from molsample.stages.data import base_data_stage
from molsample.stages.engine import Stage, run_stages
from molsample.stages.final import append_final_samples, final_stage
from molsample.stages.pretrain import pretrain_stage
from molsample.stages.reference import reference_stage, wants_reference
from molsample.stages.refine import refine_stage
from molsample.stages.report import record_timings, report_stage, timing_attrs, wants_report
from molsample.stages.start import start_from_model, starts_from_model
from molsample.stages.summary import RunSummary, summarize_run
from molsample.stages.tilt import tilt_stage
from molsample.stages.timings import StageTimings

__all__ = ["MAX_NEW_SAMPLES", "TILT_STAGES", "run_tilt", "sample_more"]

#: Most new samples one ``molsample sample`` call draws (the config's bound on ``final.n_samples``).
MAX_NEW_SAMPLES = 10**7


def _reuses_model(ctx: RunContext) -> bool:
    return starts_from_model(ctx)  # a start model replaces the three training stages


#: the stages of ``molsample tilt``, in order
TILT_STAGES: list[Stage] = [
    Stage("start", start_from_model, skip=lambda ctx: not starts_from_model(ctx)),
    Stage("base_data", base_data_stage, skip=_reuses_model),
    Stage("coordinates", coordinates_stage, skip=lambda ctx: _reuses_model(ctx) or not uses_internal_coordinates(ctx)),
    Stage("pretrain", pretrain_stage, skip=_reuses_model),
    Stage("tilt", tilt_stage, skip=_reuses_model),
    Stage("final", final_stage),
    Stage("refine", refine_stage, skip=lambda ctx: not ctx.cfg.refine.enabled, main_only=True),
    Stage("reference", reference_stage, skip=lambda ctx: not wants_reference(ctx), main_only=True),
    Stage("report", report_stage, skip=lambda ctx: not wants_report(ctx), main_only=True),
]


def run_tilt(cfg: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
             echo: Echo = print, command: str = "") -> RunSummary | None:
    """Run the whole job of ``cfg`` in ``run_dir`` (see the module docstring).

    Everything is resolved (system, device, mode) before the run folder is created, so a bad
    setting leaves nothing behind. Started by ``torchrun``, the ranks share the base data,
    pretraining, tilt and final stages and rank 0 alone writes, runs the reference and the
    report, and returns the summary (the other ranks return None).
    """
    ctx = RunContext.create(cfg, run_dir, progress=progress, resume=resume, echo=echo, command=command)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    if ctx.world.is_main:
        write_text_atomic(ctx.run_dir / "config.toml", dumps_toml(cfg.to_dict()))
    run_stages(TILT_STAGES, ctx)
    if not ctx.world.is_main:
        return None
    record_timings(ctx)
    return summarize_run(ctx)


def sample_more(run: Path, n: int, *, seed: int | None = None, batch_size: int | None = None,
                device: str = "cpu", progress: bool = True, ode_method: str | None = None,
                ode_steps: int | None = None) -> list[str]:
    """Draw ``n`` more weighted samples from a finished run and append them to its run file.

    The samples come from the run's final stage's recipe (:func:`~molsample.stages.final.append_final_samples`:
    the same :class:`~molsample.flows.sampler.FlowSampler`, with its solver unless ``ode_method`` /
    ``ode_steps`` replace it, and the chirality fix), appended batch by batch in one atomic write. The
    ESS and log Z in the file's attributes are recomputed over all samples. Returns the summary lines.
    Started by ``torchrun``, the ranks share every batch and rank 0 writes and returns the lines (the
    others return an empty list).
    """
    from molsample.flows.diagnostics import weight_diagnostics
    from molsample.flows.weights import summarize
    from molsample.io.atomic import check_writable
    from molsample.io.hdf5 import RunFile
    from molsample.io.run_paths import resolve_run_path, run_model_path
    from molsample.stages.config import config_from_dict

    _check_new_samples(n)
    path = resolve_run_path(run)
    model = run_model_path(path)  # a missing model.pt fails with the way to get it back, before any work
    check_writable(path.parent)  # the samples are appended to the run file: fail now, not after drawing them
    with RunFile(path, "r") as rf:
        cfg = config_from_dict(rf.read_config())
        n_old = len(rf.read_samples()["x"])
    cfg.device = device
    cfg.final.ode_method = ode_method or cfg.final.ode_method
    cfg.final.ode_steps = int(ode_steps or cfg.final.ode_steps)
    ctx = _model_context(cfg, path, model, progress)
    g = torch.Generator().manual_seed(seed if seed is not None else cfg.seed + 1000 + n_old)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with RunFile(path, "a") if ctx.world.is_main else contextlib.nullcontext() as rf:
        logw_new = append_final_samples(ctx, rf, n, batch_size=batch_size or cfg.final.batch_size, generator=g)
        cpu = ctx.world.sum(time.process_time() - cpu0)  # every rank's share
        if rf is None:
            return []
        logw_all = torch.as_tensor(rf.read_samples()["logw"])
        total = summarize(logw_all)
        # the appended samples' evaluations and CPU join the run's final stage, so the cost
        # figures of the report (molsample.reporting.cost) stay those of all the samples
        evals = int(rf.attrs.get("energy_evals", 0)) + ctx.reward.n_energy_evals
        rf.set_attrs(ess=total.ess, log_z=total.log_z, log_z_se=total.log_z_se, energy_evals=evals)
        if path.name == "samples.h5":  # the run folder's own file: its timings.json is this file's
            timings = StageTimings.load(path.parent)
            timings.add("final", cpu, time.perf_counter() - wall0)
            timings.save(path.parent)
            rf.set_attrs(**timing_attrs(timings))
    new, diag = summarize(logw_new), weight_diagnostics(logw_all)
    return [
        f"appended      {n} samples to {path} ({n_old + n} in total; solver {cfg.final.ode_method} × "
        f"{cfg.final.ode_steps})",
        f"new samples   ESS {new.ess:.4f}, {new.n_nonfinite} non-finite",
        f"all samples   ESS {total.ess:.4f}, log Z {diag.log_z_text()}",
    ] + [f"warning: {w}" for w in diag.warnings()]


def _check_new_samples(n: int) -> None:
    """Refuse a count of new samples outside 1 … :data:`MAX_NEW_SAMPLES`, before any work."""
    from molsample.errors import ConfigError

    if n < 1:
        raise ConfigError(f"--n {n}: the number of new samples must be >= 1")
    if n > MAX_NEW_SAMPLES:
        raise ConfigError(f"--n-samples {n} is above the limit of {MAX_NEW_SAMPLES:,} per call; "
                          f"ask for at most {MAX_NEW_SAMPLES:,} and run `molsample sample` again to append more")


def _model_context(cfg: RunConfig, path: Path, model: Path, progress: bool) -> RunContext:
    """The context of a finished run for more final samples: its tilted field (in the run's dtype, as
    in its final stage; load_model builds float32 nets), base, transform, mode and reward. Prints nothing."""
    from molsample.flows.flow import load_flow
    from molsample.stages.tilt import make_run_reward

    ctx = RunContext.create(cfg, path.parent, progress=progress, echo=lambda _: None)
    flow, meta = load_flow(model, ctx.system, device=ctx.device, base_table=cfg.base.table())
    ctx.set_mode(meta.get("mode") or ctx.mode)
    ctx.base, ctx.transform = flow.base, flow.transform
    ctx.field = flow.field.to(ctx.dtype)
    ctx.reward = make_run_reward(ctx)
    return ctx
