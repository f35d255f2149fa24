"""``molsample reference``: classical reference samples (exact, MALA, parallel tempering, MD)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from molsample.commands.launch import launch_if_asked, nproc_option
from molsample.commands.options import progress_option, show_progress_flag
from molsample.errors import ConfigError
from molsample.mcmc.reference_methods import METHODS, get_method, resolve_method
from molsample.mcmc.reference_settings import ReferenceMethod


def _parse_value(text: str) -> Any:
    """A --set value: JSON/TOML-like scalars (int, float, true/false, null), else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _format(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_format(e) for e in v) + "]"
    return str(v)


@click.command()
@click.option("--system", "system_name", required=True, help="System name (e.g. lj13) or card path.")
@click.option("--n", "--n-samples", "n", type=int, required=True, help="Number of reference samples.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output run file (.h5).")
@click.option("--method", type=click.Choice(list(METHODS)), default="auto", show_default=True,
              help="auto: the exact sampler when the system has one, MD for OpenMM systems, parallel tempering for the "
                   "double well, else MALA (Lennard-Jones included); remd: replica-exchange MD (OpenMM systems: "
                   "every basin, e.g. alanine dipeptide's C7ax/αL).")
@click.option("--temperature", "temperature", type=float, default=None,
              help="Temperature in kelvin (systems with kJ/mol energies).")
@click.option("--kT", "kT", type=float, default=None, help="kT in the system's energy unit (default: the card's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--chains", type=int, default=None, help="MCMC chains (per temperature for PT).")
@click.option("--burn-in", "burn_in", type=int, default=None,
              help="MCMC burn-in steps (step size adapted during them) / MD equilibration steps.")
@click.option("--thin", "--steps", "thin", type=int, default=None,
              help="Steps between kept samples: MCMC steps per chain / MD steps per frame / REMD exchanges "
                   "per frame.")
@click.option("--set", "extra", multiple=True, metavar="KEY=VALUE",
              help="Any other sampler setting, e.g. --set n_temps=12 --set kT_max_factor=4 (repeatable).")
@nproc_option
@progress_option
def reference(system_name: str, n: int, out: str, method: str, temperature: float | None, kT: float | None,
              seed: int, chains: int | None, burn_in: int | None, thin: int | None, extra: tuple[str, ...],
              nproc: int | None, progress: bool, quiet: bool) -> None:
    """Draw reference samples with a classical sampler and write them as a run file.

    The file is in the molsample run-file format (mdtraj.load reads its coordinates); the
    diagnostics (acceptance, swap rates, energy autocorrelation time, effective samples,
    energy evaluations, wall time) are printed and stored in it. With --nproc K the processes
    share the energy evaluations of the MCMC chains (mala, pt).
    """
    import torch

    from molsample.mcmc.reference import generate_reference, write_reference
    from molsample.runtime.distributed import init_world
    from molsample.systems.cards import load_system

    launch_if_asked(nproc)
    progress = show_progress_flag(progress, quiet)
    world, _ = init_world(torch.device("cpu"))
    system = load_system(system_name)
    kT = _kT_of_options(system, temperature, kT)
    if n < 1:
        raise ConfigError(f"--n must be a positive number of samples, got {n}")
    resolved = resolve_method(system, method, kT)
    settings = _settings_of_options(get_method(resolved), {"chains": chains, "burn_in": burn_in, "thin": thin}, extra)
    result = generate_reference(system, n, method=resolved, kT=kT, seed=seed, progress=progress and world.is_main,
                                world=world, **settings)
    if not world.is_main:  # rank 0 writes and prints
        return
    path = write_reference(result, Path(out), system)
    click.echo(f"wrote {result.n} reference samples of {system.name} to {path}")
    _echo_diagnostics(result, system.energy_unit)


def _kT_of_options(system: Any, temperature: float | None, kT: float | None) -> float | None:
    """kT in the system's energy unit from ``--temperature`` (kelvin) or ``--kT`` (None: the card's)."""
    from molsample.systems import units

    if temperature is not None and kT is not None:
        raise ConfigError(f"give --temperature ({temperature} K) or --kT ({kT}), not both")
    if temperature is None:
        return kT
    if system.energy_unit != "kJ/mol":
        raise ConfigError(
            f"--temperature (kelvin) needs a system in kJ/mol; {system.name} is in {system.energy_unit} units, "
            f"pass --kT instead (its card uses kT = {system.kT:g})"
        )
    return units.kT(temperature)


def _settings_of_options(method: ReferenceMethod, options: dict[str, int | None], extra: tuple[str, ...]
                         ) -> dict[str, Any]:
    """The sampler settings of ``--chains/--burn-in/--thin`` (in ``method``'s own keys) and ``--set KEY=VALUE``."""
    given = {key: value for key, value in options.items() if value is not None}
    method.check_options(given)
    settings: dict[str, Any] = {method.setting_key(key): value for key, value in given.items()}
    for item in extra:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}; e.g. --set n_temps=12")
        key, value = item.split("=", 1)
        settings[key.strip().replace("-", "_")] = _parse_value(value)
    return settings


def _echo_diagnostics(result: Any, unit: str) -> None:
    """The diagnostics of a reference run, one per line, and its settings."""
    d = result.diagnostics
    rows = [
        ("method", result.method),
        ("kT", f"{result.kT:.6g} {unit}"),
        ("energy mean ± std", f"{_format(d.get('energy_mean'))} ± {_format(d.get('energy_std'))} {unit}"),
        ("acceptance", d.get("acceptance")),
        ("swap rates", d.get("swap_rates")),
        ("tau_int (energy, samples)", d.get("tau_int") if d.get("tau_int") is not None
         else "n/a (fewer than 8 samples per chain)"),
        ("effective samples", d.get("n_effective") if d.get("n_effective") is not None else "n/a"),
        ("energy evaluations", d.get("n_energy_evals")),
        ("effective / 1000 evals", d.get("effective_per_1000_evals")),
        ("wall time", f"{d['wall_time_s']:.1f} s"),
    ]
    for name, v in rows:
        if v is not None:
            click.echo(f"  {name:<28} {_format(v)}")
    settings_text = ", ".join(f"{k}={_format(v)}" for k, v in d.get("settings", {}).items())
    if settings_text:
        click.echo(f"  {'settings':<28} {settings_text}")
