"""Run-config files that extend others: merged table by table, the child wins, relative paths, and
one-line errors for cycles, missing files and a non-string extends."""

from __future__ import annotations

import pytest

from molsample.errors import ConfigError
from molsample.stages.config import resolve_config
from molsample.stages.config_files import deep_update, read_config_file


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_extends_another_and_overrides_key_by_key(tmp_path):
    _write(tmp_path / "base.toml", 'temperature_factor = 1.5\npreset = "x"\n[pretrain]\nsteps = 100\nlr = 0.01\n'
                                   '[final]\nn_samples = 50\n')
    _write(tmp_path / "mid" / "child.toml", 'extends = "../base.toml"\n[pretrain]\nsteps = 7\n')
    grandchild = _write(tmp_path / "mid" / "gc.toml", 'extends = "child.toml"\n[final]\nbatch_size = 5\n')
    assert read_config_file(grandchild) == {"temperature_factor": 1.5, "pretrain": {"steps": 7, "lr": 0.01},
                                            "final": {"n_samples": 50, "batch_size": 5}}
    cfg = resolve_config("gauss2d", config_file=grandchild)
    assert (cfg.temperature_factor, cfg.pretrain.steps, cfg.pretrain.lr) == (1.5, 7, 0.01)
    assert (cfg.final.n_samples, cfg.final.batch_size) == (50, 5)


def test_deep_update_leaves_its_inputs_alone():
    a, b = {"x": {"y": 1, "z": 2}}, {"x": {"y": 3}}
    assert deep_update(a, b) == {"x": {"y": 3, "z": 2}}
    assert a == {"x": {"y": 1, "z": 2}} and b == {"x": {"y": 3}}


@pytest.mark.parametrize("files, needle", [
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "a.toml"\n'}, r"cycle \(a.toml -> b.toml -> a.toml\)"),
    ({"a.toml": 'extends = "a.toml"\n'}, r"cycle \(a.toml -> a.toml\)"),
    ({"a.toml": 'extends = "nowhere.toml"\n'}, "extends = 'nowhere.toml' but .* is not a file"),
    ({"a.toml": "extends = 3\n"}, "must be a file name"),
])
def test_bad_extends_is_one_clear_error(tmp_path, files, needle):
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=needle):
        read_config_file(tmp_path / "a.toml")
