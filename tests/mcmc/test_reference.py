"""Reference generation per system, the run file it writes, the cache and the CLI."""

from __future__ import annotations

import math

import numpy as np
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import molsample.mcmc.reference as ref
from molsample.commands.reference_cmd import reference as reference_cmd
from molsample.errors import ConfigError
from molsample.io.hdf5 import RunFile
from molsample.systems.cards import load_system

FAST_MCMC = dict(burn_in=100, thin=2, relax_steps=20)


@pytest.fixture(scope="module")
def dw4():
    return load_system("dw4")


@pytest.fixture(scope="module")
def gauss2d():
    return load_system("gauss2d")


def test_auto_methods():
    assert ref.resolve_method(load_system("ring2d")) == "exact"
    assert ref.resolve_method(load_system("gauss2d")) == "exact"
    assert ref.resolve_method(load_system("gauss2d"), kT=2.0) == "mala"  # the exact sampler is at the card's kT
    assert ref.resolve_method(load_system("dw4")) == "pt"
    assert ref.resolve_method(load_system("lj13")) == "mala"
    assert ref.resolve_method(load_system("aldp")) == "md"


def test_exact_reference_of_gaussian(gauss2d):
    r = ref.generate_reference(gauss2d, 20000, seed=1, progress=False)
    assert r.method == "exact" and r.samples.shape == (20000, 1, 2) and r.samples.dtype == torch.float64
    x = r.samples[:, 0]
    assert torch.allclose(x.mean(0), torch.tensor([1.0, -0.5], dtype=torch.float64), atol=0.03)
    assert torch.allclose(torch.cov(x.T), torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64), atol=0.04)
    assert torch.allclose(r.energies, gauss2d.energy.energy(r.samples))
    assert r.diagnostics["n_effective"] == 20000


