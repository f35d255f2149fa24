"""``molsample sample``: more samples with log-weights from a finished run."""

from __future__ import annotations

from pathlib import Path

import click

from molsample.commands.launch import launch_if_asked, nproc_option
from molsample.commands.options import device_option, progress_option, show_progress_flag


def _positive(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 1:
        from molsample.errors import ConfigError

        raise ConfigError(f"--{param.name.replace('_', '-')} {value}: must be >= 1, e.g. --{param.name} 1000")
    return value


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "--n-samples", "n", type=int, required=True, callback=_positive,
              help="Number of new samples (>= 1); spell it --n-samples under torchrun, whose options --n is short for.")
@click.option("--seed", type=int, default=None, help="Seed (default: a fresh one derived from the run's size).")
@click.option("--batch-size", type=int, default=None, callback=_positive, help="Samples per ODE batch.")
@click.option("--ode-method", type=click.Choice(["euler", "midpoint", "rk4"]), default=None,
              help="Fixed-step ODE solver of the new samples (default: the run's [final] ode_method).")
@click.option("--ode-steps", type=int, default=None, callback=_positive,
              help="Its steps (default: the run's [final] ode_steps); more steps shrink the solver gap of log q "
                   "(`molsample check`).")
@device_option(default="cpu")
@nproc_option
@progress_option
def sample(run: Path, n: int, seed: int | None, batch_size: int | None, ode_method: str | None, ode_steps: int | None,
           device: str, nproc: int | None, progress: bool, quiet: bool) -> None:
    """Draw N more samples from the tilted model of RUN and append them (with log-weights) to its run file."""
    from molsample.stages.run import sample_more

    launch_if_asked(nproc)
    summary = sample_more(run, n, seed=seed, batch_size=batch_size, device=device, ode_method=ode_method,
                          ode_steps=ode_steps, progress=show_progress_flag(progress, quiet))
    for line in summary:
        click.echo(line)
