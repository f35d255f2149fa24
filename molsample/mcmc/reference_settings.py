"""What a reference method is: a :class:`ReferenceMethod` in :data:`REFERENCE_METHODS`, with its
default settings, the spellings it accepts, whether its chains are split over ranks, which systems
it applies to and ``run``; and how a user's settings are resolved against it.

One module per method registers it (``reference_exact``, ``reference_chains``, ``reference_md``,
``reference_remd``); :mod:`molsample.mcmc.reference_methods` imports them all and picks one for
``method="auto"``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable

from torch import Tensor

from molsample.errors import ConfigError
from molsample.runtime.distributed import World

__all__ = ["REFERENCE_METHODS", "REMD_DEFAULTS", "Draw", "ReferenceMethod", "at_card_kT", "degrees_of_freedom",
           "energy_type", "is_openmm", "positive_steps", "register_reference_method", "remd_settings"]

#: default settings of the ``remd`` reference method (``molsample reference --method remd``)
REMD_DEFAULTS: dict[str, Any] = {"t_max_K": 600.0, "n_replicas": 6, "steps_per_exchange": 500,
                                 "exchanges_per_frame": 2, "equilibration_steps": 20_000, "platform": "Reference"}

#: what :meth:`ReferenceMethod.run` returns: samples ``(n, n_particles, dim)`` float64, their
#: energies ``(n,)`` and the method's diagnostics
Draw = tuple[Tensor, Tensor, dict[str, Any]]


def is_openmm(system: Any) -> bool:
    """The system's energy is an OpenMM system with a structure (MD can start from it)."""
    return hasattr(system.energy, "system") and getattr(system.energy, "positions", None) is not None


def energy_type(system: Any) -> str:
    """The card's ``[energy] type`` (the energy's class name for a system built without a card)."""
    card_energy = system.card.get("energy", {}) if isinstance(system.card, dict) else {}
    return str(card_energy.get("type", type(system.energy).__name__))


def at_card_kT(system: Any, kT: float) -> bool:
    """``kT`` is the card's (to 1e-12)."""
    return math.isclose(kT, system.kT, rel_tol=1e-12)


def degrees_of_freedom(system: Any) -> int:
    """Coordinates minus the centre of mass when it is removed."""
    n, d = system.event_shape
    return (n - 1) * d if system.remove_com and n > 1 else n * d


def positive_steps(n_steps: Any) -> int:
    """``n_steps`` checked to be a positive integer."""
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ConfigError(f"reference setting n_steps must be a positive integer, got {n_steps!r}")
    return n_steps


