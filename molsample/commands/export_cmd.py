"""``molsample export``: run samples as a trajectory file (via mdtraj) or a .npy array."""

from __future__ import annotations

import click

from molsample.commands.options import progress_option
from molsample.flows.diagnostics import MIN_EFFECTIVE_SAMPLES
from molsample.reporting.export import FORMATS, MAX_RESAMPLE


@click.command()
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS), case_sensitive=False),
              default=None, help="Output format [default: from the extension of --out; the two must agree].")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True,
              help="Output file; its folder must exist.")
@click.option("--resample", type=click.IntRange(min=1, max=MAX_RESAMPLE), default=None,
              help="Draw N frames by importance weight (systematic resampling) instead of all raw samples; "
                   "warns when N is far above the effective sample size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the resampling.")
@click.option("--name", "--set", "name", default="samples", show_default=True,
              help="Sample set to export (samples, reference, mcmc_corrected, refined, ...).")
@progress_option
def export(run: str, fmt: str | None, out: str, resample: int | None, seed: int, name: str, progress: bool,
           quiet: bool) -> None:
    """Export the samples of RUN (a run folder or its samples.h5) to pdb, dcd, xtc, h5 or npy.

    Trajectory formats need 3-D positions; 2-D systems export with --format npy.
    """
    from molsample.reporting.export import export_run

    res = export_run(run, out, fmt, resample=resample, seed=seed, name=name)
    how = f"resampled by weight (seed {seed}) from {res.n_source}" if res.resampled else "raw"
    ess = f", ESS {res.ess:.3g} of the source weights" if res.ess is not None else ""
    unit = " (reduced lengths stored as nm)" if res.length_unit == "reduced" and res.format != "npy" else ""
    click.echo(f"wrote {res.n_frames} frames ({how}{ess}) to {res.path} [{res.format}]{unit}")
    if res.n_unique is not None:
        click.echo(f"{res.n_unique} unique structures among the {res.n_frames} resampled frames")
        if res.n_unique < min(res.n_frames, MIN_EFFECTIVE_SAMPLES):
            click.echo(f"WARNING: the {res.n_frames} frames repeat only {res.n_unique} distinct samples: the "
                       "weights are degenerate, so the frames do not represent the target; run "
                       "`molsample report` for the weight diagnostics", err=True)
