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

Each format is one function registered with :func:`register_format` (name, extensions, whether it
needs 3-D positions); :data:`FORMATS` is the single list of names, which the CLI's ``--format``
choice is built from. Adding a format is one decorated function here.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molsample.errors import ConfigError, MissingFileError
from molsample.flows.weights import ess as ess_fraction
from molsample.flows.weights import resample
from molsample.io.atomic import atomic_path, check_writable
from molsample.io.hdf5 import RunFile, open_run


@dataclasses.dataclass
class ExportFrames:
    """What a format writer gets: the frames to write and where they come from.

    Attributes:
        x: ``(n_frames, n_particles, dim)`` positions in the run's length unit.
        idx: ``(n_frames,)`` indices into the source set when resampled, else ``None``.
        samples: the source set as :meth:`RunFile.read_samples` returns it (all source frames).
        topology: the set's mdtraj topology (``None`` when the run stores none).
        source: the open source run file; name: the sample set; seed: the resampling seed.
    """

    x: np.ndarray
    idx: np.ndarray | None
    samples: dict[str, Any]
    topology: Any
    source: RunFile
    name: str
    seed: int


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """A registered export format: ``write(frames, tmp_path)`` writes the file to a temporary path."""

    name: str
    extensions: tuple[str, ...]
    needs_3d: bool
    write: Callable[[ExportFrames, Path], None]


#: Registered export formats by name (see :func:`register_format`).
FORMATS: dict[str, ExportFormat] = {}
#: Other spellings accepted for ``--format``.
ALIASES = {"hdf5": "h5"}


def register_format(name: str, extensions: tuple[str, ...], *, needs_3d: bool = True
                    ) -> Callable[[Callable[[ExportFrames, Path], None]], Callable[[ExportFrames, Path], None]]:
    """Decorator: register ``write(frames, path)`` as export format ``name`` with file ``extensions``
    (the first is the canonical one, e.g. ``(".h5", ".hdf5")``)."""
    def deco(fn: Callable[[ExportFrames, Path], None]) -> Callable[[ExportFrames, Path], None]:
        if name in FORMATS:
            raise ValueError(f"export format {name!r} is registered twice")
        FORMATS[name] = ExportFormat(name, tuple(e.lower() for e in extensions), needs_3d, fn)
        return fn
    return deco


def _format_of_extension(path: str | os.PathLike) -> str | None:
    ext = Path(path).suffix.lower()
    return next((f.name for f in FORMATS.values() if ext and ext in f.extensions), None)


#: Most frames ``export --resample`` draws (a resampled set only repeats the run's samples).
MAX_RESAMPLE = 1_000_000
#: Resampling more than this many times the ESS count warns before writing.
RESAMPLE_WARN_FACTOR = 10
#: Rough bytes per particle and frame of each format (the size estimate of the resampling warning).
_BYTES_PER_PARTICLE = {"pdb": 81, "dcd": 12, "xtc": 6, "h5": 12, "npy": 24}


def estimated_size(fmt: str, n_frames: int, n_particles: int) -> str:
    """About how large ``n_frames`` frames of ``n_particles`` are in format ``fmt``, e.g. ``"3.1 GB"``."""
    size = float(n_frames) * n_particles * _BYTES_PER_PARTICLE.get(fmt, 24)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} TB"  # pragma: no cover - the loop returns


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
    if not 1 <= n <= MAX_RESAMPLE:
        raise ConfigError(f"number of resampled frames must be >= 1 and at most {MAX_RESAMPLE:,}, got {n}; "
                          "export without --resample for every raw sample")
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
    n_unique: int | None = None  # distinct source samples among resampled frames (None when not resampled)


def infer_format(out: str | os.PathLike, fmt: str | None) -> str:
    """The export format from ``fmt`` or, when ``fmt`` is ``None``, from the extension of ``out``.

    Raises:
        ConfigError: unknown format; no format and an extension that names none; or ``fmt`` and an
            extension of another format (``--format pdb --out x.xtc``).
    """
    by_ext = _format_of_extension(out)
    names = ", ".join(FORMATS)
    if fmt is None:
        if by_ext is None:
            raise ConfigError(f"cannot tell the format from {str(out)!r}; pass --format with one of {names}")
        return by_ext
    f = fmt.lower().lstrip(".")
    f = ALIASES.get(f, f)
    if f not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {names}")
    if by_ext is not None and by_ext != f:
        stem = Path(out).with_suffix(FORMATS[f].extensions[0]).name
        raise ConfigError(
            f"--format {f} does not match the extension of {str(out)!r} ({by_ext}); "
            f"name the file {stem} or drop --format to write {by_ext}"
        )
    return f


def to_trajectory(x: np.ndarray, topology: Any) -> Any:
    """An ``mdtraj.Trajectory`` from ``(n, n_atoms, 3)`` positions in nm and an mdtraj topology."""
    import mdtraj

    return mdtraj.Trajectory(xyz=np.asarray(x, dtype=np.float32), topology=topology)


