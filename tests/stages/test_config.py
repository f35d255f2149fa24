import pytest

from molsample.errors import ConfigError, MissingFileError
from molsample.stages.config import RunConfig, config_from_dict, resolve_config


def test_presets_resolve_for_every_system():
    for preset in ("smoke", "default", "paper"):
        cfg = resolve_config("lj13", preset=preset)
        assert cfg.tilt.method == "itm"
    smoke = resolve_config("lj13", preset="smoke")
    assert smoke.pretrain.steps < resolve_config("lj13", preset="default").pretrain.steps


def test_system_override_table_in_preset():
    cfg = resolve_config("ring2d", preset="default")
    assert cfg.tilt.h == 0.05 and cfg.net.hidden == 128


def test_order_preset_file_cli(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("seed = 7\n[tilt]\nmethod = \"etm\"\nsteps_per_level = 3\n")
    cfg = resolve_config("lj13", preset="smoke", config_file=f, overrides={"tilt": {"method": "wfm", "h": None}})
    assert (cfg.seed, cfg.tilt.method, cfg.tilt.steps_per_level) == (7, "wfm", 3)
    assert cfg.tilt.h == 0.125  # the preset's value: a None on the command line means "not given"


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[tilt]\nmethod = 'xyz'\n", "tilt.method"),
        ("[tilt]\nstep_per_level = 3\n", "unknown key 'tilt.step_per_level'"),
        ("[tilt]\nsteps_per_level = 'many'\n", "'tilt.steps_per_level' must be int"),
        ("tilt = 3\n", "must be a table"),
        ("temperature_factor = 0.5\n", "temperature_factor"),
        ("[tilt\n", "malformed TOML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        resolve_config("lj13", preset="smoke", config_file=f)


def test_missing_config_file(tmp_path):
    with pytest.raises(MissingFileError):
        resolve_config("lj13", config_file=tmp_path / "nope.toml")


def test_unknown_preset():
    with pytest.raises(ConfigError, match="smoke"):
        resolve_config("lj13", preset="huge")


def test_round_trip_through_dict():
    cfg = resolve_config("ring2d", preset="default", overrides={"beta": 3.0})
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert RunConfig().to_dict()["tilt"]["method"] == "itm"


def test_internal_coordinates_recipe_is_the_spelled_out_config():
    """`tilt --system aldp --coordinates internal` resolves to runs/aldp-internal.toml exactly."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    short = resolve_config("aldp", overrides={"flow": {"coordinates": "internal"}})
    spelled = resolve_config("aldp", config_file=root / "runs" / "aldp-internal.toml")
    assert short.to_dict() == spelled.to_dict()
    assert short.net.hidden == 256 and short.data.method == "remd"


def test_coordinate_tables_apply_only_to_their_coordinates():
    cartesian = resolve_config("aldp")
    internal = resolve_config("aldp", overrides={"flow": {"coordinates": "internal"}})
    assert cartesian.net.hidden == 64 and cartesian.flow.coordinates == "cartesian"
    assert internal.net.hidden == 256 and internal.pretrain.steps == 40000 and internal.data.n == 40000
    assert internal.flow.rotor_augment and not cartesian.flow.rotor_augment
    other = resolve_config("ala3", overrides={"flow": {"coordinates": "internal"}})  # the generic table
    assert other.net.hidden == 256 and other.pretrain.steps == 20000 and not other.flow.rotor_augment
    lj = resolve_config("lj13", overrides={"flow": {"coordinates": "cartesian"}})
    assert lj.net.hidden == 64
