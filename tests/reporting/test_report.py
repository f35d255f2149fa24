"""Report: figures and page on tiny synthetic runs; weighted statistics against closed forms."""

from __future__ import annotations

import json
import math

import mdtraj
import numpy as np
import torch
import pytest
from _run_helpers import write_aldp_run, write_lj_run, write_toy_run

from molsample.analysis.metrics import energy_w2
from molsample.cli import main
from molsample.flows.weights import summarize
from molsample.io.hdf5 import RunFile
from molsample.reporting import make_report, pair_distances, weighted_histogram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000, f"{path} is not a real figure"


@pytest.fixture(scope="module")
def lj_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lj") / "run"
    return d, write_lj_run(d / "samples.h5", n=300, seed=0)


def test_report_on_lj_run(lj_run, tmp_path):
    run_dir, data = lj_run
    rep = make_report(run_dir, out=tmp_path / "rep")
    assert set(rep.figures) == {"weights", "annealing", "loss", "energy", "distances"}
    for p in rep.figures.values():
        _check_png(p)
    page = rep.html.read_text()
    for p in rep.figures.values():
        assert f'src="{p.name}"' in page
    md = rep.markdown.read_text()
    assert md.startswith("# molsample report — lj13") and "| ESS (fraction) |" in md and "```toml" in md
    # headline numbers against closed forms on the stored data
    w = np.exp(data["logw"] - data["logw"].max())
    ess = w.sum() ** 2 / (w.size * (w**2).sum())
    assert rep.headline["ESS (fraction)"] == pytest.approx(ess, rel=1e-12)
    w2 = rep.headline["energy W2 to reference, reweighted [reduced units]"]
    assert w2 == pytest.approx(energy_w2(data["energy"], data["e_ref"], w / w.sum()), rel=1e-9)
    assert rep.headline["wall time"] == "12.5 s" and rep.headline["samples"] == 300
    summary = json.loads(rep.summary_json.read_text())
    assert summary["system"] == "lj13" and summary["ess"] == pytest.approx(ess) and "energy.png" in summary["figures"]
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(
        [p.name for p in rep.figures.values()] + ["report.html", "report.md", "summary.json"])


def test_report_default_folder_and_external_reference(lj_run, tmp_path):
    run_dir, data = lj_run
    ref_dir = tmp_path / "ref"
    with RunFile(ref_dir / "samples.h5", "w") as rf:
        rf.write_samples(data["x"][:50], energy=data["energy"][:50], energy_unit="reduced", length_unit="reduced")
        rf.set_attrs(kind="reference", method="md")
    rep = make_report(run_dir, reference=ref_dir)
    assert rep.out_dir == run_dir / "report" and rep.html.is_file()
    assert rep.headline["reference samples"] == 50
    flow_w2 = rep.headline["energy W2 to reference, flow [reduced units]"]
    assert flow_w2 == pytest.approx(energy_w2(data["energy"], data["energy"][:50]), rel=1e-9)
    np.save(tmp_path / "ref.npy", data["x_ref"])  # positions only: energies from the system card
    rep2 = make_report(run_dir, reference=tmp_path / "ref.npy", out=tmp_path / "r2")
    assert rep2.headline["energy W2 to reference, flow [reduced units]"] == pytest.approx(
        energy_w2(data["energy"], data["e_ref"]), rel=1e-6)


