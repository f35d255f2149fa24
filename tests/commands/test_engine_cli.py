"""Engine-side command-line behaviour: bad counts, devices, Ctrl-C, help texts, starting from a model."""

from __future__ import annotations

import json

import h5py
import pytest
import torch

from molsample.cli import main
from molsample.errors import ConfigError
from molsample.nets import save_model
from molsample.nets.affine import AffineVelocity
from molsample.stages.config import RunConfig


def _exit(argv) -> int:
    try:
        main(argv)
    except SystemExit as info:
        return info.code
    return 0


@pytest.mark.parametrize("n", ["0", "-5"])
def test_sample_with_a_non_positive_count_is_a_one_line_error(tmp_path, capsys, n):
    assert _exit(["sample", str(tmp_path / "run"), "--n", n]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--n {n}" in err and ">= 1" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_tilt_on_missing_cuda_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert _exit(["tilt", "--system", "gauss2d", "--preset", "smoke", "--device", "cuda", "--out", str(out)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_during_tilt_says_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("molsample.stages.run.run_tilt", interrupted)
    assert _exit(["tilt", "--system", "gauss2d", "--preset", "smoke", "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and "Aborted" not in err


def test_help_texts_come_from_the_registries(capsys):
    assert _exit(["tilt", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "preset's value; adaptive from --target-ess when unset" in text
    assert "[cpu|cuda|cuda:N]" in text and "--progress / --no-progress" in text
    assert _exit(["pretrain", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "egnn|mlp|affine|e3nn" in text and "linear|trig" in text


def test_a_start_model_skips_training_and_says_what_was_reused(tmp_path):
    from molsample.stages.run import run_tilt

    torch.manual_seed(0)
    model = save_model(tmp_path / "m.pt", AffineVelocity(1, 2), system="gauss2d", a=1.0, mode="temperature",
                       command="molsample tilt --system gauss2d --preset smoke")
    cfg = RunConfig(system="gauss2d", report=False)
    cfg.start.model = str(model)
    cfg.final.n_samples, cfg.final.batch_size, cfg.final.ode_steps, cfg.final.ode_method = 40, 16, 3, "euler"
    lines: list[str] = []
    summary = run_tilt(cfg, tmp_path / "run", progress=False, echo=lines.append)
    assert any(line.startswith(f"reused: model {model} (a = 1), trained by `molsample tilt --system gauss2d "
                               "--preset smoke`") for line in lines)
    assert not (tmp_path / "run" / "pretrained.pt").exists() and not (tmp_path / "run" / "base_data.pt").exists()
    assert summary.n_samples == 40 and summary.levels == 0 and summary.energy_evals == 40
    with h5py.File(tmp_path / "run" / "samples.h5") as f:
        cpu = json.loads(f.attrs["stage_cpu_s"])
        assert set(cpu) == {"start", "final"} and f.attrs["wall_time_s"] > 0
        assert len(f["logw"]) == 40


def test_a_start_model_of_another_system_is_refused(tmp_path):
    from molsample.errors import ConfigError
    from molsample.stages.run import run_tilt

    model = save_model(tmp_path / "m.pt", AffineVelocity(1, 2), system="ring2d", a=1.0)
    cfg = RunConfig(system="gauss2d", report=False)
    cfg.start.model = str(model)
    with pytest.raises(ConfigError, match="trained for system 'ring2d'"):
        run_tilt(cfg, tmp_path / "run", progress=False, echo=lambda _: None)


def test_reward_mode_summary_prints_mean_reward_and_sliced_w(tmp_path):
    from molsample.analysis.metrics import sliced_wasserstein
    from molsample.flows.sampler import WeightedSamples
    from molsample.flows.weights import summarize
    from molsample.stages.context import RunContext
    from molsample.stages.summary import summarize_run
    from molsample.stages.tilt import make_run_reward

    ctx = RunContext.create(RunConfig(system="ring2d"), tmp_path, progress=False)
    assert ctx.mode == "reward"
    ctx.reward = make_run_reward(ctx)
    x = torch.randn(64, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    logw = torch.zeros(64, dtype=torch.float64)
    ctx.samples = WeightedSamples(x=x, logq=logw, energy=ctx.reward.energy(x), logw=logw, summary=summarize(logw))
    ref = torch.randn(80, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ctx.reference_x = ref
    summary = summarize_run(ctx)
    rows = dict(summary.extra)
    assert rows["mean reward"].startswith(f"{float(ctx.reward.fn(x).mean()):.4f}")
    assert rows["sliced-W"].startswith(f"{sliced_wasserstein(x, ref):.4f}")
    summary.warnings.append("degenerate weights")
    lines = summary.lines()
    assert lines[-1] == "warning: degenerate weights" and any(line.startswith("mean reward") for line in lines)


def test_threads_option_and_default(capsys, monkeypatch):
    from molsample.runtime.threads import default_threads

    assert 1 <= default_threads() <= 4
    try:
        assert _exit(["--threads", "2", "systems"]) == 0
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert _exit(["systems"]) == 0
        assert torch.get_num_threads() == default_threads()
    finally:
        torch.set_num_threads(1)
    capsys.readouterr()


def test_data_at_the_target_skip_the_tilt_and_the_pretrained_field_is_the_model(tmp_path):
    from molsample.nets import load_model
    from molsample.stages.run import run_tilt

    cfg = RunConfig(system="gauss2d", report=False, mode="temperature", temperature_factor=1.0)
    cfg.data.n, cfg.pretrain.steps, cfg.pretrain.batch_size = 200, 30, 32
    cfg.final.n_samples, cfg.final.batch_size, cfg.final.ode_steps, cfg.final.ode_method = 40, 16, 3, "euler"
    cfg.reference.n = 0
    lines: list[str] = []
    summary = run_tilt(cfg, tmp_path / "run", progress=False, echo=lines.append)
    assert any(line.startswith("tilt: skipped (temperature_factor = 1") for line in lines)
    assert summary.levels == 0 and summary.n_samples == 40
    pretrained, _ = load_model(tmp_path / "run" / "pretrained.pt", torch.device("cpu"))
    model, meta = load_model(tmp_path / "run" / "model.pt", torch.device("cpu"))
    assert meta["a"] == 1.0
    for p, q in zip(pretrained.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ConfigError, match="temperature_factor = 0.9 must be ≥ 1"):
        RunConfig(system="gauss2d", temperature_factor=0.9).validate()
