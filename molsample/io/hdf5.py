"""The molsample run file (``runs/<run>/samples.h5``): one HDF5 file per run.

It follows the MDTraj HDF5 convention, so ``mdtraj.load("samples.h5")`` reads the samples
as a trajectory (``/coordinates`` in nm, ``/topology`` as JSON, the root attributes mdtraj
expects), and adds molsample's own data beside it: ``/logw``, ``/logq``, ``/energy``,
``/history/*``, ``/config`` (TOML text), named sample sets ``/<name>/...`` and generic arrays.
The full schema is in docs/run-file.md.

Every write goes to a temporary file in the same folder that replaces the run file only on a
clean close, so a crash never leaves a half-written run file behind::

    with RunFile("runs/lj13/samples.h5", "w") as rf:
        rf.write_samples(x, logw=logw, energy=e, energy_unit="reduced", length_unit="reduced", kT=1.0)
        rf.set_attrs(system="lj13", kind="tilt", method="itm", seed=0)

    with open_run("runs/lj13") as rf:
        s = rf.read_samples()   # {"x": (n, 13, 3), "logw": (n,), ...}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from molsample.errors import MissingFileError, RunFileError, ShapeError
from molsample.io.atomic import temp_path_for
from molsample.io.h5_values import plain_attr, to_numpy
from molsample.io.run_attrs import (  # noqa: F401 - VERSIONED_PACKAGES re-exported
    VERSIONED_PACKAGES,
    RunAttrs,
    _attr_value,
    _short,
    package_versions,
)
from molsample.io.run_paths import RUN_FILE_NAME, resolve_run_path  # noqa: F401 - RUN_FILE_NAME re-exported
from molsample.io.run_tables import RunTables
from molsample.io.topology_json import topology_from_json

#: Version of the layout described in docs/run-file.md; bumped on incompatible changes.
SCHEMA_VERSION = 1
#: Root attribute holding :data:`SCHEMA_VERSION`; its presence marks a molsample run file.
SCHEMA_ATTR = "molsample_schema_version"
#: Length units accepted by :meth:`RunFile.write_samples`.
LENGTH_UNITS = {"nm": "nm", "nanometers": "nm", "nanometer": "nm", "reduced": "reduced"}
#: Names that cannot be used as sample-set names (they are other parts of the file).
RESERVED_NAMES = {"history", "config", "topology", "coordinates", "logw", "logq", "energy", "diagnostics",
                  "checkpoints", "time", "cell_lengths", "cell_angles"}

_FIELDS = ("logw", "logq", "energy")


class RunFile(RunTables):
    """A molsample run file, opened as a context manager.

    Args:
        path: the ``.h5`` file.
        mode: ``"r"`` read-only; ``"w"`` create a new file (replaces ``path`` on close);
            ``"a"`` modify an existing file (or create it). Writes go to a temporary copy in
            the same folder that is renamed over ``path`` on a clean :meth:`close` / ``with`` exit;
            on an exception inside the ``with`` block (or :meth:`discard`) the copy is deleted and
            ``path`` is untouched.

    Raises:
        MissingFileError: ``mode="r"`` and ``path`` does not exist.
        RunFileError: the file is not HDF5, is truncated, was not written by molsample, or has
            an unknown schema version.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        if mode not in ("r", "w", "a"):
            raise ValueError(f"mode must be 'r', 'w' or 'a', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self._tmp: Path | None = None
        self._h5: h5py.File | None = None
        if mode == "r":
            if not self.path.is_file():
                raise MissingFileError(f"run file {self.path} does not exist; check the path or create the run first")
            self._h5 = self._open_checked(self.path, "r")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path_for(self.path)
        try:
            if mode == "a" and self.path.is_file():
                self._open_checked(self.path, "r").close()  # validate before copying
                shutil.copyfile(self.path, self._tmp)
                self._h5 = self._open_checked(self._tmp, "r+")
            else:
                self._h5 = h5py.File(self._tmp, "w")
                self._init_new()
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
            raise

    # ------------------------------------------------------------------ opening and closing

    def _open_checked(self, path: Path, mode: str) -> h5py.File:
        try:
            f = h5py.File(path, mode)
        except OSError as exc:
            raise RunFileError(
                f"{self.path} cannot be read as HDF5 ({_short(exc)}): the file is truncated, still being "
                "written, or not an HDF5 file. Re-run the command that produced it, or restore it from a copy"
            ) from None
        try:
            version = f.attrs.get(SCHEMA_ATTR)
        except (OSError, RuntimeError) as exc:  # damaged metadata
            f.close()
            raise RunFileError(f"{self.path} is damaged ({_short(exc)}); re-run the command that produced it") from None
        if version is None:
            f.close()
            raise RunFileError(
                f"{self.path} is an HDF5 file but not a molsample run file (it has no '{SCHEMA_ATTR}' "
                "attribute). Pass the samples.h5 written by molsample; for a plain MDTraj trajectory use "
                "mdtraj.load"
            )
        try:
            version = int(plain_attr(version))
        except (TypeError, ValueError):
            version = -1
        if version != SCHEMA_VERSION:
            f.close()
            hint = ("upgrade molsample to read it" if version > SCHEMA_VERSION
                    else "re-create the run with this molsample version")
            raise RunFileError(
                f"{self.path} has run-file schema version {version}, this molsample reads version "
                f"{SCHEMA_VERSION}; {hint}"
            )
        return f

    def _init_new(self) -> None:
        from molsample import __version__

        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        a = self._h5.attrs
        a[SCHEMA_ATTR] = SCHEMA_VERSION
        # MDTraj HDF5 convention
        a["conventions"] = "Pande"
        a["conventionVersion"] = "1.1"
        a["application"] = "molsample"
        a["program"] = "molsample"
        a["programVersion"] = __version__
        a["title"] = "molsample run"
        a["created"] = now
        for name, version in package_versions().items():
            a[f"{name}_version"] = version

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def close(self) -> None:
        """Close the file; in ``"w"``/``"a"`` mode commit the changes (atomic rename)."""
        if self._h5 is None:
            return
        if self._tmp is not None:
            self._h5.attrs["modified"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            self._h5.close()
            os.replace(self._tmp, self.path)
            self._tmp = None
        else:
            self._h5.close()
        self._h5 = None

    def discard(self) -> None:
        """Close without committing: the temporary copy is deleted and ``path`` stays as it was."""
        if self._h5 is not None:
            try:
                self._h5.close()
            finally:
                self._h5 = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __del__(self) -> None:  # an unclosed writer never commits half a run
        try:
            self.discard()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    @property
    def closed(self) -> bool:
        return self._h5 is None

    def __repr__(self) -> str:
        return f"RunFile({str(self.path)!r}, mode={self.mode!r}{', closed' if self.closed else ''})"

    def _check_open(self) -> h5py.File:
        if self._h5 is None:
            raise RunFileError(f"run file {self.path} is closed; open it again with open_run()")
        return self._h5

    def _check_writable(self) -> h5py.File:
        f = self._check_open()
        if self._tmp is None:
            raise RunFileError(f"run file {self.path} is open read-only; open it with RunFile(path, 'a') to change it")
        return f

    def _node(self, path: str) -> Any:
        f = self._check_open()
        try:
            return f[path]
        except KeyError:
            contents = ", ".join(self.keys()) or "(nothing)"
            raise RunFileError(f"run file {self.path} has no '{path}'; it contains: {contents}") from None
        except (OSError, RuntimeError) as exc:
            raise RunFileError(
                f"run file {self.path}: '{path}' is damaged ({_short(exc)}); re-run the command that produced it"
            ) from None

    def _read(self, dset: h5py.Dataset) -> np.ndarray:
        try:
            return dset[()]
        except (OSError, RuntimeError) as exc:
            raise RunFileError(
                f"run file {self.path}: cannot read '{dset.name}' ({_short(exc)}); the file is damaged — "
                "re-run the command that produced it"
            ) from None

    # ------------------------------------------------------------------ attributes

    @property
    def attrs(self) -> RunAttrs:
        """Root attributes (system, kind, seed, method, kT, energy_unit, created, versions, ...)."""
        self._check_open()
        return RunAttrs(self)

    def set_attrs(self, **kwargs: Any) -> None:
        """Set root attributes; ``None`` deletes one; dicts are stored as JSON text, bools as 0/1."""
        f = self._check_writable()
        for key, value in kwargs.items():
            if value is None:
                if key in f.attrs:
                    del f.attrs[key]
                continue
            f.attrs[key] = _attr_value(key, value)

    def keys(self) -> list[str]:
        """Top-level names in the file."""
        return sorted(self._check_open().keys())

    def __contains__(self, name: str) -> bool:
        return name in self._check_open()

    # ------------------------------------------------------------------ samples

    def sample_sets(self) -> list[str]:
        """Names of the sample sets in the file (``"samples"`` first when present)."""
        f = self._check_open()
        names = ["samples"] if "coordinates" in f else []
        names += sorted(k for k, v in f.items() if isinstance(v, h5py.Group) and "coordinates" in v)
        return names

    def _sample_group(self, name: str, create: bool) -> h5py.Group:
        f = self._check_open()
        if name == "samples":
            return f
        if not name or "/" in name or name in RESERVED_NAMES:
            raise ValueError(
                f"sample-set name {name!r} is not allowed; use a plain name such as 'reference' "
                f"(reserved: {', '.join(sorted(RESERVED_NAMES))})"
            )
        if name in f:
            return f[name]
        if create:
            return f.create_group(name)
        raise RunFileError(
            f"run file {self.path} has no sample set '{name}'; it has: {', '.join(self.sample_sets()) or '(none)'}"
        )

    def write_samples(
        self,
        x: Any,
        *,
        logw: Any = None,
        logq: Any = None,
        energy: Any = None,
        energy_unit: str,
        length_unit: str,
        topology: Any = None,
        kT: float | None = None,
        name: str = "samples",
        append: bool = False,
    ) -> None:
        """Write (or append) a set of configurations with their log-weights, log-densities and energies.

        Args:
            x: ``(n, n_particles, dim)`` positions (tensor or array) in ``length_unit``; dim ≤ 3.
                Stored as float32 ``(n, n_particles, 3)`` (z = 0 padding for dim < 3).
            logw, logq, energy: ``(n,)`` or ``None``; stored as float64. ``energy`` in ``energy_unit``.
            energy_unit: e.g. ``"kJ/mol"`` or ``"reduced"``.
            length_unit: ``"nm"`` or ``"reduced"`` (reduced lengths are stored as they are; mdtraj
                reads them as nm).
            topology: ``mdtraj.Topology`` or ``openmm.app.Topology`` with ``n_particles`` atoms;
                ``None`` makes pseudo-atoms (:func:`molsample.molecules.topology.particle_topology`) for
                ``name="samples"`` when the file has no topology yet.
            kT: thermal energy in ``energy_unit``.
            name: ``"samples"`` (the MDTraj-readable root datasets) or a set name stored in ``/<name>/``.
            append: extend an existing set along frames instead of replacing it.
        """
        f = self._check_writable()
        x = to_numpy(x)
        if x.ndim != 3 or x.shape[2] not in (1, 2, 3):
            raise ShapeError(
                f"write_samples: x must be (n, n_particles, dim) with dim 1, 2 or 3, got shape {tuple(x.shape)}; "
                "a 2-D toy is (n, 1, 2)"
            )
        n, n_particles, dim = x.shape
        fields = {}
        for key, value in (("logw", logw), ("logq", logq), ("energy", energy)):
            if value is None:
                continue
            arr = to_numpy(value, np.float64)
            if arr.shape != (n,):
                raise ShapeError(f"write_samples: {key} must have shape ({n},) like x, got {tuple(arr.shape)}")
            fields[key] = arr
        unit = LENGTH_UNITS.get(str(length_unit).lower())
        if unit is None:
            raise ValueError(
                f"length_unit {length_unit!r} is not supported; convert positions to 'nm' or pass 'reduced'"
            )
        xyz = np.zeros((n, n_particles, 3), dtype=np.float32)
        xyz[:, :, :dim] = x
        meta = {"units": "nanometers", "length_unit": unit, "dim": int(dim), "energy_unit": str(energy_unit)}
        if kT is not None:
            meta["kT"] = float(kT)

        g = self._sample_group(name, create=True)
        if append and "coordinates" in g:
            self._append(g, xyz, fields, meta, name)
        else:
            for key in ("coordinates",) + _FIELDS:
                if key in g:
                    del g[key]
            chunk = max(1, min(1024, (1 << 18) // max(1, n_particles * 3)))
            c = g.create_dataset("coordinates", data=xyz, maxshape=(None, n_particles, 3),
                                 chunks=(chunk, n_particles, 3), compression="gzip", compression_opts=1,
                                 shuffle=True)
            c.attrs.update(meta)
            for key, arr in fields.items():
                d = g.create_dataset(key, data=arr, maxshape=(None,), chunks=(max(1, min(4096, max(n, 1))),))
                d.attrs["units"] = str(energy_unit) if key == "energy" else "dimensionless"
        if topology is not None or (name == "samples" and "topology" not in f):
            if topology is None:
                from molsample.molecules.topology import particle_topology

                topology = particle_topology(n_particles)
            self._write_topology(g, topology, n_particles)
        if name == "samples":
            self.set_attrs(energy_unit=str(energy_unit), length_unit=unit)
            if kT is not None:
                self.set_attrs(kT=float(kT))

    def write_internal_coordinates(self, z: Any, *, layout: str, append: bool = False) -> None:
        """Store a flow's internal coordinates ``(n, D)`` beside the main set's Cartesian frames
        (dataset ``/internal_coordinates``, float64, attribute ``layout`` describing the columns)."""
        f = self._check_writable()
        arr = to_numpy(z, np.float64).reshape(len(z), -1)
        if append and "internal_coordinates" in f:
            d = f["internal_coordinates"]
            if d.shape[1] != arr.shape[1]:
                raise ShapeError(f"append to 'internal_coordinates': {d.shape[1]} columns stored, {arr.shape[1]} new")
            n0 = d.shape[0]
            d.resize(n0 + len(arr), axis=0)
            d[n0:] = arr
            return
        if "internal_coordinates" in f:
            del f["internal_coordinates"]
        d = f.create_dataset("internal_coordinates", data=arr, maxshape=(None, arr.shape[1]),
                             chunks=(max(1, min(1024, len(arr))), arr.shape[1]))
        d.attrs["layout"] = layout
        d.attrs["units"] = "standardised bonds and angles; torsions in radians or standardised (see layout)"

    def _append(self, g: h5py.Group, xyz: np.ndarray, fields: dict, meta: dict, name: str) -> None:
        c = g["coordinates"]
        old = {k: plain_attr(v) for k, v in c.attrs.items()}
        if c.shape[1:] != xyz.shape[1:] or old.get("dim") != meta["dim"]:
            raise ShapeError(
                f"append to '{name}': existing frames have {c.shape[1]} particles in {old.get('dim')}-D, new ones "
                f"{xyz.shape[1]} in {meta['dim']}-D; write a new set with another name"
            )
        for k in ("length_unit", "energy_unit"):
            if old.get(k) != meta[k]:
                raise ValueError(f"append to '{name}': {k} {meta[k]!r} differs from the stored {old.get(k)!r}")
        present = {k for k in _FIELDS if k in g}
        if present != set(fields):
            raise ValueError(
                f"append to '{name}': the set has {sorted(present) or 'no'} per-sample fields, the new frames "
                f"{sorted(fields) or 'none'}; pass the same fields (logw/logq/energy) every time"
            )
        n0, n = c.shape[0], xyz.shape[0]
        c.resize(n0 + n, axis=0)
        c[n0:] = xyz
        for key, arr in fields.items():
            d = g[key]
            d.resize(n0 + n, axis=0)
            d[n0:] = arr

    def _write_topology(self, g: h5py.Group, topology: Any, n_particles: int) -> None:
        import mdtraj
        from mdtraj.formats.hdf5 import HDF5TrajectoryFile

        if not isinstance(topology, mdtraj.Topology):
            topology = mdtraj.Topology.from_openmm(topology)
        if topology.n_atoms != n_particles:
            raise ShapeError(
                f"topology has {topology.n_atoms} atoms but x has {n_particles} particles; pass the system's topology"
            )
        data = json.dumps(HDF5TrajectoryFile.convert_topology_to_dict(topology)).encode("ascii")
        if "topology" in g:
            del g["topology"]
        g.create_dataset("topology", data=np.array([data]))  # MDTraj: a 1-element string array

    def read_topology(self, name: str = "samples") -> Any:
        """The ``mdtraj.Topology`` of a sample set (the set's own, else the root one), or ``None``."""
        f = self._check_open()
        g = self._sample_group(name, create=False)
        node = g["topology"] if "topology" in g else f["topology"] if "topology" in f else None
        if node is None:
            return None
        raw = self._read(node)[0]
        try:
            return topology_from_json(raw.decode() if isinstance(raw, bytes) else str(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise RunFileError(f"run file {self.path}: /topology is not MDTraj topology JSON ({exc})") from None

    def read_samples(self, name: str = "samples") -> dict[str, Any]:
        """A sample set as ``{"x": (n, n_particles, dim) float32, "logw", "logq", "energy": (n,) float64
        or None, "energy_unit", "length_unit", "kT": float or None}``."""
        g = self._sample_group(name, create=False)
        if "coordinates" not in g:
            raise RunFileError(
                f"run file {self.path} has no sample set '{name}'; it has: {', '.join(self.sample_sets()) or '(none)'}"
            )
        c = g["coordinates"]
        meta = {k: plain_attr(v) for k, v in c.attrs.items()}
        dim = int(meta.get("dim", 3))
        xyz = self._read(c)
        out: dict[str, Any] = {"x": np.ascontiguousarray(xyz[:, :, :dim])}
        for key in _FIELDS:
            out[key] = self._read(g[key]).astype(np.float64) if key in g else None
        out["energy_unit"] = meta.get("energy_unit", plain_attr(self._h5.attrs.get("energy_unit", "")))
        out["length_unit"] = meta.get("length_unit", "nm")
        kT = meta.get("kT", plain_attr(self._h5.attrs.get("kT")) if name == "samples" else None)
        out["kT"] = float(kT) if kT is not None else None
        return out

    # ------------------------------------------------------------------ history, config, arrays


def open_run(path_or_dir: str | os.PathLike, mode: str = "r") -> RunFile:
    """Open a run by folder (``runs/<run>/``), file (``.../samples.h5``) or run name under ``./runs/``.

    Raises:
        MissingFileError: no such run / run file.
        RunFileError: the file is not a readable molsample run file.
    """
    return RunFile(resolve_run_path(path_or_dir), mode)
