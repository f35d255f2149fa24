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

Build one from a card (``[energy] type = "openmm"``) with :func:`energy_from_card`
(:mod:`molsample.energies.openmm_card`), see ``docs/openmm.md``.
"""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

from molsample.energies.base import Energy
from molsample.errors import ConfigError, EnergyError, PlatformError

__all__ = ["OpenMMEnergy", "available_platforms"]

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