def test_report_on_peptide_has_ramachandran(tmp_path):
    data = write_aldp_run(tmp_path / "run" / "samples.h5", n=150)
    rep = make_report(tmp_path / "run", reference=tmp_path / "run")
    assert "ramachandran" in rep.figures and "density2d" not in rep.figures
    _check_png(rep.figures["ramachandran"])
    _check_png(rep.figures["basins"])  # basin populations and dF: the card names ALDP's phi/psi
    _check_png(rep.figures["energy"])
    assert "kJ/mol" in " ".join(rep.headline)
    _check_png(rep.figures["bonds"])
    # bond lengths: the RMSDs against the mean bonds of a reference with twice the run's scatter, so
    # that the ratio (about 0.5× thermal) is computed, not guaranteed as for a run compared with itself
    ref = write_aldp_run(tmp_path / "ref" / "samples.h5", n=150, seed=1, noise=0.02)
    rep_b = make_report(tmp_path / "run", reference=tmp_path / "ref", out=tmp_path / "rep-bonds")
    bonds = np.array([[b[0].index, b[1].index] for b in data["topology"].bonds])
    length = lambda x: np.linalg.norm(x[:, bonds[:, 0]] - x[:, bonds[:, 1]], axis=-1)  # noqa: E731
    d, d_ref = length(data["x"]), length(ref["x"])
    mean_ref = d_ref.mean(0)
    w = np.exp(data["logw"] - data["logw"].max())
    thermal = np.sqrt(((d_ref - mean_ref) ** 2).mean())
    flow = np.sqrt(((d - mean_ref) ** 2).mean())
    reweighted = np.sqrt((w * ((d - mean_ref) ** 2).mean(1)).sum() / w.sum())
    assert 0.4 < flow / thermal < 0.6
    assert rep_b.headline["bond RMSD of the reference itself (thermal) [nm]"] == pytest.approx(thermal, rel=1e-6)
    assert rep_b.headline["bond RMSD to reference mean bonds, flow [nm]"].endswith(f"({flow / thermal:.2f}× thermal)")
    summary = json.loads(rep_b.summary_json.read_text())
    assert summary["bond_rmsd"]["thermal"] == pytest.approx(thermal, rel=1e-6)
    assert summary["bond_rmsd"]["flow"] == pytest.approx(flow, rel=1e-6)
    assert summary["bond_rmsd"]["reweighted"] == pytest.approx(reweighted, rel=1e-6)
    assert summary["bond_rmsd"]["flow_over_thermal"] == pytest.approx(flow / thermal, rel=1e-6)
    assert not any("bond" in w for w in summary["warnings"])
    assert mdtraj.compute_phi(mdtraj.Trajectory(data["x"], data["topology"]))[1].shape == (150, 1)


def test_loose_bonds_are_a_loud_warning(tmp_path, capsys):
    data = write_aldp_run(tmp_path / "ref" / "samples.h5", n=100, noise=0.002)
    write_aldp_run(tmp_path / "run" / "samples.h5", n=100, seed=1, noise=0.01)  # 5× the reference's scatter
    rep = make_report(tmp_path / "run", reference=tmp_path / "ref", out=tmp_path / "rep")
    ratio = json.loads(rep.summary_json.read_text())["bond_rmsd"]["flow_over_thermal"]
    assert ratio == pytest.approx(5.0, rel=0.1)
    assert any("does not resolve the covalent bonds" in w for w in rep.warnings)
    assert "bonds" in rep.figures and data["x"].shape == (100, 22, 3)
    alone = make_report(tmp_path / "ref", out=tmp_path / "rep2")  # no reference: the figure, no RMSD
    assert "bonds" in alone.figures and "bond_rmsd" not in json.loads(alone.summary_json.read_text())


def test_basin_figure_only_for_systems_with_backbone_dihedrals(tmp_path):
    write_lj_run(tmp_path / "lj" / "samples.h5", n=40)
    assert "basins" not in make_report(tmp_path / "lj").figures


def test_report_on_2d_toy_has_density(tmp_path):
    write_toy_run(tmp_path / "run" / "samples.h5", n=500)
    rep = make_report(tmp_path / "run")
    assert "density2d" in rep.figures and "distances" not in rep.figures
    _check_png(rep.figures["density2d"])


def test_report_without_weights_or_history(tmp_path):
    with RunFile(tmp_path / "samples.h5", "w") as rf:
        rf.write_samples(np.random.default_rng(0).standard_normal((40, 4, 2)), energy_unit="reduced",
                         length_unit="reduced")
    rep = make_report(tmp_path / "samples.h5", out=tmp_path / "rep")
    assert set(rep.figures) == {"distances"}
    assert any("no /logw" in n for n in rep.notes)


# --------------------------------------------------------------------------- statistics


