"""Export: every format reloads in mdtraj with equal coordinates; resampling follows the weights."""

from __future__ import annotations

import mdtraj
import numpy as np
import pytest
from _run_helpers import write_aldp_run, write_lj_run, write_toy_run
from scipy import stats

from molsample.cli import main
from molsample.errors import ConfigError, EnergyError
from molsample.io.hdf5 import open_run
from molsample.reporting.export import export_run, infer_format, systematic_resample

#: Coordinate tolerance per format in nm (PDB stores Å with 3 decimals, XTC ~1e-3 nm, DCD/H5 float32).
TOL = {"pdb": 1e-3, "xtc": 1e-3, "dcd": 1e-5, "h5": 1e-5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    return {
        "lj": (d / "lj" / "samples.h5", write_lj_run(d / "lj" / "samples.h5", n=50, with_reference=False)),
        "aldp": (d / "aldp" / "samples.h5", write_aldp_run(d / "aldp" / "samples.h5", n=30)),
        "toy": (d / "toy" / "samples.h5", write_toy_run(d / "toy" / "samples.h5", n=40)),
    }


def _load(path, fmt, topology):
    if fmt == "h5":
        pytest.importorskip("tables", reason="mdtraj reads HDF5 through PyTables")
        return mdtraj.load(str(path))
    if fmt == "pdb":
        return mdtraj.load(str(path))
    return mdtraj.load(str(path), top=topology)


@pytest.mark.parametrize("system", ["lj", "aldp"])
@pytest.mark.parametrize("fmt", ["pdb", "dcd", "xtc", "h5"])
def test_every_format_reloads_in_mdtraj(runs, tmp_path, system, fmt):
    path, data = runs[system]
    out = tmp_path / f"traj.{fmt}"
    res = export_run(path.parent, out, fmt)
    assert res.n_frames == data["x"].shape[0] and not res.resampled and out.is_file()
    with open_run(path) as rf:
        top = rf.read_topology()
    t = _load(out, fmt, top)
    assert t.n_frames == data["x"].shape[0] and t.n_atoms == data["x"].shape[1]
    np.testing.assert_allclose(t.xyz, data["x"], atol=TOL[fmt])
    assert [a.name for a in t.topology.atoms] == [a.name for a in top.atoms]
    assert list(tmp_path.iterdir()) == [out]  # atomic write left no temp file


def test_h5_export_keeps_energies_and_is_a_run_file(runs, tmp_path):
    path, data = runs["aldp"]
    out = tmp_path / "sub.h5"
    export_run(path, out, resample=12, seed=5)
    with open_run(out) as rf:
        s = rf.read_samples()
        assert s["x"].shape == (12, 22, 3) and s["logw"] is None  # resampled frames carry equal weights
        assert rf.attrs["resampled"] and rf.attrs["system"] == "aldp"
        idx = systematic_resample(data["logw"], 12, np.random.default_rng(5))
        np.testing.assert_allclose(s["energy"], data["energy"][idx])
        np.testing.assert_allclose(s["x"], data["x"][idx], atol=1e-6)


def test_resampled_export_draws_source_frames(runs, tmp_path):
    path, data = runs["lj"]
    out = tmp_path / "r.dcd"
    res = export_run(path, out, resample=200, seed=1)
    assert res.n_frames == 200 and res.n_source == 50 and res.resampled
    with open_run(path) as rf:
        t = mdtraj.load(str(out), top=rf.read_topology())
    src = data["x"].reshape(50, -1)
    d = np.abs(t.xyz.reshape(200, -1)[:, None, :] - src[None]).max(-1)  # (200, 50)
    assert (d.min(axis=1) < 1e-5).all()
    counts = np.bincount(d.argmin(axis=1), minlength=50)
    w = np.exp(data["logw"] - data["logw"].max())
    w /= w.sum()
    assert np.all(np.abs(counts - 200 * w) <= 1.0)  # systematic resampling: floor or ceil of n·w_i


def test_two_dimensional_run_exports_only_npy(runs, tmp_path):
    path, data = runs["toy"]
    with pytest.raises(ConfigError, match="--format npy"):
        export_run(path, tmp_path / "toy.pdb")
    res = export_run(path, tmp_path / "toy.npy")
    arr = np.load(tmp_path / "toy.npy")
    assert res.format == "npy" and arr.shape == (40, 1, 2)
    np.testing.assert_allclose(arr, data["x"], atol=1e-6)
    ref = export_run(path, tmp_path / "ref.npy", name="reference")
    assert ref.n_frames == 40


def test_format_inference():
    assert infer_format("a/b.XTC", None) == "xtc"
    assert infer_format("a/b.bin", "hdf5") == "h5"
    with pytest.raises(ConfigError, match="--format"):
        infer_format("a/b.bin", None)
    with pytest.raises(ConfigError, match="unknown export format"):
        infer_format("a/b.pdb", "gro")


# --------------------------------------------------------------------------- systematic resampling


def _chi2(counts, w, n):
    expected = n * w
    keep = expected > 0
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum()) - 1