def _trajectory(frames: ExportFrames) -> Any:
    top = frames.topology
    if top is None:
        from molsample.molecules.topology import particle_topology

        top = particle_topology(frames.x.shape[1])
    return to_trajectory(frames.x, top)


@register_format("pdb", (".pdb",))
def _write_pdb(frames: ExportFrames, path: Path) -> None:
    _trajectory(frames).save_pdb(str(path))


@register_format("dcd", (".dcd",))
def _write_dcd(frames: ExportFrames, path: Path) -> None:
    _trajectory(frames).save_dcd(str(path))


@register_format("xtc", (".xtc",))
def _write_xtc(frames: ExportFrames, path: Path) -> None:
    _trajectory(frames).save_xtc(str(path))


@register_format("h5", (".h5", ".hdf5"))
def _write_h5(frames: ExportFrames, path: Path) -> None:
    s, idx = frames.samples, frames.idx
    sub = (lambda a: None if a is None else a[idx]) if idx is not None else (lambda a: a)
    with RunFile(path, "w") as dst:
        dst.write_samples(
            frames.x,
            logw=None if idx is not None else s["logw"],
            logq=None if idx is not None else s["logq"],
            energy=sub(s["energy"]),
            energy_unit=s["energy_unit"],
            length_unit=s["length_unit"],
            topology=frames.topology,
            kT=s["kT"],
        )
        src = frames.source
        keep = {k: v for k, v in src.attrs.items() if k in ("system", "kind", "method", "seed", "temperature_K")}
        dst.set_attrs(**keep, exported_from=str(src.path), exported_set=frames.name, resampled=idx is not None,
                      **({"resample_seed": frames.seed} if idx is not None else {}))


@register_format("npy", (".npy",), needs_3d=False)
def _write_npy(frames: ExportFrames, path: Path) -> None:
    np.save(path, frames.x)


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
        out: output file (written atomically); its folder must exist.
        fmt: a name in :data:`FORMATS` (``pdb | dcd | xtc | h5 | npy``); ``None`` infers it from
            ``out``'s extension.
        resample: draw this many frames by importance weight (systematic resampling, ``seed``).
        name: the sample set (``"samples"``, ``"reference"``, ...).

    Raises:
        ConfigError: unknown format or one that contradicts the extension, 2-D positions for a
            trajectory format, ``--resample`` without logw.
        MissingFileError: the output folder does not exist; RunFileError: the run cannot be opened.
        OutputError: ``out`` cannot be written (checked before the run is read).
    """
    fmt = infer_format(out, fmt)
    out = check_writable(out)
    if not out.parent.is_dir():
        raise MissingFileError(
            f"output folder {out.parent} does not exist; create it first (mkdir -p {out.parent}) "
            "or choose another --out"
        )
    if isinstance(run, RunFile):
        return _export(run, out, fmt, resample, seed, name)
    with open_run(run) as rf:
        return _export(rf, out, fmt, resample, seed, name)


def _export(rf: RunFile, out: Path, fmt: str, resample: int | None, seed: int, name: str) -> ExportResult:
    s = rf.read_samples(name)
    x, logw = s["x"], s["logw"]
    n_source, dim = x.shape[0], x.shape[2]
    spec = FORMATS[fmt]
    if spec.needs_3d and dim != 3:
        raise ConfigError(
            f"run {rf.path} has {dim}-D positions (no molecular structure), which {fmt} cannot hold; "
            "export them with --format npy"
        )
    ess = None if logw is None else ess_fraction(torch.as_tensor(logw))
    idx = None
    if resample is not None:
        if logw is None:
            raise ConfigError(f"sample set '{name}' of {rf.path} has no logw; export without --resample")
        idx = systematic_resample(logw, int(resample), np.random.default_rng(seed))
        ess_count = (ess or 0.0) * n_source
        if resample > RESAMPLE_WARN_FACTOR * max(ess_count, 1.0):
            warnings.warn(
                f"--resample {resample} is {resample / max(ess_count, 1.0):.0f}x the {ess_count:.3g} effective samples: "
                f"the file repeats only {np.unique(idx).size} distinct structures and takes about "
                f"{estimated_size(fmt, int(resample), x.shape[1])}; --resample {max(1, round(ess_count))} carries "
                "the same information", UserWarning, stacklevel=3)
        x = x[idx]
    if x.shape[0] == 0:
        raise ConfigError(f"sample set '{name}' of {rf.path} has no frames to export")
    frames = ExportFrames(x, idx, s, rf.read_topology(name), rf, name, seed)
    with atomic_path(out, spec.extensions[0]) as tmp:
        spec.write(frames, tmp)
    n_unique = None if idx is None else int(np.unique(idx).size)
    return ExportResult(out, fmt, int(x.shape[0]), int(n_source), idx is not None, ess, s["length_unit"], n_unique)
