"""The run file's sample sets, as a mixin of :class:`~molsample.io.hdf5.RunFile`.

A sample set is frames ``(n, n_particles, 3)`` in ``coordinates`` with optional per-frame ``logw``,
``logq`` and ``energy`` ``(n,)`` and a ``topology``: the main set ``"samples"`` at the file's root
(what mdtraj reads), named sets in ``/<name>/``. :meth:`SampleSets.write_set` writes a set from
weighted samples (anything shaped like :class:`SampleSet`). The mixin uses RunFile's ``path``,
``_h5``, ``_check_open``, ``_check_writable``, ``_read`` and ``set_attrs``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import h5py
import numpy as np

from molsample.errors import RunFileError, ShapeError
from molsample.io.h5_values import plain_attr, to_numpy
from molsample.io.topology_json import topology_from_json

__all__ = ["LENGTH_UNITS", "RESERVED_NAMES", "SampleSet", "SampleSets"]

#: Length units accepted by :meth:`SampleSets.write_samples`.
LENGTH_UNITS = {"nm": "nm", "nanometers": "nm", "nanometer": "nm", "reduced": "reduced"}
#: Names that cannot be used as sample-set names (they are other parts of the file).
RESERVED_NAMES = {"history", "config", "topology", "coordinates", "logw", "logq", "energy", "diagnostics",
                  "checkpoints", "time", "cell_lengths", "cell_angles", "internal_coordinates"}

_FIELDS = ("logw", "logq", "energy")


class SampleSet(Protocol):
    """Weighted samples as :meth:`SampleSets.write_set` reads them (tensors or arrays; the
    flows' ``WeightedSamples`` is one).

    Attributes: x ``(n, n_particles, dim)`` positions; logq, energy, logw ``(n,)``; z the samples
    in the flow's own coordinates ``(n, ...)`` when those are not Cartesian, else None.
    """

    @property
    def x(self) -> Any: ...

    @property
    def logq(self) -> Any: ...

    @property
    def energy(self) -> Any: ...

    @property
    def logw(self) -> Any: ...

    @property
    def z(self) -> Any: ...


class SampleSets:
    """Sample sets of a run file: write (or append), read, list; topologies and internal coordinates."""

    def write_set(self, name: str, ws: SampleSet, *, energy_unit: str, length_unit: str, kT: float | None = None,
                  topology: Any = None, layout: str = "", append: bool = False) -> None:
        """Write (or append to) the set ``name`` from weighted samples: positions, log q, energies,
        log w (:meth:`write_samples`) and, when ``ws.z`` is not None, the flow's internal coordinates
        described by ``layout`` (:meth:`write_internal_coordinates`; the main set ``"samples"`` only)."""
        if ws.z is not None and name != "samples":
            raise ValueError(f"write_set: internal coordinates are stored for the main set only, not {name!r}; "
                             "write the set under the name 'samples' or drop ws.z")
        self.write_samples(ws.x, logw=ws.logw, logq=ws.logq, energy=ws.energy, energy_unit=energy_unit,
                           length_unit=length_unit, topology=topology, kT=kT, name=name, append=append)
        if ws.z is not None:  # a flow in internal coordinates: its own coordinates beside the positions
            self.write_internal_coordinates(ws.z, layout=layout, append=append)

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

