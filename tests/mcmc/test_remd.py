"""Replica-exchange MD: the swap rule against its closed form, equipartition at the lowest temperature, resume."""

from __future__ import annotations

import math

import numpy as np
import openmm
import pytest

from molsample.errors import ConfigError
from molsample.mcmc.remd import geometric_temperatures, run_remd, swap_log_acceptance
from molsample.systems.units import kT as kT_of

from _run_helpers import interrupt_after


def harmonic_system(n: int = 4, k: float = 500.0) -> openmm.System:
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("k", k)
    for i in range(n):
        system.addParticle(12.0)
        force.addParticle(i, [])
    system.addForce(force)
    return system


def test_ladder_and_swap_rule() -> None:
    t = geometric_temperatures(300.0, 600.0, 4)
    assert t[0] == 300.0 and t[-1] == pytest.approx(600.0) and np.allclose(t[1:] / t[:-1], 2 ** (1 / 3))
    assert geometric_temperatures(300.0, 600.0, 1).tolist() == [300.0]
    # detailed balance of the product measure: π_i(x_j) π_j(x_i) / (π_i(x_i) π_j(x_j))
    ki, kj, ei, ej = 2.5, 3.5, -10.0, -4.0
    ratio = math.exp(-ej / ki - ei / kj + ei / ki + ej / kj)
    assert math.exp(swap_log_acceptance(ei, ej, ki, kj)) == pytest.approx(ratio)
    assert swap_log_acceptance(ei, ej, ki, kj) < 0      # a higher energy moving down is penalised
    with pytest.raises(ConfigError):
        run_remd(harmonic_system(), np.zeros((4, 3)), temperatures_K=[300, 200], n_frames=2)


def test_lowest_replica_is_at_its_temperature() -> None:
    """Harmonic wells: ⟨E⟩ = (3n/2) kT at 300 K although the replicas reach 600 K; swaps are accepted."""
    n = 4
    rng = np.random.default_rng(0)
    r = run_remd(harmonic_system(n), rng.normal(scale=0.02, size=(n, 3)), temperatures_K=[300.0, 420.0, 600.0],
                 n_frames=1500, steps_per_exchange=100, equilibration_steps=1000, friction_per_ps=5.0, seed=2)
    assert r.frames.shape == (1500, n, 3)
    assert np.allclose(r.energies, 0.5 * 500.0 * (r.frames**2).sum(axis=(1, 2)), rtol=1e-4)
    expected = 1.5 * n * kT_of(300.0)
    err = r.energies.std() * math.sqrt((r.tau_int or 1.0) / len(r.energies))
    assert abs(r.energies.mean() - expected) < max(4 * err, 0.03 * expected)
    # swap acceptance of two harmonic systems: 0.2..0.9 for these ladders, and replicas move
    assert ((r.swap_rates > 0.2) & (r.swap_rates < 0.95)).all()
    assert len(set(r.walker.tolist())) == 3 and r.round_trips > 0
    assert r.n_steps == 3 * (1000 + 1500 * 100)


def test_checkpoint_resume(tmp_path) -> None:
    system, pos = harmonic_system(2), np.full((2, 3), 0.01)
    ck = tmp_path / "remd.ckpt.npz"
    kwargs = dict(temperatures_K=[300.0, 450.0], n_frames=40, steps_per_exchange=20, equilibration_steps=0,
                  seed=4, checkpoint=ck, checkpoint_every=10)
    full = run_remd(system, pos, **kwargs)
    assert not ck.exists()                              # removed when the run completes
    # a checkpoint left by a run cut at frame 20 (made by a 20-frame run with the same signature)
    import json

    from molsample.mcmc import remd

    saved = {}
    real = remd._checkpoint_save
    remd._checkpoint_save = lambda path, data: saved.setdefault(int(data["start"]), (path, dict(data)))
    try:
        run_remd(system, pos, **kwargs)
    finally:
        remd._checkpoint_save = real
    path, data = saved[20]
    real(path, data)
    resumed = run_remd(system, pos, **kwargs)
    assert np.array_equal(resumed.frames[:20], full.frames[:20])   # the first 20 frames come from the file
    assert resumed.frames.shape == full.frames.shape and np.isfinite(resumed.energies).all()
    # a run stopped early is finished with the frames it has by asking for that many (nothing more runs)
    real(path, data)
    short = run_remd(system, pos, **{**kwargs, "n_frames": 20})
    assert np.array_equal(short.frames, full.frames[:20]) and short.n_steps == 2 * 20 * 20
    assert "frames" not in json.loads(str(data["sig"]))


