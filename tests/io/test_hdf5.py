"""Run file: round trips, MDTraj compatibility, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import math
import sys

import h5py
import numpy as np
import pytest
import torch
from _run_helpers import aldp_topology, history, write_lj_run

from molsample.errors import MissingFileError, RunFileError, ShapeError
from molsample.io.hdf5 import SCHEMA_ATTR, SCHEMA_VERSION, RunFile, open_run
from molsample.io.toml_writer import dumps_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

F32 = 1e-6  # float32 storage of O(1) coordinates


@pytest.fixture
def run_path(tmp_path):
    return tmp_path / "run" / "samples.h5"


def test_round_trip_all_fields(run_path):
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((7, 5, 3)))
    logw, logq, e = rng.standard_normal(7), rng.standard_normal(7), rng.standard_normal(7) * 10
    hist = history(6)
    config = {"system": "lj13", "seed": 3, "lr": 1e-3, "flag": True, "levels": [0.1, 0.5, 1.0],
              "tilt": {"method": "itm", "steps": 30, "nested": {"name": 'quote " and \\ back'}}}
    with RunFile(run_path, "w") as rf:
        rf.write_samples(x, logw=logw, logq=logq, energy=e, energy_unit="kJ/mol", length_unit="nm", kT=2.494)
        rf.write_history(hist)
        rf.write_config(config)
        rf.write_array("diagnostics/acceptance", np.array([0.5, 0.6]), units="dimensionless")
        rf.set_attrs(system="lj13", kind="tilt", seed=3, method="itm", wall_time_s=1.5, tags=["a", "b"])
    with open_run(run_path.parent) as rf:
        s = rf.read_samples()
        assert s["x"].shape == (7, 5, 3)
        np.testing.assert_allclose(s["x"], x.numpy(), atol=F32 * 4)
        np.testing.assert_array_equal(s["logw"], logw)
        np.testing.assert_array_equal(s["logq"], logq)
        np.testing.assert_array_equal(s["energy"], e)
        assert (s["energy_unit"], s["length_unit"], s["kT"]) == ("kJ/mol", "nm", 2.494)
        h = rf.read_history()
        assert set(h) == set(hist)
        for k in hist:
            np.testing.assert_array_equal(h[k], hist[k])  # NaNs compare equal here
        assert rf.read_config() == config
        np.testing.assert_array_equal(rf.read_array("diagnostics/acceptance"), [0.5, 0.6])
        assert rf.array_units("diagnostics/acceptance") == "dimensionless"
        a = rf.attrs
        assert (a["system"], a["kind"], a["seed"], a["method"], a["wall_time_s"]) == ("lj13", "tilt", 3, "itm", 1.5)
        assert a["tags"] == ["a", "b"]
        assert a[SCHEMA_ATTR] == SCHEMA_VERSION
        assert a["conventions"] == "Pande" and a["conventionVersion"] == "1.1"
        assert a["energy_unit"] == "kJ/mol" and a["kT"] == 2.494
        for pkg in ("molsample", "torch", "openmm", "mdtraj", "numpy", "h5py"):
            assert a[f"{pkg}_version"] not in ("", None)
        assert a["created"].startswith("20")
    assert list(run_path.parent.iterdir()) == [run_path]  # no temp files left


def test_raw_layout_follows_mdtraj_convention(run_path):
    x = np.random.default_rng(1).standard_normal((4, 3, 3))
    with RunFile(run_path, "w") as rf:
        rf.write_samples(x, energy=np.zeros(4), energy_unit="reduced", length_unit="reduced")
    with h5py.File(run_path, "r") as f:
        c = f["coordinates"]
        assert c.dtype == np.float32 and c.shape == (4, 3, 3)
        assert c.attrs["units"] == "nanometers" and c.attrs["length_unit"] == "reduced"
        assert f["energy"].attrs["units"] == "reduced"
        assert f["topology"].shape == (1,) and f["topology"][0].startswith(b'{"chains"')
        for key in ("conventions", "conventionVersion", "application", "program", "programVersion", "title"):
            assert key in f.attrs


def test_two_dimensional_positions_are_padded(run_path):
    x = np.random.default_rng(2).standard_normal((6, 1, 2))
    with RunFile(run_path, "w") as rf:
        rf.write_samples(x, energy_unit="reduced", length_unit="reduced")
    with h5py.File(run_path, "r") as f:
        assert f["coordinates"].shape == (6, 1, 3)
        assert np.all(f["coordinates"][:, :, 2] == 0) and f["coordinates"].attrs["dim"] == 2
    with open_run(run_path) as rf:
        s = rf.read_samples()
        assert s["x"].shape == (6, 1, 2) and s["logw"] is None and s["kT"] is None
        np.testing.assert_allclose(s["x"], x, atol=F32 * 4)


def test_append_extends_frames(run_path):
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((5, 4, 3)), rng.standard_normal((7, 4, 3))
    w1, w2 = rng.standard_normal(5), rng.standard_normal(7)
    kw = dict(energy_unit="reduced", length_unit="reduced")
    with RunFile(run_path, "w") as rf:
        rf.write_samples(x1, logw=w1, **kw)
    with RunFile(run_path, "a") as rf:
        rf.write_samples(x2, logw=w2, append=True, **kw)
        rf.write_samples(x2, logw=w2, append=True, name="reference", **kw)  # append to a new set creates it
    with open_run(run_path) as rf:
        s = rf.read_samples()
        np.testing.assert_allclose(s["x"], np.concatenate([x1, x2]), atol=F32 * 8)
        np.testing.assert_array_equal(s["logw"], np.concatenate([w1, w2]))
        assert rf.sample_sets() == ["samples", "reference"]
        assert rf.read_samples("reference")["x"].shape == (7, 4, 3)
    with RunFile(run_path, "a") as rf:
        with pytest.raises(ValueError, match="same fields"):
            rf.write_samples(x2, append=True, **kw)  # no logw this time
        with pytest.raises(ShapeError, match="particles"):
            rf.write_samples(x2[:, :3], logw=w2, append=True, **kw)
        rf.discard()


def test_overwrite_without_append_replaces(run_path):
    kw = dict(energy_unit="reduced", length_unit="reduced")
    with RunFile(run_path, "w") as rf:
        rf.write_samples(np.zeros((5, 2, 3)), logw=np.zeros(5), **kw)
        rf.write_samples(np.ones((3, 2, 3)), **kw)
    with open_run(run_path) as rf:
        s = rf.read_samples()
        assert s["x"].shape == (3, 2, 3) and s["logw"] is None


def test_topology_round_trip_without_pytables(run_path):
    top, x0 = aldp_topology()
    with RunFile(run_path, "w") as rf:
        rf.write_samples(x0[None], energy_unit="kJ/mol", length_unit="nm", topology=top)
    with open_run(run_path) as rf:
        t2 = rf.read_topology()
    assert [(a.name, a.element.symbol, a.residue.name) for a in t2.atoms] == \
        [(a.name, a.element.symbol, a.residue.name) for a in top.atoms]
    assert sorted((b[0].index, b[1].index) for b in t2.bonds) == sorted((b[0].index, b[1].index) for b in top.bonds)
    assert t2.n_bonds == 21


def test_topology_must_match_particles(run_path):
    top, _ = aldp_topology()
    with RunFile(run_path, "w") as rf:
        with pytest.raises(ShapeError, match="22 atoms"):
            rf.write_samples(np.zeros((2, 5, 3)), energy_unit="kJ/mol", length_unit="nm", topology=top)
        rf.discard()


def test_shape_and_unit_errors(run_path):
    with RunFile(run_path, "w") as rf:
        with pytest.raises(ShapeError, match=r"\(n, n_particles, dim\)"):
            rf.write_samples(np.zeros((4, 6)), energy_unit="reduced", length_unit="reduced")
        with pytest.raises(ShapeError, match="logw"):
            rf.write_samples(np.zeros((4, 2, 3)), logw=np.zeros(3), energy_unit="reduced", length_unit="reduced")
        with pytest.raises(ValueError, match="length_unit"):
            rf.write_samples(np.zeros((4, 2, 3)), energy_unit="reduced", length_unit="angstrom")
        with pytest.raises(ValueError, match="reserved"):
            rf.write_samples(np.zeros((4, 2, 3)), energy_unit="reduced", length_unit="nm", name="history")
        rf.discard()


# --------------------------------------------------------------------------- mdtraj


@pytest.mark.parametrize("system", ["lj", "peptide"])
def test_mdtraj_load_reads_run_file(run_path, system):
    pytest.importorskip("tables", reason="mdtraj reads HDF5 through PyTables")
    import mdtraj

    rng = np.random.default_rng(4)
    if system == "lj":
        x = rng.standard_normal((6, 13, 3))
        top = None
        unit = "reduced"
    else:
        top, x0 = aldp_topology()
        x = x0[None] + 0.01 * rng.standard_normal((6, 22, 3))
        unit = "nm"
    with RunFile(run_path, "w") as rf:
        rf.write_samples(x, logw=np.zeros(6), energy=np.zeros(6), energy_unit="reduced", length_unit=unit, topology=top)
    t = mdtraj.load(str(run_path))
    np.testing.assert_allclose(t.xyz, x, atol=F32 * 8)
    assert t.n_frames == 6
    if system == "lj":
        assert t.n_atoms == 13 and {a.element.symbol for a in t.topology.atoms} == {"Ar"}
    else:
        assert [a.name for a in t.topology.atoms] == [a.name for a in top.atoms]
        assert [r.name for r in t.topology.residues] == ["ACE", "ALA", "NME"]
        assert t.topology.n_bonds == top.n_bonds


# --------------------------------------------------------------------------- bad files


def _valid(path):
    write_lj_run(path, n=20, with_reference=False)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="samples.h5"):
        open_run(tmp_path / "empty")
    with pytest.raises(MissingFileError, match="does not exist"):
        RunFile(tmp_path / "nope.h5", "r")


def test_truncated_file_gives_run_file_error(run_path):
    _valid(run_path)
    data = run_path.read_bytes()
    run_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFileError, match="truncated"), open_run(run_path) as rf:
        rf.read_samples()


def test_non_hdf5_file_gives_run_file_error(tmp_path):
    p = tmp_path / "samples.h5"
    p.write_text("this is not HDF5\n" * 100)
    with pytest.raises(RunFileError, match="not an HDF5 file"):
        open_run(p)


def test_foreign_hdf5_file_gives_run_file_error(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["data"] = np.random.default_rng(0).standard_normal((10, 3))
        f["coordinates"] = np.zeros((2, 3, 3), dtype=np.float32)
    with pytest.raises(RunFileError, match="not a molsample run file"):
        open_run(p)
    with pytest.raises(RunFileError, match="not a molsample run file"):
        RunFile(p, "a")


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0])
def test_unknown_schema_version(run_path, version):
    _valid(run_path)
    with h5py.File(run_path, "r+") as f:
        f.attrs[SCHEMA_ATTR] = version
    with pytest.raises(RunFileError, match=f"schema version {version}"):
        open_run(run_path)


def test_interrupted_write_leaves_original_intact(run_path):
    _valid(run_path)
    before = run_path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"), RunFile(run_path, "a") as rf:
        rf.write_samples(np.zeros((3, 13, 3)), energy_unit="reduced", length_unit="reduced")
        rf.write_history({"a": [1.0]})
        rf.set_attrs(system="changed")
        raise RuntimeError("boom")
    assert run_path.read_bytes() == before
    assert list(run_path.parent.iterdir()) == [run_path]
    with open_run(run_path) as rf:
        assert rf.attrs["system"] == "lj13" and rf.read_samples()["x"].shape == (20, 13, 3)


def test_new_file_appears_only_on_close(run_path):
    _valid(run_path)
    rf = RunFile(run_path, "w")
    rf.write_samples(np.zeros((2, 1, 2)), energy_unit="reduced", length_unit="reduced")
    with open_run(run_path) as old:  # still the old file while the writer is open
        assert old.read_samples()["x"].shape == (20, 13, 3)
    rf.close()
    with open_run(run_path) as new:
        assert new.read_samples()["x"].shape == (2, 1, 2)


def test_read_only_and_closed_errors(run_path):
    _valid(run_path)
    with open_run(run_path) as rf:
        with pytest.raises(RunFileError, match="read-only"):
            rf.set_attrs(x=1)
        with pytest.raises(RunFileError, match="no sample set 'mcmc_corrected'"):
            rf.read_samples("mcmc_corrected")
        with pytest.raises(RunFileError, match="no 'diagnostics/x'"):
            rf.read_array("diagnostics/x")
        assert rf.read_history("nothing") == {}
    with pytest.raises(RunFileError, match="closed"):
        rf.read_samples()


# --------------------------------------------------------------------------- TOML emitter


def test_toml_emitter_round_trips():
    doc = {
        "name": "lj13", "int": -3, "float": 1.5e-7, "big": 1e300, "bool": False, "empty": [],
        "list": [1, 2, 3], "nested_list": [[1.0, 2.0], ["a"]], "str": "tab\tnewline\nquote\"uni ε",
        "odd key": 1, "records": [{"a": 1, "b": "x"}],
        "t": {"u": {"v": {"w": 1}}, "x": 2}, "empty_table": {},
    }
    assert tomllib.loads(dumps_toml(doc)) == doc
    special = tomllib.loads(dumps_toml({"a": math.inf, "b": -math.inf, "c": math.nan, "skip": None}))
    assert special["a"] == math.inf and special["b"] == -math.inf and math.isnan(special["c"]) and "skip" not in special
    assert tomllib.loads(dumps_toml({"n": np.float64(0.25), "m": np.int64(3), "arr": np.arange(3)})) == \
        {"n": 0.25, "m": 3, "arr": [0, 1, 2]}
    with pytest.raises(TypeError):
        dumps_toml({"bad": object()})
