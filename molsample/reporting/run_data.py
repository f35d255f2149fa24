"""What a report is drawn from: a run file read once into :class:`RunData`.

Every figure function (:mod:`molsample.reporting.figures`) and the headline table
(:mod:`molsample.reporting.headline`) read this object and nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from molsample.errors import ConfigError, MissingFileError, MolsampleError
from molsample.flows.diagnostics import WeightDiagnostics, weight_diagnostics
from molsample.flows.weights import normalized_weights
from molsample.io.hdf5 import RunFile, open_run
from molsample.io.run_paths import RUN_FILE_NAME, resolve_run_path
from molsample.molecules.bonds import BondComparison, bond_index, compare_bonds

#: Sample sets besides "samples" that the report draws when present: name → (label, role).
EXTRA_SETS = {"mcmc_corrected": ("MCMC-corrected", "mcmc"), "refined": ("SMC-refined", "refined")}


@dataclasses.dataclass
class SampleSet:
    """Positions ``x`` ``(n, n_particles, dim)``, energies ``(n,)`` and log-weights ``(n,)`` of one set."""

    label: str
    x: np.ndarray
    energy: np.ndarray | None
    logw: np.ndarray | None
    energy_unit: str
    length_unit: str
    topology: Any = None


@dataclasses.dataclass
class RunData:
    """A run as the report sees it.

    Attributes:
        path: the run file; attrs: its root attributes; history: ``/history`` arrays.
        config_text: the run config (TOML); flow: the ``samples`` set; main_label: its legend label.
        extras: further sets with their role (``[(SampleSet, "mcmc")]``); ref: the reference or ``None``.
        reference_source: where the reference came from (for the headline).
        weights: self-normalized importance weights ``(n,)`` or ``None``; diag: their diagnostics.
        pretrain_history: flow-matching ``{"step", "loss"}`` from the run folder's ``pretrained.pt``.
        max_frames, rng: the seeded subset for per-frame figures (distances, Ramachandran).
        notes: remarks collected while reading (shown on the page).
    """

    path: Path
    attrs: dict[str, Any]
    history: dict[str, np.ndarray]
    config_text: str
    flow: SampleSet
    main_label: str
    extras: list[tuple[SampleSet, str]]
    ref: SampleSet | None
    reference_source: str | None
    weights: np.ndarray | None
    diag: WeightDiagnostics | None
    pretrain_history: dict[str, np.ndarray] | None
    max_frames: int
    rng: np.random.Generator
    notes: list[str]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_samples, n_particles, dim)`` of the flow samples."""
        return tuple(self.flow.x.shape)  # type: ignore[return-value]

    @functools.cached_property
    def bond_comparison(self) -> BondComparison | None:
        """Bond RMSDs of flow, reweighted flow and reference against the reference's mean bond
        lengths (:func:`molsample.molecules.bonds.compare_bonds`); ``None`` without bonds or a reference."""
        bonds = bond_index(self.flow.topology)
        if self.ref is None or bonds.shape[0] == 0 or self.shape[2] != 3:
            return None
        return compare_bonds(self.flow.x, self.ref.x, bonds, self.weights)

    def subset(self, n: int) -> np.ndarray:
        """Sorted indices of a seeded random subset of at most ``max_frames`` of ``n`` frames."""
        if n <= self.max_frames:
            return np.arange(n)
        return np.sort(self.rng.choice(n, size=self.max_frames, replace=False))


def _set_from_run(rf: RunFile, name: str, label: str) -> SampleSet:
    s = rf.read_samples(name)
    return SampleSet(label, s["x"], s["energy"], s["logw"], s["energy_unit"], s["length_unit"], rf.read_topology(name))


def load_reference(reference: str | os.PathLike, system_name: str | None = None) -> SampleSet:
    """Reference samples from a run folder/file (its ``samples`` set, or its ``reference`` set when it
    has no ``samples``) or a ``.npy`` array ``(n, n_particles, dim)``.

    For ``.npy`` input the energies are computed with the run's system when it can be loaded.
    """
    p = Path(reference)
    if p.suffix == ".npy":
        if not p.is_file():
            raise MissingFileError(f"reference file {p} does not exist; pass a reference run or a .npy of positions")
        x = np.load(p)
        if x.ndim != 3:
            raise ConfigError(f"reference array {p} has shape {x.shape}; it must be (n, n_particles, dim)")
        energy, eunit, lunit = None, "", "nm"
        if system_name:
            energy, eunit, lunit = _energies_from_system(x, system_name)
        return SampleSet("reference", x, energy, None, eunit, lunit)
    with open_run(p) as rf:
        name = "samples" if "samples" in rf.sample_sets() else "reference"
        method = rf.attrs.get("method")
        label = f"reference ({method})" if method else "reference"
        return _set_from_run(rf, name, label)


