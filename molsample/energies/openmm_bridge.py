"""Any ``openmm.System`` as a batched, differentiable molsample :class:`Energy`.

Energies are in kJ/mol, positions and forces in nm and kJ/mol/nm (OpenMM's units). A batch
is evaluated configuration by configuration in one OpenMM ``Context`` (or a small pool of
contexts driven by threads: OpenMM releases the GIL while it computes), through OpenMM's
low-level calls so that the Python overhead per configuration stays a few microseconds.

Gradients flow through :class:`_OpenMMEnergyFunction`, whose backward returns
``−force · grad_output``: ``energy(x).sum().backward()`` gives ``x.grad = −F``.

Configurations whose positions or results are not finite never crash a batch: that sample's
energy becomes ``+inf`` (zero Boltzmann weight), its force zero, and the sample is counted in
:attr:`OpenMMEnergy.n_nonfinite` and flagged in :attr:`OpenMMEnergy.last_nonfinite`.

Build one from a card (``[energy] type = "openmm"``) with :func:`energy_from_card`, see
``docs/openmm.md``.
"""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from molsample.energies.base import Energy
from molsample.errors import ConfigError, EnergyError, MissingFileError, PlatformError

__all__ = ["OpenMMEnergy", "available_platforms", "energy_from_card", "system_to_xml"]

_NONFINITE_POLICIES = ("inf", "nan", "raise")
_GPU_PLATFORMS = ("CUDA", "HIP", "OpenCL")


# --------------------------------------------------------------------------- platforms


