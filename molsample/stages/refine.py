"""``molsample refine``: SMC from a run's flow samples to its target, appended as the set ``refined``.

Reads ``/coordinates``, ``/logq`` of the run file and the system named in its attributes, runs
:func:`~molsample.flows.smc.smc_refine` at the run's kT and appends, in one atomic write:

* the sample set ``refined`` (coordinates, energies, log-weights at kT);
* ``/refined_history/*``: per level kT, ESS, conditional ESS, acceptance, step size, resampled fraction;
* root attributes ``refined_*``: log Z ± se, levels, start kT, unique ancestors, resamplings, energy
  evaluations, CPU seconds, settings, and the warnings (JSON).

Every check happens before any work; the run file is only replaced when everything succeeded.
The SMC state is saved after every level in ``RUN_DIR/checkpoints/refine.pt`` (removed at the end);
``resume=True`` continues from it with the random numbers of an uninterrupted run.

With a distributed ``world`` (``molsample refine --nproc K``) every rank runs the same SMC and
evaluates the energies of its shard of the particles (:mod:`molsample.flows.smc`); the result is that
of one process, and rank 0 alone writes the checkpoint and the run file.

The same :func:`refine_run` is the ``refine`` stage of ``molsample tilt`` (``[refine] enabled``,
:func:`refine_stage`), run on rank 0 after the final samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from molsample.errors import ConfigError, EnergyError, RunFileError
from molsample.flows.smc import SMCCheckpoint, SMCResult, smc_refine
from molsample.io.hdf5 import RunFile
from molsample.io.run_paths import resolve_run_path
from molsample.mcmc.hmc import LEAPFROG_STEPS
from molsample.mcmc.kernels import KERNELS
from molsample.runtime.distributed import World
from molsample.stages.context import RunContext

__all__ = ["REFINED_SET", "checkpoint_path", "refine_rows", "refine_run", "refine_stage", "refine_summary"]

#: Name of the sample set that ``molsample refine`` writes.
REFINED_SET = "refined"
#: What the refined set's ESS means (printed with every summary).
ESS_NOTE = ("note: the refined set is resampled; its ESS counts copies and is not comparable to a flow's ESS "
            "(see unique ancestors and the group spread of log Z)")


def _load(path: Path, n: int | None) -> tuple[object, torch.Tensor, torch.Tensor]:
    """The system, the flow samples ``(n, P, d)`` (float64) and their log q, with every check."""
    from molsample.systems.cards import load_system

    with RunFile(path, "r") as rf:
        if "samples" not in rf.sample_sets():
            raise RunFileError(f"run file {path} has no flow samples (/coordinates); run `molsample tilt` or "
                               "`molsample sample` first")
        s = rf.read_samples()
        name = rf.attrs.get("system")
    if name is None:
        raise RunFileError(f"run file {path} does not name its system (root attribute 'system'); it was not "
                           "written by `molsample tilt`")
    if s["logq"] is None or len(s["x"]) == 0:
        raise RunFileError(f"run file {path} has no flow samples with log q (/logq); refine needs the flow's "
                           "log-density: draw samples with `molsample sample`")
    system = load_system(str(name))
    if s["length_unit"] != system.length_unit and {s["length_unit"], system.length_unit} != {"nm"}:
        raise RunFileError(f"run file {path} stores lengths in {s['length_unit']!r}, system {name} uses "
                           f"{system.length_unit!r}; the file does not belong to this system")
    x, logq = torch.as_tensor(s["x"], dtype=torch.float64), torch.as_tensor(s["logq"], dtype=torch.float64)
    if n is not None:
        if n < 2:
            raise ConfigError(f"--n {n}: refine needs at least 2 samples, e.g. --n 1000")
        x, logq = x[:n], logq[:n]
    if not torch.isfinite(logq).any():
        raise EnergyError(f"run file {path}: no flow sample has a finite log q, so no weight is finite; "
                          "draw new samples with `molsample sample`")
    return system, x, logq


def checkpoint_path(run_file: Path) -> Path:
    """Where the SMC state of ``run_file`` is kept between levels: ``RUN_DIR/checkpoints/refine.pt``
    (``refine-<stem>.pt`` for a run file not named ``samples.h5``)."""
    name = "refine.pt" if run_file.name == "samples.h5" else f"refine-{run_file.stem}.pt"
    return run_file.parent / "checkpoints" / name


def refine_run(run: str | Path, *, steps: int = 5, final_steps: int = 50, kT_start: float | str = "auto",
               groups: int = 10, target_cess: float = 0.95, seed: int = 0, n: int | None = None,
               progress: bool = False, resume: bool = False, kernel: str = "mala", leapfrog_steps: int | None = None,
               world: World | None = None) -> tuple[SMCResult, Path]:
    """Refine the flow samples of ``run`` by SMC and append the set ``refined`` to its run file.

    ``kernel`` is a name in :data:`~molsample.mcmc.kernels.KERNELS`; ``leapfrog_steps`` (``"hmc"`` only,
    default :data:`~molsample.mcmc.hmc.LEAPFROG_STEPS`) its leapfrog steps per move. The state after
    every level is saved in :func:`checkpoint_path`; with ``resume`` a run with the same samples,
    settings and seed continues from it (bit for bit the uninterrupted result), without, an old
    checkpoint is discarded. With a distributed ``world`` every rank returns the result and rank 0
    writes. Returns the :class:`~molsample.flows.smc.SMCResult` and the run file's path. Raises
    :class:`~molsample.errors.MolsampleError` subclasses for bad input, before any write.
    """
    world = world or World()
    options = _kernel_options(kernel, leapfrog_steps)
    path = resolve_run_path(run)
    system, x, logq = _load(path, n)
    energy = system.energy.to(torch.float64)
    if isinstance(kT_start, (int, float)) and kT_start < system.kT:
        raise ConfigError(f"--start-kT {kT_start:g} is below the run's kT {system.kT:g} ({system.energy_unit}); "
                          f"start at kT or hotter, e.g. --start-kT {1.2 * system.kT:.4g}, or use auto")
    if world.world_size > len(x):
        raise ConfigError(f"{world.world_size} processes for {len(x)} samples; use at most --nproc {len(x)}")
    ckpt = checkpoint_path(path)
    if not resume and world.is_main:
        ckpt.unlink(missing_ok=True)
    g = torch.Generator().manual_seed(seed)
    res = smc_refine(x, logq, energy, system.kT, kT_start=kT_start, target_cess=target_cess, mcmc_steps=steps,
                     final_steps=final_steps, groups=groups, kernel=kernel, kernel_options=options, generator=g,
                     remove_com=system.remove_com, progress=progress and world.is_main, world=world,
                     checkpoint=SMCCheckpoint(ckpt) if resume or world.is_main else None)
    if world.is_main:
        _write(path, system, res, {"steps": steps, "final_steps": final_steps, "groups": groups,
                                   "target_cess": target_cess, "seed": seed, "n": len(x), "kernel": kernel, **options})
    return res, path


def _kernel_options(kernel: str, leapfrog_steps: int | None) -> dict[str, int]:
    """The SMC kernel's settings: ``{"leapfrog_steps": L}`` for HMC, none for MALA."""
    if kernel not in KERNELS:
        raise ConfigError(f"unknown MCMC kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if kernel != "hmc":
        if leapfrog_steps is not None:
            raise ConfigError(f"--leapfrog-steps applies to --kernel hmc, not {kernel}; drop it or add --kernel hmc")
        return {}
    return {"leapfrog_steps": LEAPFROG_STEPS if leapfrog_steps is None else leapfrog_steps}


def _write(path: Path, system, res: SMCResult, settings: dict) -> None:
    with RunFile(path, "a") as rf:
        rf.write_samples(res.x.cpu(), logw=res.logw.cpu(), energy=res.energies.double().cpu(),
                         energy_unit=system.energy_unit, length_unit=system.length_unit, topology=system.topology,
                         kT=system.kT, name=REFINED_SET)
        rf.write_history({k: np.asarray(v, dtype=np.float64) for k, v in res.history.items()},
                         group=f"{REFINED_SET}_history")
        rf.write_array(f"{REFINED_SET}_ancestors", res.ancestors.cpu().numpy().astype(np.int64))
        rf.set_attrs(refined_log_z=res.log_z, refined_log_z_se=res.log_z_se, refined_levels=res.n_levels,
                     refined_kT_start=res.kT_start, refined_unique_ancestors=res.unique_ancestors,
                     refined_resamplings=res.n_resamplings, refined_energy_evals=res.n_energy_evals,
                     refined_cpu_s=res.cpu_s, refined_nonfinite=res.n_nonfinite,
                     refined_settings=json.dumps(settings), refined_warnings=json.dumps(res.warnings))


def refine_summary(res: SMCResult, path: Path) -> list[str]:
    """The lines ``molsample refine`` prints (warnings separately, from ``res.warnings``)."""
    se = f"{res.log_z_se:.3g}" if math.isfinite(res.log_z_se) else "n/a"
    return [
        f"refined {len(res.x)} samples in {res.groups} groups: {res.n_levels} levels from kT {res.kT_start:.4g} "
        f"to {res.kT:.4g}, {res.n_resamplings} group resamplings",
        f"unique ancestors {res.unique_ancestors} of {len(res.x)}; log Z {res.log_z:.4f} ± {se} "
        f"(spread of {res.groups} groups)",
        f"energy evaluations {res.n_energy_evals:,}; CPU {res.cpu_s:.1f} s",
        f"appended the set '{REFINED_SET}' to {path}",
        ESS_NOTE,
    ]


def refine_rows(res: SMCResult | None) -> list[tuple[str, str]]:
    """The rows of the refined set in the run summary (``(label, text)``; none without a result)."""
    if res is None:
        return []
    se = f"{res.log_z_se:.4f}" if math.isfinite(res.log_z_se) else "n/a"
    return [("refined log Z", f"{res.log_z:.4f} ± {se} (SMC, spread of {res.groups} groups)"),
            ("refined", f"{len(res.x)} samples, {res.unique_ancestors} unique ancestors, {res.n_levels} levels "
                        f"from kT {res.kT_start:.4g}, {res.n_energy_evals:,} energy evals, CPU {res.cpu_s:.1f} s")]


def refine_stage(ctx: RunContext) -> None:
    """SMC on the final samples of the run (``[refine]``): :func:`refine_run` on ``RUN_DIR/samples.h5``
    with the run's seed; the result is ``ctx.refine`` for the summary."""
    rc = ctx.cfg.refine
    res, path = refine_run(ctx.run_dir / "samples.h5", steps=rc.steps, final_steps=rc.final_steps,
                           kT_start=rc.start_kT, groups=rc.groups, target_cess=rc.target_cess, seed=ctx.cfg.seed,
                           progress=ctx.progress, resume=ctx.resume, kernel=rc.kernel,
                           leapfrog_steps=rc.leapfrog_steps if rc.kernel == "hmc" else None)
    ctx.refine = res
    for line in refine_summary(res, path)[:-1]:
        ctx.echo(f"refine: {line}")
    for line in res.warnings:
        ctx.echo(f"warning: {line}")
