"""``molsample refine``: annealed SMC from a run's flow samples to its target (the set ``refined``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from molsample.commands.launch import launch_if_asked, nproc_option
from molsample.commands.options import progress_option, show_progress_flag
from molsample.mcmc.hmc import LEAPFROG_STEPS
from molsample.mcmc.kernels import KERNELS


def _at_least(minimum: int):
    def check(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None and value < minimum:
            from molsample.errors import ConfigError

            flag = "--" + param.name.replace("_", "-")
            raise ConfigError(f"{flag} {value}: must be >= {minimum}, e.g. {flag} {max(minimum, 10)}")
        return value

    return check


def _start_kT(ctx: click.Context, param: click.Parameter, value: str) -> float | str:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        kT = float(value)
    except ValueError:
        from molsample.errors import ConfigError

        raise ConfigError(f"--start-kT {value!r} is neither 'auto' nor a number; e.g. --start-kT 1.2") from None
    return kT


def _fraction(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 < value < 1.0:
        from molsample.errors import ConfigError

        raise ConfigError(f"--target-cess {value}: must be in (0, 1), e.g. --target-cess 0.95")
    return value


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--steps", type=int, default=5, show_default=True, callback=_at_least(0),
              help="MCMC steps per annealing level.")
@click.option("--final-steps", type=int, default=50, show_default=True, callback=_at_least(0),
              help="MCMC steps at the run's kT at the end.")
@click.option("--kernel", type=click.Choice(list(KERNELS)), default="mala", show_default=True,
              help="MCMC kernel: mala (one energy evaluation per step) or hmc (--leapfrog-steps per step).")
@click.option("--leapfrog-steps", type=int, default=None, callback=_at_least(1),
              help=f"Leapfrog steps of each HMC move (--kernel hmc; default {LEAPFROG_STEPS}).")
@click.option("--start-kT", "start_kT", default="auto", show_default=True, callback=_start_kT,
              help="Start temperature (energy unit, >= the run's kT), or auto: where the flow's ESS is highest.")
@click.option("--groups", type=int, default=10, show_default=True, callback=_at_least(1),
              help="Independent groups; the spread of their log Z estimates is the error bar.")
@click.option("--target-cess", type=float, default=0.95, show_default=True, callback=_fraction,
              help="Conditional ESS of each annealing step.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the moves and resampling.")
@click.option("--n", "n", type=int, default=None, callback=_at_least(2),
              help="Refine the first N flow samples (default: all).")
@click.option("--resume/--no-resume", default=False, show_default=True,
              help="Continue an interrupted refine of RUN (same samples, settings and seed) from its last level "
                   "(RUN_DIR/checkpoints/refine.pt).")
@nproc_option
@progress_option
def refine(run: Path, steps: int, final_steps: int, kernel: str, leapfrog_steps: int | None, start_kT: float | str,
           groups: int, target_cess: float, seed: int, n: int | None, resume: bool, nproc: int | None, progress: bool,
           quiet: bool) -> None:
    """Refine the flow samples of RUN by annealed SMC (MALA or HMC moves) and append the set 'refined' to its
    run file.

    Ctrl-C (or SIGTERM) stops it after saving the last finished level; the same command with --resume
    continues from there. With --nproc K the processes share the energy evaluations and give the result
    of one process (docs/smc.md).
    """
    import torch

    from molsample.runtime.distributed import init_world
    from molsample.stages.refine import refine_run, refine_summary

    launch_if_asked(nproc)
    world, _ = init_world(torch.device("cpu"))
    try:
        res, path = refine_run(run, steps=steps, final_steps=final_steps, kT_start=start_kT, groups=groups,
                               target_cess=target_cess, seed=seed, n=n, progress=show_progress_flag(progress, quiet),
                               resume=resume, kernel=kernel, leapfrog_steps=leapfrog_steps, world=world)
    except KeyboardInterrupt:
        if world.is_main:
            command = "molsample " + shlex.join(sys.argv[1:]) if sys.argv[1:] else f"molsample refine {run}"
            again = command if "--resume" in command else f"{command} --resume"
            click.echo(f"\ninterrupted; continue from the last finished level with: {again}", err=True)
        raise SystemExit(130) from None
    if not world.is_main:  # rank 0 writes and prints
        return
    for line in refine_summary(res, path):
        click.echo(line)
    for line in res.warnings:
        click.echo(f"WARNING: {line}", err=True)
