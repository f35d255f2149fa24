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

import dataclasses
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
from molsample.mcmc.md import _openmm_seed, _platform, positions_nm
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


def _checked_inputs(system: Any, positions: Any, temperatures_K: np.ndarray | list[float], n_frames: int,
                    steps_per_exchange: int, exchanges_per_frame: int,
                    equilibration_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The ladder ``(K,)`` in K and the starting positions ``(n_atoms, 3)`` in nm, float64, checked."""
    temps = np.asarray(temperatures_K, dtype=np.float64).reshape(-1)
    if temps.shape[0] < 1 or np.any(temps <= 0) or np.any(np.diff(temps) <= 0):
        raise ConfigError(f"temperatures_K must be positive and increasing, got {temps.tolist()}")
    if n_frames < 1 or steps_per_exchange < 1 or exchanges_per_frame < 1 or equilibration_steps < 0:
        raise ConfigError("run_remd needs n_frames, steps_per_exchange, exchanges_per_frame >= 1 and "
                          f"equilibration_steps >= 0; got {n_frames}, {steps_per_exchange}, {exchanges_per_frame}, "
                          f"{equilibration_steps}")
    return temps, positions_nm(system, positions)


class _Replicas:
    """K OpenMM contexts of one system, one per temperature of the ladder, and the swaps between them.

    ``slot[i]`` is the replica (by its starting slot) now at temperature i; ``last_end[r]`` is 0 when
    replica r last touched the lowest temperature, 1 the highest, −1 neither yet; ``trips`` counts
    the lowest → highest → lowest round trips; ``offered``/``accepted`` ``(K − 1,)`` count the swaps.
    The swap decisions draw from ``rng`` (numpy, seeded by ``seed``).
    """

    def __init__(self, system: Any, temps: np.ndarray, *, steps_per_exchange: int, timestep_fs: float,
                 friction_per_ps: float, platform: str, seed: int) -> None:
        import openmm
        from openmm import unit

        self.temps, self.k, self.seed = temps, temps.shape[0], seed
        self.steps_per_exchange = int(steps_per_exchange)
        self.kts = np.array([units.kT(float(t)) for t in temps])
        self.rng = np.random.default_rng(seed)
        plat = _platform(openmm, platform)
        self.contexts: list[Any] = []
        self.integrators: list[Any] = []
        for i, t in enumerate(temps):
            integ = openmm.LangevinMiddleIntegrator(t * unit.kelvin, friction_per_ps / unit.picosecond,
                                                    timestep_fs * unit.femtosecond)
            integ.setRandomNumberSeed(_openmm_seed(seed * 1009 + i))
            self.integrators.append(integ)
            self.contexts.append(openmm.Context(system, integ, plat))
        self.slot = np.arange(self.k)
        self.offered, self.accepted = np.zeros(max(self.k - 1, 0)), np.zeros(max(self.k - 1, 0))
        self.last_end = np.full(self.k, -1)
        self.trips = self.exchange = 0

    def state(self, i: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Positions ``(n, 3)`` nm, velocities ``(n, 3)`` nm/ps and potential energy (kJ/mol) of context i."""
        from openmm import unit

        s = self.contexts[i].getState(getPositions=True, getVelocities=True, getEnergy=True)
        return (s.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                s.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                s.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))

    def start(self, pos0: np.ndarray) -> None:
        """Every context at ``pos0`` (nm), minimized, with velocities drawn at its temperature."""
        import openmm
        from openmm import unit

        for i in range(self.k):
            self.contexts[i].setPositions(pos0)
            openmm.LocalEnergyMinimizer.minimize(self.contexts[i])
            self.contexts[i].setVelocitiesToTemperature(self.temps[i] * unit.kelvin,
                                                        _openmm_seed(self.seed + 17 * i + 1))

    def equilibrate(self, steps: int) -> None:
        """About ``steps`` steps per replica in segments with swaps; the swap counts restart at zero."""
        for _ in range(max(1, steps // self.steps_per_exchange) if steps else 0):
            self.segment_and_swap()
        self.offered[:], self.accepted[:] = 0, 0

    def segment_and_swap(self) -> None:
        """One segment of ``steps_per_exchange`` steps per replica, then the swaps of this exchange's parity."""
        for integ in self.integrators:
            integ.step(self.steps_per_exchange)
        if self.k == 1:
            self.exchange += 1
            return
        st = [self.state(i) for i in range(self.k)]
        for i in range(self.exchange % 2, self.k - 1, 2):
            self.offered[i] += 1
            la = swap_log_acceptance(st[i][2], st[i + 1][2], self.kts[i], self.kts[i + 1])
            if la >= 0 or self.rng.random() < math.exp(la):
                self.accepted[i] += 1
                self._swap(i, st)
        for end, idx in ((0, 0), (1, self.k - 1)):
            r = self.slot[idx]
            if end == 0 and self.last_end[r] == 1:
                self.trips += 1
            self.last_end[r] = end
        self.exchange += 1

    def _swap(self, i: int, st: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """Exchange the states of contexts i and i + 1, velocities rescaled to the new temperatures."""
        temps = self.temps
        (xi, vi, ei), (xj, vj, ej) = st[i], st[i + 1]
        st[i] = (xj, vj * math.sqrt(temps[i] / temps[i + 1]), ej)
        st[i + 1] = (xi, vi * math.sqrt(temps[i + 1] / temps[i]), ei)
        for m in (i, i + 1):
            self.contexts[m].setPositions(st[m][0])
            self.contexts[m].setVelocities(st[m][1])
        self.slot[i], self.slot[i + 1] = self.slot[i + 1], self.slot[i]

    def snapshot(self) -> dict[str, Any]:
        """The exchange state and every context's positions and velocities, for a checkpoint."""
        st = [self.state(i) for i in range(self.k)]
        return dict(exchange=self.exchange, trips=self.trips, slot=self.slot, last_end=self.last_end,
                    offered=self.offered, accepted=self.accepted, rng=json.dumps(self.rng.bit_generator.state),
                    x=np.stack([s[0] for s in st]), v=np.stack([s[1] for s in st]))

    def restore(self, z: Any, start: int) -> None:
        """The state of :meth:`snapshot` from a checkpoint, with new thermostat seeds for frame ``start``."""
        self.exchange, self.trips = int(z["exchange"]), int(z["trips"])
        self.slot[:], self.last_end[:] = z["slot"], z["last_end"]
        self.offered[:], self.accepted[:] = z["offered"], z["accepted"]
        self.rng.bit_generator.state = json.loads(str(z["rng"]))
        for i in range(self.k):
            self.contexts[i].setPositions(z["x"][i])
            self.contexts[i].setVelocities(z["v"][i])
            self.integrators[i].setRandomNumberSeed(_openmm_seed(self.seed * 1009 + i + 7919 * start))

    def close(self) -> None:
        """Release the OpenMM contexts."""
        del self.contexts, self.integrators


@dataclass
class _Frames:
    """The recorded frames of the lowest temperature and the time spent, resumed parts included."""

    frames: np.ndarray
    energies: np.ndarray
    walker: np.ndarray
    cpu_prev: float = 0.0
    wall_prev: float = 0.0
    cpu0: float = dataclasses.field(default_factory=time.process_time)
    wall0: float = dataclasses.field(default_factory=time.perf_counter)

    @classmethod
    def empty(cls, n_frames: int, n: int) -> _Frames:
        """Room for ``n_frames`` frames of ``n`` atoms; the clocks start now."""
        return cls(np.empty((n_frames, n, 3)), np.empty(n_frames), np.empty(n_frames, dtype=np.int64))

    def cpu(self) -> float:
        """CPU seconds of the run so far."""
        return self.cpu_prev + time.process_time() - self.cpu0

    def wall(self) -> float:
        """Wall seconds of the run so far."""
        return self.wall_prev + time.perf_counter() - self.wall0


def _signature(temps: np.ndarray, n: int, steps_per_exchange: int, exchanges_per_frame: int, seed: int) -> str:
    """What a checkpoint must match; n_frames may differ (a run can be extended, or stopped early and
    finished with the frames it has)."""
    return json.dumps({"T": temps.tolist(), "n": n, "spe": steps_per_exchange, "epf": exchanges_per_frame,
                       "seed": seed}, sort_keys=True)


def _resume(ckpt: Path | None, sig: str, reps: _Replicas, rec: _Frames) -> int | None:
    """The frame to continue from after loading a matching checkpoint into ``reps`` and ``rec``; ``None``
    without one."""
    if ckpt is None or not ckpt.is_file():
        return None
    with np.load(ckpt, allow_pickle=False) as z:
        saved = json.loads(str(z["sig"]))
        saved.pop("frames", None)
        if json.dumps(saved, sort_keys=True) != sig:
            return None
        start = min(int(z["start"]), rec.frames.shape[0])
        rec.frames[:start], rec.energies[:start], rec.walker[:start] = \
            z["frames"][:start], z["energies"][:start], z["walker"][:start]
        rec.cpu_prev, rec.wall_prev = float(z["cpu"]), float(z["wall"])
        reps.restore(z, start)
    return start


def _save(ckpt: Path, sig: str, done: int, reps: _Replicas, rec: _Frames) -> None:
    """Checkpoint after ``done`` recorded frames."""
    _checkpoint_save(ckpt, dict(sig=sig, start=done, frames=rec.frames[:done], energies=rec.energies[:done],
                                walker=rec.walker[:done], cpu=rec.cpu(), wall=rec.wall(), **reps.snapshot()))


def _frame_range(start: int, n_frames: int, progress: bool) -> Any:
    """Frame indices ``start … n_frames − 1``, with a progress bar when asked."""
    it: Any = range(start, n_frames)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="REMD", leave=False, initial=start, total=n_frames)
    return it


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
    temps, pos0 = _checked_inputs(system, positions, temperatures_K, n_frames, steps_per_exchange,
                                  exchanges_per_frame, equilibration_steps)
    n = system.getNumParticles()
    reps = _Replicas(system, temps, steps_per_exchange=steps_per_exchange, timestep_fs=timestep_fs,
                     friction_per_ps=friction_per_ps, platform=platform, seed=seed)
    rec = _Frames.empty(n_frames, n)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    sig = _signature(temps, n, steps_per_exchange, exchanges_per_frame, seed)
    try:
        start = _resume(ckpt, sig, reps, rec)
        if start is None:
            reps.start(pos0)
            reps.equilibrate(equilibration_steps)
            start = 0
        for f in _frame_range(start, n_frames, progress):
            for _ in range(exchanges_per_frame):
                reps.segment_and_swap()
            x0, _, e0 = reps.state(0)
            rec.frames[f], rec.energies[f], rec.walker[f] = x0, e0, reps.slot[0]
            if ckpt is not None and ((f + 1) % checkpoint_every == 0) and f + 1 < n_frames:
                _save(ckpt, sig, f + 1, reps, rec)
    finally:
        reps.close()
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    tau = integrated_autocorrelation_time(rec.energies) if n_frames >= 8 else float("nan")
    rates = np.where(reps.offered > 0, reps.accepted / np.maximum(reps.offered, 1), np.nan)
    total_steps = reps.k * (equilibration_steps + n_frames * exchanges_per_frame * steps_per_exchange)
    return REMDResult(frames=rec.frames, energies=rec.energies, temperatures_K=temps, swap_rates=rates,
                      walker=rec.walker, round_trips=reps.trips, n_steps=int(total_steps),
                      tau_int=tau if math.isfinite(tau) else None, wall_time_s=rec.wall(), cpu_time_s=rec.cpu())


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
