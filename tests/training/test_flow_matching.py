"""Flow matching: loss, learning the 2-D ring, exact checkpoint/resume, EMA, the pretrain command."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
import torch

from molsample.cli import main
from molsample.energies.toy2d import RingMixture, bump_reward
from molsample.errors import ConfigError, ShapeError
from molsample.flows.distributions import CoMFreeGaussian, StandardGaussian
from molsample.flows.ode import sample
from molsample.flows.paths import get_path
from molsample.nets import MLPVelocity, load_model
from molsample.training.flow_matching import FlowMatchingConfig, flow_matching_loss, train_flow_matching


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 128, seed: int = 0) -> float:
    """RMS over random unit directions of the 1-D W2 between projected samples."""
    n = min(len(a), len(b))
    a, b = a[:n].reshape(n, -1).double(), b[:n].reshape(n, -1).double()
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_projections, a.shape[1], generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    pa, pb = torch.sort(a @ dirs.T, 0).values, torch.sort(b @ dirs.T, 0).values
    return float(torch.sqrt(((pa - pb) ** 2).mean()))


def ring_model(steps: int, seed: int = 0) -> MLPVelocity:
    torch.manual_seed(seed)
    net = MLPVelocity()
    ring = RingMixture()
    train_flow_matching(net, ring.sample, StandardGaussian((1, 2)), FlowMatchingConfig(steps=steps, seed=seed),
                        progress=False)
    return net


def test_loss_closed_form(generator):
    x0 = torch.randn(8, 3, 2, generator=generator)
    x1 = torch.randn(8, 3, 2, generator=generator)
    t = torch.rand(8, generator=generator)
    zero = lambda t, x: torch.zeros_like(x)  # noqa: E731
    assert torch.allclose(flow_matching_loss(zero, get_path("linear"), x0, x1, t), ((x1 - x0) ** 2).mean())
    # the per-pair velocity is a perfect predictor of itself: zero loss
    path = get_path("trig")
    oracle = lambda tt, x: path.sample(x0, x1, tt).dxt  # noqa: E731
    assert float(flow_matching_loss(oracle, path, x0, x1, t)) == pytest.approx(0.0, abs=1e-12)


def test_ring_flow_matching_reaches_low_sliced_wasserstein():
    net = ring_model(1500)
    g = torch.Generator().manual_seed(1)
    x = sample(net, StandardGaussian((1, 2)), 2000, generator=g, method="euler", steps=50).x1
    ring = RingMixture().sample(2000, torch.Generator().manual_seed(2))
    untrained = sample(MLPVelocity(), StandardGaussian((1, 2)), 2000, generator=g, method="euler", steps=50).x1
    sw, sw_untrained = sliced_wasserstein(x, ring), sliced_wasserstein(untrained, ring)
    assert sw < 0.6 and sw_untrained > 1.5
    assert (x.norm(dim=-1) - 4.0).abs().median() < 0.3  # samples sit on the ring of radius 4


@pytest.mark.slow
def test_tutorial_pretraining_reward():
    """The tutorial: 5000 steps, batch 256, lr 1e-3, 50 Euler steps -> mean bump reward 0.262 / 0.271."""
    net = ring_model(5000)
    x = sample(net, StandardGaussian((1, 2)), 3000, generator=torch.Generator().manual_seed(1), method="euler",
               steps=50).x1
    assert 0.22 < float(bump_reward(x).mean()) < 0.30


def _small_run(tmp_path, steps, callback=None, resume=True, **cfg):
    torch.manual_seed(3)
    net = MLPVelocity(hidden=16, n_layers=2)
    data = RingMixture().sample(500, torch.Generator().manual_seed(0))
    config = FlowMatchingConfig(steps=steps, batch_size=32, checkpoint_every=20, seed=5, **cfg)
    hist = train_flow_matching(net, data, StandardGaussian((1, 2)), config, checkpoint_path=tmp_path / "ckpt.pt",
                               progress=False, callback=callback, resume=resume)
    return net, hist


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_equals_uninterrupted(tmp_path, ema):
    ref, ref_hist = _small_run(tmp_path / "a", 60, ema_decay=ema)

    def stop(step, loss):
        if step == 50:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _small_run(tmp_path / "b", 60, callback=stop, ema_decay=ema)
    assert torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)["step"] == 40
    resumed, hist = _small_run(tmp_path / "b", 60, ema_decay=ema)
    for p, q in zip(ref.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert hist == ref_hist and hist["step"] == list(range(1, 61))


def test_resume_checks_settings_and_can_restart(tmp_path):
    _small_run(tmp_path, 20)
    with pytest.raises(ConfigError, match="lr"):
        _small_run(tmp_path, 30, lr=5e-4)
    _, hist = _small_run(tmp_path, 10, resume=False, lr=5e-4)
    assert hist["step"] == list(range(1, 11))


def test_ema_weights_copied_at_end(tmp_path):
    net, _ = _small_run(tmp_path, 20, ema_decay=0.5)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    for name, p in net.state_dict().items():
        assert torch.equal(p, state["ema"][name])
    assert any(not torch.equal(state["ema"][k], state["field"][k]) for k in state["field"])


class _Recorder(torch.nn.Module):
    """v = w·x; records the largest centre of mass it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.max_com = 0.0

    def forward(self, t, x):
        self.max_com = max(self.max_com, float(x.mean(dim=1).abs().max()))
        return self.w * x


