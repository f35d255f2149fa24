"""``molsample check``: how far a run's log q is from the density of its samples (the solver gap)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, default=200, show_default=True,
              help="Samples whose log q is recomputed with the finer solver (the first N with a finite log q).")
@click.option("--discrete", type=int, default=8, show_default=True,
              help="Fresh base samples for the exact log-det of the discrete solver map (0: skip; flows of "
                   "at most 100 coordinates).")
@click.option("--fine-method", type=click.Choice(["euler", "midpoint", "rk4", "dopri5"]), default="rk4",
              show_default=True, help="The finer solver.")
@click.option("--fine-steps", type=int, default=None, help="Its steps (default: twice the run's, at least 20).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fresh base samples.")
def check(run: Path, n: int, discrete: int, fine_method: str, fine_steps: int | None, seed: int) -> None:
    """Measure the solver gap of RUN's log q and store it as the run file's attributes check_*."""
    from molsample.stages.check import check_run, check_summary

    res, path = check_run(run, n=n, discrete=discrete, fine_method=fine_method, fine_steps=fine_steps, seed=seed)
    for line in check_summary(res, path):
        click.echo(line)
