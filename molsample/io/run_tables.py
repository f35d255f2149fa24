"""The run file's history, config and generic arrays, as a mixin of :class:`~molsample.io.hdf5.RunFile`.

The mixin uses RunFile's ``_check_open``, ``_check_writable``, ``_node`` and ``_read``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from molsample.errors import RunFileError
from molsample.io.h5_values import plain_attr, to_numpy
from molsample.io.toml_writer import dumps_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class RunTables:
    """``/history/*``, ``/config`` (TOML text) and named arrays of a run file."""

    def write_history(self, history: Mapping[str, Sequence[float]], group: str = "history") -> None:
        """Replace ``/<group>/`` with one float64 array per key (per annealing level: a, h, ess, loss, ...)."""
        f = self._check_writable()
        if group in f:
            del f[group]
        g = f.create_group(group)
        for key, values in history.items():
            g.create_dataset(str(key), data=to_numpy(values, np.float64).reshape(-1))

    def read_history(self, group: str = "history") -> dict[str, np.ndarray]:
        """``{key: float64 array}`` from ``/<group>/``; ``{}`` when the file has none."""
        f = self._check_open()
        if group not in f:
            return {}
        g = self._node(group)
        out: dict[str, np.ndarray] = {}

        def visit(path: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset):
                out[path] = self._read(node)

        g.visititems(visit)
        return out

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Store the resolved run config as TOML text in ``/config``."""
        f = self._check_writable()
        text = dumps_toml(config)
        if "config" in f:
            del f["config"]
        d = f.create_dataset("config", data=text, dtype=h5py.string_dtype("utf-8"))
        d.attrs["format"] = "toml"

    def read_config(self) -> dict[str, Any]:
        """The run config as a dict (``{}`` when the file has none)."""
        f = self._check_open()
        if "config" not in f:
            return {}
        raw = self._read(self._node("config"))
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RunFileError(f"run file {self.path}: /config is not valid TOML ({exc})") from None

    def config_text(self) -> str:
        """The stored config TOML text ('' when none)."""
        f = self._check_open()
        if "config" not in f:
            return ""
        raw = self._read(self._node("config"))
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def write_array(self, name: str, array: Any, *, units: str | None = None) -> None:
        """Write (replace) a generic dataset, e.g. ``"diagnostics/acceptance"``; ``units`` as an attribute."""
        f = self._check_writable()
        name = name.strip("/")
        if name in f:
            del f[name]
        arr = to_numpy(array)
        d = f.create_dataset(name, data=arr)
        if units is not None:
            d.attrs["units"] = units

    def read_array(self, name: str) -> np.ndarray:
        """A dataset written by :meth:`write_array` (or any dataset by path)."""
        node = self._node(name.strip("/"))
        if not isinstance(node, h5py.Dataset):
            raise RunFileError(f"run file {self.path}: '{name}' is a group, not an array; name a dataset inside it")
        return np.asarray(self._read(node))

    def array_units(self, name: str) -> str | None:
        """The ``units`` attribute of a dataset, or ``None``."""
        node = self._node(name.strip("/"))
        u = node.attrs.get("units")
        return None if u is None else plain_attr(u)