def test_weight_summary_closed_forms():
    def summarize_weights(logw):
        return summarize(torch.as_tensor(logw))

    n = 8
    s = summarize_weights(np.full(n, 2.5))
    assert s.ess == pytest.approx(1.0) and s.log_z == pytest.approx(2.5) and s.log_z_se == pytest.approx(0.0)
    s = summarize_weights(np.array([0.0] + [-np.inf] * (n - 1)))
    assert s.ess == pytest.approx(1 / n) and s.log_z == pytest.approx(-math.log(n)) and s.n_nonfinite == n - 1
    w = np.array([1.0, 2.0, 3.0, 4.0])
    s = summarize_weights(np.log(w))
    assert s.ess == pytest.approx(w.sum() ** 2 / (4 * (w**2).sum()))
    assert s.log_z == pytest.approx(math.log(w.mean()))
    assert s.log_z_se == pytest.approx(w.std(ddof=1) / (2 * w.mean()))  # delta method, sample std
    s = summarize_weights(np.array([0.0, np.nan]))
    assert s.n_nonfinite == 1 and s.log_z == pytest.approx(math.log(0.5))


def test_weighted_histogram_matches_repetition():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(200)
    k = rng.integers(1, 4, 200)
    dens_w, edges = weighted_histogram(v, k.astype(float), bins=20, range=(-4, 4))
    dens_r, _ = weighted_histogram(np.repeat(v, k), None, bins=edges)
    np.testing.assert_allclose(dens_w, dens_r)
    assert (dens_w * np.diff(edges)).sum() == pytest.approx(1.0)
    dens_half, _ = weighted_histogram(np.array([0.0, 10.0]), None, bins=4, range=(-1, 1))
    assert (dens_half * 0.5).sum() == pytest.approx(0.5)  # mass outside the range is not re-spread


def test_pair_distances():
    x = np.array([[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])
    np.testing.assert_allclose(pair_distances(x), [[5.0, 1.0, math.sqrt(26.0)]])


# --------------------------------------------------------------------------- CLI


def test_cli_report(lj_run, tmp_path, capsys):
    run_dir, _ = lj_run
    main(["report", str(run_dir), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "ESS (fraction)" in out and "report.html" in out
    assert (tmp_path / "out" / "report.html").is_file()


def test_cli_report_missing_run_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "nonexistent")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: run") and "does not exist" in err and "Traceback" not in err


def test_cli_report_foreign_file_exits_2(tmp_path, capsys):
    (tmp_path / "samples.h5").write_bytes(b"\x00" * 2048)
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path)])
    assert exc.value.code == 2 and "cannot be read as HDF5" in capsys.readouterr().err


def test_report_includes_mcmc_corrected_set(tmp_path):
    data = write_lj_run(tmp_path / "run" / "samples.h5", n=120, seed=1)
    with RunFile(tmp_path / "run" / "samples.h5", "a") as rf:
        rf.write_samples(data["x_ref"], energy=data["e_ref"], energy_unit="reduced", length_unit="reduced",
                         name="mcmc_corrected")
    rep = make_report(tmp_path / "run")
    key = "energy W2 to reference, MCMC-corrected [reduced units]"
    assert rep.headline[key] == pytest.approx(0.0, abs=1e-12)  # same energies as the reference set
    assert "energy" in rep.figures and "distances" in rep.figures


# --------------------------------------------------------------------------- diagnostics in the report


def _degenerate_run(path, n=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4, 2))
    logw = np.full(n, -60.0)
    logw[5] = 0.0
    energy = np.r_[rng.standard_normal(n - 4), [1e6, 2e6, 5e5, 3e6]]  # a few clashes far from the rest
    with RunFile(path, "w") as rf:
        rf.write_samples(x, logw=logw, energy=energy, energy_unit="reduced", length_unit="reduced", kT=1.0)
        rf.write_samples(rng.standard_normal((n, 4, 2)), energy=rng.standard_normal(n), energy_unit="reduced",
                         length_unit="reduced", name="reference")
        rf.set_attrs(system="dw4", kind="tilt", stage_cpu_s=json.dumps({"pretrain": 30.0, "tilt": 60.0}),
                     stage_wall_s=json.dumps({"pretrain": 20.0, "tilt": 70.0, "report": 10.0}))


