"""``molsample pretrain``: train a velocity net by flow matching on samples of a system."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import click
import numpy as np
import torch

from molsample.commands.launch import launch_if_asked, nproc_option
from molsample.commands.options import device_option, progress_option, show_progress_flag
from molsample.errors import ConfigError, MissingFileError, RunFileError, ShapeError
from molsample.flows.paths import PATHS
from molsample.nets import NETS
from molsample.nets.endpoint import PARAMETRISATIONS
from molsample.runtime.devices import resolve_device
from molsample.training.coupling import COUPLINGS
from molsample.training.flow_matching import LR_SCHEDULES, TIME_WEIGHTINGS


def load_coordinates(path: str | Path, event_shape: tuple[int, int]) -> torch.Tensor:
    """Samples ``(N, n, d)`` from a ``.npy`` array or the ``/coordinates`` dataset of an ``.h5`` run file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"data file {path} not found; pass an existing .npy or .h5 file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path} as a .npy array: {exc}") from exc
    elif suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if "coordinates" not in f:
                    raise RunFileError(f"{path} has no /coordinates dataset; pass a molsample run file or a .npy array")
                arr = np.asarray(f["coordinates"][...])
        except OSError as exc:
            raise RunFileError(f"cannot open {path} as HDF5: {exc}") from exc
    else:
        raise ConfigError(f"data file {path} must end in .npy, .h5 or .hdf5")
    n, d = event_shape
    if arr.ndim == 2 and arr.shape == (n, d):
        arr = arr[None]
    if arr.ndim != 3 or tuple(arr.shape[1:]) != (n, d) or arr.shape[0] == 0:
        raise ShapeError(f"{path} holds an array of shape {arr.shape}; this system needs (N, {n}, {d}) samples")
    if not np.isfinite(arr).all():
        raise ShapeError(f"{path} contains non-finite coordinates; remove those samples")
    return torch.as_tensor(arr, dtype=torch.float32)


@click.command()
@click.option("--system", "system_name", required=True, help="System name or card path.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="Target samples: .npy (N, n, dim) or an .h5 run file (/coordinates). "
                   "Default: exact samples for systems that have a sampler (ring2d, gauss2d).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--steps", type=int, default=5000, show_default=True, help="Gradient steps.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--lr-schedule", type=click.Choice(list(LR_SCHEDULES)), default="constant", show_default=True,
              help="cosine: the learning rate falls to 0 at the last step.")
@click.option("--coupling", type=click.Choice(list(COUPLINGS)), default="independent", show_default=True,
              help="Pairing of base and data samples in each batch (equivariant-ot: rotation and permutation "
                   "alignment, then batch optimal transport; molecules: rotations only).")
@click.option("--net", "net_name", type=click.Choice(list(NETS)), default=None,
              help="Velocity net (default: egnn for particle systems, mlp for 2-D toys).")
@click.option("--hidden", type=int, default=None, help="Hidden width (default: 64 egnn, 128 mlp).")
@click.option("--layers", type=int, default=None, help="Number of layers (default: 4 egnn, 3 mlp).")
@click.option("--path", "path_name", type=click.Choice(list(PATHS)), default="linear", show_default=True,
              help="Interpolant between base (t=0) and data (t=1).")
@click.option("--parametrisation", type=click.Choice(list(PARAMETRISATIONS)), default="velocity",
              show_default=True, help="The net predicts the velocity, or the displacement to the endpoint x1 "
                                      "(linear path only).")
@click.option("--time-weighting", type=click.Choice(list(TIME_WEIGHTINGS)), default="uniform", show_default=True,
              help="Weight of each time t in the loss: uniform, or endpoint ((1 - t)^2, the error of the "
                   "predicted x1).")
@click.option("--base", "base_kind", type=click.Choice(["gaussian", "harmonic"]), default=None,
              help="Base distribution (default: the system card's [base], else the CoM-free Gaussian); "
                   "harmonic: the bond-graph prior of a molecule.")
@click.option("--bond-std", type=float, default=None, help="Harmonic base: bond std in the system's length unit "
                                                            "(default: the card's, else 0.15).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial weights and the training draws.")
