"""``molsample refine``: annealed SMC from a run's flow samples to its target (the set ``refined``)."""

from __future__ import annotations

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
@progress_option
def refine(run: Path, steps: int, final_steps: int, start_kT: float | str, groups: int, target_cess: float,
           seed: int, n: int | None, progress: bool, quiet: bool) -> None:
    """Refine the flow samples of RUN by annealed SMC (MALA moves) and append the set 'refined' to its run file."""
    from molsample.stages.refine import refine_run, refine_summary

    res, path = refine_run(run, steps=steps, final_steps=final_steps, kT_start=start_kT, groups=groups,
                           target_cess=target_cess, seed=seed, n=n, progress=show_progress_flag(progress, quiet))
    for line in refine_summary(res, path):
        click.echo(line)
    for line in res.warnings:
        click.echo(f"WARNING: {line}", err=True)
