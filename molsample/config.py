"""Run configuration: dataclasses, presets and TOML files, validated with errors that name the fix.

Resolution order (later wins): dataclass defaults → preset (``runs/presets/<preset>.toml``,
with optional ``[system.<name>]`` override tables) → the system card's ``[run]`` table →
``--config FILE.toml`` → command-line options.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from molsample.errors import ConfigError
from molsample.systems import read_toml
from molsample.training.losses import METHODS

PRESETS_DIR = Path(__file__).resolve().parent.parent / "runs" / "presets"
PRESETS = ("smoke", "default", "paper")


@dataclasses.dataclass
class TiltConfig:
    """Settings of the annealing loop.

    Attributes:
        method: itm | etm | wfm | ram.
        h: fixed annealing step; ``None`` chooses h_k adaptively from ``target_ess``.
        target_ess: ESS of the incremental weights e^{h r} aimed at by the adaptive step.
        min_h: smallest adaptive step (guarantees progress).
        max_levels: hard cap on the number of levels.
        n_endpoints: samples x1 drawn from each frozen level (reward evaluations per level).
        endpoints_per_step, draws_per_endpoint: minibatch = endpoints × (t, x0) draws.
        steps_per_level: gradient steps per level (the fixed-point regression).
        lr: Adam learning rate; grad_clip: max gradient norm (``None``: off).
        center: reward centring per level: auto | lme | mean | none (auto: none for RAM, lme else).
        ode_method, ode_steps: solver that draws the level's samples.
        full_ess_every: every this many levels, the ESS with exact log-weights against the
            level's target (needs the divergence; 0 disables).
        n_probe: probe batch size for ‖b̂ − b_{a_k}‖ and the full ESS.
        path: interpolant name.
    """

    method: str = "itm"
    h: float | None = None
    target_ess: float = 0.9
    min_h: float = 1e-4
    max_levels: int = 200
    n_endpoints: int = 256
    endpoints_per_step: int = 32
    draws_per_endpoint: int = 4
    steps_per_level: int = 30
    lr: float = 1e-3
    grad_clip: float | None = 10.0
    center: str = "auto"
    ode_method: str = "euler"
    ode_steps: int = 25
    full_ess_every: int = 0
    n_probe: int = 256
    path: str = "linear"

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"tilt.method = {self.method!r}; use one of {', '.join(METHODS)}")
        if self.h is not None and not 0 < self.h <= 1:
            raise ConfigError(f"tilt.h = {self.h} must be in (0, 1]; or leave it unset for the adaptive step")
        if not 0 < self.target_ess < 1:
            raise ConfigError(f"tilt.target_ess = {self.target_ess} must be in (0, 1), e.g. 0.9")
        if self.center not in ("auto", "lme", "mean", "none"):
            raise ConfigError(f"tilt.center = {self.center!r}; use auto, lme, mean or none")
        for key in ("n_endpoints", "endpoints_per_step", "draws_per_endpoint", "steps_per_level", "max_levels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"tilt.{key} must be >= 1, got {getattr(self, key)}")

    @property
    def centring(self) -> str:
        if self.center != "auto":
            return self.center
        return "none" if self.method == "ram" else ("mean" if self.method == "etm" else "lme")


@dataclasses.dataclass
class NetConfig:
    """Velocity network: ``name`` egnn | mlp | affine (None: egnn for particles, mlp for toys)."""

    name: str | None = None
    hidden: int = 64
    n_layers: int = 4


@dataclasses.dataclass
class DataConfig:
    """Samples of the a = 0 distribution used for pretraining.

    ``n`` samples from the reference sampler (``method`` auto | mala | pt | md | exact) at the
    a = 0 temperature; ``steps`` and ``burn_in`` are MCMC/MD steps per chain (0: sampler default).
    """

    n: int = 10000
    method: str = "auto"
    steps: int = 0
    burn_in: int = 0


@dataclasses.dataclass
class PretrainConfig:
    """Flow-matching pretraining on the a = 0 samples (``lr_schedule``: constant | cosine)."""

    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    ema_decay: float | None = None
    lr_schedule: str = "constant"


@dataclasses.dataclass
class FinalConfig:
    """Final sampling with exact log-weights, and the optional MCMC correction.

    ``reflect_chirality``: for molecules with stereocentres, weight the samples against the target
    folded onto the reference stereoisomer (docs/chirality.md): a reflection-invariant (E(3))
    network's wrong-handed samples are mirrored (density and energy are unchanged, so the
    log-weights stay valid); the chiral e3nn network's mirror-image samples get weight 0.
    """

    n_samples: int = 10000
    ode_method: str = "rk4"
    ode_steps: int = 50
    divergence: str = "exact"
    batch_size: int = 1000
    mcmc_steps: int = 0
    reflect_chirality: bool = True


@dataclasses.dataclass
class RunConfig:
    """Everything ``molsample tilt`` needs; written verbatim into the run file.

    Attributes:
        system: card name or path.
        mode: reward mode temperature | prior | reward (None: reward when the card has a
            [reward] table, else temperature).
        temperature_factor: kT0 = factor·kT for the temperature mode. 1.25 for LJ-13: at 2.0 the
            a = 0 samples are on the far side of the cluster's melting transition (mean E +12.7 vs
            −43 at kT = 1) and the tilt reached ESS 0.002 instead of 0.11 (docs/benchmarks.md).
        beta: reward scale for the reward mode (None: the card's).
        energy_cap: soft cap E_c of the energy the reward sees (molsample.rewards): a number in
            the energy unit, "none", or "auto" (temperature mode: the highest energy of the a = 0
            training data; other modes: none).
        seed, device, dtype: reproducibility and placement.
        data: samples of the a = 0 distribution for pretraining.
        reference: ground-truth samples at the target kT stored beside the flow samples (set
            ``reference``) for the report's energy W2 and histograms; ``n = 0`` skips them.
        report: write the report (figures + page) at the end of the run.
    """

    system: str = "lj13"
    mode: str | None = None
    temperature_factor: float = 1.25
    beta: float | None = None
    energy_cap: float | str = "auto"
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    net: NetConfig = dataclasses.field(default_factory=NetConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    reference: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(n=0))
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    tilt: TiltConfig = dataclasses.field(default_factory=TiltConfig)
    final: FinalConfig = dataclasses.field(default_factory=FinalConfig)
    report: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (``None`` values dropped, as TOML has no null)."""
        def strip(d: dict) -> dict:
            return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}
        return strip(dataclasses.asdict(self))

    def validate(self) -> "RunConfig":
        if self.mode is not None and self.mode not in ("temperature", "prior", "reward"):
            raise ConfigError(f"mode = {self.mode!r}; use temperature, prior or reward")
        if self.temperature_factor <= 1.0:
            raise ConfigError(f"temperature_factor = {self.temperature_factor} must be > 1 (kT0 = factor·kT > kT)")
        if isinstance(self.energy_cap, str) and self.energy_cap not in ("auto", "none"):
            raise ConfigError(f"energy_cap = {self.energy_cap!r}; use a number, \"auto\" or \"none\"")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype = {self.dtype!r}; use float32 or float64")
        if self.final.divergence not in ("exact", "hutchinson"):
            raise ConfigError(f"final.divergence = {self.final.divergence!r}; use exact or hutchinson")
        for key, value in (("data.n", self.data.n), ("pretrain.steps", self.pretrain.steps),
                           ("pretrain.batch_size", self.pretrain.batch_size),
                           ("final.n_samples", self.final.n_samples), ("final.ode_steps", self.final.ode_steps)):
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        self.tilt.validate()
        return self


