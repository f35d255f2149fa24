"""Reference samples of a system's Boltzmann distribution: generation, files and a cache.

``generate_reference(system, n)`` runs one of the reference methods
(:data:`~molsample.mcmc.reference_settings.REFERENCE_METHODS`, one module each: ``exact``,
``mala``, ``pt``, ``md``, ``remd``); ``method="auto"`` picks one per system
(:mod:`molsample.mcmc.reference_methods`): the exact sampler of the 2-D toys, MD for OpenMM
systems, parallel tempering for the double well, else MALA (per evaluation ~5x more efficient than
PT on LJ-13 at kT = 1). ``remd`` is never picked by ``auto`` but visits every basin of a molecule:
for alanine dipeptide at 300 K it is the ground truth of the C7ax/αL basin that plain MD rarely reaches.

Reference data are the base data of temperature tilts and the ground truth of the metrics,
so they are cached: :func:`load_or_generate_reference` stores them under a file name keyed by a
hash of the system (card, energy parameters), kT, method, n and the resolved settings, and
reuses the file when all of these match.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from molsample.errors import ConfigError, DistributedError, RunFileError
from molsample.io.cache import digest
from molsample.io.hdf5 import RunFile
from molsample.mcmc.initial_configurations import initial_configurations
from molsample.mcmc.reference_methods import (METHODS, SHARDED_METHODS, default_settings, get_method,
                                              resolve_method, resolve_settings)
from molsample.mcmc.reference_settings import REFERENCE_METHODS, remd_settings
from molsample.runtime.distributed import World

__all__ = [
    "METHODS",
    "REFERENCE_METHODS",
    "ReferenceResult",
    "SHARDED_METHODS",
    "default_settings",
    "generate_reference",
    "initial_configurations",
    "load_or_generate_reference",
    "load_or_generate_remd",
    "read_reference",
    "reference_cache_path",
    "resolve_method",
    "resolve_settings",
    "write_reference",
]

#: Bumped when the meaning of a cached reference file changes (invalidates old cache entries).
CACHE_VERSION = 1

#: Default cache folder (relative to the working directory; ``runs/`` is git-ignored).
DEFAULT_CACHE_DIR = Path("runs") / "cache" / "reference"


@dataclass
class ReferenceResult:
    """Reference samples with the diagnostics of the run that made them.

    Attributes:
        samples: ``(n, n_particles, dim)`` float64 positions in the system's length unit.
        energies: ``(n,)`` energies in the system's energy unit.
        kT: the temperature sampled, in the energy unit.
        method: ``"exact"``, ``"mala"``, ``"pt"``, ``"md"`` or ``"remd"``.
        system: the system's name.
        diagnostics: acceptance / swap rates, ``tau_int`` (energy autocorrelation time in samples
            of one chain), ``n_effective`` (n/τ), ``n_energy_evals``, ``wall_time_s``,
            ``energy_mean``/``energy_std``, ``seed``, ``settings``, and ``cache`` / ``path`` when
            the result came through the cache.
    """

    samples: Tensor
    energies: Tensor
    kT: float
    method: str
    system: str
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])


# --------------------------------------------------------------------------- generation


def generate_reference(
    system: Any,
    n: int,
    *,
    method: str = "auto",
    kT: float | None = None,
    seed: int = 0,
    progress: bool = True,
    world: World | None = None,
    checkpoint: str | os.PathLike | None = None,
    **settings: Any,
) -> ReferenceResult:
    """Draw ``n`` reference samples of exp(−E/kT) for ``system``.

    Args:
        system: a :class:`~molsample.systems.cards.System`.
        n: number of samples.
        method: ``"auto"``, ``"exact"``, ``"mala"``, ``"pt"``, ``"md"`` or ``"remd"`` (see the module table).
        kT: temperature in the energy unit (``None``: the card's). For kJ/mol systems
            ``molsample.systems.units.kT(T_kelvin)`` converts from kelvin.
        seed: seeds every random number of the run.
        progress: tqdm progress bars.
        world: ranks that share the energy evaluations of the MCMC chains (``mala``, ``pt``);
            ``exact``, ``md`` and ``remd`` refuse a distributed world.
        checkpoint: ``mala`` and ``pt``: a file where the chains save their state every two
            minutes and from which a rerun with the same arguments resumes, giving the same samples
            (:class:`~molsample.mcmc.langevin.ChainCheckpoint`); ``remd``: the replicas' state every
            200 frames (a resumed run reseeds the thermostats); deleted at the end.
        settings: overrides of :func:`default_settings` (``steps`` is a spelling of ``thin`` /
            ``steps_per_frame``; ``n_steps`` = production steps per chain (MD: in all), converted to
            ``thin`` = n_steps // ⌈n/chains⌉ (MD: ``steps_per_frame`` = n_steps // n)) — MCMC: ``chains``, ``burn_in``,
            ``thin``, ``step_size``, ``target_accept``, ``tame``, ``init``, ``relax_steps``, ``init_noise``;
            PT also ``n_temps``, ``kT_max_factor``, ``swap_every``; MD: ``steps_per_frame``,
            ``timestep_fs``, ``friction_per_ps``, ``equilibration_steps``, ``minimize``, ``platform``.
    Returns:
        :class:`ReferenceResult` with exactly ``n`` samples.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be a positive integer number of samples, got {n!r}")
    kT = float(system.kT if kT is None else kT)
    if not kT > 0:
        raise ConfigError(f"kT must be positive, got {kT}")
    method = resolve_method(system, method, kT)
    sampler = get_method(method)
    cfg = sampler.settings(system, n, settings)
    world = world or World()
    if world.distributed and not sampler.sharded:
        raise DistributedError(f"the {method} reference is not split over processes (only "
                               f"{', '.join(SHARDED_METHODS)} chains are); run it with one process")
    t0, c0 = time.perf_counter(), time.process_time()
    x, e, diag = sampler.run(system, n, kT=kT, settings=cfg, seed=seed, generator=torch.Generator().manual_seed(int(seed)),
                             progress=progress, world=world, checkpoint=checkpoint)
    diag.update(_summary(method, n, kT, seed, e, diag, cfg, wall=time.perf_counter() - t0,
                         cpu=world.sum(time.process_time() - c0)))  # CPU of all ranks
    return ReferenceResult(samples=x.detach(), energies=e.detach(), kT=kT, method=method, system=system.name,
                           diagnostics=diag)


def _summary(method: str, n: int, kT: float, seed: int, e: Tensor, diag: dict[str, Any], cfg: dict[str, Any], *,
             wall: float, cpu: float) -> dict[str, Any]:
    """The diagnostics every method reports, from its own (``tau_int``, ``n_energy_evals``) and the energies."""
    tau = diag.get("tau_int")
    n_eff = n / max(tau, 1.0) if tau is not None and math.isfinite(tau) else None
    finite = torch.isfinite(e)
    evals = diag.get("n_energy_evals")
    return dict(
        method=method,
        n=n,
        kT=kT,
        seed=int(seed),
        n_effective=n_eff,
        effective_per_1000_evals=(1000.0 * n_eff / evals) if n_eff and evals else None,
        wall_time_s=wall,
        cpu_time_s=cpu,
        energy_mean=float(e[finite].mean()) if finite.any() else None,
        energy_std=float(e[finite].std()) if finite.sum() > 1 else None,
        settings=cfg,
    )


# --------------------------------------------------------------------------- files and cache


def write_reference(result: ReferenceResult, path: str | os.PathLike, system: Any) -> Path:
    """Write a reference run file (the molsample run-file format, read by ``mdtraj.load`` too).

    Layout: the samples as the root sample set (``/coordinates``, ``/energy``), the diagnostics
    as the ``diagnostics`` root attribute (JSON) and arrays under ``/diagnostics/``, the
    settings as ``/config``; root attributes ``kind = "reference"``, ``system``, ``method``,
    ``seed``, ``kT``.
    """
    path = Path(path)
    d = result.diagnostics
    with RunFile(path, "w") as rf:
        rf.write_samples(
            result.samples,
            energy=result.energies,
            energy_unit=system.energy_unit,
            length_unit=system.length_unit,
            topology=system.topology,
            kT=result.kT,
        )
        for key in ("acceptance", "tau_int", "n_effective", "n_energy_evals", "wall_time_s", "cpu_time_s"):
            if d.get(key) is not None:
                rf.write_array(f"diagnostics/{key}", np.asarray(d[key], dtype=np.float64))
        for key in ("swap_rates", "kT_ladder", "acceptance_by_kT"):
            if d.get(key):
                rf.write_array(f"diagnostics/{key}", np.asarray(d[key], dtype=np.float64))
        rf.write_config({"reference": {"method": result.method, "n": result.n, "seed": d.get("seed", 0),
                                       "kT": result.kT, "system": result.system,
                                       "settings": {k: v for k, v in d.get("settings", {}).items() if v is not None}}})
        rf.set_attrs(kind="reference", system=result.system, method=result.method, seed=int(d.get("seed", 0)),
                     kT=float(result.kT), diagnostics=json.dumps(_jsonable(d)))
    return path


def read_reference(path: str | os.PathLike) -> ReferenceResult:
    """Read a file written by :func:`write_reference` (positions come back as float64)."""
    with RunFile(path, "r") as rf:
        s = rf.read_samples()
        attrs = dict(rf.attrs)
    if attrs.get("kind") != "reference":
        raise RunFileError(f"{path} is a '{attrs.get('kind')}' run file, not a reference file; pass one written by "
                           "`molsample reference`")
    try:
        diag = json.loads(attrs.get("diagnostics", "{}"))
    except json.JSONDecodeError:
        diag = {}
    energies = s["energy"] if s["energy"] is not None else np.full(s["x"].shape[0], np.nan)
    return ReferenceResult(
        samples=torch.as_tensor(np.asarray(s["x"], dtype=np.float64)),
        energies=torch.as_tensor(np.asarray(energies, dtype=np.float64)),
        kT=float(attrs.get("kT", s.get("kT") or float("nan"))),
        method=str(attrs.get("method", "")),
        system=str(attrs.get("system", "")),
        diagnostics=diag,
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Tensor):
        return _jsonable(v.tolist())
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _energy_fingerprint(system: Any) -> str:
    """Text that changes whenever the energy function changes (card, parameters, OpenMM XML)."""
    parts = [json.dumps(_jsonable(system.card), sort_keys=True), repr(system.energy)]
    omm = getattr(system.energy, "system", None)
    if omm is not None:
        try:
            import openmm

            parts.append(openmm.XmlSerializer.serialize(omm))
        except Exception:  # pragma: no cover - a non-serializable system still gets the card hash
            pass
    return "\n".join(parts)


def reference_cache_path(
    system: Any,
    kT: float,
    method: str,
    n: int,
    settings: dict[str, Any],
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
) -> Path:
    """Cache file for these inputs: ``<cache_dir>/<system>-<method>-n<n>-<hash>.h5``.

    The hash covers the system (card, energy parameters, OpenMM system XML), kT, method, n and
    ``settings`` (pass the resolved settings plus the seed; key order does not matter).
    """
    key = {
        "version": CACHE_VERSION,
        "system": system.name,
        "energy": hashlib.sha256(_energy_fingerprint(system).encode()).hexdigest(),
        "kT": repr(float(kT)),
        "method": method,
        "n": int(n),
        "settings": _jsonable(settings),
    }
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in system.name)
    return Path(cache_dir) / f"{safe}-{method}-n{n}-{digest(key)}.h5"


def load_or_generate_reference(
    system: Any,
    n: int,
    *,
    method: str = "auto",
    kT: float | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
    refresh: bool = False,
    progress: bool = True,
    world: World | None = None,
    **settings: Any,
) -> ReferenceResult:
    """Reference samples from the cache when the system, kT, method, n, seed and settings match;
    otherwise generate them (:func:`generate_reference`, over the ranks of ``world``) and store
    them there (rank 0 writes).

    ``diagnostics["cache"]`` is ``"hit"`` or ``"miss"`` and ``diagnostics["path"]`` the file.
    MALA, PT and REMD runs checkpoint to ``<cache file>.ckpt.pt`` beside it, so a run that was stopped
    resumes when it is asked for again (MALA, PT: the same samples as an uninterrupted run; REMD: the
    frames it had, then reseeded thermostats).
    A damaged cache file is regenerated; ``refresh=True`` always regenerates.
    """
    kT = float(system.kT if kT is None else kT)
    resolved = resolve_method(system, method, kT)
    cfg = resolve_settings(system, resolved, n, settings)
    path = reference_cache_path(system, kT, resolved, n, {**cfg, "seed": int(seed)}, cache_dir)
    if path.is_file() and not refresh:
        try:
            result = read_reference(path)
            if result.n == n:
                result.diagnostics.update(cache="hit", path=str(path))
                return result
        except RunFileError:
            pass
    ckpt = path.with_name(path.stem + ".ckpt.pt") if REFERENCE_METHODS[resolved].checkpoints else None  # resumes
    result = generate_reference(system, n, method=resolved, kT=kT, seed=seed, progress=progress, world=world,
                                checkpoint=ckpt, **cfg)
    # the positions a later cache hit returns (stored as float32), so that a miss gives the same run
    result.samples = result.samples.to(torch.float32).to(torch.float64)
    if world is None or world.is_main:
        write_reference(result, path, system)
    result.diagnostics.update(cache="miss", path=str(path))
    return result


def load_or_generate_remd(
    system: Any,
    n: int,
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
    progress: bool = False,
    **settings: Any,
) -> Any:
    """REMD reference of an OpenMM system at its card's kT, cached like the other references.

    ``settings`` override :data:`~molsample.mcmc.reference_settings.REMD_DEFAULTS` (on the Reference
    platform); the ladder is geometric from the card's temperature to ``t_max_K`` with ``n_replicas``
    temperatures; ``n`` frames of the lowest are kept. Returns a :class:`ReferenceResult` with method
    ``"remd"`` (samples in nm, energies in kJ/mol); a run cut short resumes from
    ``<system>-remd-<hash>.ckpt.npz`` in ``cache_dir`` (the hash covers the settings, not ``n``: a run
    stopped early can be finished with the frames it has by asking for that many).
    """
    from molsample.mcmc.remd import remd_frames

    if "platform" in settings:
        raise ConfigError("load_or_generate_remd runs on the Reference platform; use generate_reference(..., "
                          "method='remd', platform=...) for another")
    cfg = remd_settings(settings)
    # the cache key: the ladder and segment lengths (the platform is not part of it)
    settings = {"t_max_K": float(cfg["t_max_K"]), "n_replicas": int(cfg["n_replicas"]),
                "steps_per_exchange": int(cfg["steps_per_exchange"]),
                "exchanges_per_frame": int(cfg["exchanges_per_frame"]),
                "equilibration_steps": int(cfg["equilibration_steps"]), "seed": int(seed)}
    cache_dir = DEFAULT_CACHE_DIR if cache_dir is None else cache_dir
    path = reference_cache_path(system, system.kT, "remd", n, settings, cache_dir)
    if path.is_file() and not refresh:
        result = read_reference(path)
        if result.n == n:
            result.diagnostics.update(cache="hit", path=str(path))
            return result
    # one checkpoint per system and settings, whatever n: an interrupted run can be finished with fewer frames
    zero = reference_cache_path(system, system.kT, "remd", 0, settings, cache_dir)  # <name>-remd-n0-<hash>.h5
    ckpt = zero.with_name(zero.stem.replace("-remd-n0-", "-remd-", 1) + ".ckpt.npz")
    x, e, diag = remd_frames(system, n, kT=float(system.kT), seed=seed, progress=progress, checkpoint=ckpt,
                             **{k: v for k, v in settings.items() if k != "seed"})
    diag.update(seed=seed, energy_mean=float(e.mean()), energy_std=float(e.std()), settings=settings)
    result = ReferenceResult(samples=x, energies=e, kT=float(system.kT), method="remd", system=system.name,
                             diagnostics=diag)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_reference(result, path, system)
    result.diagnostics.update(cache="miss", path=str(path))
    return result
