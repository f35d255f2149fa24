r"""Replica-exchange molecular dynamics (REMD) over OpenMM contexts: a reference that visits every basin.

K replicas of one ``openmm.System`` run Langevin dynamics (``LangevinMiddleIntegrator``) at
temperatures T_1 < … < T_K (geometric by default, :func:`geometric_temperatures`). After every
segment of ``steps_per_exchange`` steps, neighbours (k, k+1) are offered a swap — even pairs after
even segments, odd pairs after odd ones — and accept it with the Metropolis probability

    p = min(1, exp[(β_k − β_{k+1}) (E_k − E_{k+1})]),      β = 1/(k_B T), E in kJ/mol

(:func:`swap_log_acceptance`), which keeps the product of the K Boltzmann distributions
invariant. A swap exchanges the configurations of the two contexts and rescales their
velocities by √(T_new/T_old), so both stay at their thermostat's temperature. Frames of the
lowest temperature are recorded every ``exchanges_per_frame`` exchanges.

The result is a :class:`~molsample.mcmc.reference.ReferenceResult` (method ``"remd"``) with
the same diagnostics as the other references (``tau_int`` of the energy in frames,
``n_effective``, ``n_energy_evals`` = integrator steps of all replicas), plus ``swap_rates``,
``kT_ladder``, ``round_trips`` and CPU time. :func:`~molsample.mcmc.reference.load_or_generate_remd`
caches it under ``runs/cache/reference`` like the other references, and :func:`run_remd` checkpoints
to a file so that a long run resumes (statistically, not bit for bit: OpenMM's thermostat noise restarts
from a new seed).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from molsample.analysis.autocorrelation import integrated_autocorrelation_time
from molsample.errors import ConfigError
from molsample.io.atomic import atomic_path
from molsample.mcmc.parallel_tempering import geometric_ladder
from molsample.mcmc.reference_settings import remd_settings
from molsample.systems import units

__all__ = ["REMDResult", "geometric_temperatures", "swap_log_acceptance", "run_remd", "remd_frames"]


@dataclass
class REMDResult:
    """Frames of the lowest temperature of a REMD run.

    Attributes:
        frames: ``(n_frames, n_atoms, 3)`` positions at ``temperatures_K[0]``, nm (float64).
        energies: ``(n_frames,)`` potential energies of the frames, kJ/mol.
        temperatures_K: ``(K,)`` the ladder.
        swap_rates: ``(K − 1,)`` accepted / offered swaps between neighbours k, k+1.
        walker: ``(n_frames,)`` int, which replica (by its starting slot) sat at the lowest temperature.
        round_trips: lowest → highest → lowest temperature trips completed by all replicas.
        n_steps: integrator steps of all replicas together (= force evaluations).
        tau_int: integrated autocorrelation time of ``energies``, in frames.
        wall_time_s, cpu_time_s: time of this process for the run (resumed parts included).
    """

    frames: np.ndarray
    energies: np.ndarray
    temperatures_K: np.ndarray
    swap_rates: np.ndarray
    walker: np.ndarray
    round_trips: int
    n_steps: int
    tau_int: float | None
    wall_time_s: float
    cpu_time_s: float

    @property
    def n_effective(self) -> float:
        """n_frames/τ_int (n_frames when τ_int is unknown)."""
        n = self.frames.shape[0]
        return float(n) if not self.tau_int else n / max(self.tau_int, 1.0)


def geometric_temperatures(t_min: float, t_max: float, k: int) -> np.ndarray:
    """``(k,)`` temperatures T_i = t_min·(t_max/t_min)^{i/(k−1)} in K (one temperature when k = 1):
    parallel tempering's :func:`~molsample.mcmc.parallel_tempering.geometric_ladder` as an array."""
    return np.asarray(geometric_ladder(t_min, t_max, k), dtype=np.float64)


