"""Run configuration: dataclasses, presets and TOML files, validated with errors that name the fix.

Every table of the file (``[pretrain]``, ``[refine]``, ...) is a dataclass registered with the stages that
read it (:mod:`molsample.stages.sections`); ``RunConfig`` declares them, takes their defaults from the
registry and runs each one's ``validate()``.

Resolution order (later wins): dataclass defaults → preset (``molsample/data/presets/<preset>.toml``,
with optional ``[system.<name>]`` override tables, and ``[coordinates.internal]`` /
``[system.<name>.coordinates.internal]`` for flows in internal coordinates) → the system card's ``[run]`` table →
``--config FILE.toml`` (on top of the file its ``extends`` key names, :mod:`molsample.stages.config_files`) →
command-line options.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from molsample.errors import ConfigError
from molsample.io.toml import read_toml
from molsample.runtime.resources import presets_dir
from molsample.stages.config_files import deep_update, read_config_file
from molsample.stages.refine_config import RefineConfig
from molsample.stages.sections import SECTIONS, register_section, section_default
from molsample.training.coupling import TILT_COUPLINGS
from molsample.training.flow_matching import FlowMatchingConfig
from molsample.training.rewards import REWARD_MODES
from molsample.training.tilt import TiltConfig

PRESETS_DIR = presets_dir()
#: the shipped presets (the ``*.toml`` files of :data:`PRESETS_DIR`)
PRESETS = tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))


@register_section("net", stages=("pretrain",))
@dataclasses.dataclass
class NetConfig:
    """Velocity network: ``name`` egnn | mlp | affine | e3nn (None: egnn for particles, mlp for toys);
    ``bond_edges``: the EGNN sees a molecule's bond graph as edge features; ``parametrisation``
    velocity | endpoint: the net outputs the velocity, or the displacement to the predicted
    endpoint x1 (linear path only; :mod:`molsample.nets.endpoint`)."""

    name: str | None = None
    hidden: int = 64
    n_layers: int = 4
    bond_edges: bool = False
    parametrisation: str = "velocity"


@register_section("base", stages=("start", "pretrain"))
@dataclasses.dataclass
class BaseConfig:
    """The flows' base distribution (TOML ``[base]``), overriding the system card's ``[base]``:
    ``kind`` gaussian | harmonic (None: the card's, whose default is the CoM-free Gaussian) and
    ``bond_std`` (harmonic prior, in the system's length unit; None: the card's, else 0.15)."""

    kind: str | None = None
    bond_std: float | None = None

    def table(self) -> dict:
        """The keys set here, as a card ``[base]`` table (empty: use the card's)."""
        return {k: v for k, v in (("kind", self.kind), ("bond_std", self.bond_std)) if v is not None}


#: the flows' coordinate systems (TOML ``[flow] coordinates``)
COORDINATES = ("cartesian", "internal")


@register_section("flow", stages=("coordinates",))
@dataclasses.dataclass
class FlowConfig:
    """The coordinates the flow runs in (TOML ``[flow]``): ``cartesian`` (positions; clusters and the
    default) or ``internal`` (bond lengths, angles and torsions of a Z-matrix on the bond graph;
    molecules only, :mod:`molsample.flows.internal`). ``circular_threshold``: torsions whose circular
    spread in the base data exceeds it (radians) live on the circle, the others are standardised.
    ``rotor_augment`` (internal only): train on every cyclic relabelling of equivalent terminal atoms
    (methyl hydrogens; :mod:`molsample.molecules.rotor_symmetry`), an exact symmetry of the density."""

    coordinates: str = "cartesian"
    circular_threshold: float = 0.5
    rotor_augment: bool = False


@register_section("data", stages=("base_data",))
@dataclasses.dataclass
class DataConfig:
    """Samples of the a = 0 distribution used for pretraining.

    ``n`` samples from the reference sampler (``method`` auto | mala | pt | md | remd | exact) at the
    a = 0 temperature; ``steps`` and ``burn_in`` are MCMC/MD steps per chain (0: sampler default).
    """

    n: int = 10000
    method: str = "auto"
    steps: int = 0
    burn_in: int = 0


@register_section("final", stages=("final",))
@dataclasses.dataclass
class FinalConfig:
    """Final sampling with exact log-weights.

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
    reflect_chirality: bool = True


register_section("reference", stages=("reference",), default=lambda: DataConfig(n=0))(DataConfig)
register_section("tilt", stages=("tilt",))(TiltConfig)  # registration order is the order of the checks
register_section("pretrain", stages=("pretrain",))(FlowMatchingConfig)

#: keys that no longer exist, with the line that says what replaced them
RETIRED_KEYS = {
    "final.mcmc_steps": "MALA on the unweighted flow samples is biased and was removed; refine the weighted "
                        "samples by SMC instead: [refine] enabled = true (tilt --refine-steps K) or "
                        "`molsample refine RUN`",
}


@register_section("start", stages=("start",))
@dataclasses.dataclass
class StartConfig:
    """Where the run starts. ``model``: an already tilted model file (``package:NAME`` for one
    shipped in ``molsample/data/models/``); the base data, pretraining and tilt stages are then
    skipped. ``None``: train from scratch."""

    model: str | None = None


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
            Exactly 1: the base data are samples of the target, the reward is zero and the tilt
            stage only saves the pretrained field as the model (a Boltzmann generator trained on data).
        beta: reward scale for the reward mode (None: the card's).
        energy_cap: soft cap E_c of the energy the reward sees (molsample.training.rewards): a number in
            the energy unit, "none", or "auto" (temperature mode: the highest energy of the a = 0
            training data; other modes: none).
        seed, device, dtype: reproducibility and placement.
        base: the flows' base distribution, when not the system card's (TOML ``[base]``).
        data: samples of the a = 0 distribution for pretraining.
        pretrain: flow matching's own :class:`~molsample.training.flow_matching.FlowMatchingConfig`
            (TOML ``[pretrain]``); its ``seed`` and ``path`` follow the run's ``seed`` and
            ``tilt.path`` unless set there.
        tilt: the trainer's own :class:`~molsample.training.tilt.TiltConfig` (TOML ``[tilt]``).
        reference: ground-truth samples at the target kT stored beside the flow samples (set
            ``reference``) for the report's energy W2 and histograms; ``n = 0`` skips them.
        start: start from an already tilted model instead of training (``[start] model``).
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
    flow: FlowConfig = section_default("flow")
    net: NetConfig = section_default("net")
    base: BaseConfig = section_default("base")
    data: DataConfig = section_default("data")
    reference: DataConfig = section_default("reference")
    pretrain: FlowMatchingConfig = section_default("pretrain")
    tilt: TiltConfig = section_default("tilt")
    final: FinalConfig = section_default("final")
    refine: RefineConfig = section_default("refine")
    start: StartConfig = section_default("start")
    report: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (``None`` values dropped, as TOML has no null)."""
        def strip(d: dict) -> dict:
            return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}
        return strip(dataclasses.asdict(self))

    def validate(self) -> "RunConfig":
        if self.mode is not None and self.mode not in REWARD_MODES:
            raise ConfigError(f"mode = {self.mode!r}; use {_one_of(REWARD_MODES)}")
        if not self.temperature_factor >= 1.0:
            raise ConfigError(f"temperature_factor = {self.temperature_factor} must be ≥ 1 (kT0 = factor·kT ≥ kT; "
                              "1: the base data are at the target and the tilt is skipped)")
        if isinstance(self.energy_cap, str) and self.energy_cap not in ("auto", "none"):
            raise ConfigError(f"energy_cap = {self.energy_cap!r}; use a number, \"auto\" or \"none\"")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype = {self.dtype!r}; use float32 or float64")
        if self.final.divergence not in ("exact", "hutchinson"):
            raise ConfigError(f"final.divergence = {self.final.divergence!r}; use exact or hutchinson")
        for key, value, most in (("data.n", self.data.n, 10**7), ("pretrain.steps", self.pretrain.steps, 10**8),
                                 ("pretrain.batch_size", self.pretrain.batch_size, 10**6),
                                 ("final.n_samples", self.final.n_samples, 10**7),
                                 ("final.ode_steps", self.final.ode_steps, 10**5)):
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
            if value > most:  # e.g. 2**63 - 1 from a typo would otherwise run every stage
                raise ConfigError(f"{key} = {value} is above the limit of {most:,}; use at most {most:,} "
                                  "(more final samples: append them with `molsample sample RUN --n-samples N`)")
        for section in SECTIONS.values():
            table = getattr(self, section.name)
            if callable(getattr(table, "validate", None)):
                table.validate()
        self._validate_coordinates()
        from molsample.flows.distributions import BASE_KINDS
        from molsample.nets.endpoint import PARAMETRISATIONS

        if self.base.kind is not None and self.base.kind not in BASE_KINDS:
            raise ConfigError(f"base.kind = {self.base.kind!r}; use {' or '.join(BASE_KINDS)}")
        if self.base.bond_std is not None and not self.base.bond_std > 0:
            raise ConfigError(f"base.bond_std = {self.base.bond_std} must be > 0 (in the system's length unit)")

        if self.net.parametrisation not in PARAMETRISATIONS:
            raise ConfigError(f"net.parametrisation = {self.net.parametrisation!r}; use {' or '.join(PARAMETRISATIONS)}")
        if self.net.parametrisation == "endpoint" and self.tilt.path != "linear":
            raise ConfigError(f"net.parametrisation = 'endpoint' needs the linear path, got path {self.tilt.path!r}: "
                              "set tilt.path = \"linear\" or net.parametrisation = \"velocity\"")
        if self.pretrain.path != self.tilt.path:
            raise ConfigError(f"pretrain.path = {self.pretrain.path!r} but tilt.path = {self.tilt.path!r}; the tilt "
                              "continues the pretrained flow along the same interpolant: set both to one value")
        if self.pretrain.coupling not in TILT_COUPLINGS and self.start.model is None:
            raise ConfigError(
                f"pretrain.coupling = {self.pretrain.coupling!r} cannot be tilted: the tilt's fixed point needs the "
                "pretrained field to be that of a coupling the tilt can reweight (docs/couplings.md); use "
                f"{' or '.join(TILT_COUPLINGS)} (--coupling aligned), or `molsample pretrain` for an untilted flow")
        return self

    def _validate_coordinates(self) -> None:
        """What a flow in internal coordinates cannot combine with (each refused by name)."""
        coords = self.flow.coordinates
        if coords not in COORDINATES:
            raise ConfigError(f"flow.coordinates = {coords!r}; use {' or '.join(COORDINATES)}")
        if not self.flow.circular_threshold > 0:
            raise ConfigError(f"flow.circular_threshold = {self.flow.circular_threshold} must be > 0 (radians)")
        if coords == "cartesian":
            if self.flow.rotor_augment:
                raise ConfigError("flow.rotor_augment = true needs coordinates = \"internal\" (a Cartesian net "
                                  "with atom types by element is already symmetric under relabelling); remove it")
            return
        clashes = {
            "mode": (self.mode not in (None, "temperature"), "the internal flow tilts by temperature only"),
            "net.name": (self.net.name not in (None, "internal-mlp"), "the internal flow's net is internal-mlp"),
            "base.kind": (self.base.kind is not None, "the internal flow has its own base (normal and uniform)"),
            "net.parametrisation": (self.net.parametrisation != "velocity", "only velocity is supported"),
            "net.bond_edges": (self.net.bond_edges, "the internal net has no edges"),
            "pretrain.coupling": (self.pretrain.coupling != "independent", "rotations do not act on internal "
                                  "coordinates"),
            "tilt.path": (self.tilt.path != "linear", "torsions need the shortest-arc linear path"),
        }
        for key, (bad, why) in clashes.items():
            if bad:
                raise ConfigError(f"flow.coordinates = \"internal\" cannot be combined with {key} = "
                                  f"{_lookup(self, key)!r} ({why}); remove {key} or use coordinates = \"cartesian\"")

    def sync(self, explicit: set[str] = frozenset()) -> "RunConfig":
        """Let ``pretrain.seed`` / ``pretrain.path`` follow ``seed`` / ``tilt.path`` unless they are in
        ``explicit`` (dotted keys some layer set)."""
        if "pretrain.seed" not in explicit:
            self.pretrain.seed = self.seed
        if "pretrain.path" not in explicit:
            self.pretrain.path = self.tilt.path
        return self


def _one_of(names: Any) -> str:
    """``"a, b or c"``."""
    names = list(names)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def _check_sections(cls: type) -> None:
    """Every registered section is a table of ``cls`` with its dataclass, and every table of ``cls``
    is registered (a section cannot be added without the config reading it)."""
    tables = {f.name for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING}
    stray = sorted(tables ^ set(SECTIONS))
    if stray:
        raise TypeError(f"run-config table [{stray[0]}]: register it with register_section and declare it in RunConfig")
    for name in tables:
        if not isinstance(getattr(cls(), name), SECTIONS[name].config):
            raise TypeError(f"run-config table [{name}] is not a {SECTIONS[name].config.__name__}")


_check_sections(RunConfig)


def _lookup(obj: Any, dotted: str) -> Any:
    """The value of a dotted key (``"net.name"``) of a nested dataclass."""
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


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


def preset_table(preset: str, system_name: str, coordinates: str = "cartesian") -> dict:
    """The preset's settings for ``system_name`` (its common keys, then ``[system.<name>]``), and for a
    flow in other than Cartesian coordinates then ``[coordinates.<coordinates>]`` and
    ``[system.<name>.coordinates.<coordinates>]`` (e.g. the internal-coordinate recipe)."""
    path = PRESETS_DIR / f"{preset}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    table = read_toml(path, what="preset file")
    overrides = table.pop("system", {}).get(system_name, {})
    by_coords = table.pop("coordinates", {})
    system_by_coords = overrides.pop("coordinates", {})
    table = deep_update(table, overrides)
    if coordinates != "cartesian":
        table = deep_update(table, by_coords.get(coordinates, {}))
        table = deep_update(table, system_by_coords.get(coordinates, {}))
    return table


def _coordinates_of(tables: list[dict | None]) -> str:
    """The ``flow.coordinates`` the last of ``tables`` that sets it asks for (default cartesian)."""
    coords = "cartesian"
    for table in tables:
        flow = (table or {}).get("flow")
        if isinstance(flow, dict) and isinstance(flow.get("coordinates"), str):
            coords = flow["coordinates"]
    return coords


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
    card_run = card.get("run") if card is not None and isinstance(card.get("run"), dict) else None
    file_table = None
    if config_file is not None:
        file_table = read_config_file(Path(config_file))
    cli = _drop_none(overrides) if overrides else None
    if preset is not None:
        coords = _coordinates_of([card_run, file_table, cli])
        layers.append((f"preset '{preset}'", preset_table(preset, name, coords)))
    if card_run is not None:
        layers.append((f"system card [{name}] [run]", card_run))
    if file_table is not None:
        layers.append((str(config_file), file_table))
    if cli:
        layers.append(("command line", cli))
    explicit: set[str] = set()
    for where, table in layers:
        _refuse_retired(table, where)
        # the system is chosen by the command (--system); a "system" key in a file is not applied
        _merge_into(cfg, {k: v for k, v in table.items() if k != "system"}, where)
        explicit |= _dotted_keys(table)
    cfg.system = system
    return cfg.sync(explicit).validate()


def _refuse_retired(table: dict, where: str) -> None:
    """A one-line :class:`ConfigError` for a key of :data:`RETIRED_KEYS` set in ``table``."""
    for key in _dotted_keys(table) & set(RETIRED_KEYS):
        raise ConfigError(f"{where}: '{key}' no longer exists: {RETIRED_KEYS[key]}")


def _drop_retired(table: dict) -> dict:
    """``table`` without the :data:`RETIRED_KEYS` (a stored config of an older run)."""
    out = {k: _drop_retired(v) if isinstance(v, dict) else v for k, v in table.items()}
    for key in RETIRED_KEYS:
        head, _, tail = key.partition(".")
        if isinstance(out.get(head), dict):
            out[head].pop(tail, None)
    return out


def _dotted_keys(table: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in table.items():
        out |= _dotted_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def _drop_none(d: dict) -> dict:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def config_from_dict(table: dict) -> RunConfig:
    """Rebuild a :class:`RunConfig` from :meth:`RunConfig.to_dict` output (e.g. from a run file)."""
    cfg = RunConfig()
    table = _drop_retired(table)  # runs written before a key was retired still load
    _merge_into(cfg, table, "stored config")
    return cfg.sync(_dotted_keys(table))
