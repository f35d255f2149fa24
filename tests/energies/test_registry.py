"""The energy-type registry: each type registers beside its class, cards look it up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from molsample.energies import Energy, ENERGY_TYPES, register_energy_type
from molsample.energies.registry import take
from molsample.errors import ConfigError
from molsample.systems.cards import system_from_card


def _card(energy: dict, **top) -> dict:
    return {"name": "t", "kT": 1.0, **top, "energy": energy}


def test_every_type_is_registered_in_order_beside_its_energy():
    assert list(ENERGY_TYPES) == ["lennard_jones", "double_well", "ring2d", "gaussian", "openmm", "plugin"]
    homes = {"lennard_jones": "molsample.energies.lennard_jones", "double_well": "molsample.energies.double_well",
             "ring2d": "molsample.energies.toy2d", "gaussian": "molsample.energies.toy2d",
             "openmm": "molsample.energies.openmm_card"}
    for name, module in homes.items():
        assert ENERGY_TYPES[name].build.__module__ == module, name
        assert "type" in ENERGY_TYPES[name].keys


@pytest.mark.parametrize("table, cls, attrs", [
    ({"type": "lennard_jones", "n_particles": 5, "pair_factor": 2}, "LennardJones", {"pair_factor": 2.0, "dim": 3}),
    ({"type": "double_well", "a": 1}, "MultiDoubleWell", {"a": 1.0, "n_particles": 4, "d0": 4.0}),
    ({"type": "ring2d", "n_modes": 3}, "RingMixture", {"n_modes": 3, "sigma": 0.15}),
    ({"type": "gaussian", "mean": [0.0, 1.0], "cov": [[1.0, 0.0], [0.0, 2.0]]}, "GaussianEnergy", {"dim": 2}),
])
def test_built_in_types_build_from_a_card(tmp_path, table, cls, attrs):
    energy = system_from_card(_card(table), tmp_path / "t.toml").energy
    assert type(energy).__name__ == cls
    for key, value in attrs.items():
        assert getattr(energy, key) == value, key


def test_a_new_type_is_one_registration(tmp_path):
    class Harmonic(Energy):
        def __init__(self, k: float) -> None:
            super().__init__(3, 3)
            self.k = k

        def _energy(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * self.k * (x * x).sum((1, 2))

    @register_energy_type("test_harmonic", ("k",), identical_atoms=True)
    def harmonic_from_card(table: dict, card_path: Path) -> Energy:
        return Harmonic(take(table, "k", float, str(card_path), 1.0))

    try:
        system = system_from_card(_card({"type": "test_harmonic", "k": 3}), tmp_path / "h.toml")
        assert system.energy.k == 3.0 and system.topology.n_atoms == 3  # identical atoms: an element topology
        with pytest.raises(ConfigError, match="unknown key 'kk'; did you mean 'k'"):
            system_from_card(_card({"type": "test_harmonic", "kk": 3}), tmp_path / "h.toml")
        with pytest.raises(ValueError, match="registered twice"):
            register_energy_type("test_harmonic", ())(harmonic_from_card)
    finally:
        ENERGY_TYPES.pop("test_harmonic")


def test_topology_only_for_identical_atoms(tmp_path):
    lj = system_from_card(_card({"type": "lennard_jones", "n_particles": 4}), tmp_path / "t.toml")
    dw = system_from_card(_card({"type": "double_well", "dim": 3}), tmp_path / "t.toml")
    assert lj.topology.n_atoms == 4 and dw.topology is None


def test_unknown_type_lists_the_registered_ones(tmp_path):
    with pytest.raises(ConfigError, match="is not known; use one of lennard_jones, double_well, ring2d, gaussian, "
                                          "openmm, plugin"):
        system_from_card(_card({"type": "lj"}), tmp_path / "t.toml")


def test_take_checks_types():
    assert take({"a": 2}, "a", float, "w") == 2.0 and isinstance(take({"a": 2}, "a", float, "w"), float)
    assert take({}, "a", int, "w", 7) == 7
    with pytest.raises(ConfigError, match=r"\[energy\].a must be int, got True"):
        take({"a": True}, "a", int, "w")
    with pytest.raises(ConfigError, match="missing key 'a'"):
        take({}, "a", int, "w")


def test_reading_a_card_does_not_import_openmm():
    code = ("import sys; from molsample.systems.cards import load_system; load_system('dw4'); "
            "print('openmm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
