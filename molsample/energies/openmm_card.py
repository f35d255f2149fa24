"""Build an :class:`~molsample.energies.openmm_bridge.OpenMMEnergy` from a system card's
``[energy]`` table (``type = "openmm"``): structure files, serialized systems or force fields.

See docs/openmm.md for the keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from molsample.energies.openmm_bridge import OpenMMEnergy, _openmm
from molsample.energies.registry import register_energy_type
from molsample.errors import ConfigError, MissingFileError

__all__ = ["CARD_KEYS", "energy_from_card", "system_to_xml"]


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

    Keys (relative paths are read from the card's folder, then its parent folder, then the working directory):
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


# OpenMM itself is imported when a card of this type is built, not when the type is registered.
register_energy_type("openmm", CARD_KEYS)(energy_from_card)