def _energies_from_system(x: np.ndarray, system_name: str) -> tuple[np.ndarray | None, str, str]:
    try:
        import torch

        from molsample.systems.cards import load_system

        system = load_system(system_name)
        energy = system.energy.double()
        xt = torch.as_tensor(x, dtype=torch.float64)
        with torch.no_grad():
            e = torch.cat([energy.energy(xt[i : i + 4096]) for i in range(0, xt.shape[0], 4096)])
        return e.numpy(), system.energy_unit, system.length_unit
    except (MolsampleError, ImportError, RuntimeError):
        return None, "", "nm"


def pretrain_history(run_file: Path) -> dict[str, np.ndarray] | None:
    """The flow-matching loss curve ``{"step": (k,), "loss": (k,)}`` stored in the run folder's
    ``pretrained.pt`` (written by the tilt job) or, for a ``molsample pretrain`` folder, ``model.pt``;
    ``None`` when neither holds one."""
    import torch

    for name in ("pretrained.pt", "model.pt"):
        f = run_file.parent / name
        if not f.is_file():
            continue
        try:
            payload = torch.load(f, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - an unreadable model file only costs the curve
            continue
        hist = payload.get("history") if isinstance(payload, dict) else None
        if isinstance(hist, dict) and len(hist.get("loss", ())) and len(hist.get("step", ())) == len(hist["loss"]):
            return {"step": np.asarray(hist["step"], dtype=float), "loss": np.asarray(hist["loss"], dtype=float)}
    return None


def default_out_dir(run: str | os.PathLike) -> Path:
    """Where ``molsample report RUN`` writes without ``--out``: ``<folder>/report`` for a run folder
    or its ``samples.h5``, ``<folder>/<stem>-report`` for any other run file (so two run files in
    one folder get two reports)."""
    path = resolve_run_path(run)
    return path.parent / ("report" if path.name == RUN_FILE_NAME else f"{path.stem}-report")


def json_attr(attrs: dict[str, Any], key: str) -> Any:
    """The run-file attribute ``key`` decoded from JSON (str or bytes; other values as stored);
    ``None`` when it is missing or not valid JSON."""
    raw = attrs.get(key)
    if not isinstance(raw, (str, bytes)):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


def stage_times(attrs: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """``[(stage, cpu_s, wall_s)]`` from the root attrs ``stage_cpu_s`` / ``stage_wall_s`` (JSON
    objects stage → seconds), in the order stored; ``[]`` when the run has neither."""
    def parse(key: str) -> dict[str, float]:
        raw = json_attr(attrs, key)
        return {str(k): float(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    cpu, wall = parse("stage_cpu_s"), parse("stage_wall_s")
    stages = list(dict.fromkeys([*wall, *cpu]))
    return [(s, cpu.get(s), wall.get(s)) for s in stages]


def load_run_data(run: str | os.PathLike, reference: str | os.PathLike | None = None, *,
                  max_frames: int = 5000, seed: int = 0) -> RunData:
    """Read everything a report needs from a run folder/file (and an optional reference)."""
    notes: list[str] = []
    with open_run(run) as rf:
        path = rf.path
        attrs = dict(rf.attrs)
        history = rf.read_history()
        config_text = rf.config_text()
        flow = _set_from_run(rf, "samples", "flow samples")
        sets = rf.sample_sets()
        extras = [(_set_from_run(rf, n, lbl), role) for n, (lbl, role) in EXTRA_SETS.items() if n in sets]
        ref = _set_from_run(rf, "reference", "reference") if reference is None and "reference" in sets else None
    source = "the run's 'reference' set" if ref is not None else None
    if reference is not None:
        ref, source = load_reference(reference, attrs.get("system")), str(reference)
    if ref is not None and flow.x.shape[1:] != ref.x.shape[1:]:
        notes.append(f"reference has shape {ref.x.shape[1:]} per sample, the run {flow.x.shape[1:]}; reference ignored")
        ref, source = None, None
    main_label = "flow samples"
    if attrs.get("kind") == "reference":  # a run of `molsample reference`: MD/MCMC samples, no flow
        main_label = f"samples ({attrs['method']})" if attrs.get("method") else "samples"
    diag = weights = None
    if flow.logw is not None:
        diag = weight_diagnostics(flow.logw)
        if np.isfinite(flow.logw).any():
            weights = normalized_weights(flow.logw).numpy()
        if attrs.get("divergence") == "hutchinson":
            notes.append("log-densities from the Hutchinson trace estimator: ESS and log Z are biased")
    else:
        notes.append("the run has no /logw: no ESS, log Z or reweighted curves")
    return RunData(path, attrs, history, config_text, flow, main_label, extras, ref, source, weights, diag,
                   pretrain_history(path), max_frames, np.random.default_rng(seed), notes)