class ReferenceMethod:
    """A classical sampler that makes reference samples; subclasses set the class attributes and
    override the methods that differ, and :func:`register_reference_method` adds one instance.

    Attributes:
        name: the value of ``--method`` and ``[data] method``.
        aliases: method-independent spellings of its settings → its own key (``steps`` → ``thin``).
        sharded: a distributed run splits its chains over the ranks (else it refuses more than one).
        checkpoints: ``run`` saves its state to ``checkpoint`` and resumes from it.
        auto_rank: the order in which ``method="auto"`` asks :meth:`picks` (``None``: never picked).
        counts: settings that are integers >= 1; ``step_counts``: integers >= 0.
        nullable: settings for which ``None`` is a value, not "the default".
        refused_options: options of ``molsample reference`` that do not apply, refused with ``refusal``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[dict[str, str]] = {}
    sharded: ClassVar[bool] = False
    checkpoints: ClassVar[bool] = False
    auto_rank: ClassVar[int | None] = None
    counts: ClassVar[tuple[str, ...]] = ()
    step_counts: ClassVar[tuple[str, ...]] = ()
    nullable: ClassVar[tuple[str, ...]] = ()
    refused_options: ClassVar[tuple[str, ...]] = ()
    refusal: ClassVar[str] = ""

    def picks(self, system: Any, kT: float) -> bool:
        """Whether ``method="auto"`` picks this method for ``system`` at ``kT``."""
        return False

    def check_system(self, system: Any, kT: float) -> None:
        """Raise :class:`ConfigError` when this method cannot sample ``system`` at ``kT``."""

    def defaults(self, system: Any, n: int) -> dict[str, Any]:
        """The default settings for ``system`` (every key a user may override)."""
        return {}

    def spread_steps(self, n_steps: Any, n: int, settings: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        """The settings that ``n_steps`` (production steps per chain, MD: in all) stands for."""
        return {}

    def run(self, system: Any, n: int, *, kT: float, settings: dict[str, Any], seed: int, generator: Any,
            progress: bool, world: World, checkpoint: Any) -> Draw:
        """Draw ``n`` samples of exp(−E/kT) with the resolved ``settings`` (see :data:`Draw`)."""
        raise NotImplementedError(f"reference method {self.name!r} has no run()")

    def setting_key(self, key: str) -> str:
        """This method's own key for a method-independent spelling (``burn_in``, ``thin``, ``steps``)."""
        return self.aliases.get(key, key)

    def check_options(self, given: Iterable[str]) -> None:
        """Refuse the ``molsample reference`` options in ``given`` that do not apply to this method."""
        if any(option in self.refused_options for option in given):
            raise ConfigError(self.refusal.format(name=self.name))

    def check(self, cfg: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` for a resolved setting out of range."""
        for key in self.counts:
            if key in cfg and (not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1):
                raise ConfigError(f"reference setting {key} must be a positive integer, got {cfg[key]!r}")
        for key in self.step_counts:
            if key in cfg and (not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 0):
                raise ConfigError(f"reference setting {key} must be an integer >= 0, got {cfg[key]!r}")

    def settings(self, system: Any, n: int, overrides: dict[str, Any]) -> dict[str, Any]:
        """:meth:`defaults` overridden by ``overrides`` (``None``: the default); aliases mapped and
        ``n_steps`` spread (:meth:`spread_steps`); :class:`ConfigError` for an unknown key or a bad value."""
        defaults = self.defaults(system, n)
        settings = dict(overrides)
        for alias, key in self.aliases.items():
            if alias in settings and settings[alias] is not None:
                if key in settings and settings[key] is not None and settings[key] != settings[alias]:
                    raise ConfigError(f"settings {alias}={settings[alias]!r} and {key}={settings[key]!r} conflict; give one")
                settings[key] = settings.pop(alias)
            else:
                settings.pop(alias, None)
        n_steps = settings.pop("n_steps", None)
        if n_steps is not None:
            settings.update(self.spread_steps(n_steps, n, settings, defaults))
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} for reference method '{self.name}'; "
                              f"known: {', '.join(sorted(defaults)) or '(none)'}")
        out = {**defaults, **{k: v for k, v in settings.items() if v is not None or k in self.nullable}}
        self.check(out)
        return out


#: Reference methods by name, in registration order (``--method`` lists them after ``auto``).
REFERENCE_METHODS: dict[str, ReferenceMethod] = {}


def register_reference_method(cls: type[ReferenceMethod]) -> type[ReferenceMethod]:
    """Class decorator: add an instance of ``cls`` to :data:`REFERENCE_METHODS` under ``cls.name``."""
    if not cls.name or cls.name == "auto" or cls.name in REFERENCE_METHODS:
        raise ValueError(f"reference method {cls.name!r} is unnamed, reserved or registered twice")
    REFERENCE_METHODS[cls.name] = cls()
    return cls


def remd_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """:data:`REMD_DEFAULTS` overridden by ``settings``; :class:`ConfigError` for an unknown key."""
    unknown = sorted(set(settings) - set(REMD_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown REMD setting(s) {unknown}; known: {', '.join(REMD_DEFAULTS)}")
    return {**REMD_DEFAULTS, **settings}