def test_com_free_base_centres_the_data():
    data = torch.randn(64, 4, 2) + torch.tensor([50.0, -20.0])
    rec = _Recorder()
    train_flow_matching(rec, data, CoMFreeGaussian(4, 2), FlowMatchingConfig(steps=5, batch_size=8), progress=False)
    assert rec.max_com < 1e-4
    rec = _Recorder()
    train_flow_matching(rec, data, StandardGaussian((4, 2)), FlowMatchingConfig(steps=5, batch_size=8),
                        progress=False)
    assert rec.max_com > 1.0  # without CoM removal the data are used as they are


def test_bad_inputs():
    with pytest.raises(ShapeError, match=r"\(N, 1, 2\)"):
        train_flow_matching(MLPVelocity(), torch.zeros(10, 2), StandardGaussian((1, 2)), progress=False)
    with pytest.raises(ConfigError, match="path"):
        train_flow_matching(MLPVelocity(), torch.zeros(10, 1, 2), StandardGaussian((1, 2)),
                            FlowMatchingConfig(path="geodesic"), progress=False)


# --------------------------------------------------------------------------- the pretrain command

def run_cli(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_pretrain_ring_exact_sampler(tmp_path, capsys):
    code, out, err = run_cli(["pretrain", "--system", "ring2d", "--out", str(tmp_path), "--steps", "30",
                              "--batch-size", "64", "--quiet"], capsys)
    assert code == 0, err
    net, payload = load_model(tmp_path / "model.pt")
    assert isinstance(net, MLPVelocity) and payload["system"] == "ring2d" and payload["path"] == "linear"
    assert len(payload["history"]["loss"]) == 30 and "wrote" in out


def test_pretrain_h5_and_npy_data(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(40, 4, 2)).astype(np.float32)
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f["coordinates"] = x
    code, out, err = run_cli(["pretrain", "--system", "dw4", "--data", str(tmp_path / "run.h5"), "--out",
                              str(tmp_path / "m"), "--steps", "3", "--batch-size", "8", "--hidden", "8",
                              "--layers", "2", "--ema", "--quiet"], capsys)
    assert code == 0, err
    net, payload = load_model(tmp_path / "m" / "model.pt")
    assert net.spec["name"] == "egnn" and net.spec["hidden"] == 8 and payload["config"]["ema_decay"] == 0.999
    np.save(tmp_path / "bad.npy", x[:, :3])
    code, _, err = run_cli(["pretrain", "--system", "dw4", "--data", str(tmp_path / "bad.npy"), "--out",
                            str(tmp_path / "m2"), "--steps", "1"], capsys)
    assert code == 2 and "(N, 4, 2)" in err


def test_pretrain_user_errors(tmp_path, capsys):
    code, _, err = run_cli(["pretrain", "--system", "lj13", "--out", str(tmp_path), "--steps", "1"], capsys)
    assert code == 2 and "--data" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(["pretrain", "--system", "ring2d", "--out", str(tmp_path), "--device", "cuda"], capsys)
        assert code == 2 and "CUDA is not available" in err and "--device cpu" in err


def test_ema_warm_up_forgets_the_initial_weights(tmp_path):
    """At decay 0.999 a constant-decay average after 100 steps is still 90 % initial weights."""
    from molsample.training.flow_matching import ema_decay_at

    assert ema_decay_at(1, 0.999) == pytest.approx(2 / 11) and ema_decay_at(10**6, 0.999) == 0.999
    torch.manual_seed(3)
    init = torch.nn.utils.parameters_to_vector(MLPVelocity(hidden=16, n_layers=2).parameters()).detach().clone()
    net, _ = _small_run(tmp_path, 100, ema_decay=0.999)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    final_raw = torch.cat([v.reshape(-1) for v in state["field"].values()])
    ema = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    moved = (final_raw - init).norm()
    assert moved > 0.1
    assert (ema - init).norm() > 0.7 * moved  # the average sits near the trained weights, not the initial ones
    assert (ema - final_raw).norm() < 0.5 * moved


def test_cosine_schedule_values_resume_and_errors(tmp_path):
    cfg = FlowMatchingConfig(steps=100, lr=1e-3, lr_schedule="cosine")
    assert cfg.lr_at(0) == pytest.approx(1e-3) and cfg.lr_at(50) == pytest.approx(5e-4)
    assert cfg.lr_at(100) == pytest.approx(0.0, abs=1e-12) and FlowMatchingConfig(lr=2e-3).lr_at(70) == 2e-3
    with pytest.raises(ConfigError, match="lr_schedule"):
        FlowMatchingConfig(lr_schedule="linear").validate()
    ref, _ = _small_run(tmp_path / "a", 40, lr_schedule="cosine")

    def stop(step, loss):
        if step == 30:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _small_run(tmp_path / "b", 40, callback=stop, lr_schedule="cosine")
    resumed, _ = _small_run(tmp_path / "b", 40, lr_schedule="cosine")
    for p, q in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ConfigError, match="steps"):  # a cosine schedule spans all steps
        _small_run(tmp_path / "b", 60, lr_schedule="cosine")
    constant, _ = _small_run(tmp_path / "c", 40)
    assert any(not torch.equal(p, q) for p, q in zip(ref.parameters(), constant.parameters()))


