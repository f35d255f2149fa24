"""The reference-method registry: one object per method, and what generate_reference and the
`reference` command read from it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import molsample.mcmc.reference as ref
from molsample.commands.reference_cmd import reference as reference_cmd
from molsample.errors import ConfigError, DistributedError
from molsample.mcmc.reference_methods import METHODS, SHARDED_METHODS, get_method
from molsample.mcmc.reference_settings import REFERENCE_METHODS, ReferenceMethod, register_reference_method
from molsample.runtime.distributed import World
from molsample.systems.cards import load_system


@pytest.fixture(scope="module")
def dw4():
    return load_system("dw4")


def test_registry_lists_every_method_once():
    assert METHODS == ("auto", "exact", "mala", "pt", "md", "remd")
    assert SHARDED_METHODS == ("mala", "pt")
    assert [m.name for m in REFERENCE_METHODS.values()] == list(REFERENCE_METHODS)
    assert {n for n, m in REFERENCE_METHODS.items() if m.checkpoints} == {"mala", "pt", "remd"}


@pytest.mark.parametrize("system_name, method", [("dw4", "mala"), ("dw4", "pt"), ("ring2d", "exact"),
                                                 ("aldp", "md"), ("aldp", "remd")])
def test_aliases_name_keys_the_method_has(system_name, method):
    m, system = get_method(method), load_system(system_name)
    defaults = m.defaults(system, 100)
    assert m.settings(system, 100, {}) == defaults
    assert set(m.aliases.values()) <= set(defaults)
    assert set(m.counts) | set(m.step_counts) <= set(defaults)


def test_command_options_map_to_each_methods_keys():
    assert [get_method("md").setting_key(k) for k in ("burn_in", "thin")] == ["equilibration_steps", "steps_per_frame"]
    assert [get_method("remd").setting_key(k) for k in ("burn_in", "thin")] == ["equilibration_steps",
                                                                                 "exchanges_per_frame"]
    assert [get_method("pt").setting_key(k) for k in ("chains", "burn_in", "thin")] == ["chains", "burn_in", "thin"]
    with pytest.raises(ConfigError, match="--chains applies to MCMC methods; remd runs one trajectory"):
        get_method("remd").check_options({"chains": 4})
    with pytest.raises(ConfigError, match="do not apply to the exact sampler"):
        get_method("exact").check_options({"burn_in": 4})
    get_method("mala").check_options({"chains": 4, "burn_in": 1, "thin": 1})


def test_n_steps_per_method(dw4):
    aldp = load_system("aldp")
    assert ref.resolve_settings(aldp, "md", 10, {"n_steps": 1000})["steps_per_frame"] == 100
    assert ref.resolve_settings(dw4, "mala", 100, {"n_steps": 1000})["thin"] == 1000 // 2  # 64 chains: 2 kept each
    assert ref.resolve_settings(load_system("ring2d"), "exact", 100, {"n_steps": 1000}) == {}
    with pytest.raises(ConfigError, match="n_steps does not apply to remd"):
        ref.resolve_settings(aldp, "remd", 10, {"n_steps": 1000})
    with pytest.raises(ConfigError, match="n_steps must be a positive integer"):
        ref.resolve_settings(dw4, "pt", 10, {"n_steps": 0})


def test_unsharded_methods_refuse_a_distributed_world():
    ring = load_system("ring2d")
    with pytest.raises(DistributedError, match="the exact reference is not split over processes .only mala, pt"):
        ref.generate_reference(ring, 4, world=World(rank=0, world_size=2), progress=False)


def test_a_new_method_is_one_registered_class(dw4):
    @register_reference_method
    class Still(ReferenceMethod):
        """Every sample is the first lattice point (a test double)."""

        name = "test-still"
        aliases = {"steps": "repeats"}
        counts = ("repeats",)
        refused_options = ("chains",)
        refusal = "{name} has no chains"

        def defaults(self, system: Any, n: int) -> dict[str, Any]:
            return {"repeats": 1}

        def run(self, system: Any, n: int, *, kT: float, settings: dict[str, Any], seed: int, generator: Any,
                progress: bool, world: World, checkpoint: Any):
            x = torch.zeros(n, *system.event_shape, dtype=torch.float64)
            return x, system.energy.energy(x).double(), {"tau_int": None, "n_energy_evals": n * settings["repeats"]}

    try:
        assert ref.resolve_method(dw4) == "pt"  # auto never picks a method without auto_rank
        r = ref.generate_reference(dw4, 5, method="test-still", steps=3, progress=False)
        assert r.method == "test-still" and r.samples.shape == (5, 4, 2)
        d = r.diagnostics
        assert d["settings"] == {"repeats": 3} and d["n_energy_evals"] == 15 and d["n_effective"] is None
        assert d["energy_mean"] == pytest.approx(float(dw4.energy.energy(torch.zeros(1, 4, 2))))
        with pytest.raises(ConfigError, match="repeats must be a positive integer"):
            ref.generate_reference(dw4, 5, method="test-still", repeats=0, progress=False)
        with pytest.raises(ConfigError, match="test-still has no chains"):
            get_method("test-still").check_options({"chains": 2})
        with pytest.raises(ValueError, match="registered twice"):
            register_reference_method(Still)
    finally:
        REFERENCE_METHODS.pop("test-still")


def test_command_help_lists_the_registered_methods():
    choices = next(p for p in reference_cmd.params if p.name == "method").type.choices
    assert tuple(choices) == METHODS