def swap_log_acceptance(e_i: np.ndarray | float, e_j: np.ndarray | float, kT_i: float,
                        kT_j: float) -> np.ndarray | float:
    """log of the Metropolis ratio for swapping configurations with energies e_i (at kT_i) and e_j (at kT_j).

    ``(1/kT_i − 1/kT_j)·(e_i − e_j)`` (energies and kT in the same unit); accept with probability
    ``min(1, exp(·))``. Works elementwise on arrays.
    """
    return (1.0 / kT_i - 1.0 / kT_j) * (np.asarray(e_i) - np.asarray(e_j))


def _checkpoint_save(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **data)


def run_remd(
    system: Any,
    positions: Any,
    *,
    temperatures_K: np.ndarray | list[float],
    n_frames: int,
    steps_per_exchange: int = 500,
    exchanges_per_frame: int = 1,
    timestep_fs: float = 1.0,
    friction_per_ps: float = 1.0,
    equilibration_steps: int = 10_000,
    platform: str = "Reference",
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    progress: bool = False,
) -> REMDResult:
    """Replica-exchange Langevin MD with OpenMM; frames of the lowest temperature.

    Args:
        system: an ``openmm.System`` (no constraints: ``timestep_fs`` ≈ 1).
        positions: ``(n_atoms, 3)`` starting positions in nm (every replica starts there).
        temperatures_K: the ladder, increasing; the frames come from the first.
        n_frames: frames recorded after equilibration.
        steps_per_exchange: integrator steps of every replica between swap attempts.
        exchanges_per_frame: swap attempts between recorded frames.
        equilibration_steps: steps per replica before recording (swaps included).
        platform: OpenMM platform (``"Reference"`` is the fastest for small molecules on a CPU).
        seed: seeds velocities, thermostats and the swap decisions.
        checkpoint: ``.npz`` file written atomically every ``checkpoint_every`` frames and read on
            start when it exists and matches (ladder, system size, segment lengths, seed); deleted
            when the run completes. ``n_frames`` may differ from the interrupted run's: a longer
            run continues it, a shorter one keeps its first ``n_frames`` frames.
    Returns:
        :class:`REMDResult`.
    """
    import openmm
    from openmm import unit

    from molsample.mcmc.md import _openmm_seed, _platform

    temps = np.asarray(temperatures_K, dtype=np.float64).reshape(-1)
    k = temps.shape[0]
    if k < 1 or np.any(temps <= 0) or np.any(np.diff(temps) <= 0):
        raise ConfigError(f"temperatures_K must be positive and increasing, got {temps.tolist()}")
    if n_frames < 1 or steps_per_exchange < 1 or exchanges_per_frame < 1 or equilibration_steps < 0:
        raise ConfigError("run_remd needs n_frames, steps_per_exchange, exchanges_per_frame >= 1 and "
                          f"equilibration_steps >= 0; got {n_frames}, {steps_per_exchange}, {exchanges_per_frame}, "
                          f"{equilibration_steps}")
    if hasattr(positions, "value_in_unit"):
        positions = positions.value_in_unit(unit.nanometer)
    pos0 = np.asarray(positions, dtype=np.float64)
    n = system.getNumParticles()
    if pos0.shape != (n, 3):
        raise ConfigError(f"positions have shape {pos0.shape}, the system has {n} particles; pass ({n}, 3) in nm")
    kts = np.array([units.kT(float(t)) for t in temps])
    rng = np.random.default_rng(seed)
    plat = _platform(openmm, platform)
    contexts, integrators = [], []
    for i, t in enumerate(temps):
        integ = openmm.LangevinMiddleIntegrator(t * unit.kelvin, friction_per_ps / unit.picosecond,
                                                timestep_fs * unit.femtosecond)
        integ.setRandomNumberSeed(_openmm_seed(seed * 1009 + i))
        ctx = openmm.Context(system, integ, plat)
        integrators.append(integ)
        contexts.append(ctx)

    frames = np.empty((n_frames, n, 3))
    energies = np.empty(n_frames)
    walker = np.empty(n_frames, dtype=np.int64)
    slot = np.arange(k)  # slot[i] = replica id now at temperature i
    offered, accepted = np.zeros(max(k - 1, 0)), np.zeros(max(k - 1, 0))
    last_end = np.full(k, -1)  # per replica: 0 = last touched the bottom, 1 = the top
    trips, start, exchange = 0, 0, 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    cpu_prev = wall_prev = 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    # what a checkpoint must match; n_frames may differ (a run can be extended, or stopped early
    # and finished with the frames it has)
    sig = json.dumps({"T": temps.tolist(), "n": n, "spe": steps_per_exchange, "epf": exchanges_per_frame,
                      "seed": seed}, sort_keys=True)

    def state(i: int) -> tuple[np.ndarray, np.ndarray, float]:
        s = contexts[i].getState(getPositions=True, getVelocities=True, getEnergy=True)
        return (s.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                s.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                s.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))

    def segment_and_swap() -> None:
        nonlocal exchange, trips
        for integ in integrators:
            integ.step(int(steps_per_exchange))
        if k == 1:
            exchange += 1
            return
        st = [state(i) for i in range(k)]
        for i in range(exchange % 2, k - 1, 2):
            offered[i] += 1
            la = swap_log_acceptance(st[i][2], st[i + 1][2], kts[i], kts[i + 1])
            if la >= 0 or rng.random() < math.exp(la):
                accepted[i] += 1
                (xi, vi, ei), (xj, vj, ej) = st[i], st[i + 1]
                st[i] = (xj, vj * math.sqrt(temps[i] / temps[i + 1]), ej)
                st[i + 1] = (xi, vi * math.sqrt(temps[i + 1] / temps[i]), ei)
                contexts[i].setPositions(st[i][0])
                contexts[i].setVelocities(st[i][1])
                contexts[i + 1].setPositions(st[i + 1][0])
                contexts[i + 1].setVelocities(st[i + 1][1])
                slot[i], slot[i + 1] = slot[i + 1], slot[i]
        for end, idx in ((0, 0), (1, k - 1)):
            r = slot[idx]
            if end == 0 and last_end[r] == 1:
                trips += 1
            last_end[r] = end
        exchange += 1

    try:
        resumed = False
        if ckpt is not None and ckpt.is_file():
            with np.load(ckpt, allow_pickle=False) as z:
                saved = json.loads(str(z["sig"]))
                saved.pop("frames", None)
                if json.dumps(saved, sort_keys=True) == sig:
                    start, exchange, trips = min(int(z["start"]), n_frames), int(z["exchange"]), int(z["trips"])
                    frames[:start], energies[:start], walker[:start] = z["frames"][:start], z["energies"][:start], \
                        z["walker"][:start]
                    slot[:], last_end[:] = z["slot"], z["last_end"]
                    offered[:], accepted[:] = z["offered"], z["accepted"]
                    rng.bit_generator.state = json.loads(str(z["rng"]))
                    cpu_prev, wall_prev = float(z["cpu"]), float(z["wall"])
                    for i in range(k):
                        contexts[i].setPositions(z["x"][i])
                        contexts[i].setVelocities(z["v"][i])
                        integrators[i].setRandomNumberSeed(_openmm_seed(seed * 1009 + i + 7919 * start))
                    resumed = True
        if not resumed:
            for i in range(k):
                contexts[i].setPositions(pos0)
                openmm.LocalEnergyMinimizer.minimize(contexts[i])
                contexts[i].setVelocitiesToTemperature(temps[i] * unit.kelvin, _openmm_seed(seed + 17 * i + 1))
            for _ in range(max(1, equilibration_steps // steps_per_exchange) if equilibration_steps else 0):
                segment_and_swap()
            offered[:], accepted[:] = 0, 0
        it: Any = range(start, n_frames)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="REMD", leave=False, initial=start, total=n_frames)
        for f in it:
            for _ in range(exchanges_per_frame):
                segment_and_swap()
            x0, _, e0 = state(0)
            frames[f], energies[f], walker[f] = x0, e0, slot[0]
            if ckpt is not None and ((f + 1) % checkpoint_every == 0) and f + 1 < n_frames:
                st = [state(i) for i in range(k)]
                _checkpoint_save(ckpt, dict(
                    sig=sig, start=f + 1, exchange=exchange, trips=trips, frames=frames[:f + 1],
                    energies=energies[:f + 1], walker=walker[:f + 1], slot=slot, last_end=last_end,
                    offered=offered, accepted=accepted, rng=json.dumps(rng.bit_generator.state),
                    cpu=cpu_prev + time.process_time() - cpu0, wall=wall_prev + time.perf_counter() - wall0,
                    x=np.stack([s[0] for s in st]), v=np.stack([s[1] for s in st])))
    finally:
        del contexts, integrators
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    tau = integrated_autocorrelation_time(energies) if n_frames >= 8 else float("nan")
    rates = np.where(offered > 0, accepted / np.maximum(offered, 1), np.nan)
    total_steps = k * (equilibration_steps + n_frames * exchanges_per_frame * steps_per_exchange)
    return REMDResult(frames=frames, energies=energies, temperatures_K=temps, swap_rates=rates, walker=walker,
                      round_trips=trips, n_steps=int(total_steps), tau_int=tau if math.isfinite(tau) else None,
                      wall_time_s=wall_prev + time.perf_counter() - wall0,
                      cpu_time_s=cpu_prev + time.process_time() - cpu0)


def remd_frames(system: Any, n: int, *, kT: float, seed: int = 0, progress: bool = False,
                checkpoint: str | os.PathLike | None = None, **settings: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``n`` REMD frames of a molsample OpenMM ``system`` at ``kT`` (kJ/mol) and their energies.

    ``settings`` override :data:`~molsample.mcmc.reference_settings.REMD_DEFAULTS`. The ladder is
    geometric from T = kT/k_B to ``t_max_K`` with ``n_replicas`` temperatures. Returns
    ``(x (n, n_atoms, 3) nm, E (n,) kJ/mol, diagnostics)`` as float64 tensors; the diagnostics are
    those of the other references (``tau_int``, ``n_effective``, ``n_energy_evals`` = integrator steps
    of all replicas, ``wall_time_s``) plus ``swap_rates``, ``kT_ladder``, ``round_trips`` and
    ``cpu_time_s``.
    """
    import torch

    omm = getattr(system.energy, "system", None)
    pos = getattr(system.energy, "positions", None)
    if omm is None or pos is None:
        raise ConfigError(f"REMD needs an OpenMM system with positions; system {system.name!r} has none")
    cfg = remd_settings(settings)
    t_min, t_max = float(kT) / units.KB_KJ_PER_MOL_K, float(cfg["t_max_K"])
    if not t_max > t_min and int(cfg["n_replicas"]) > 1:
        raise ConfigError(f"REMD's t_max_K = {t_max} must be above the target's {t_min:.1f} K")
    temps = geometric_temperatures(t_min, t_max, int(cfg["n_replicas"]))
    r = run_remd(omm, np.asarray(pos), temperatures_K=temps, n_frames=n,
                 steps_per_exchange=cfg["steps_per_exchange"], exchanges_per_frame=cfg["exchanges_per_frame"],
                 equilibration_steps=cfg["equilibration_steps"], seed=seed, platform=cfg["platform"],
                 checkpoint=checkpoint, progress=progress)
    diag = dict(tau_int=r.tau_int, n_effective=r.n_effective, n_energy_evals=r.n_steps, wall_time_s=r.wall_time_s,
                cpu_time_s=r.cpu_time_s, swap_rates=r.swap_rates.tolist(),
                kT_ladder=[units.kT(float(t)) for t in temps], round_trips=r.round_trips, acceptance=None)
    return torch.as_tensor(r.frames), torch.as_tensor(r.energies), diag
