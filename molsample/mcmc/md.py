"""Langevin molecular dynamics of an ``openmm.System`` (reference data for molecules).

OpenMM does the dynamics (``LangevinMiddleIntegrator``, which samples configurations
accurately at the time steps used here); this module sets it up reproducibly, records
frames and potential energies, and measures the energy autocorrelation time. Several
temperatures are several independent calls.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from molsample.analysis.autocorrelation import integrated_autocorrelation_time
from molsample.errors import ConfigError, PlatformError

__all__ = ["MDResult", "positions_nm", "run_md"]


@dataclass
class MDResult:
    """Frames of a Langevin MD run.

    Attributes:
        frames: ``(n_frames, n_atoms, 3)`` positions in nm (float64).
        energies: ``(n_frames,)`` potential energies in kJ/mol.
        n_steps: integrator steps taken (equilibration included) = force evaluations.
        tau_int: integrated autocorrelation time of the potential energy, in frames.
        temperature_K: thermostat temperature.
        timestep_fs: integration time step.
        wall_time_s: wall-clock time of the run.
        platform: the OpenMM platform used.
    """

    frames: np.ndarray
    energies: np.ndarray
    n_steps: int
    tau_int: float | None
    temperature_K: float
    timestep_fs: float
    wall_time_s: float
    platform: str

    @property
    def n_effective(self) -> float:
        """Effective number of independent frames, n_frames/τ_int."""
        n = self.frames.shape[0]
        if self.tau_int is None or not math.isfinite(self.tau_int):
            return float(n)
        return n / max(self.tau_int, 1.0)


def positions_nm(system: Any, positions: Any) -> np.ndarray:
    """Starting positions of the ``openmm.System`` as ``(n_atoms, 3)`` float64 in nm (an array in nm or an
    OpenMM quantity), or :class:`ConfigError` naming the expected shape."""
    if hasattr(positions, "value_in_unit"):
        from openmm import unit

        positions = positions.value_in_unit(unit.nanometer)
    pos = np.asarray(positions, dtype=np.float64)
    n = system.getNumParticles()
    if pos.shape != (n, 3):
        raise ConfigError(f"positions have shape {pos.shape}, the system has {n} particles; pass ({n}, 3) in nm")
    return pos


def _openmm_seed(seed: int) -> int:
    """OpenMM treats seed 0 as 'pick a random seed'; map every int to a fixed non-zero one."""
    return int(seed) % 2_147_483_646 + 1


def _platform(openmm: Any, name: str) -> Any:
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name not in names:
        raise PlatformError(f"OpenMM platform '{name}' is not available here; available: {', '.join(names)}")
    return openmm.Platform.getPlatformByName(name)


def run_md(
    system: Any,
    positions: Any,
    *,
    temperature_K: float,
    n_frames: int,
    steps_per_frame: int = 500,
    timestep_fs: float = 1.0,
    friction_per_ps: float = 1.0,
    equilibration_steps: int = 10_000,
    minimize: bool = True,
    platform: str = "CPU",
    platform_properties: dict[str, str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> MDResult:
    """Langevin dynamics with OpenMM, recording a frame every ``steps_per_frame`` steps.

    Args:
        system: an ``openmm.System`` (unconstrained systems need ``timestep_fs`` ≈ 1; 2 fs needs
            constraints on bonds to hydrogen).
        positions: ``(n_atoms, 3)`` starting positions in nm (array or OpenMM quantity).
        temperature_K: thermostat temperature in kelvin.
        n_frames: frames recorded after equilibration.
        steps_per_frame: integrator steps between frames.
        timestep_fs: time step in femtoseconds.
        friction_per_ps: Langevin friction coefficient in 1/ps.
        equilibration_steps: steps run (after the optional energy minimization) before recording.
        minimize: minimize the energy from ``positions`` first.
        platform: OpenMM platform name ("CPU", "Reference", "CUDA", ...).
        seed: seeds the initial velocities and the thermostat noise.
    Returns:
        :class:`MDResult` with frames in nm and energies in kJ/mol.
    """
    import openmm
    from openmm import unit

    if not isinstance(system, openmm.System):
        raise ConfigError(f"run_md needs an openmm.System, got {type(system).__name__}")
    if temperature_K <= 0 or n_frames < 1 or steps_per_frame < 1 or equilibration_steps < 0:
        raise ConfigError(
            f"run_md needs temperature_K > 0, n_frames >= 1, steps_per_frame >= 1, equilibration_steps >= 0; got "
            f"{temperature_K}, {n_frames}, {steps_per_frame}, {equilibration_steps}"
        )
    if timestep_fs <= 0 or friction_per_ps < 0:
        raise ConfigError(f"timestep_fs must be > 0 and friction_per_ps >= 0, got {timestep_fs}, {friction_per_ps}")
    pos = positions_nm(system, positions)
    n = pos.shape[0]

    t0 = time.perf_counter()
    integrator = openmm.LangevinMiddleIntegrator(
        temperature_K * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(_openmm_seed(seed))
    plat = _platform(openmm, platform)
    props = {k: v for k, v in (platform_properties or {}).items() if k in plat.getPropertyNames()}
    context = openmm.Context(system, integrator, plat, props)
    try:
        context.setPositions(pos * unit.nanometer)
        if minimize:
            openmm.LocalEnergyMinimizer.minimize(context)
        context.setVelocitiesToTemperature(temperature_K * unit.kelvin, _openmm_seed(seed + 1))
        if equilibration_steps:
            integrator.step(int(equilibration_steps))
        frames = np.empty((n_frames, n, 3), dtype=np.float64)
        energies = np.empty(n_frames, dtype=np.float64)
        it: Any = range(n_frames)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="MD", leave=False)
        for k in it:
            integrator.step(int(steps_per_frame))
            state = context.getState(getPositions=True, getEnergy=True)
            frames[k] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            energies[k] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    finally:
        del context, integrator
    tau = integrated_autocorrelation_time(energies) if n_frames >= 8 else float("nan")
    return MDResult(
        frames=frames,
        energies=energies,
        n_steps=int(equilibration_steps + n_frames * steps_per_frame),
        tau_int=tau if math.isfinite(tau) else None,
        temperature_K=float(temperature_K),
        timestep_fs=float(timestep_fs),
        wall_time_s=time.perf_counter() - t0,
        platform=plat.getName(),
    )