@device_option(default="cpu")
@click.option("--ema", type=float, default=None, is_flag=False, flag_value=0.999,
              help="Keep an exponential moving average of the weights (decay, 0.999 when given without a value).")
@click.option("--checkpoint-every", type=int, default=1000, show_default=True)
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT/checkpoint.pt when it exists.")
@nproc_option
@progress_option
def pretrain(system_name: str, data_path: str | None, out_dir: str, steps: int, batch_size: int, lr: float,
             lr_schedule: str, coupling: str, net_name: str | None, hidden: int | None, layers: int | None,
             path_name: str, parametrisation: str, time_weighting: str, base_kind: str | None,
             bond_std: float | None,
             seed: int, device: str, ema: float | None, checkpoint_every: int, resume: bool, nproc: int | None,
             progress: bool, quiet: bool) -> None:
    """Train a velocity net by flow matching and write OUT/model.pt (the same pretraining stage as `tilt`)."""
    from molsample.flows.distributions import base_distribution
    from molsample.nets import default_net_spec
    from molsample.runtime.distributed import init_world
    from molsample.runtime.progress import show_progress
    from molsample.stages.config import BaseConfig
    from molsample.stages.guards import check_centre_of_mass
    from molsample.stages.pretrain import pretrain_field
    from molsample.systems.cards import load_system
    from molsample.training.flow_matching import FlowMatchingConfig

    launch_if_asked(nproc)
    world, dev = init_world(resolve_device(device))
    echo = click.echo if world.is_main else (lambda *a, **k: None)  # rank 0 prints
    system = load_system(system_name)
    check_centre_of_mass(net_name, system)
    if bond_std is not None and not bond_std > 0:
        raise ConfigError(f"--bond-std must be > 0, got {bond_std}")
    base = base_distribution(system, BaseConfig(kind=base_kind, bond_std=bond_std).table())

    data: torch.Tensor | Callable[[int, torch.Generator], torch.Tensor]
    if data_path is not None:
        data = load_coordinates(data_path, system.event_shape)
        source = f"{data_path} ({data.shape[0]} samples)"
    else:
        sampler = system.exact_sampler()
        if sampler is None:
            raise ConfigError(
                f"system {system.name} has no exact sampler; pass --data FILE (.npy or .h5 samples, "
                f"e.g. from `molsample reference --system {system.name}`)"
            )
        data = lambda n, g: sampler(n, g).to(torch.float32)  # noqa: E731
        source = "exact sampler"

    if parametrisation == "endpoint" and path_name != "linear":
        raise ConfigError(f"--parametrisation endpoint needs --path linear, got --path {path_name}")
    spec = default_net_spec(system, net_name, hidden=hidden, n_layers=layers, parametrisation=parametrisation)
    config = FlowMatchingConfig(steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, ema_decay=ema,
                                coupling=coupling, time_weighting=time_weighting,
                                path=path_name, checkpoint_every=checkpoint_every, seed=seed)
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    echo(f"pretrain {system.name}: {spec['name']} net, data: {source}, "
         f"{steps} steps x {batch_size}, lr {lr:g}, path {path_name}, {coupling} coupling, device {dev}")
    start = time.perf_counter()
    model_path = out / "model.pt"
    if not resume and world.is_main:
        model_path.unlink(missing_ok=True)
    world.barrier("waiting for rank 0 to clear the old model")
    bars = show_progress(show_progress_flag(progress, quiet)) and world.is_main
    field, history, _ = pretrain_field(spec, data, base, config, model_path, device=dev, dtype=torch.float32,
                                    checkpoint=out / "checkpoint.pt", progress=bars, echo=echo, resume=resume,
                                    meta={"system": system.name, "path": path_name, "data": source}, world=world)
    if not history:  # reused: the stored model carries its history
        from molsample.nets import load_model

        history = load_model(model_path)[1].get("history", {"loss": []})
    elapsed = time.perf_counter() - start
    tail = history["loss"][-100:]
    final = sum(tail) / len(tail) if tail else math.nan
    echo(f"final loss (mean of last {len(tail)} steps): {final:.5f}; {elapsed:.1f} s")
    echo(f"wrote {model_path}")