def test_endpoint_weighting_is_the_error_of_the_predicted_endpoint(generator):
    """On the linear path (1 − t)²‖b̂ − İ‖² = ‖x̂1 − x1‖² with x̂1 = I_t + (1 − t) b̂_t(I_t)."""
    from molsample.training.flow_matching import time_weight

    x0, x1 = (torch.randn(16, 3, 2, generator=generator, dtype=torch.float64) for _ in range(2))
    t = torch.rand(16, generator=generator, dtype=torch.float64)
    field = lambda tt, x: torch.sin(x) * tt.reshape(-1, 1, 1)  # noqa: E731 - any field
    path = get_path("linear")
    loss = flow_matching_loss(field, path, x0, x1, t, weight=time_weight("endpoint", t))
    xt = (1 - t).reshape(-1, 1, 1) * x0 + t.reshape(-1, 1, 1) * x1
    x1_hat = xt + (1 - t).reshape(-1, 1, 1) * field(t, xt)
    assert float(loss) == pytest.approx(float(((x1_hat - x1) ** 2).mean()), rel=1e-12)
    assert time_weight("uniform", t) is None
    with pytest.raises(ConfigError, match="unknown time_weighting 'late'"):
        FlowMatchingConfig(time_weighting="late").validate()


def test_time_weighting_changes_training_keys_and_resume_only_when_set(tmp_path):
    """The default leaves cache keys as they were; another weighting is a different training."""
    assert "time_weighting" not in FlowMatchingConfig().key_dict()
    assert FlowMatchingConfig(time_weighting="endpoint").key_dict()["time_weighting"] == "endpoint"
    _small_run(tmp_path, 20)
    with pytest.raises(ConfigError, match="time_weighting"):
        _small_run(tmp_path, 30, time_weighting="endpoint")