def _merge_into(obj: Any, table: dict, where: str, prefix: str = "") -> None:
    """Set dataclass fields of ``obj`` from ``table``; unknown keys and wrong types are errors."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{name}'; valid keys here: {', '.join(sorted(fields))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{name}' must be a table ([{name}]), got {value!r}")
            _merge_into(current, value, where, prefix=f"{name}.")
            continue
        setattr(obj, key, _coerce(value, current, fields[key], where, name))


def _coerce(value: Any, current: Any, field: dataclasses.Field, where: str, name: str) -> Any:
    hint = str(field.type)
    if isinstance(value, bool) or isinstance(current, bool):
        if not isinstance(value, bool) or not (isinstance(current, bool) or "bool" in hint):
            raise ConfigError(f"{where}: '{name}' must be {'true/false' if isinstance(current, bool) else hint}, got {value!r}")
        return value
    if "float" in hint and isinstance(value, (int, float)):
        return float(value)
    if "int" in hint and isinstance(value, int):
        return value
    if "str" in hint and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: '{name}' must be {hint.replace(' | None', '')}, got {value!r} ({type(value).__name__})")


def preset_table(preset: str, system_name: str) -> dict:
    """The preset's settings for ``system_name`` (its common keys, then ``[system.<name>]``)."""
    path = PRESETS_DIR / f"{preset}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    table = read_toml(path, what="preset file")
    overrides = table.pop("system", {}).get(system_name, {})
    return _deep_update(table, overrides)


def _deep_update(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(
    system: str,
    *,
    preset: str | None = "default",
    config_file: Path | None = None,
    card: dict | None = None,
    overrides: dict | None = None,
) -> RunConfig:
    """Build and validate the run configuration (see the module docstring for the order).

    Args:
        system: system name or card path (its card's [run] table applies when ``card`` is given).
        card: the parsed system card.
        overrides: nested dict of command-line values (``None`` values are ignored).
    """
    cfg = RunConfig(system=system)
    layers: list[tuple[str, dict]] = []
    name = Path(system).stem
    if preset is not None:
        layers.append((f"preset '{preset}'", preset_table(preset, name)))
    if card is not None and isinstance(card.get("run"), dict):
        layers.append((f"system card [{name}] [run]", card["run"]))
    if config_file is not None:
        table = read_toml(Path(config_file), what="config file")
        table.pop("preset", None)
        layers.append((str(config_file), table))
    if overrides:
        layers.append(("command line", _drop_none(overrides)))
    for where, table in layers:
        # the system is chosen by the command (--system); a "system" key in a file is not applied
        _merge_into(cfg, {k: v for k, v in table.items() if k != "system"}, where)
    cfg.system = system
    return cfg.validate()


def _drop_none(d: dict) -> dict:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def config_from_dict(table: dict) -> RunConfig:
    """Rebuild a :class:`RunConfig` from :meth:`RunConfig.to_dict` output (e.g. from a run file)."""
    cfg = RunConfig()
    _merge_into(cfg, table, "stored config")
    return cfg
