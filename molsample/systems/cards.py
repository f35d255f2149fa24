"""Systems: an energy coupled with a temperature, a topology and metadata, read from TOML cards.

A card is a TOML file looked up by name (in ``./systems/``, ``$MOLSAMPLE_SYSTEMS_PATH`` or the shipped
``molsample/data/systems/``) or by path::

    name = "lj13"
    description = "Lennard-Jones 13-atom cluster, benchmark convention"
    kT = 1.0                     # in the energy's unit; or temperature_K = 300 for kJ/mol energies
    remove_com = true            # particles live on the zero-centre-of-mass subspace

    [energy]
    type = "lennard_jones"       # lennard_jones | double_well | ring2d | gaussian | openmm | plugin
    n_particles = 13
    pair_factor = 2.0
    oscillator_scale = 1.0

See docs/systems.md for every energy type and its keys.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch

from molsample.energies import Energy
from molsample.energies.registry import ENERGY_TYPES, check_keys, register_energy_type, take
from molsample.errors import ConfigError, MissingFileError, UnknownSystemError
from molsample.io.toml import read_toml
from molsample.runtime.resources import cards_dir
from molsample.systems import units

#: Folder of the cards shipped with molsample (``molsample/data/systems``).
PACKAGE_SYSTEMS_DIR = cards_dir()


@dataclasses.dataclass
class System:
    """An energy with everything needed to sample its Boltzmann distribution.

    Attributes:
        name: card name.
        energy: the :class:`~molsample.energies.Energy`.
        kT: thermal energy in the energy's unit (the target is exp(−E/kT)).
        remove_com: whether configurations live on the zero-centre-of-mass subspace.
        topology: ``mdtraj.Topology`` for particle/molecular systems, ``None`` for toys.
        temperature_K: temperature in kelvin for physical systems, else ``None``.
        description: one line for humans.
        convention: how the energy is defined (e.g. the LJ pair convention), for docs and files.
        card: the parsed card (all keys, including ones molsample does not interpret).
        card_path: where the card was read from.
        length_scale: the length unit of the flows, in the energy's length unit: the base Gaussian
            has this std per coordinate and the velocity net sees x / length_scale (card key
            ``length_scale``, default 1; about the per-coordinate std of the data suits best).
    """

    name: str
    energy: Energy
    kT: float
    remove_com: bool
    topology: Any = None
    temperature_K: float | None = None
    description: str = ""
    convention: str = ""
    card: dict = dataclasses.field(default_factory=dict)
    card_path: Path | None = None
    length_scale: float = 1.0

    @property
    def n_particles(self) -> int:
        return self.energy.n_particles

    @property
    def dim(self) -> int:
        return self.energy.dim

    @property
    def event_shape(self) -> tuple[int, int]:
        return (self.energy.n_particles, self.energy.dim)

    @property
    def energy_unit(self) -> str:
        return self.energy.unit

    @property
    def length_unit(self) -> str:
        return self.energy.length_unit

    def reduced_energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x)/kT, ``(batch,)`` — the negative log of the unnormalized target."""
        return self.energy.energy(x) / self.kT

    def exact_sampler(self) -> Callable[[int, torch.Generator | None], torch.Tensor] | None:
        """``sample(n, generator) -> (n, n_particles, dim)`` when the target can be sampled exactly."""
        return getattr(self.energy, "sample", None)


# --------------------------------------------------------------------------- allowed keys

#: Top-level keys a card may have, with what reads them. Extend here when a new part of molsample
#: reads a card key (unknown keys are errors, so a misspelled ``temprature_K`` is caught).
CARD_KEYS: dict[str, str] = {
    "name": "card name",
    "description": "one line for humans",
    "convention": "how the energy is defined",
    "kT": "thermal energy in the energy's unit",
    "temperature_K": "temperature in kelvin (kJ/mol energies)",
    "remove_com": "zero-centre-of-mass subspace",
    "length_scale": "the flows' length unit",
    "element": "element of LJ particles in exported structures",
    "dihedrals": "named dihedrals (atom indices)",
    "chiral_centers": "chirality check and fix (molsample.molecules.chirality)",
    "energy": "[energy] table",
    "base": "[base] table: the flows' base distribution (molsample.flows.distributions.base_distribution)",
    "reward": "[reward] table (reward-mode tilts, molsample.training.rewards)",
    "run": "[run] table: run-config defaults (molsample.stages.config)",
    "internal": "[internal] table: the Z-matrix of internal-coordinate flows (molsample.molecules.zmatrix)",
}