def _openmm() -> Any:
    try:
        import openmm
    except ImportError as exc:  # pragma: no cover - openmm is a dependency
        raise PlatformError("OpenMM is not installed; install it with `pip install openmm`") from exc
    return openmm


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms usable on this machine, e.g. ``["Reference", "CPU"]``."""
    openmm = _openmm()
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def _resolve_platform_name(name: str) -> str:
    names = available_platforms()
    for n in names:
        if n.lower() == str(name).lower():
            return n
    raise PlatformError(
        f"OpenMM platform '{name}' is not available on this machine; available: {', '.join(names)} "
        f"(or 'auto' to pick the fastest)"
    )


# --------------------------------------------------------------------------- evaluation kernels


def _make_kernel(openmm: Any) -> Callable[[Any, np.ndarray, np.ndarray, np.ndarray, int, int, bool], None]:
    """``kernel(context, x, e, f, lo, hi, virtual_sites)`` fills ``e[lo:hi]``, ``f[lo:hi]``.

    Uses OpenMM's SWIG entry points directly (no unit wrapping, forces copied straight into
    the output buffer); falls back to the public API when they are missing.
    """
    types = openmm.State.Energy + openmm.State.Forces
    low = getattr(openmm, "_openmm", None)
    fast = low is not None and all(
        hasattr(low, n)
        for n in ("Context_setPositions", "Context_getState", "State_getPotentialEnergy", "State__getVectorAsNumpy")
    )
    if fast:
        set_positions, get_state = low.Context_setPositions, low.Context_getState
        get_energy, get_vector = low.State_getPotentialEnergy, low.State__getVectorAsNumpy
        forces_kind = openmm.State.Forces

        def kernel(context, x, e, f, lo, hi, virtual_sites):  # type: ignore[no-untyped-def]
            for i in range(lo, hi):
                set_positions(context, x[i])
                if virtual_sites:
                    context.computeVirtualSites()
                state = get_state(context, types, False, -1)
                e[i] = get_energy(state)
                get_vector(state, forces_kind, f[i])

        return kernel

    from openmm import unit  # pragma: no cover - only for OpenMM builds without the SWIG names

    def slow_kernel(context, x, e, f, lo, hi, virtual_sites):  # type: ignore[no-untyped-def]  # pragma: no cover
        for i in range(lo, hi):
            context.setPositions(x[i])
            if virtual_sites:
                context.computeVirtualSites()
            state = context.getState(getEnergy=True, getForces=True)
            e[i] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            f[i] = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)

    return slow_kernel  # pragma: no cover


# --------------------------------------------------------------------------- the Energy


class OpenMMEnergy(Energy):
    """Potential energy of an ``openmm.System``, batched over configurations.

    Args:
        system: the ``openmm.System`` (its particles are the atoms; use no constraints for
            sampling — a constrained bond has no energy term, so the density would not fix it).
        topology: ``mdtraj.Topology`` (or an ``openmm.app.Topology``, converted) or ``None``.
        positions: reference positions ``(n, 3)`` in nm (e.g. the minimized structure) or ``None``.
        platform: OpenMM platform name: ``"CPU"``, ``"Reference"`` (double precision; fastest
            for molecules of a few dozen atoms), ``"CUDA"``/``"OpenCL"``/``"HIP"`` where present,
            or ``"auto"`` (time each available platform on a few configurations, keep the fastest).
        platform_properties: OpenMM platform properties, e.g. ``{"Threads": "1"}`` or
            ``{"Precision": "double"}``.
        n_workers: number of contexts evaluated concurrently by threads (1 = one context).
        nonfinite: what a non-finite sample becomes: ``"inf"`` (energy +inf, force 0, counted and
            warned), ``"nan"`` (energy NaN, force 0) or ``"raise"`` (:class:`EnergyError`).

    Attributes:
        system, topology, positions, platform (the resolved name), n_evaluations (configurations
        evaluated so far), n_nonfinite (non-finite samples so far), last_nonfinite (``(batch,)``
        bool mask of the last batch).

    Raises:
        PlatformError: the platform is unknown or unavailable (the message lists the available ones).
        ConfigError: positions/topology that do not match the system.
    """

    unit = "kJ/mol"
    length_unit = "nm"

    def __init__(
        self,
        system: Any,
        topology: Any = None,
        positions: np.ndarray | None = None,
        platform: str = "CPU",
        platform_properties: dict[str, str] | None = None,
        n_workers: int = 1,
        nonfinite: str = "inf",
    ) -> None:
        openmm = _openmm()
        if not isinstance(system, openmm.System):
            raise ConfigError(f"OpenMMEnergy needs an openmm.System, got {type(system).__name__}")
        n = system.getNumParticles()
        super().__init__(n, 3)
        if n_workers < 1:
            raise ConfigError(f"n_workers must be >= 1, got {n_workers}")
        if nonfinite not in _NONFINITE_POLICIES:
            raise ConfigError(f"nonfinite must be one of {', '.join(_NONFINITE_POLICIES)}, got {nonfinite!r}")
        self.system = system
        self.topology = _as_mdtraj_topology(topology, n)
        if positions is not None:
            positions = _positions_nm(positions)
            if positions.shape != (n, 3):
                raise ConfigError(
                    f"positions have shape {positions.shape}, the system has {n} particles; pass ({n}, 3) in nm"
                )
        self.positions = positions
        self.platform_properties = {str(k): str(v) for k, v in (platform_properties or {}).items()}
        self.n_workers = int(n_workers)
        self.nonfinite = nonfinite
        self.n_evaluations = 0
        self.n_nonfinite = 0
        self.last_nonfinite = torch.zeros(0, dtype=torch.bool)
        self._requested_platform = str(platform)
        self._virtual_sites = any(system.isVirtualSite(i) for i in range(n))
        if system.getNumConstraints() > 0:
            warnings.warn(
                f"the OpenMM system has {system.getNumConstraints()} constraints; their bonds carry no energy "
                "term, so Boltzmann sampling of all coordinates is ill-defined. Build it with constraints=None",
                RuntimeWarning,
                stacklevel=2,
            )
        self._contexts: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.platform = self._choose_platform(self._requested_platform)
        self._build_contexts()

    # ------------------------------------------------------------------ contexts

    def _new_context(self, name: str, strict: bool = True) -> Any:
        openmm = _openmm()
        platform = openmm.Platform.getPlatformByName(name)
        props = {k: v for k, v in self.platform_properties.items() if k in platform.getPropertyNames()}
        unknown = sorted(set(self.platform_properties) - set(props))
        if unknown and strict:
            known = ", ".join(platform.getPropertyNames()) or "(none)"
            raise PlatformError(f"platform {name} has no properties {unknown}; it knows: {known}")
        try:
            return openmm.Context(self.system, openmm.VerletIntegrator(0.001), platform, props)
        except openmm.OpenMMException as exc:
            raise PlatformError(
                f"OpenMM could not create a context on platform {name}: {exc}; "
                f"pick another one of {', '.join(available_platforms())}"
            ) from exc

    def _build_contexts(self) -> None:
        self._contexts = [self._new_context(self.platform) for _ in range(self.n_workers)]
        self._kernel = _make_kernel(_openmm())
        self._pool = ThreadPoolExecutor(self.n_workers) if self.n_workers > 1 else None

    def _choose_platform(self, requested: str) -> str:
        if requested.lower() != "auto":
            return _resolve_platform_name(requested)
        # Time every platform on the same few configurations; keep the fastest.
        x = self._probe_positions(64)
        kernel = _make_kernel(_openmm())
        e, f = np.empty(len(x)), np.empty_like(x)
        best, best_t = "Reference", float("inf")
        for name in available_platforms():
            try:
                ctx = self._new_context(name, strict=False)
            except PlatformError:
                continue
            kernel(ctx, x, e, f, 0, 4, self._virtual_sites)  # warm-up (kernel compilation)
            t0 = time.perf_counter()
            kernel(ctx, x, e, f, 0, len(x), self._virtual_sites)
            dt = time.perf_counter() - t0
            if dt < best_t:
                best, best_t = name, dt
            del ctx
        return best

    def _probe_positions(self, n: int) -> np.ndarray:
        if self.positions is not None:
            base = self.positions
        else:  # a cubic lattice with 0.3 nm spacing: no overlaps
            k = int(np.ceil(self.n_particles ** (1 / 3)))
            grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)
            base = 0.3 * grid[: self.n_particles].astype(np.float64)
        rng = np.random.default_rng(0)
        return np.ascontiguousarray(base[None] + 0.005 * rng.standard_normal((n, *base.shape)))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        openmm = _openmm()
        state["system"] = openmm.XmlSerializer.serialize(self.system)
        for key in ("_contexts", "_pool", "_lock", "_kernel"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        openmm = _openmm()
        state = dict(state)
        state["system"] = openmm.XmlSerializer.deserialize(state["system"])
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._build_contexts()

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, x: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energies and forces of a batch as float64 numpy arrays.

        Args:
            x: ``(batch, n_particles, 3)`` positions in nm (tensor on any device, or array).
        Returns:
            ``(energy (batch,), force (batch, n, 3), nonfinite (batch,) bool)`` in kJ/mol and
            kJ/mol/nm; non-finite samples follow :attr:`nonfinite`. For a float32 (or lower
            precision) tensor, values that would overflow its dtype count as non-finite.
        """
        limit = np.inf
        if isinstance(x, torch.Tensor):
            if x.dtype.is_floating_point and torch.finfo(x.dtype).max < np.finfo(np.float64).max:
                limit = float(torch.finfo(x.dtype).max)
            x = self.check_shape(x).detach().to("cpu", torch.float64).numpy()
        xs = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(-1, self.n_particles, 3))
        batch = xs.shape[0]
        energy = np.empty(batch)
        force = np.zeros_like(xs)
        finite_in = np.isfinite(xs).all(axis=(1, 2))
        with self._lock:  # one batch at a time per energy object: contexts are not thread-safe
            idx = np.flatnonzero(finite_in)
            if len(idx) == batch:
                self._run(xs, energy, force)
            elif len(idx) > 0:
                sub_e, sub_f = np.empty(len(idx)), np.zeros((len(idx), self.n_particles, 3))
                self._run(np.ascontiguousarray(xs[idx]), sub_e, sub_f)
                energy[idx], force[idx] = sub_e, sub_f
            self.n_evaluations += batch
        bad = ~(finite_in & (np.abs(energy) < limit) & (np.abs(force) < limit).all(axis=(1, 2)))
        n_bad = int(bad.sum())
        if n_bad:
            if self.nonfinite == "raise":
                raise EnergyError(
                    f"{n_bad} of {batch} configurations gave non-finite OpenMM energies or forces "
                    f"(first: sample {int(np.flatnonzero(bad)[0])}); check for NaN/overlapping positions, "
                    "or construct OpenMMEnergy(nonfinite='inf') to flag them instead"
                )
            energy[bad] = np.inf if self.nonfinite == "inf" else np.nan
            force[bad] = 0.0
            self.n_nonfinite += n_bad
            warnings.warn(
                f"OpenMMEnergy: {n_bad} of {batch} configurations gave non-finite energies or forces; "
                f"their energy is set to {energy[bad][0]} and force to 0 (n_nonfinite={self.n_nonfinite})",
                RuntimeWarning,
                stacklevel=3,
            )
        self.last_nonfinite = torch.from_numpy(bad)
        return energy, force, bad

    def _run(self, xs: np.ndarray, energy: np.ndarray, force: np.ndarray) -> None:
        """Fill ``energy``/``force`` for finite positions ``xs``, never raising per sample."""
        batch = xs.shape[0]
        if self._pool is None or batch < 2 * self.n_workers:
            self._run_chunk(0, xs, energy, force, 0, batch)
            return
        bounds = np.linspace(0, batch, self.n_workers + 1).astype(int)
        futures = [
            self._pool.submit(self._run_chunk, w, xs, energy, force, int(bounds[w]), int(bounds[w + 1]))
            for w in range(self.n_workers)
        ]
        for fut in futures:
            fut.result()

    def _run_chunk(self, worker: int, xs: np.ndarray, energy: np.ndarray, force: np.ndarray, lo: int, hi: int) -> None:
        openmm = _openmm()
        ctx = self._contexts[worker]
        try:
            self._kernel(ctx, xs, energy, force, lo, hi, self._virtual_sites)
        except openmm.OpenMMException:
            # Rare (positions are checked before): redo the chunk sample by sample, flag failures.
            for j in range(lo, hi):
                try:
                    self._kernel(ctx, xs, energy, force, j, j + 1, self._virtual_sites)
                except openmm.OpenMMException:
                    energy[j] = np.nan
                    force[j] = 0.0

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return _OpenMMEnergyFunction.apply(x, self)

    def energy_and_force(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``(batch,)`` in kJ/mol and forces ``(batch, n, 3)`` in kJ/mol/nm, one OpenMM pass."""
        x = self.check_shape(x)
        e, f, _ = self.evaluate(x)
        return (torch.from_numpy(e).to(device=x.device, dtype=x.dtype),
                torch.from_numpy(f).to(device=x.device, dtype=x.dtype))

    def force(self, x: torch.Tensor) -> torch.Tensor:
        """Forces ``(batch, n, 3)`` in kJ/mol/nm straight from OpenMM (no autograd)."""
        return self.energy_and_force(x)[1]

    def reset_counters(self) -> None:
        """Set :attr:`n_evaluations` and :attr:`n_nonfinite` to zero."""
        self.n_evaluations = 0
        self.n_nonfinite = 0

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, platform={self.platform!r}, n_workers={self.n_workers}"


class _OpenMMEnergyFunction(torch.autograd.Function):
    """E(x) from OpenMM; backward gives −F · grad_output (first derivatives only)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, energy: OpenMMEnergy) -> torch.Tensor:  # type: ignore[override]
        e, f, _ = energy.evaluate(x)
        ctx.save_for_backward(torch.from_numpy(f).to(device=x.device, dtype=x.dtype))
        return torch.from_numpy(e).to(device=x.device, dtype=x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (force,) = ctx.saved_tensors
        return -force * grad_output[:, None, None], None


# --------------------------------------------------------------------------- helpers


def _positions_nm(positions: Any) -> np.ndarray:
    """``(n, 3)`` float64 nm from an array (nm) or an OpenMM Quantity."""
    if hasattr(positions, "value_in_unit"):
        from openmm import unit

        positions = positions.value_in_unit(unit.nanometer)
    return np.array(positions, dtype=np.float64).reshape(-1, 3)


def _as_mdtraj_topology(topology: Any, n_particles: int) -> Any:
    if topology is None:
        return None
    import mdtraj

    if not isinstance(topology, mdtraj.Topology):
        topology = mdtraj.Topology.from_openmm(topology)
    if topology.n_atoms != n_particles:
        raise ConfigError(
            f"the topology has {topology.n_atoms} atoms but the OpenMM system {n_particles} particles; "
            "use the structure the system was built from"
        )
    return topology


# --------------------------------------------------------------------------- cards

CARD_KEYS = {
    "type", "structure", "system_xml", "forcefield", "nonbonded_method", "nonbonded_cutoff_nm",
    "constraints", "rigid_water", "platform", "platform_properties", "n_workers", "nonfinite",
}
_NONBONDED = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME", "LJPME")
_CONSTRAINTS = {"none": None, "hbonds": "HBonds", "allbonds": "AllBonds", "hangles": "HAngles"}


def _find_file(key: str, value: Any, card_path: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{card_path}: [energy].{key} must be a file path string, got {value!r}")
    p = Path(value)
    candidates = [p] if p.is_absolute() else [card_path.parent / p, card_path.parent.parent / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise MissingFileError(
        f"{card_path}: [energy].{key} = '{value}' not found (tried {tried}); fix the path in the card "
        "(relative paths are read from the card's folder, then its parent folder)"
    )


def _read_structure(path: Path) -> tuple[Any, np.ndarray]:
    """(openmm.app.Topology, positions nm (n, 3)) from a PDB or PDBx/mmCIF file."""
    from openmm import app, unit

    try:
        if path.suffix.lower() in (".cif", ".pdbx", ".mmcif"):
            f = app.PDBxFile(str(path))
        else:
            f = app.PDBFile(str(path))
    except Exception as exc:  # OpenMM raises plain Exceptions for malformed files
        raise ConfigError(f"cannot read the structure {path}: {exc}; pass a valid PDB or PDBx/mmCIF file") from exc
    return f.topology, np.asarray(f.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)


def _system_from_forcefield(table: dict, card_path: Path, topology: Any) -> Any:
    from openmm import app, unit

    ff_files = table["forcefield"]
    if isinstance(ff_files, str):
        ff_files = [ff_files]
    if not isinstance(ff_files, list) or not all(isinstance(s, str) for s in ff_files) or not ff_files:
        raise ConfigError(f"{card_path}: [energy].forcefield must be a list of XML files, got {table['forcefield']!r}")
    resolved = []
    for name in ff_files:
        local = [c for c in (card_path.parent / name, card_path.parent.parent / name) if c.is_file()]
        resolved.append(str(local[0]) if local else name)  # else: a file shipped with OpenMM
    try:
        ff = app.ForceField(*resolved)
    except (ValueError, OSError) as exc:
        raise MissingFileError(
            f"{card_path}: force-field files {ff_files} could not be read ({exc}); give paths relative to the card "
            "or names of files shipped with OpenMM such as 'amber14-all.xml'"
        ) from exc

    method = table.get("nonbonded_method", "NoCutoff")
    if method not in _NONBONDED:
        raise ConfigError(f"{card_path}: [energy].nonbonded_method = {method!r}; use one of {', '.join(_NONBONDED)}")
    constraints = table.get("constraints", "none")
    if not isinstance(constraints, str) or constraints.lower() not in _CONSTRAINTS:
        raise ConfigError(
            f"{card_path}: [energy].constraints = {constraints!r}; use \"none\" (needed for sampling all atoms), "
            "\"HBonds\", \"AllBonds\" or \"HAngles\""
        )
    rigid_water = table.get("rigid_water", False)
    if not isinstance(rigid_water, bool):
        raise ConfigError(f"{card_path}: [energy].rigid_water must be true or false, got {rigid_water!r}")
    kwargs: dict[str, Any] = {
        "nonbondedMethod": getattr(app, method),
        "constraints": getattr(app, _CONSTRAINTS[constraints.lower()]) if _CONSTRAINTS[constraints.lower()] else None,
        "rigidWater": rigid_water,
        "removeCMMotion": False,
    }
    if "nonbonded_cutoff_nm" in table:
        cutoff = table["nonbonded_cutoff_nm"]
        if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or cutoff <= 0:
            raise ConfigError(f"{card_path}: [energy].nonbonded_cutoff_nm must be a positive number, got {cutoff!r}")
        kwargs["nonbondedCutoff"] = float(cutoff) * unit.nanometer
    try:
        return ff.createSystem(topology, **kwargs)
    except ValueError as exc:
        raise ConfigError(
            f"{card_path}: OpenMM could not parametrize the structure with {ff_files}: {exc}. Add force-field XML "
            "with templates for the unmatched residues (e.g. from openmmforcefields/GAFF), or give system_xml"
        ) from exc


def energy_from_card(table: dict, card_path: Path) -> OpenMMEnergy:
    """Build an :class:`OpenMMEnergy` from a card's ``[energy]`` table (``type = "openmm"``).

    Keys (paths relative to the card's folder, then its parent = the project root):
        structure: PDB or PDBx/mmCIF file (topology and reference positions).
        system_xml: a serialized ``openmm.System`` — or instead
        forcefield: list of force-field XML files (OpenMM's own, e.g. ``"amber99sbildn.xml"``, or
            local paths) with optional ``nonbonded_method`` (default ``"NoCutoff"``),
            ``nonbonded_cutoff_nm``, ``constraints`` (default ``"none"``: keep it for sampling),
            ``rigid_water`` (default false).
        platform: OpenMM platform name or ``"auto"`` (default ``"CPU"``); platform_properties: table;
        n_workers: contexts run concurrently (default 1); nonfinite: ``"inf"|"nan"|"raise"``.

    Raises:
        MissingFileError: a named file does not exist (the message gives the paths tried).
        ConfigError: an unknown key, a bad value, or a structure that does not match the system.
        PlatformError: the platform is not available.
    """
    openmm = _openmm()
    card_path = Path(card_path)
    unknown = sorted(set(table) - CARD_KEYS)
    if unknown:
        raise ConfigError(
            f"{card_path}: unknown [energy] keys {unknown} for type = \"openmm\"; "
            f"known keys: {', '.join(sorted(CARD_KEYS))}"
        )
    has_xml, has_ff = "system_xml" in table, "forcefield" in table
    if has_xml == has_ff:
        raise ConfigError(
            f"{card_path}: give exactly one of [energy].system_xml (a serialized openmm.System) or "
            "[energy].forcefield (a list of force-field XML files with structure)"
        )
    topology = positions = None
    if "structure" in table:
        topology, positions = _read_structure(_find_file("structure", table["structure"], card_path))
    elif has_ff:
        raise ConfigError(f"{card_path}: [energy].forcefield needs [energy].structure (a PDB file) to parametrize")

    if has_xml:
        xml_path = _find_file("system_xml", table["system_xml"], card_path)
        try:
            system = openmm.XmlSerializer.deserialize(xml_path.read_text())
        except Exception as exc:  # OpenMM raises plain Exceptions for bad XML
            raise ConfigError(f"{xml_path} is not a serialized openmm.System ({exc}); regenerate it") from exc
        if not isinstance(system, openmm.System):
            raise ConfigError(f"{xml_path} holds a {type(system).__name__}, not an openmm.System")
    else:
        system = _system_from_forcefield(table, card_path, topology)
    if positions is not None and positions.shape[0] != system.getNumParticles():
        raise ConfigError(
            f"{card_path}: the structure has {positions.shape[0]} atoms but the system {system.getNumParticles()} "
            "particles; the structure and system_xml must describe the same molecule"
        )

    platform = table.get("platform", "CPU")
    props = table.get("platform_properties", {})
    n_workers = table.get("n_workers", 1)
    nonfinite = table.get("nonfinite", "inf")
    if not isinstance(platform, str):
        raise ConfigError(f"{card_path}: [energy].platform must be a string such as \"CPU\", got {platform!r}")
    if not isinstance(props, dict):
        raise ConfigError(f"{card_path}: [energy].platform_properties must be a table, got {props!r}")
    if not isinstance(n_workers, int) or isinstance(n_workers, bool):
        raise ConfigError(f"{card_path}: [energy].n_workers must be an integer, got {n_workers!r}")
    return OpenMMEnergy(
        system,
        topology=topology,
        positions=positions,
        platform=platform,
        platform_properties=props,
        n_workers=n_workers,
        nonfinite=nonfinite,
    )


def system_to_xml(system: Any) -> str:
    """The XML text of an ``openmm.System`` (for ``system_xml`` files)."""
    return _openmm().XmlSerializer.serialize(system)
