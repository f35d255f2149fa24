"""``molsample sample``: more samples with log-weights from a finished run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, required=True, help="Number of new samples.")
@click.option("--seed", type=int, default=None, help="Seed (default: a fresh one derived from the run's size).")
@click.option("--batch-size", type=int, default=None, help="Samples per ODE batch.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--quiet", is_flag=True)
def sample(run: Path, n: int, seed: int | None, batch_size: int | None, device: str, quiet: bool) -> None:
    """Draw N more samples from the tilted model of RUN and append them (with log-weights) to its run file."""
    from molsample.pipeline import sample_more

    summary = sample_more(run, n, seed=seed, batch_size=batch_size, device=device, progress=not quiet)
    for line in summary:
        click.echo(line)