def test_pretrain_endpoint_parametrisation_from_the_cli(tmp_path, capsys):
    from molsample.nets.endpoint import EndpointVelocity

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(40, 4, 2)).astype(np.float32))
    code, _, err = run_cli(["pretrain", "--system", "dw4", "--data", str(tmp_path / "x.npy"), "--out",
                            str(tmp_path / "m"), "--steps", "3", "--batch-size", "8", "--hidden", "8",
                            "--layers", "2", "--parametrisation", "endpoint", "--time-weighting", "endpoint",
                            "--quiet"], capsys)
    assert code == 0, err
    net, payload = load_model(tmp_path / "m" / "model.pt")
    assert isinstance(net, EndpointVelocity) and payload["config"]["time_weighting"] == "endpoint"
    code, _, err = run_cli(["pretrain", "--system", "dw4", "--data", str(tmp_path / "x.npy"), "--out",
                            str(tmp_path / "m2"), "--steps", "1", "--parametrisation", "endpoint", "--path", "trig"],
                           capsys)
    assert code == 2 and "--path linear" in err


def test_a_resumed_pretraining_counts_the_cpu_of_every_invocation(tmp_path, monkeypatch):
    """The training checkpoint carries the CPU seconds so far, so a field trained over two
    invocations records both (its cost when it is reused by another run)."""
    from molsample.stages.pretrain import pretrain_field

    data = RingMixture().sample(512, torch.Generator().manual_seed(0)).float()
    spec = {"name": "mlp", "n_particles": 1, "dim": 2, "hidden": 64, "n_freqs": 4, "n_layers": 2}
    fm = FlowMatchingConfig(steps=200, batch_size=256, checkpoint_every=150)
    ckpt = tmp_path / "fm.ckpt"

    def stop(step, loss):
        if step == 190:
            raise _Interrupt

    import molsample.stages.pretrain as pretrain_module

    with monkeypatch.context() as m:  # the first invocation is stopped at step 190
        m.setattr(pretrain_module, "train_flow_matching", lambda *a, **k: train_flow_matching(*a, **k, callback=stop))
        with pytest.raises(_Interrupt):
            pretrain_field(spec, data, StandardGaussian((1, 2)), fm, tmp_path / "m.pt", device=torch.device("cpu"),
                           dtype=torch.float32, checkpoint=ckpt, progress=False, echo=lambda _: None)
    first = torch.load(ckpt, weights_only=False)
    assert first["step"] == 150 and first["cpu_s"] > 0
    before = time.process_time()
    _, _, cpu = pretrain_field(spec, data, StandardGaussian((1, 2)), fm, tmp_path / "m.pt",
                               device=torch.device("cpu"), dtype=torch.float32, checkpoint=ckpt, progress=False,
                               echo=lambda _: None)
    resumed = time.process_time() - before
    # the resumed invocation trained 50 steps; the field's cost is the first invocation's 150 steps plus
    # at most this invocation's own CPU time: counting the first part twice would exceed the bound
    assert first["cpu_s"] <= cpu <= first["cpu_s"] + resumed + 0.05
    assert first["cpu_s"] > 0.05  # so that counting it twice falls outside the bound above
    assert torch.load(ckpt, weights_only=False)["cpu_s"] == pytest.approx(cpu)
    assert load_model(tmp_path / "m.pt")[1]["train_cpu_s"] == pytest.approx(cpu)
