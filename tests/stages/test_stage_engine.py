"""The stage engine: timings per stage summed over resumed invocations, the cache helper, devices, bars."""

from __future__ import annotations

import io
import json

import pytest
import torch

from molsample.errors import PlatformError
from molsample.io.cache import digest, load_cached, save_cached
from molsample.runtime.devices import resolve_device
from molsample.runtime.progress import progress_bar, show_progress
from molsample.stages.engine import Stage, run_stages
from molsample.stages.timings import StageTimings


class _Ctx:
    def __init__(self, run_dir, resume):
        from molsample.runtime.distributed import World

        self.run_dir, self.resume, self.timings, self.world = run_dir, resume, None, World()


def _burn(ctx):
    t = __import__("time").process_time()
    while __import__("time").process_time() - t < 0.05:
        pass


def test_timings_accumulate_over_resumed_invocations(tmp_path):
    stages = [Stage("a", _burn), Stage("b", _burn), Stage("never", _burn, skip=lambda ctx: True)]
    first = run_stages(stages, _Ctx(tmp_path, resume=False))
    assert set(first.cpu_s) == {"a", "b"} and first.cpu_s["a"] >= 0.05 and first.invocations == 1
    second = run_stages(stages, _Ctx(tmp_path, resume=True))
    assert second.invocations == 2
    for name in ("a", "b"):
        assert second.cpu_s[name] >= first.cpu_s[name] + 0.05
        assert second.wall_s[name] >= first.wall_s[name]
    stored = json.loads((tmp_path / "timings.json").read_text())
    assert stored["cpu_s"] == second.cpu_s
    fresh = run_stages(stages, _Ctx(tmp_path, resume=False))  # a new run starts from zero
    assert fresh.invocations == 1 and fresh.cpu_s["a"] < second.cpu_s["a"]


def test_an_interrupted_stage_still_counts(tmp_path):
    def interrupted(ctx):
        _burn(ctx)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stages([Stage("a", _burn), Stage("b", interrupted)], _Ctx(tmp_path, resume=False))
    t = StageTimings.load(tmp_path)
    assert t.cpu_s["b"] >= 0.05 and t.total_cpu_s >= 0.1


def test_cache_round_trip_and_key_mismatch(tmp_path):
    key = digest({"n": 3, "seed": 1})
    assert key == digest({"seed": 1, "n": 3}) and key != digest({"n": 3, "seed": 2}) and len(key) == 16
    path = save_cached(tmp_path / "c.pt", key, {"x": torch.arange(3)})
    assert torch.equal(load_cached(path, key)["x"], torch.arange(3))
    assert load_cached(path, digest("other")) is None
    assert load_cached(tmp_path / "missing.pt", key) is None
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    assert load_cached(tmp_path / "bad.pt", key) is None
    assert not list(tmp_path.glob("*.tmp*"))


def test_resolve_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(PlatformError, match="use cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(PlatformError, match="use --device cpu"):
            resolve_device("cuda:0")


def test_bars_are_off_when_stderr_is_not_a_terminal(monkeypatch):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not show_progress(True)
    bar = progress_bar(range(1000), enabled=True)
    for _ in bar:
        pass
    assert bar.disable
    import sys

    assert sys.stderr.getvalue() == ""  # nothing written to a log
    monkeypatch.setattr("sys.stderr", TTY())
    assert show_progress(True) and not show_progress(False)
