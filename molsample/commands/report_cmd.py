"""``molsample report``: figures and a one-page summary of a run."""

from __future__ import annotations

import click

from molsample.commands.options import progress_option


@click.command()
@click.argument("run")
@click.option("--reference", type=click.Path(dir_okay=True), default=None,
              help="Reference samples: a run folder / samples.h5 (e.g. from `molsample reference`) or a .npy "
                   "of positions (n, n_particles, dim). Default: the run's own 'reference' set, if any.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: RUN/report for a run folder or its samples.h5; "
                   "<folder>/<stem>-report for another run file].")
@click.option("--max-frames", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Frames used for distance and Ramachandran histograms (seeded random subset).")
@progress_option
def report(run: str, reference: str | None, out_dir: str | None, max_frames: int, progress: bool,
           quiet: bool) -> None:
    """Write PNG figures, report.html, report.md and summary.json for RUN (a run folder or a run file)."""
    from molsample.reporting.headline import fmt
    from molsample.reporting.report import make_report

    rep = make_report(run, reference=reference, out=out_dir, max_frames=max_frames)
    for w in rep.warnings:
        click.echo(f"WARNING: {w}", err=True)
    width = max(len(k) for k in rep.headline)
    for key, value in rep.headline.items():
        click.echo(f"{key:<{width}}  {fmt(value)}")
    for note in rep.notes:
        click.echo(f"note: {note}")
    if rep.timing:
        click.echo("where the time goes:")
        for stage, cpu, wall, share in [("stage", "CPU [s]", "wall [s]", "share"), *rep.timing]:
            click.echo(f"  {stage:<16} {cpu:>10} {wall:>10} {share:>6}")
    click.echo(f"figures: {', '.join(p.name for p in rep.figures.values()) or '(none)'}")
    click.echo(f"report: {rep.html}")
