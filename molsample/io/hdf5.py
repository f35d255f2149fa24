"""The molsample run file (``runs/<run>/samples.h5``): one HDF5 file per run.

It follows the MDTraj HDF5 convention, so ``mdtraj.load("samples.h5")`` reads the samples
as a trajectory (``/coordinates`` in nm, ``/topology`` as JSON, the root attributes mdtraj
expects), and adds molsample's own data beside it: ``/logw``, ``/logq``, ``/energy``,
``/history/*``, ``/config`` (TOML text), named sample sets ``/<name>/...`` and generic arrays.
The full schema is in docs/run-file.md. The sample sets are written and read by the
:class:`~molsample.io.sample_sets.SampleSets` mixin, history, config and arrays by
:class:`~molsample.io.run_tables.RunTables`.

Every write goes to a temporary file in the same folder that replaces the run file only on a
clean close, so a crash never leaves a half-written run file behind::

    with RunFile("runs/lj13/samples.h5", "w") as rf:
        rf.write_samples(x, logw=logw, energy=e, energy_unit="reduced", length_unit="reduced", kT=1.0)
        # or, from weighted samples (x, logq, energy, logw, z): rf.write_set("samples", ws, energy_unit=..., ...)
        rf.set_attrs(system="lj13", kind="tilt", method="itm", seed=0)

    with open_run("runs/lj13") as rf:
        s = rf.read_samples()   # {"x": (n, 13, 3), "logw": (n,), ...}
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from molsample.errors import MissingFileError, RunFileError
from molsample.io.atomic import temp_path_for
from molsample.io.h5_values import plain_attr
from molsample.io.run_attrs import RunAttrs, _attr_value, _short, package_versions
from molsample.io.run_paths import resolve_run_path
from molsample.io.run_tables import RunTables
from molsample.io.sample_sets import SampleSets

#: Version of the layout described in docs/run-file.md; bumped on incompatible changes.
SCHEMA_VERSION = 1
#: Root attribute holding :data:`SCHEMA_VERSION`; its presence marks a molsample run file.
SCHEMA_ATTR = "molsample_schema_version"


class RunFile(RunTables, SampleSets):
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


def open_run(path_or_dir: str | os.PathLike, mode: str = "r") -> RunFile:
    """Open a run by folder (``runs/<run>/``), file (``.../samples.h5``) or run name under ``./runs/``.

    Raises:
        MissingFileError: no such run / run file.
        RunFileError: the file is not a readable molsample run file.
    """
    return RunFile(resolve_run_path(path_or_dir), mode)
