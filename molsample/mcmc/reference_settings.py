"""Which classical sampler makes the reference samples of a system, and with which settings
(chains, steps, burn-in, thinning) — see :mod:`molsample.mcmc.reference`."""

from __future__ import annotations

import math
from typing import Any

from molsample.errors import ConfigError

#: Reference methods; ``"auto"`` picks one per system (see :func:`resolve_method`).
METHODS = ("auto", "exact", "mala", "pt", "md", "remd")

#: default settings of the ``remd`` reference method (``molsample reference --method remd``)
REMD_DEFAULTS: dict[str, Any] = {"t_max_K": 600.0, "n_replicas": 6, "steps_per_exchange": 500,
                                 "exchanges_per_frame": 2, "equilibration_steps": 20_000, "platform": "Reference"}


def _is_openmm(system: Any) -> bool:
    return hasattr(system.energy, "system") and getattr(system.energy, "positions", None) is not None


def _energy_type(system: Any) -> str:
    card_energy = system.card.get("energy", {}) if isinstance(system.card, dict) else {}
    return str(card_energy.get("type", type(system.energy).__name__))


def resolve_method(system: Any, method: str = "auto", kT: float | None = None) -> str:
    """The concrete method for ``method="auto"`` (checks an explicit one is usable)."""
    if method not in METHODS:
        raise ConfigError(f"unknown reference method '{method}'; use one of {', '.join(METHODS)}")
    kT = system.kT if kT is None else kT
    at_card_kT = math.isclose(kT, system.kT, rel_tol=1e-12)
    if method == "auto":
        if system.exact_sampler() is not None and at_card_kT:
            return "exact"
        if _is_openmm(system):
            return "md"
        if _energy_type(system) in ("double_well", "MultiDoubleWell"):
            return "pt"  # pair barriers of 4.4 kT: MALA alone hops between wells too rarely
        return "mala"  # incl. Lennard-Jones: tamed MALA mixes ~5x better per evaluation than PT at kT = 1
    if method == "exact":
        if system.exact_sampler() is None:
            raise ConfigError(f"system {system.name} has no exact sampler; use --method mala, pt or md")
        if not at_card_kT:
            raise ConfigError(
                f"the exact sampler of {system.name} draws at the card's kT = {system.kT:g}, not kT = {kT:g}; "
                "use --method mala or pt for another temperature"
            )
    if method in ("md", "remd") and not _is_openmm(system):
        raise ConfigError(f"--method {method} needs an OpenMM system with a structure; {system.name} is not one. "
                          "Use mala or pt")
    return method


def _dof(system: Any) -> int:
    n, d = system.event_shape
    return (n - 1) * d if system.remove_com and n > 1 else n * d


def default_settings(system: Any, method: str, n: int) -> dict[str, Any]:
    """The default settings of ``method`` for ``system`` (every key a user may override)."""
    if method == "exact":
        return {}
    if method == "remd":
        return dict(REMD_DEFAULTS)
    if method == "md":
        return {
            "steps_per_frame": 500,
            "timestep_fs": 1.0,
            "friction_per_ps": 1.0,
            "equilibration_steps": 10_000,
            "minimize": True,
            "platform": str(getattr(system.energy, "platform", "CPU")),
        }
    common = {"burn_in": 2000, "thin": 10, "step_size": None, "target_accept": 0.574, "tame": 2.0,
              "init": "lattice", "relax_steps": 200, "init_noise": 0.1}
    etype = _energy_type(system)
    if method == "mala":
        if etype in ("lennard_jones", "LennardJones"):
            # LJ-13 at kT = 1: τ_int(energy) ≈ 800 steps (docs/benchmarks/reference.md); thin 100 and
            # a burn-in of ~6τ give ≈ 1,300 effective samples per 10,000 in ~15 s on one core
            return {**common, "chains": 128, "thin": 100, "burn_in": 5000}
        return {**common, "chains": 64}
    if method == "pt":
        factor = 5.0 if etype in ("double_well", "MultiDoubleWell") else 6.0
        # constant swap acceptance needs Δln kT ~ 1/sqrt(heat capacity) ~ 1/sqrt(dof)
        n_temps = max(4, math.ceil(math.log(factor) * math.sqrt(_dof(system)) / 1.2) + 1)
        return {**common, "chains": 32, "n_temps": n_temps, "kT_max_factor": factor, "swap_every": 1, "burn_in": 3000}
    raise ConfigError(f"unknown reference method '{method}'")


#: Method-independent spellings → the method's own key.
_ALIASES = {
    "md": {"burn_in": "equilibration_steps", "thin": "steps_per_frame", "steps": "steps_per_frame"},
    "remd": {"burn_in": "equilibration_steps", "thin": "exchanges_per_frame", "steps": "exchanges_per_frame"},
    "mala": {"steps": "thin", "equilibration_steps": "burn_in"},
    "pt": {"steps": "thin", "equilibration_steps": "burn_in"},
}


def _resolve_settings(system: Any, method: str, n: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by ``settings``; aliases mapped; ``n_steps`` (production steps per chain,
    or MD steps in all) converted to the spacing of kept samples."""
    defaults = default_settings(system, method, n)
    settings = dict(settings)
    for alias, key in _ALIASES.get(method, {}).items():
        if alias in settings and settings[alias] is not None:
            if key in settings and settings[key] is not None and settings[key] != settings[alias]:
                raise ConfigError(f"settings {alias}={settings[alias]!r} and {key}={settings[key]!r} conflict; give one")
            settings[key] = settings.pop(alias)
        else:
            settings.pop(alias, None)
    n_steps = settings.pop("n_steps", None)
    if n_steps is not None and method == "remd":
        raise ConfigError("n_steps does not apply to remd; set exchanges_per_frame and steps_per_exchange")
    if n_steps is not None and method != "exact":
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise ConfigError(f"reference setting n_steps must be a positive integer, got {n_steps!r}")
        if method == "md":
            settings["steps_per_frame"] = max(1, n_steps // n)
        else:
            chains = settings.get("chains") or defaults["chains"]
            settings["thin"] = max(1, n_steps // math.ceil(n / chains))
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown} for reference method '{method}'; known: {', '.join(sorted(defaults)) or '(none)'}"
        )
    out = {**defaults, **{k: v for k, v in settings.items() if v is not None or k in ("step_size", "tame")}}
    for key in ("chains", "thin", "n_temps", "steps_per_frame", "n_replicas", "steps_per_exchange",
                "exchanges_per_frame"):
        if key in out and (not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 1):
            raise ConfigError(f"reference setting {key} must be a positive integer, got {out[key]!r}")
    for key in ("burn_in", "relax_steps", "equilibration_steps"):
        if key in out and (not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 0):
            raise ConfigError(f"reference setting {key} must be an integer >= 0, got {out[key]!r}")
    if out.get("init") not in (None, "lattice", "random"):
        raise ConfigError(f"reference setting init must be 'lattice' or 'random', got {out['init']!r}")
    return out


def remd_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """:data:`REMD_DEFAULTS` overridden by ``settings``; :class:`ConfigError` for an unknown key."""
    unknown = sorted(set(settings) - set(REMD_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown REMD setting(s) {unknown}; known: {', '.join(REMD_DEFAULTS)}")
    return {**REMD_DEFAULTS, **settings}