def test_degenerate_weights_are_loud_everywhere(tmp_path, capsys):
    _degenerate_run(tmp_path / "a.h5")
    rep = make_report(tmp_path / "a.h5")
    assert rep.out_dir == tmp_path / "a-report"  # not the shared <folder>/report
    assert rep.warnings and rep.warnings[0].startswith("DEGENERATE WEIGHTS: ESS")
    assert "unreliable: 1 effective sample" in rep.headline["log Z"] and "±" not in rep.headline["log Z"]
    summary = json.loads(rep.summary_json.read_text())
    assert summary["degenerate_weights"] is True and summary["warnings"] == rep.warnings
    assert isinstance(summary["log_z"], float) and summary["log_z_reliable"] is False
    assert summary["ess_samples"] == pytest.approx(1.0, rel=1e-9) and summary["n_half_weight"] == 1
    assert "log Z" not in summary and all(" " not in k for k in summary)  # machine keys only
    assert "**WARNING:** DEGENERATE" in rep.markdown.read_text()
    assert '<p class="warning">WARNING: DEGENERATE' in rep.html.read_text()
    main(["report", str(tmp_path / "a.h5"), "--out", str(tmp_path / "cli")])
    cap = capsys.readouterr()
    assert "WARNING: DEGENERATE WEIGHTS" in cap.err


def test_two_run_files_in_one_folder_get_two_reports(tmp_path):
    from molsample.reporting.run_data import default_out_dir

    _degenerate_run(tmp_path / "a.h5")
    _degenerate_run(tmp_path / "samples.h5")
    assert default_out_dir(tmp_path / "a.h5") == tmp_path / "a-report"
    assert default_out_dir(tmp_path / "samples.h5") == tmp_path / "report" == default_out_dir(tmp_path)


