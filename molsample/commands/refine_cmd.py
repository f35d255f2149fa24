"""``molsample refine``: annealed SMC from a run's flow samples to its target (the set ``refined``)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from molsample.commands.options import progress_option, show_progress_flag


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


#: Why ``refine`` runs in one process (docs/smc.md#one-process).
ONE_PROCESS = ("refine runs in one process: its MALA moves are batched tensor operations (LJ-13: 2,000 particles "
               "x 660 steps in about 12 CPU-s, a tenth of drawing the flow samples), and sharding them over ranks "
               "would need every rank to draw the whole population's random numbers plus a collective per level "
               "to match one process; drop --nproc (tilt --nproc K runs its [refine] stage on rank 0)")


def _one_process(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    from molsample.runtime.distributed import launched_by_torchrun

    size = int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1
    if (value or 1) > 1 or size > 1:
        from molsample.errors import ConfigError

        raise ConfigError(f"--nproc {value or size}: {ONE_PROCESS}")


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--steps", type=int, default=5, show_default=True, callback=_at_least(0),
              help="MALA steps per annealing level.")
@click.option("--final-steps", type=int, default=50, show_default=True, callback=_at_least(0),
              help="MALA steps at the run's kT at the end.")
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
@click.option("--nproc", type=int, default=None, hidden=True, callback=_one_process, expose_value=False)
@progress_option
def refine(run: Path, steps: int, final_steps: int, start_kT: float | str, groups: int, target_cess: float,
           seed: int, n: int | None, resume: bool, progress: bool, quiet: bool) -> None:
    """Refine the flow samples of RUN by annealed SMC (MALA moves) and append the set 'refined' to its run file.

    Ctrl-C (or SIGTERM) stops it after saving the last finished level; the same command with --resume
    continues from there. One process only (no --nproc).
    """
    from molsample.stages.refine import refine_run, refine_summary

    try:
        res, path = refine_run(run, steps=steps, final_steps=final_steps, kT_start=start_kT, groups=groups,
                               target_cess=target_cess, seed=seed, n=n, progress=show_progress_flag(progress, quiet),
                               resume=resume)
    except KeyboardInterrupt:
        command = "molsample " + shlex.join(sys.argv[1:]) if sys.argv[1:] else f"molsample refine {run}"
        again = command if "--resume" in command else f"{command} --resume"
        click.echo(f"\ninterrupted; continue from the last finished level with: {again}", err=True)
        raise SystemExit(130) from None
    for line in refine_summary(res, path):
        click.echo(line)
    for line in res.warnings:
        click.echo(f"WARNING: {line}", err=True)
