"""Root attributes of a run file: Python values to HDF5 attributes and back, and a dict-like view."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from importlib import metadata
from typing import Any

import h5py
import numpy as np

from molsample.io.h5_values import plain_attr

#: Packages whose versions are recorded as root attributes ``<name>_version``.
VERSIONED_PACKAGES = ("molsample", "torch", "openmm", "mdtraj", "numpy", "h5py")


def package_versions() -> dict[str, str]:
    """``{package: version}`` for :data:`VERSIONED_PACKAGES` ("not installed" when absent)."""
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _attr_value(key: str, v: Any) -> Any:
    """Python value → something h5py stores (dicts as JSON text)."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, os.PathLike):
        v = os.fspath(v)
    if isinstance(v, Mapping):
        return json.dumps(v, default=str)
    if isinstance(v, bool):  # HDF5 has no bool; h5py's enum makes PyTables (mdtraj) warn
        return int(v)
    if isinstance(v, (str, int, float, np.ndarray)):
        return v
    if isinstance(v, (list, tuple)):
        if all(isinstance(e, str) for e in v):
            return np.array(v, dtype=h5py.string_dtype())
        return np.asarray(v)
    raise TypeError(f"attribute {key!r}: cannot store {v!r} ({type(v).__name__}); use str, number, bool, list or dict")


class RunAttrs(MutableMapping):
    """Dict-like view of the root attributes of a run file (values decoded to Python types).

    ``run`` is the open :class:`~molsample.io.hdf5.RunFile` whose attributes this view reads and writes.
    """

    def __init__(self, run: Any) -> None:
        self._run = run

    def __getitem__(self, key: str) -> Any:
        return plain_attr(self._run._h5.attrs[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._run.set_attrs(**{key: value})

    def __delitem__(self, key: str) -> None:
        self._run._check_writable()
        del self._run._h5.attrs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._run._h5.attrs.keys()))

    def __len__(self) -> int:
        return len(self._run._h5.attrs)

    def __repr__(self) -> str:
        return f"RunAttrs({dict(self)!r})"


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0][:200] if msg else type(exc).__name__
