"""Export run samples as trajectories (PDB, DCD, XTC, MDTraj HDF5) or a NumPy array.

Trajectories go through mdtraj (``md.Trajectory`` from the stored coordinates and topology).
``resample=N`` draws N frames by importance weight with systematic resampling, so the
exported frames are (approximately) distributed as the target rather than as the flow.

Formats:
    ``pdb``, ``dcd``, ``xtc``: via mdtraj; need 3-D positions (molecules, LJ clusters).
    ``h5``: a molsample run file with only the exported set (MDTraj-readable; keeps energies,
        and logw/logq unless resampled — resampled frames carry equal weights).
    ``npy``: the ``(n, n_particles, dim)`` positions in the run's length unit; the only format
        for 2-D systems (toys, DW-4), which have no molecular structure.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molsample.errors import ConfigError, EnergyError
from molsample.io.atomic import atomic_path
from molsample.io.hdf5 import RunFile, open_run
from molsample.sampling.weights import resample

#: Export formats and their file extensions.
FORMATS = {"pdb": ".pdb", "dcd": ".dcd", "xtc": ".xtc", "h5": ".h5", "npy": ".npy"}


def normalized_weights(logw: Any) -> np.ndarray:
    """Self-normalized importance weights from log-weights ``(n,)``; non-finite log-weights get 0.

    Raises:
        EnergyError: no sample has a finite log-weight.
    """
    logw = np.asarray(logw, dtype=np.float64).reshape(-1)
    finite = np.isfinite(logw)
    if not finite.any():
        raise EnergyError(
            f"all {logw.size} log-weights are non-finite (NaN/inf energies or densities); "
            "check the energies in the run file, or export without --resample"
        )
    w = np.zeros_like(logw)
    w[finite] = np.exp(logw[finite] - logw[finite].max())
    return w / w.sum()


def systematic_resample(logw: Any, n: int, generator: np.random.Generator | int | None = None) -> np.ndarray:
    """Indices ``(n,)`` of ``n`` draws by importance weight, systematic resampling.

    One uniform u ~ U[0, 1/n) is drawn and the points u + k/n, k = 0..n−1, are located in the
    cumulative normalized weights: sample i is drawn ⌊n·w_i⌋ or ⌈n·w_i⌉ times (unbiased, lower
    variance than multinomial). Non-finite log-weights get weight 0.

    Args:
        logw: ``(m,)`` log importance weights.
        n: number of draws.
        generator: a ``numpy.random.Generator``, an int seed, or ``None`` (fresh entropy).
    """
    if n < 1:
        raise ConfigError(f"number of resampled frames must be >= 1, got {n}")
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return resample(torch.as_tensor(np.asarray(logw, dtype=np.float64)), n, generator=g).numpy()


@dataclasses.dataclass
class ExportResult:
    """What :func:`export_run` wrote."""

    path: Path
    format: str
    n_frames: int
    n_source: int
    resampled: bool
    ess: float | None  # ESS fraction of the source weights (None without logw)
    length_unit: str


def infer_format(out: str | os.PathLike, fmt: str | None) -> str:
    """The export format from ``fmt`` or the extension of ``out``."""
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        if f == "hdf5":
            f = "h5"
        if f not in FORMATS:
            raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
        return f
    ext = Path(out).suffix.lower().lstrip(".")
    ext = "h5" if ext == "hdf5" else ext
    if ext not in FORMATS:
        raise ConfigError(
            f"cannot tell the format from {str(out)!r}; pass --format with one of {', '.join(FORMATS)}"
        )
    return ext


def to_trajectory(x: np.ndarray, topology: Any) -> Any:
    """An ``mdtraj.Trajectory`` from ``(n, n_atoms, 3)`` positions in nm and an mdtraj topology."""
    import mdtraj

    return mdtraj.Trajectory(xyz=np.asarray(x, dtype=np.float32), topology=topology)


def export_run(
    run: str | os.PathLike | RunFile,
    out: str | os.PathLike,
    fmt: str | None = None,
    *,
    resample: int | None = None,
    seed: int = 0,
    name: str = "samples",
) -> ExportResult:
    """Write the sample set ``name`` of a run to ``out``.

    Args:
        run: run folder, run file or an open :class:`RunFile`.
        out: output file (written atomically; its folder is created).
        fmt: ``pdb | dcd | xtc | h5 | npy``; ``None`` infers it from ``out``'s extension.
        resample: draw this many frames by importance weight (systematic resampling, ``seed``).
        name: the sample set (``"samples"``, ``"reference"``, ...).

    Raises:
        ConfigError: unknown format, 2-D positions for a trajectory format, ``--resample`` without logw.
        MissingFileError / RunFileError: the run cannot be opened.
    """
    fmt = infer_format(out, fmt)
    out = Path(out)
    if isinstance(run, RunFile):
        return _export(run, out, fmt, resample, seed, name)
    with open_run(run) as rf:
        return _export(rf, out, fmt, resample, seed, name)


def _export(rf: RunFile, out: Path, fmt: str, resample: int | None, seed: int, name: str) -> ExportResult:
    s = rf.read_samples(name)
    x, logw = s["x"], s["logw"]
    n_source, dim = x.shape[0], x.shape[2]
    if fmt not in ("npy",) and dim != 3:
        raise ConfigError(
            f"run {rf.path} has {dim}-D positions (no molecular structure), which {fmt} cannot hold; "
            "export them with --format npy"
        )
    ess = None
    if logw is not None:
        w = normalized_weights(logw)
        ess = float(1.0 / (w.size * np.sum(w**2)))
    idx = None
    if resample is not None:
        if logw is None:
            raise ConfigError(f"sample set '{name}' of {rf.path} has no logw; export without --resample")
        idx = systematic_resample(logw, int(resample), np.random.default_rng(seed))
        x = x[idx]
    if x.shape[0] == 0:
        raise ConfigError(f"sample set '{name}' of {rf.path} has no frames to export")

    if fmt == "npy":
        with atomic_path(out, ".npy") as tmp:
            np.save(tmp, x)
    elif fmt == "h5":
        sub = (lambda a: None if a is None else a[idx]) if idx is not None else (lambda a: a)
        with RunFile(out, "w") as dst:
            dst.write_samples(
                x,
                logw=None if idx is not None else logw,
                logq=None if idx is not None else s["logq"],
                energy=sub(s["energy"]),
                energy_unit=s["energy_unit"],
                length_unit=s["length_unit"],
                topology=rf.read_topology(name),
                kT=s["kT"],
            )
            keep = {k: v for k, v in rf.attrs.items() if k in ("system", "kind", "method", "seed", "temperature_K")}
            dst.set_attrs(**keep, exported_from=str(rf.path), exported_set=name,
                          resampled=idx is not None, **({"resample_seed": seed} if idx is not None else {}))
    else:
        top = rf.read_topology(name)
        if top is None:
            from molsample.topology import particle_topology

            top = particle_topology(x.shape[1])
        traj = to_trajectory(x, top)
        with atomic_path(out, FORMATS[fmt]) as tmp:
            getattr(traj, f"save_{fmt}")(str(tmp))
    return ExportResult(out, fmt, int(x.shape[0]), int(n_source), idx is not None, ess, s["length_unit"])