# --------------------------------------------------------------------------- plugin energies
# The other energy types register beside their classes (molsample.energies.registry.ENERGY_TYPES).


@register_energy_type("plugin", ("path", "params"))
def _plugin(table: dict, card_path: Path) -> Energy:
    spec = take(table, "path", str, str(card_path))
    params = table.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{card_path}: [energy].params must be a table, got {params!r}")
    return load_plugin_energy(spec, base_dir=card_path.parent, where=f"{card_path} [energy.params]", **params)


def load_plugin_energy(spec: str, base_dir: Path | None = None, where: str | None = None, **params: Any) -> Energy:
    """Instantiate an :class:`Energy` subclass defined in a Python file.

    Args:
        spec: ``"path/to/file.py:ClassName"``; a relative path is tried against ``base_dir``,
            its parent (the project root for cards in ``systems/``) and the working directory.
        where: names the params' origin in error messages (default: the spec).
        params: keyword arguments for the class.

    Raises:
        ConfigError: no such class, a parameter the class does not take, or not an Energy subclass.
    """
    if ":" not in spec:
        raise ConfigError(f"plugin energy '{spec}' must look like 'potentials/my_energy.py:MyEnergy'")
    file_part, cls_name = spec.rsplit(":", 1)
    candidates = [Path(file_part)]
    if not Path(file_part).is_absolute():
        roots = [base_dir, base_dir.parent if base_dir else None, Path.cwd()]
        candidates = [r / file_part for r in roots if r is not None]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(str(p) for p in candidates)
        raise MissingFileError(f"plugin file '{file_part}' not found (tried {tried}); fix the path in the card")
    module_name = f"molsample_plugin_{path.stem}_{abs(hash(str(path.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(module_name, path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ConfigError(f"plugin file {path} defines no '{cls_name}'; check the name after ':'")
    _check_plugin_params(cls, params, where or spec)
    energy = cls(**params)
    if not isinstance(energy, Energy):
        raise ConfigError(f"{spec} is not a molsample.energies.Energy subclass; derive from Energy")
    return energy


