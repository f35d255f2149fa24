"""``molsample tilt``: the whole Boltzmann-generator job with Tilt Matching."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from molsample.commands.launch import launch_if_asked, nproc_option
from molsample.commands.options import device_option, progress_option, show_progress_flag
from molsample.nets import NETS
from molsample.stages.config import COORDINATES, PRESETS, resolve_config
from molsample.systems.cards import load_system
from molsample.training.coupling import COUPLINGS
from molsample.training.losses import LOSSES
from molsample.training.rewards import MODES

_METHOD_HELP = "; ".join(f"{k}: {v.summary}" for k, v in LOSSES.items())


def _retired_mcmc_steps(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        from molsample.errors import ConfigError
        from molsample.stages.config import RETIRED_KEYS

        raise ConfigError(f"--mcmc-steps no longer exists: {RETIRED_KEYS['final.mcmc_steps']}")


def _refine_table(steps: int | None) -> dict:
    """``[refine]`` overrides of ``--refine-steps K`` (0: off; none given: the config's)."""
    if steps is None:
        return {}
    if steps < 0:
        from molsample.errors import ConfigError

        raise ConfigError(f"--refine-steps {steps}: must be >= 0 (0: no SMC refinement), e.g. --refine-steps 10")
    return {"enabled": steps > 0, "steps": steps if steps > 0 else None}


@click.command()
@click.option("--system", "system_name", required=True, help="System name (see `molsample systems`) or card path.")
@click.option("--method", type=click.Choice(list(LOSSES)), default=None, help=f"Tilt loss ({_METHOD_HELP}).")
@click.option("--mode", type=click.Choice(list(MODES)), default=None,
              help="Reward mode (default: reward for cards with [reward], else temperature).")
@click.option("--net", "net", type=click.Choice(list(NETS)), default=None,
              help="Velocity network (default: egnn for particles, mlp for 2-D toys; e3nn tells enantiomers apart).")
@click.option("--coordinates", type=click.Choice(list(COORDINATES)), default=None,
              help="The flow's coordinates: cartesian (default) or internal (bonds, angles, torsions; molecules only).")
@click.option("--preset", type=click.Choice(PRESETS), default="default", show_default=True, help="Budget preset.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A TOML run config (overrides the preset).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder [default: runs/<system>-<method>-<preset>].")
@click.option("--model", "model", type=str, default=None,
              help="Start from this tilted model (a model.pt, or package:NAME for a shipped one): "
                   "skips base data, pretraining and tilt.")
@click.option("--coupling", type=click.Choice(list(COUPLINGS)), default=None,
              help="Pairing of base and data samples in pretraining (default: the preset's; "
                   "equivariant-ot aligns each pair by rotation and permutation first; molecules: rotation only).")
@click.option("--h", "h", type=float, default=None,
              help="Fixed annealing step (default: the preset's value; adaptive from --target-ess when unset).")
@click.option("--target-ess", type=float, default=None, help="Incremental-weight ESS of the adaptive step.")
@click.option("--n-samples", type=int, default=None, help="Final samples with exact log-weights.")
@click.option("--temperature-factor", type=float, default=None, help="kT0 = factor·kT (temperature mode).")
@click.option("--beta", type=float, default=None, help="Reward scale (reward mode).")
@click.option("--refine-steps", type=int, default=None,
              help="Refine the final samples by annealed SMC with K MCMC steps per level ([refine], "
                   "docs/smc.md); 0: off.")
@click.option("--mcmc-steps", type=int, default=None, hidden=True, callback=_retired_mcmc_steps)
@click.option("--seed", type=int, default=None, help="Random seed.")
@device_option(default=None)
@click.option("--resume/--no-resume", default=False, show_default=True,
              help="Continue an interrupted run in --out from its last checkpoint.")
@nproc_option
@progress_option
def tilt(system_name, method, mode, net, coordinates, preset, config_file, out, model, coupling, h, target_ess, n_samples,
         temperature_factor, beta, refine_steps, mcmc_steps, seed, device, resume, nproc, progress, quiet) -> None:
    """Pretrain a flow on the a = 0 distribution and tilt it to the target with Tilt Matching.

    Writes runs/<run>/samples.h5 (samples, log-weights, energies, history, config) and prints
    ESS, log Z ± se, mean energy, wall time and energy evaluations. Ctrl-C (or SIGTERM) stops
    the job; run the same command with --resume to continue it. With --nproc K (or under
    torchrun) K processes share the work.
    """
    from molsample.io.atomic import check_writable
    from molsample.runtime.distributed import secondary_rank
    from molsample.stages.run import run_tilt

    launch_if_asked(nproc)
    system = load_system(system_name)
    overrides = {
        "mode": mode, "net": {"name": net}, "temperature_factor": temperature_factor, "beta": beta, "seed": seed,
        "device": device, "tilt": {"method": method, "h": h, "target_ess": target_ess},
        "final": {"n_samples": n_samples}, "refine": _refine_table(refine_steps), "start": {"model": model},
        "pretrain": {"coupling": coupling}, "flow": {"coordinates": coordinates},
    }
    cfg = resolve_config(system_name, preset=preset, config_file=config_file, card=system.card, overrides=overrides)
    run_dir = out if out is not None else Path("runs") / f"{system.name}-{cfg.tilt.method}-{preset}"
    check_writable(run_dir)  # before any work: a read-only --out fails now, not after pretraining
    if not resume and (run_dir / "samples.h5").exists() and not secondary_rank():
        click.echo(f"note: {run_dir}/samples.h5 exists and will be replaced when this run finishes "
                   "(cached data and pretraining are reused when their settings match)", err=True)
    command = "molsample " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "molsample tilt"
    try:
        summary = run_tilt(cfg, run_dir, resume=resume, progress=show_progress_flag(progress, quiet),
                           echo=click.echo, command=command)
    except KeyboardInterrupt:
        if secondary_rank():
            raise SystemExit(130) from None
        again = command if "--resume" in command else f"{command} --resume"
        if "--out" not in again:
            again += f" --out {shlex.quote(str(run_dir))}"
        click.echo(f"\ninterrupted; the run in {run_dir} can be continued with: {again}", err=True)
        raise SystemExit(130) from None
    if summary is None:  # a rank > 0 of a distributed run: rank 0 prints
        return
    click.echo("")
    for line in summary.lines():
        click.echo(line)
    if preset == "smoke":
        click.echo("note: the smoke preset only checks that every stage runs; its numbers say nothing about quality")
