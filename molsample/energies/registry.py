"""The card energy types: ``[energy] type = NAME`` of a system card → the factory that builds it.

Each energy module registers its own type beside its class, e.g. in ``lennard_jones.py``::

    @register_energy_type("lennard_jones", ("n_particles", "dim", ...), identical_atoms=True)
    def lennard_jones_from_card(table: dict, card_path: Path) -> Energy:
        return LennardJones(n_particles=take(table, "n_particles", int, str(card_path)), ...)

Importing :mod:`molsample.energies` imports every energy module, so :data:`ENERGY_TYPES` is
complete whenever a card is read (:func:`molsample.systems.cards.system_from_card`).
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Callable, Iterable

from molsample.energies.base import Energy
from molsample.errors import ConfigError

__all__ = ["ENERGY_TYPES", "EnergyFactory", "EnergyType", "check_keys", "register_energy_type", "take"]

EnergyFactory = Callable[[dict, Path], Energy]


@dataclasses.dataclass(frozen=True)
class EnergyType:
    """A registered card energy type.

    Attributes:
        name: the value of ``[energy] type``.
        build: ``build(table, card_path) -> Energy`` from the card's ``[energy]`` table.
        keys: the keys that table may hold (``type`` included); others are errors.
        identical_atoms: the particles are identical atoms (a 3-D card then gets a topology of
            ``element`` atoms for exported structures).
    """

    name: str
    build: EnergyFactory
    keys: frozenset[str]
    identical_atoms: bool = False


#: Energy types by ``[energy].type``, in registration order.
ENERGY_TYPES: dict[str, EnergyType] = {}


def register_energy_type(name: str, keys: Iterable[str], *, identical_atoms: bool = False
                         ) -> Callable[[EnergyFactory], EnergyFactory]:
    """Decorator: register ``factory(table, card_path) -> Energy`` as ``[energy] type = name`` whose
    table may hold ``keys`` (``type`` is added); unknown keys are then errors naming the close match."""
    def deco(factory: EnergyFactory) -> EnergyFactory:
        if name in ENERGY_TYPES:
            raise ValueError(f"energy type {name!r} is registered twice")
        ENERGY_TYPES[name] = EnergyType(name, factory, frozenset({"type", *keys}), identical_atoms)
        return factory
    return deco


def check_keys(table: dict, allowed: Any, where: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``table`` not in ``allowed``, naming the
    closest allowed key (difflib) and the full list."""
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'; {hint}allowed keys: {', '.join(sorted(allowed))}")


def take(table: dict, key: str, typ: type, where: str, default: Any = dataclasses.MISSING) -> Any:
    """``table[key]`` checked to be a ``typ`` (an int is taken for a float), or ``default`` when the
    key is absent; :class:`ConfigError` naming the card (``where``) for a missing or mistyped key."""
    if key not in table:
        if default is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key '{key}' in [energy]; add e.g. {key} = ...")
        return default
    value = table[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(
            f"{where}: [energy].{key} must be {typ.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value