def test_mala_reference_at_another_temperature(gauss2d):
    """MALA at kT = 2 of E = −log N(μ, Σ) samples N(μ, 2Σ)."""
    r = ref.generate_reference(gauss2d, 8000, kT=2.0, seed=0, progress=False, chains=64, burn_in=300, thin=5)
    assert r.method == "mala" and r.kT == 2.0
    cov = torch.cov(r.samples[:, 0].T)
    assert torch.allclose(cov, 2 * torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64), atol=0.2)
    d = r.diagnostics
    assert 0.45 < d["acceptance"] < 0.7
    assert d["n_energy_evals"] == 64 * (300 + 8000 // 64 * 5 + 2)
    assert d["tau_int"] > 0 and d["n_effective"] == pytest.approx(8000 / max(d["tau_int"], 1.0))


def test_pt_reference_of_dw4(dw4):
    r = ref.generate_reference(dw4, 500, seed=0, progress=False, **FAST_MCMC)
    assert r.method == "pt" and r.samples.shape == (500, 4, 2)
    assert r.samples.mean(dim=1).abs().max() < 1e-10  # zero centre of mass
    assert torch.allclose(r.energies, dw4.energy.energy(r.samples))
    d = r.diagnostics
    assert len(d["swap_rates"]) == d["settings"]["n_temps"] - 1 and all(0 < s <= 1 for s in d["swap_rates"])
    assert d["kT_ladder"][0] == 1.0 and d["kT_ladder"][-1] == pytest.approx(5.0)
    for key in ("acceptance", "tau_int", "n_effective", "n_energy_evals", "wall_time_s", "energy_mean", "settings"):
        assert d[key] is not None
    # same seed, same samples
    again = ref.generate_reference(dw4, 500, seed=0, progress=False, **FAST_MCMC)
    assert torch.equal(again.samples, r.samples)


def test_initial_configurations_are_relaxed():
    lj = load_system("lj13")
    g = torch.Generator().manual_seed(0)
    x_raw, _ = ref.initial_configurations(lj, 4, relax_steps=0, generator=g)
    g = torch.Generator().manual_seed(0)
    x, evals = ref.initial_configurations(lj, 4, relax_steps=100, generator=g)
    assert x.shape == (4, 13, 3) and evals == 4 * 101
    e_raw, e = lj.energy.energy(x_raw), lj.energy.energy(x)
    assert torch.all(e < e_raw) and torch.all(e < -60)  # bound clusters (global minimum ≈ −88.65 + oscillator)
    assert x.mean(dim=1).abs().max() < 1e-12


def test_md_reference_of_aldp():
    aldp = load_system("aldp")
    r = ref.generate_reference(aldp, 10, seed=0, progress=False, steps_per_frame=20, equilibration_steps=100)
    assert r.method == "md" and r.samples.shape == (10, 22, 3)
    assert r.kT == pytest.approx(aldp.kT)
    assert r.samples.mean(dim=1).abs().max() < 1e-9
    # the recorded energies are the energies of the recorded frames
    assert torch.allclose(r.energies, aldp.energy.energy(r.samples), atol=1e-3)
    assert r.diagnostics["n_energy_evals"] == 100 + 10 * 20


def test_write_and_read_reference(tmp_path, dw4):
    r = ref.generate_reference(dw4, 64, seed=3, progress=False, **FAST_MCMC)
    path = ref.write_reference(r, tmp_path / "ref.h5", dw4)
    with RunFile(path) as rf:
        s = rf.read_samples()
        assert s["x"].shape == (64, 4, 2) and s["energy"].shape == (64,)
        assert rf.attrs["kind"] == "reference" and rf.attrs["method"] == "pt" and rf.attrs["system"] == "dw4"
        assert rf.read_array("diagnostics/swap_rates").shape == (r.diagnostics["settings"]["n_temps"] - 1,)
        assert rf.read_config()["reference"]["settings"]["chains"] == 32
    back = ref.read_reference(path)
    assert torch.allclose(back.samples, r.samples, atol=1e-5)  # positions are stored as float32
    assert torch.allclose(back.energies, r.energies)
    assert back.diagnostics["n_energy_evals"] == r.diagnostics["n_energy_evals"]
    assert back.kT == 1.0 and back.method == "pt"


def test_cache_reuses_matching_runs_only(tmp_path, dw4, monkeypatch):
    calls = []
    real = ref.generate_reference

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ref, "generate_reference", counting)
    kw = dict(seed=0, cache_dir=tmp_path, progress=False, **FAST_MCMC)
    a = ref.load_or_generate_reference(dw4, 50, **kw)
    b = ref.load_or_generate_reference(dw4, 50, method="pt", **kw)  # auto resolves to pt: same entry
    assert a.diagnostics["cache"] == "miss" and b.diagnostics["cache"] == "hit" and len(calls) == 1
    assert a.diagnostics["path"] == b.diagnostics["path"]
    assert torch.allclose(a.samples, b.samples, atol=1e-5)
    c = ref.load_or_generate_reference(dw4, 50, **{**kw, "seed": 1})
    d = ref.load_or_generate_reference(dw4, 50, kT=1.5, **kw)
    e = ref.load_or_generate_reference(dw4, 50, **{**kw, "thin": 3})
    assert len(calls) == 4 and len({x.diagnostics["path"] for x in (a, c, d, e)}) == 4
    # a damaged cache file is regenerated
    with open(a.diagnostics["path"], "wb") as fh:
        fh.write(b"not hdf5")
    f = ref.load_or_generate_reference(dw4, 50, **kw)
    assert f.diagnostics["cache"] == "miss" and len(calls) == 5
    # the chains checkpoint beside their cache file (so a stopped run resumes), removed when done
    assert calls[0]["checkpoint"] == Path(a.diagnostics["path"]).with_suffix(".ckpt.pt")
    assert not list(tmp_path.glob("*.ckpt.pt"))


def test_cache_key_depends_on_system_parameters(tmp_path):
    s1, s2 = load_system("lj13"), load_system("lj13")
    s2.energy.oscillator_scale = 2.0
    p1 = ref.reference_cache_path(s1, 1.0, "pt", 100, {"a": 1, "b": 2}, tmp_path)
    assert p1 == ref.reference_cache_path(s1, 1.0, "pt", 100, {"b": 2, "a": 1}, tmp_path)
    assert p1 != ref.reference_cache_path(s2, 1.0, "pt", 100, {"a": 1, "b": 2}, tmp_path)
    assert p1 != ref.reference_cache_path(s1, 1.0 + 1e-9, "pt", 100, {"a": 1, "b": 2}, tmp_path)
    assert p1.parent == tmp_path and p1.name.startswith("lj13-pt-n100-") and p1.suffix == ".h5"


