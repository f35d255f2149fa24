"""Every reference method, and the one ``method="auto"`` picks for a system.

Importing this module registers the methods (one module each) in
:data:`~molsample.mcmc.reference_settings.REFERENCE_METHODS`, in the order ``--method`` lists them.
``auto`` asks them in the order of their ``auto_rank``:

============================  ========================================================
system                        method
============================  ========================================================
exact sampler (ring2d,        ``exact``: ``system.exact_sampler()`` (only at the card's kT)
gauss2d)
OpenMM energy (aldp)          ``md``: OpenMM Langevin dynamics
double well (DW-4)            ``pt``: parallel tempering with MALA moves from relaxed lattices
Lennard-Jones, anything else  ``mala``: tamed MALA from relaxed lattices
============================  ========================================================
"""

from __future__ import annotations

from typing import Any

from molsample.errors import ConfigError
from molsample.mcmc import reference_exact  # noqa: F401  (registers "exact")
from molsample.mcmc import reference_chains  # noqa: F401  (registers "mala" and "pt")
from molsample.mcmc import reference_md  # noqa: F401  (registers "md")
from molsample.mcmc import reference_remd  # noqa: F401  (registers "remd")
from molsample.mcmc.reference_settings import REFERENCE_METHODS, ReferenceMethod

__all__ = ["METHODS", "REFERENCE_METHODS", "SHARDED_METHODS", "default_settings", "get_method", "resolve_method",
           "resolve_settings"]

#: ``--method`` choices: ``"auto"`` and every registered method
METHODS = ("auto", *REFERENCE_METHODS)
#: methods whose chains a distributed run splits (each rank evaluates the energies of its shard)
SHARDED_METHODS = tuple(name for name, m in REFERENCE_METHODS.items() if m.sharded)


def get_method(name: str) -> ReferenceMethod:
    """The registered method ``name`` (not ``"auto"``: :func:`resolve_method` first); :class:`ConfigError`
    listing the registered ones otherwise."""
    if name not in REFERENCE_METHODS:
        raise ConfigError(f"unknown reference method '{name}'; use one of {', '.join(REFERENCE_METHODS)}")
    return REFERENCE_METHODS[name]


def resolve_method(system: Any, method: str = "auto", kT: float | None = None) -> str:
    """The concrete method for ``method="auto"`` (checks an explicit one is usable)."""
    if method != "auto" and method not in REFERENCE_METHODS:
        raise ConfigError(f"unknown reference method '{method}'; use one of auto, {', '.join(REFERENCE_METHODS)}")
    kT = system.kT if kT is None else kT
    if method == "auto":
        ranked = sorted((m for m in REFERENCE_METHODS.values() if m.auto_rank is not None), key=lambda m: m.auto_rank)
        return next(m.name for m in ranked if m.picks(system, kT))
    REFERENCE_METHODS[method].check_system(system, kT)
    return method


def default_settings(system: Any, method: str, n: int) -> dict[str, Any]:
    """The default settings of ``method`` for ``system`` (every key a user may override)."""
    return get_method(method).defaults(system, n)


def resolve_settings(system: Any, method: str, n: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run of ``method``: its defaults overridden by ``settings``
    (:meth:`~molsample.mcmc.reference_settings.ReferenceMethod.settings`)."""
    return get_method(method).settings(system, n, settings)
