"""Langevin MD through OpenMM: equipartition on harmonic systems, reproducibility, errors."""

from __future__ import annotations

import numpy as np
import openmm
import pytest

from molsample.errors import ConfigError, PlatformError
from molsample.mcmc.md import run_md
from molsample.systems.units import kT as kT_of


def harmonic_system(n: int = 8, k: float = 1000.0, mass: float = 12.0) -> openmm.System:
    """n particles, each tied to the origin by ½k|r|² (kJ/mol/nm²): 3n harmonic degrees of freedom."""
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("k", k)
    for i in range(n):
        system.addParticle(mass)
        force.addParticle(i, [])
    system.addForce(force)
    return system


def test_md_harmonic_equipartition():
    n = 8
    system = harmonic_system(n)
    pos = np.random.default_rng(0).normal(scale=0.05, size=(n, 3))
    r = run_md(system, pos, temperature_K=300.0, n_frames=3000, steps_per_frame=50, friction_per_ps=5.0,
               equilibration_steps=2000, seed=1, platform="Reference")
    assert r.frames.shape == (3000, n, 3) and r.energies.shape == (3000,)
    # <E_pot> = (dof/2) kT for a harmonic potential with dof = 3n
    expected = 1.5 * n * kT_of(300.0)
    err = np.std(r.energies) * np.sqrt(r.tau_int / len(r.energies))
    assert abs(r.energies.mean() - expected) < max(4 * err, 0.02 * expected)
    # Var(E_pot) = (dof/2) kT² as well (chi-square energy)
    assert np.var(r.energies) == pytest.approx(1.5 * n * kT_of(300.0) ** 2, rel=0.15)
    # the recorded energies belong to the recorded frames
    assert np.allclose(r.energies, 0.5 * 1000.0 * (r.frames**2).sum(axis=(1, 2)), rtol=1e-4)
    assert r.n_steps == 2000 + 3000 * 50
    assert r.tau_int is not None and r.tau_int >= 1.0
    assert r.platform == "Reference"


def test_md_cpu_platform():
    r = run_md(harmonic_system(3), np.full((3, 3), 0.02), temperature_K=300.0, n_frames=5, steps_per_frame=10,
               equilibration_steps=10, platform="CPU", platform_properties={"Threads": "1"})
    assert r.platform == "CPU" and r.frames.shape == (5, 3, 3) and np.isfinite(r.energies).all()


def test_md_temperature_scaling_and_reproducibility():
    system = harmonic_system(4)
    pos = np.zeros((4, 3)) + 0.01
    runs = {t: run_md(system, pos, temperature_K=t, n_frames=1500, steps_per_frame=50, friction_per_ps=5.0,
                      equilibration_steps=1000, seed=3, platform="Reference") for t in (150.0, 600.0)}
    ratio = runs[600.0].energies.mean() / runs[150.0].energies.mean()
    assert ratio == pytest.approx(4.0, rel=0.15)
    again = run_md(system, pos, temperature_K=150.0, n_frames=20, steps_per_frame=50, friction_per_ps=5.0,
                   equilibration_steps=1000, seed=3, platform="Reference")
    assert np.array_equal(again.frames, runs[150.0].frames[:20])


def test_md_errors():
    system = harmonic_system(2)
    with pytest.raises(ConfigError, match="particles"):
        run_md(system, np.zeros((3, 3)), temperature_K=300, n_frames=2)
    with pytest.raises(ConfigError, match="temperature_K"):
        run_md(system, np.zeros((2, 3)), temperature_K=-1, n_frames=2)
    with pytest.raises(PlatformError, match="available"):
        run_md(system, np.zeros((2, 3)), temperature_K=300, n_frames=2, platform="NoSuchPlatform")
    with pytest.raises(ConfigError, match="openmm.System"):
        run_md("not a system", np.zeros((2, 3)), temperature_K=300, n_frames=2)