def test_setting_aliases(dw4):
    aldp = load_system("aldp")
    r = ref.resolve_settings(aldp, "md", 10, {"burn_in": 7, "steps": 3})
    assert r["equilibration_steps"] == 7 and r["steps_per_frame"] == 3 and "burn_in" not in r
    assert ref.resolve_settings(aldp, "md", 10, {"n_steps": 1000})["steps_per_frame"] == 100
    r = ref.resolve_settings(dw4, "pt", 100, {"n_steps": 500, "chains": 10, "burn_in": None})
    assert r["thin"] == 50 and r["burn_in"] == 3000  # ceil(100/10) = 10 kept samples per chain
    assert ref.resolve_settings(dw4, "mala", 100, {"steps": 4})["thin"] == 4
    with pytest.raises(ConfigError, match="conflict"):
        ref.resolve_settings(dw4, "mala", 100, {"steps": 4, "thin": 5})


def test_reference_user_errors(dw4, gauss2d):
    with pytest.raises(ConfigError, match="unknown setting"):
        ref.generate_reference(dw4, 10, progress=False, n_chains=3)
    with pytest.raises(ConfigError, match="exact sampler"):
        ref.generate_reference(dw4, 10, method="exact", progress=False)
    with pytest.raises(ConfigError, match="card's kT"):
        ref.generate_reference(gauss2d, 10, method="exact", kT=2.0, progress=False)
    with pytest.raises(ConfigError, match="OpenMM"):
        ref.generate_reference(dw4, 10, method="md", progress=False)
    with pytest.raises(ConfigError, match="positive integer"):
        ref.generate_reference(dw4, 0, progress=False)


def test_cli_writes_run_file(tmp_path):
    out = tmp_path / "dw4_ref.h5"
    res = CliRunner().invoke(reference_cmd, ["--system", "dw4", "--n", "40", "--burn-in", "50", "--thin", "2",
                                             "--set", "relax_steps=10", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "swap rates" in res.output and "tau_int" in res.output and "energy evaluations" in res.output
    with RunFile(out) as rf:
        s = rf.read_samples()
        assert s["x"].shape == (40, 4, 2) and s["energy"].shape == (40,)
        assert math.isclose(rf.attrs["kT"], 1.0)
    assert np.isfinite(s["energy"]).all()


def test_cli_temperature_and_errors(tmp_path):
    from molsample.cli import main
    from molsample.systems.units import kT

    out = tmp_path / "aldp.h5"
    res = CliRunner().invoke(reference_cmd, ["--system", "aldp", "--n", "5", "--temperature", "400", "--thin", "10",
                                             "--burn-in", "10", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert ref.read_reference(out).kT == pytest.approx(kT(400.0))
    with pytest.raises(SystemExit) as exc:
        main(["reference", "--system", "lj13", "--n", "5", "--temperature", "300", "--out", str(tmp_path / "x.h5")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["reference", "--system", "dw4", "--n", "5", "--set", "bogus=1", "--out", str(tmp_path / "x.h5")])
    assert exc.value.code == 2
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_lj13_mala_and_pt_agree():
    """The two LJ-13 reference samplers agree on the energy distribution (15–60 s)."""
    lj = load_system("lj13")
    m = ref.generate_reference(lj, 4000, method="mala", seed=0, progress=False, chains=64, thin=50)
    p = ref.generate_reference(lj, 4000, method="pt", seed=0, progress=False, chains=16)
    err = math.hypot(m.diagnostics["energy_std"] / math.sqrt(m.diagnostics["n_effective"]),
                     p.diagnostics["energy_std"] / math.sqrt(p.diagnostics["n_effective"]))
    assert abs(m.diagnostics["energy_mean"] - p.diagnostics["energy_mean"]) < 4 * err
    assert m.diagnostics["energy_std"] == pytest.approx(p.diagnostics["energy_std"], rel=0.15)


def test_a_cache_miss_returns_what_a_later_hit_returns(tmp_path):
    """The cache keeps positions as float32: the run that generates them must get the same values as
    every later run that reads them, or a run and its rerun differ in the 8th digit."""
    from molsample.mcmc.reference import load_or_generate_reference
    from molsample.systems.cards import load_system

    system = load_system("dw4")
    kw = dict(method="mala", seed=3, cache_dir=tmp_path, progress=False, n_steps=40, burn_in=10)
    miss = load_or_generate_reference(system, 16, **kw)
    hit = load_or_generate_reference(system, 16, **kw)
    assert miss.diagnostics["cache"] == "miss" and hit.diagnostics["cache"] == "hit"
    assert torch.equal(miss.samples, hit.samples) and torch.equal(miss.energies, hit.energies)
