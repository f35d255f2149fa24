"""``molsample systems`` and ``molsample energy``."""

from __future__ import annotations

import click
import numpy as np
import torch

from molsample.errors import ConfigError, MolsampleError
from molsample.systems.cards import available_systems, load_system


@click.command()
def systems() -> None:
    """List the known systems: name, particles, dim, temperature, energy convention."""
    rows = []
    for name, path in available_systems().items():
        try:
            s = load_system(path)
            temp = f"{s.temperature_K:g} K" if s.temperature_K else "-"
            rows.append((name, str(s.n_particles), str(s.dim), f"{s.kT:.4g} {s.energy_unit}", temp, s.description))
        except MolsampleError as exc:  # a broken user card must not hide the others
            rows.append((name, "?", "?", "?", "?", f"(cannot load: {exc})"))
    header = ("name", "particles", "dim", "kT", "temperature", "description")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    click.echo(fmt.format(*header))
    for r in rows:
        click.echo(fmt.format(*r))


@click.command()
@click.option("--system", "system_name", required=True, help="System name or card path.")
@click.option("--positions", type=click.Path(dir_okay=False), default=None,
              help="A .npy file of positions (n_particles, dim) or (batch, n_particles, dim); "
                   "for systems with a structure, the structure's positions are used by default.")
@click.option("--random", "n_random", type=int, default=None,
              help="Evaluate this many random configurations (N >= 1) instead.")
@click.option("--seed", type=int, default=0, show_default=True)
def energy(system_name: str, positions: str | None, n_random: int | None, seed: int) -> None:
    """Evaluate the energy of configurations of a system and print it with its unit."""
    if n_random is not None and n_random < 1:
        raise ConfigError(f"--random {n_random}: the number of random configurations must be >= 1")
    if n_random is not None and positions is not None:
        raise ConfigError("pass either --positions FILE.npy or --random N, not both")
    s = load_system(system_name)
    if positions is not None:
        try:
            x = torch.as_tensor(np.load(positions), dtype=torch.float64)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read positions from {positions}: {exc}; pass a .npy array") from exc
    elif n_random is not None:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n_random, s.n_particles, s.dim, generator=g, dtype=torch.float64)
        x = x * (s.n_particles ** (1.0 / max(s.dim, 1)))
    elif getattr(s.energy, "positions", None) is not None:
        x = torch.as_tensor(s.energy.positions, dtype=torch.float64)[None]
    else:
        raise ConfigError(f"system {s.name} has no structure; pass --positions FILE.npy or --random N")
    s.energy.double()
    e = s.energy.energy(x.to(torch.float64))
    for k, v in enumerate(e.tolist()):
        click.echo(f"{k}\t{v:.6f} {s.energy_unit}\t{v / s.kT:.6f} kT")
