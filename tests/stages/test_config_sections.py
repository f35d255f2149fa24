"""Run-config tables registered with their stages (molsample.stages.sections) and what RunConfig reads from them."""

from __future__ import annotations

import dataclasses

import pytest

from molsample.errors import ConfigError
from molsample.stages import config as config_module
from molsample.stages.config import DataConfig, RunConfig, resolve_config
from molsample.stages.run import TILT_STAGES
from molsample.stages.sections import SECTIONS, register_section


def test_every_table_is_a_registered_section_read_by_stages():
    tables = {f.name: f for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(getattr(RunConfig(), f.name))}
    assert set(tables) == set(SECTIONS)
    stage_names = {stage.name for stage in TILT_STAGES}
    for name, section in SECTIONS.items():
        assert isinstance(getattr(RunConfig(), name), section.config), name
        assert section.stages and set(section.stages) <= stage_names, name


def test_defaults_come_from_the_registry():
    cfg = RunConfig()
    assert cfg.reference == DataConfig(n=0) and cfg.data == DataConfig()
    assert cfg.refine is not RunConfig().refine  # a fresh table per config


def test_validate_runs_every_sections_own_check():
    with pytest.raises(ConfigError, match="refine.target_cess"):
        resolve_config("lj13", preset="smoke", overrides={"refine": {"target_cess": 1.5}})
    with pytest.raises(ConfigError, match="tilt.target_ess"):
        resolve_config("lj13", preset="smoke", overrides={"tilt": {"target_ess": 0.0}})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        resolve_config("lj13", preset="smoke", overrides={"pretrain": {"lr": 0.0}})


def test_a_registered_section_must_be_declared_by_the_config():
    @register_section("test-extra", stages=("final",))
    @dataclasses.dataclass
    class Extra:
        on: bool = False

    try:
        with pytest.raises(TypeError, match=r"\[test-extra\]: register it with register_section and declare it"):
            config_module._check_sections(RunConfig)
        with pytest.raises(ValueError, match="registered twice"):
            register_section("test-extra", stages=("final",))(Extra)
    finally:
        SECTIONS.pop("test-extra")
    config_module._check_sections(RunConfig)
    with pytest.raises(TypeError, match="not a dataclass"):
        register_section("test-plain", stages=("final",))(dict)