def _check_plugin_params(cls: Any, params: dict, where: str) -> None:
    """Bind ``params`` to ``cls``'s constructor; a mismatch is a :class:`ConfigError` naming the parameter."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # no introspectable signature: let the call decide
        return
    names = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not takes_any:
        check_keys(params, names, f"{where}: {cls.__name__}({', '.join(names)})")
    try:
        sig.bind(**params)
    except TypeError as exc:
        raise ConfigError(
            f"{where}: {cls.__name__}{sig} cannot take these params ({exc}); fix [energy.params]"
        ) from exc


# --------------------------------------------------------------------------- cards


def search_dirs() -> list[Path]:
    """Folders searched for cards by name: ``$MOLSAMPLE_SYSTEMS_PATH`` (os.pathsep-separated),
    ``./systems`` and the shipped ``molsample/data/systems``."""
    dirs = [Path(p) for p in os.environ.get("MOLSAMPLE_SYSTEMS_PATH", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "systems", PACKAGE_SYSTEMS_DIR]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def available_systems() -> dict[str, Path]:
    """Card name → card path for every card found in :func:`search_dirs` (first wins)."""
    found: dict[str, Path] = {}
    for d in search_dirs():
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, p)
    return found


def read_card(path: Path) -> dict:
    """Parse a system card (see :func:`read_toml`)."""
    return read_toml(path, what="system card", hint="check the path or run `molsample systems`")


def resolve_card_path(name_or_path: str | os.PathLike) -> Path:
    """A card path from a name (``lj13``) or a path (``my/card.toml``)."""
    s = str(name_or_path)
    p = Path(s)
    if s.endswith(".toml") or os.sep in s or p.is_file():
        if not p.is_file():
            raise MissingFileError(f"system card {p} does not exist; check the path or run `molsample systems`")
        if p.suffix.lower() != ".toml":
            raise ConfigError(
                f"{p} is not a system card: a card is a .toml file (a name from `molsample systems`, or your "
                f"own card, e.g. systems/mymol.toml with [energy] type = \"openmm\" and structure = \"{p.name}\"; "
                "see docs/systems.md and docs/openmm.md)"
            )
        return p
    known = available_systems()
    if s not in known:
        names = ", ".join(sorted(known)) or "(none found)"
        raise UnknownSystemError(
            f"unknown system '{s}'; known systems: {names}. Pass one of these or a path to a .toml card"
        )
    return known[s]


def system_from_card(card: dict, card_path: Path) -> System:
    """Build a :class:`System` from a parsed card."""
    check_keys(card, CARD_KEYS, f"{card_path}")
    energy_table = card.get("energy")
    if not isinstance(energy_table, dict):
        raise ConfigError(f"{card_path}: missing [energy] table; add [energy] with type = \"lennard_jones\" etc.")
    etype = energy_table.get("type")
    if etype not in ENERGY_TYPES:
        raise ConfigError(
            f"{card_path}: [energy].type = {etype!r} is not known; use one of {', '.join(ENERGY_TYPES)}"
        )
    energy_type = ENERGY_TYPES[etype]
    check_keys(energy_table, energy_type.keys, f"{card_path} [energy] (type = \"{etype}\")")
    energy = energy_type.build(energy_table, card_path)

    temperature = card.get("temperature_K")
    if "kT" in card:
        kT = card["kT"]
        if not isinstance(kT, (int, float)) or isinstance(kT, bool) or kT <= 0:
            raise ConfigError(f"{card_path}: kT must be a positive number, got {kT!r}")
        kT = float(kT)
    elif temperature is not None:
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError(f"{card_path}: temperature_K must be a positive number, got {temperature!r}")
        if energy.unit != "kJ/mol":
            raise ConfigError(
                f"{card_path}: temperature_K needs an energy in kJ/mol, this one is in {energy.unit}; give kT instead"
            )
        kT = units.kT(float(temperature))
    else:
        raise ConfigError(f"{card_path}: give kT (in the energy's unit) or temperature_K (kelvin)")

    remove_com = card.get("remove_com", energy.n_particles > 1)
    if not isinstance(remove_com, bool):
        raise ConfigError(f"{card_path}: remove_com must be true or false, got {remove_com!r}")

    length_scale = card.get("length_scale", 1.0)
    if isinstance(length_scale, bool) or not isinstance(length_scale, (int, float)) or not 0 < length_scale < math.inf:
        raise ConfigError(
            f"{card_path}: length_scale must be a positive number (the flows' length unit), got {length_scale!r}"
        )

    topology = getattr(energy, "topology", None)
    if topology is None and energy_type.identical_atoms and energy.dim == 3:
        from molsample.molecules.topology import particle_topology

        topology = particle_topology(energy.n_particles, element=card.get("element", "Ar"))

    return System(
        name=str(card.get("name", card_path.stem)),
        energy=energy,
        kT=kT,
        remove_com=remove_com,
        topology=topology,
        temperature_K=float(temperature) if temperature is not None else None,
        description=str(card.get("description", "")),
        convention=str(card.get("convention", "")),
        card=card,
        card_path=card_path,
        length_scale=float(length_scale),
    )


def load_system(name_or_path: str | os.PathLike) -> System:
    """Load a system by card name (``"lj13"``) or card path.

    Raises:
        UnknownSystemError: the name is not a known card (the message lists the known ones).
        MissingFileError: a card path or a file it names does not exist.
        ConfigError: the card is malformed or misses a key.
    """
    path = resolve_card_path(name_or_path)
    return system_from_card(read_card(path), path)
