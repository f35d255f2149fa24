"""``RunFile.write_set``: a sample set from weighted samples (anything with x, logq, energy, logw, z)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from _run_helpers import aldp_topology

from molsample.io.hdf5 import RunFile, open_run

F32 = 1e-6  # float32 storage of O(1) coordinates


@dataclasses.dataclass(frozen=True)
class _Weighted:
    x: torch.Tensor
    logq: torch.Tensor
    energy: torch.Tensor
    logw: torch.Tensor
    z: torch.Tensor | None = None


def _weighted(n: int, seed: int, *, particles: int = 4, dim: int = 2, internal: int = 0) -> _Weighted:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, particles, dim, generator=g, dtype=torch.float64)
    logq, energy = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    z = torch.randn(n, internal, 1, generator=g, dtype=torch.float64) if internal else None
    return _Weighted(x, logq, energy, -energy - logq, z)


def test_write_set_round_trips_and_appends(tmp_path):
    path = tmp_path / "samples.h5"
    a, b = _weighted(5, 0), _weighted(3, 1)
    with RunFile(path, "w") as rf:
        rf.write_set("samples", a, energy_unit="reduced", length_unit="reduced", kT=1.0)
    with RunFile(path, "a") as rf:
        rf.write_set("samples", b, energy_unit="reduced", length_unit="reduced", kT=1.0, append=True)
        rf.write_set("flow_samples", b, energy_unit="reduced", length_unit="reduced")
    with open_run(path) as rf:
        s, named = rf.read_samples(), rf.read_samples("flow_samples")
        assert rf.sample_sets() == ["samples", "flow_samples"] and "internal_coordinates" not in rf
    np.testing.assert_allclose(s["x"], torch.cat([a.x, b.x]).numpy(), atol=F32 * 4)
    for key in ("logq", "energy", "logw"):
        np.testing.assert_array_equal(s[key], torch.cat([getattr(a, key), getattr(b, key)]).numpy())
        np.testing.assert_array_equal(named[key], getattr(b, key).numpy())
    assert (s["energy_unit"], s["length_unit"], s["kT"], s["x"].shape) == ("reduced", "reduced", 1.0, (8, 4, 2))


def test_write_set_keeps_the_flows_internal_coordinates_and_the_topology(tmp_path):
    path = tmp_path / "samples.h5"
    top, x0 = aldp_topology()
    a, b = _weighted(4, 2, particles=22, dim=3, internal=60), _weighted(2, 3, particles=22, dim=3, internal=60)
    a, b = (dataclasses.replace(w, x=torch.as_tensor(x0) + 0.01 * w.x) for w in (a, b))
    units = dict(energy_unit="kJ/mol", length_unit="nm", kT=2.494, topology=top, layout="60 dims")
    with RunFile(path, "w") as rf:
        rf.write_set("samples", a, **units)
        rf.write_set("samples", b, append=True, **units)
    with h5py.File(path) as f:
        z = f["internal_coordinates"]
        assert z.attrs["layout"] == "60 dims" and z.shape == (6, 60)
        np.testing.assert_array_equal(z[()], torch.cat([a.z, b.z]).reshape(6, 60).numpy())
    with open_run(path) as rf:
        assert [atom.name for atom in rf.read_topology().atoms] == [atom.name for atom in top.atoms]
        np.testing.assert_allclose(rf.read_samples()["x"], torch.cat([a.x, b.x]).numpy(), atol=F32 * 4)


def test_internal_coordinates_of_a_named_set_are_refused(tmp_path):
    with RunFile(tmp_path / "samples.h5", "w") as rf:
        with pytest.raises(ValueError, match="main set only"):
            rf.write_set("refined", _weighted(3, 4, internal=5), energy_unit="reduced", length_unit="reduced")
        assert rf.sample_sets() == []  # refused before anything was written
        rf.discard()