def test_resampling_frequencies_follow_weights():
    w = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    logw = np.log(w) + 7.0  # any shift
    n = 5000
    idx = systematic_resample(logw, n, np.random.default_rng(0))
    counts = np.bincount(idx, minlength=w.size)
    chi2, dof = _chi2(counts, w, n)
    threshold = stats.chi2.ppf(0.999, dof)  # ≈ 20.5 for 5 dof
    assert chi2 < threshold
    # the threshold separates: a resampler that ignores the weights, or maps them to the wrong
    # samples (off by one), fails it by orders of magnitude
    uniform = np.bincount(np.random.default_rng(0).integers(0, w.size, n), minlength=w.size)
    assert _chi2(uniform, w, n)[0] > 100 * threshold
    assert _chi2(np.roll(counts, 1), w, n)[0] > 100 * threshold
    # systematic resampling is exact up to one draw per sample
    assert np.all(np.abs(counts - n * w) <= 1.0)


def test_resampling_is_unbiased_over_seeds():
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(20))
    n = 7
    mean_counts = np.mean([np.bincount(systematic_resample(np.log(w), n, s), minlength=20) for s in range(4000)], 0)
    np.testing.assert_allclose(mean_counts, n * w, atol=0.06)


def test_resampling_ignores_nonfinite_and_rejects_all_nonfinite():
    logw = np.array([0.0, np.nan, -np.inf, np.inf * 0, 0.0])
    idx = systematic_resample(logw, 1000, 0)
    assert set(np.unique(idx)) == {0, 4}
    with pytest.raises(EnergyError, match="non-finite"):
        systematic_resample(np.full(3, np.nan), 5, 0)
    with pytest.raises(ConfigError, match=">= 1"):
        systematic_resample(np.zeros(3), 0, 0)


def test_resampling_seeded():
    logw = np.random.default_rng(0).standard_normal(100)
    a = systematic_resample(logw, 50, np.random.default_rng(9))
    b = systematic_resample(logw, 50, 9)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- CLI


def test_cli_export(runs, tmp_path, capsys):
    path, _ = runs["aldp"]
    out = tmp_path / "x.pdb"
    main(["export", str(path.parent), "--format", "pdb", "--resample", "10", "--seed", "2", "--out", str(out)])
    msg = capsys.readouterr().out
    assert "wrote 10 frames" in msg and "resampled" in msg and out.is_file()


def test_cli_export_missing_run_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path / "nonexistent"), "--format", "pdb", "--out", str(tmp_path / "x.pdb")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_cli_export_2d_to_pdb_exits_2(runs, tmp_path, capsys):
    path, _ = runs["toy"]
    with pytest.raises(SystemExit) as exc:
        main(["export", str(path), "--out", str(tmp_path / "x.pdb")])
    assert exc.value.code == 2 and "--format npy" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad output paths, registry


def test_format_and_extension_must_agree(runs, tmp_path):
    path, _ = runs["lj"]
    with pytest.raises(ConfigError, match="--format pdb does not match the extension .*xtc"):
        export_run(path, tmp_path / "x.xtc", "pdb")
    assert list(tmp_path.iterdir()) == []
    assert infer_format("x.xtc", "xtc") == "xtc" and infer_format("x.traj", "pdb") == "pdb"


def test_missing_output_folder_is_an_error_and_creates_nothing(runs, tmp_path, capsys):
    path, _ = runs["lj"]
    with pytest.raises(SystemExit) as exc:
        main(["export", str(path), "--out", str(tmp_path / "missing" / "dir" / "x.dcd")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "output folder" in err and "missing" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_registry_is_the_cli_choice():
    from molsample.commands.export_cmd import export
    from molsample.reporting.export import FORMATS

    choice = next(p for p in export.params if p.name == "fmt").type.choices
    assert set(FORMATS) <= set(choice) and set(FORMATS) == {"pdb", "dcd", "xtc", "h5", "npy"}
    assert all(f.extensions[0] == f".{f.name}" for f in FORMATS.values())


def test_degenerate_resample_reports_unique_frames(tmp_path, capsys):
    from _run_helpers import write_lj_run

    from molsample.io.hdf5 import RunFile

    data = write_lj_run(tmp_path / "src" / "samples.h5", n=40, with_reference=False)
    src = tmp_path / "one.h5"
    logw = np.full(40, -80.0)
    logw[3] = 0.0  # one sample carries all the weight
    with RunFile(src, "w") as rf:
        rf.write_samples(data["x"], logw=logw, energy=data["energy"], energy_unit="reduced", length_unit="reduced")
    main(["export", str(src), "--resample", "100", "--out", str(tmp_path / "x.dcd")])
    cap = capsys.readouterr()
    assert "1 unique structures among the 100 resampled frames" in cap.out
    assert "WARNING" in cap.err and "degenerate" in cap.err
    res = export_run(src, tmp_path / "y.npy", resample=100)
    assert res.n_unique == 1