def test_stage_times_table(tmp_path, capsys):
    _degenerate_run(tmp_path / "samples.h5")
    rep = make_report(tmp_path)
    assert rep.timing[0] == ("pretrain", "30.0", "20.0", "20%") and rep.timing[2] == ("report", "—", "10.0", "10%")
    assert rep.timing[-1] == ("total", "90.0", "100.0", "100%")
    assert "## Where the time goes" in rep.markdown.read_text()
    assert rep.summary["stage_wall_s"] == {"pretrain": 20.0, "tilt": 70.0, "report": 10.0}
    main(["report", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "where the time goes" in capsys.readouterr().out


def test_energy_figure_shows_far_samples_in_a_second_panel(tmp_path):
    from molsample.reporting.figures import FIGURES
    from molsample.reporting.run_data import load_run_data

    _degenerate_run(tmp_path / "samples.h5")
    d = load_run_data(tmp_path)
    fig = FIGURES["energy"](d).figure
    assert len(fig.axes) == 2 and fig.axes[1].get_xscale() == "symlog"
    assert fig.axes[1].get_xlim()[1] >= 3e6  # the clashes are inside the full-range panel
    d.flow.energy = d.flow.energy[:-4]
    d.flow.logw = d.flow.logw[:-4]
    d.weights = None
    assert len(FIGURES["energy"](d).figure.axes) == 1  # nothing far: one panel


def test_annealing_figure_draws_the_full_ess_and_no_offset_on_constant_h(lj_run):
    from molsample.reporting.figures import FIGURES
    from molsample.reporting.run_data import load_run_data

    run_dir, _ = lj_run
    d = load_run_data(run_dir)
    fig = FIGURES["annealing"](d).figure
    full = fig.axes[0]
    line = full.get_lines()[0]
    ess = d.history["ess"]
    np.testing.assert_allclose(line.get_ydata(), ess[np.isfinite(ess)])  # every computed level, no NaN gaps
    assert full.get_yscale() == "log" and "full" in line.get_label()
    assert "not the ESS of the samples" in fig.axes[1].get_title()
    h_ax = fig.axes[2]
    fig.canvas.draw()  # tick labels exist only after drawing
    assert h_ax.yaxis.get_major_formatter().get_offset() == ""
    assert all("e" not in t.get_text() for t in h_ax.get_yticklabels())


def test_loss_figure_includes_the_pretraining_curve(lj_run, tmp_path):
    import shutil

    from molsample.reporting.figures import FIGURES
    from molsample.reporting.run_data import load_run_data

    run_dir, _ = lj_run
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    torch.save({"spec": {}, "state_dict": {}, "history": {"step": [0, 1, 2], "loss": [3.0, 2.0, 1.5]}},
               folder / "pretrained.pt")
    d = load_run_data(folder)
    np.testing.assert_allclose(d.pretrain_history["loss"], [3.0, 2.0, 1.5])
    out = FIGURES["loss"](d)
    assert len(out.figure.axes) == 2 and "pretraining" in out.caption
    np.testing.assert_allclose(out.figure.axes[0].get_lines()[0].get_ydata(), [3.0, 2.0, 1.5])


def test_small_sets_get_few_bins():
    from molsample.reporting.plots import Series, auto_bins

    assert auto_bins([Series("a", np.arange(20.0))]) == 8
    assert auto_bins([Series("a", np.arange(1000.0)), Series("b", np.arange(27.0))]) == 8
    assert auto_bins([Series("a", np.arange(8000.0))]) == 40
    assert auto_bins([Series("a", np.arange(1e6))]) == 70


def test_mirror_images_given_weight_zero_are_named_in_a_note(tmp_path):
    from molsample.reporting.headline import build_headline
    from molsample.reporting.run_data import load_run_data

    logw = np.zeros(60)
    logw[:3] = -np.inf  # three mirror images dropped by the chirality fix
    logw[3] = np.nan  # one failed energy
    with RunFile(tmp_path / "samples.h5", "w") as rf:
        rf.write_samples(np.random.default_rng(0).standard_normal((60, 3, 3)), logw=logw, energy_unit="reduced",
                         length_unit="reduced")
        rf.set_attrs(chirality_dropped=3)
    d = load_run_data(tmp_path)
    head, summary, warnings = build_headline(d)
    assert head["non-finite weights"] == 4 and summary["n_nonfinite_weights"] == 4
    assert any("3 of the 4 samples with a non-finite log-weight are mirror images" in n for n in d.notes)
    assert any("4 of 60 samples have a non-finite log-weight" in w for w in warnings)


def test_cost_counts_every_stage_and_the_cached_base_data(tmp_path, capsys):
    """Effective samples per evaluation and per CPU-second, by hand from the attributes: the base
    data count at their making cost although this run's base-data stage only loaded them."""
    n = 64
    rng = np.random.default_rng(1)
    logw = rng.standard_normal(n)
    with RunFile(tmp_path / "samples.h5", "w") as rf:
        rf.write_samples(rng.standard_normal((n, 4, 2)), logw=logw, energy=rng.standard_normal(n),
                         energy_unit="reduced", length_unit="reduced", kT=1.0)
        rf.set_attrs(system="dw4", kind="tilt", energy_evals=1000,
                     stage_cpu_s=json.dumps({"base_data": 0.1, "pretrain": 30.0, "tilt": 60.0, "final": 10.0,
                                             "reference": 5.0, "report": 1.0}),
                     base_data_cost=json.dumps({"method": "mala", "n": 500, "n_energy_evals": 9000,
                                                "cpu_time_s": 20.0, "kT0": 1.25, "n_effective": 50.0}),
                     pretrain_cost=json.dumps({"steps": 500, "cpu_time_s": 100.0}))
    rep = make_report(tmp_path)
    w = np.exp(logw - logw.max())
    eff = w.sum() ** 2 / (w ** 2).sum()
    cost = rep.summary["cost"]
    assert cost["effective_samples"] == pytest.approx(eff, rel=1e-9)
    assert cost["effective_per_1000_evals"] == pytest.approx(eff, rel=1e-9)  # 1000 evaluations
    assert cost["effective_per_1000_evals_with_base_data"] == pytest.approx(eff / 10, rel=1e-9)
    # the sampler's stages: base data and pretraining at their making cost (20 s, not the 0.1 s of
    # loading them; 100 s, not 30), tilt, final; not the reference or the report
    assert cost["total_cpu_s"] == pytest.approx(190.0)
    assert cost["cpu_s_per_effective"] == pytest.approx(190.0 / eff, rel=1e-9)
    assert cost["cpu_s_per_effective_further"] == pytest.approx(10.0 / eff, rel=1e-9)
    assert "9,000 energy evaluations" in rep.headline["base data (cost when made)"]
    main(["report", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "counting the base data" in capsys.readouterr().out


def test_cost_is_absent_without_stage_times(tmp_path):
    _degenerate_run(tmp_path / "a.h5")
    with RunFile(tmp_path / "a.h5", "a") as rf:
        rf.set_attrs(kind="reference")
    assert "cost" not in make_report(tmp_path / "a.h5").summary