def test_remd_is_a_reference_method_of_openmm_systems(tmp_path) -> None:
    """``method="remd"`` through the common reference API: frames at the card's kT with the usual
    diagnostics, cached and reused; refused for systems without OpenMM."""
    from molsample.mcmc.reference import generate_reference, load_or_generate_reference
    from molsample.systems.cards import load_system

    aldp = load_system("aldp")
    settings = dict(n_replicas=2, t_max_K=400.0, steps_per_exchange=5, exchanges_per_frame=1,
                    equilibration_steps=10)
    ref = load_or_generate_reference(aldp, 8, method="remd", cache_dir=tmp_path, progress=False, **settings)
    assert ref.method == "remd" and tuple(ref.samples.shape) == (8, 22, 3) and ref.diagnostics["cache"] == "miss"
    d = ref.diagnostics
    assert len(d["swap_rates"]) == 1 and d["kT_ladder"][0] == pytest.approx(aldp.kT)
    assert d["n_energy_evals"] == 2 * (10 + 8 * 5)
    e = aldp.energy.energy(ref.samples).detach().double()
    np.testing.assert_allclose(e.numpy(), ref.energies.numpy(), rtol=1e-4, atol=1e-2)
    again = load_or_generate_reference(aldp, 8, method="remd", cache_dir=tmp_path, progress=False, **settings)
    assert again.diagnostics["cache"] == "hit"
    with pytest.raises(ConfigError, match="needs an OpenMM system"):
        generate_reference(load_system("lj13"), 4, method="remd")
    with pytest.raises(ConfigError, match="must be above"):
        generate_reference(aldp, 4, method="remd", t_max_K=200.0)


def test_a_stopped_remd_reference_resumes_from_its_checkpoint(tmp_path, monkeypatch) -> None:
    """The reference API (base data and reference stages of `molsample tilt`) checkpoints REMD beside
    the cache file: a run stopped after 200 frames keeps them when it is asked for again."""
    from molsample.mcmc import remd
    from molsample.mcmc.reference import load_or_generate_reference
    from molsample.systems.cards import load_system

    aldp = load_system("aldp")
    settings = dict(n_replicas=2, t_max_K=400.0, steps_per_exchange=2, exchanges_per_frame=1, equilibration_steps=0)
    real = interrupt_after(monkeypatch, remd, "_save", 1, right_after=True)  # stop after the first checkpoint
    with pytest.raises(KeyboardInterrupt):
        load_or_generate_reference(aldp, 210, method="remd", cache_dir=tmp_path, progress=False, **settings)
    ckpts = list(tmp_path.glob("*.ckpt.pt"))
    assert len(ckpts) == 1 and int(np.load(ckpts[0])["start"]) == 200
    kept = np.load(ckpts[0])["frames"][:200]
    monkeypatch.setattr(remd, "_save", real)
    ref = load_or_generate_reference(aldp, 210, method="remd", cache_dir=tmp_path, progress=False, **settings)
    np.testing.assert_allclose(ref.samples[:200].numpy(), kept - kept.mean(1, keepdims=True), atol=1e-6)
    assert not list(tmp_path.glob("*.ckpt.pt"))  # removed when the run completes


def test_remd_settings_have_one_set_of_defaults() -> None:
    from molsample.mcmc.reference import load_or_generate_remd
    from molsample.mcmc.remd import remd_frames
    from molsample.systems.cards import load_system

    aldp = load_system("aldp")
    with pytest.raises(ConfigError, match="unknown REMD setting"):
        remd_frames(aldp, 2, kT=aldp.kT, n_replica=2)
    with pytest.raises(ConfigError, match="unknown REMD setting"):
        load_or_generate_remd(aldp, 2, t_max=400.0)
