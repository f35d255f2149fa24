"""SMC from a Gaussian stand-in for a flow to a Gaussian target: log Z, moments, schedule, resampling, groups."""

from __future__ import annotations

import math

import pytest
import torch

from molsample.energies.base import Energy
from molsample.errors import ConfigError, EnergyError
from molsample.flows import smc
from molsample.flows.smc import (SMCCheckpoint, choose_start_kT, conditional_ess, next_beta, smc_refine,
                                 systematic_resample)

from _run_helpers import interrupt_after

SIGMA = 0.8  # target N(0, σ² I) at kT = 1 in 2 particles × 3 dims
SHAPE = (2, 3)
D = 6


class Quadratic(Energy):
    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x**2).flatten(1).sum(1) / SIGMA**2


def flow_stand_in(n: int, seed: int, scale: float = 1.4, shift: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of N(shift, (scale σ)² I) with their exact log-density."""
    g = torch.Generator().manual_seed(seed)
    s = scale * SIGMA
    x = shift + s * torch.randn(n, *SHAPE, generator=g, dtype=torch.float64)
    logq = -0.5 * ((x - shift) ** 2).flatten(1).sum(1) / s**2 - 0.5 * D * math.log(2 * math.pi * s**2)
    return x, logq


LOG_Z = 0.5 * D * math.log(2 * math.pi * SIGMA**2)


def _run(seed: int, **kw):
    x, logq = flow_stand_in(1000, seed)
    args = dict(kT_start=1.5, mcmc_steps=3, final_steps=5, groups=10, generator=torch.Generator().manual_seed(seed))
    args.update(kw)
    return smc_refine(x, logq, Quadratic(*SHAPE), 1.0, **args)


def test_log_z_matches_the_closed_form_within_its_error_bar():
    z = []
    for seed in range(4):
        res = _run(seed)
        assert res.kT_start == 1.5 and res.history["kT"][-1] == 1.0 and res.n_levels >= 3
        z.append((res.log_z - LOG_Z) / res.log_z_se)
    assert max(abs(v) for v in z) < 4.0, z
    assert sum(v * v for v in z) / len(z) < 6.0, z


def test_hmc_log_z_matches_the_closed_form_and_counts_l_evaluations_per_step():
    """The same oracle with the HMC kernel; each HMC step costs L energy evaluations per particle."""
    z, L = [], 3
    for seed in range(4):
        res = _run(seed, kernel="hmc", kernel_options={"leapfrog_steps": L})
        z.append((res.log_z - LOG_Z) / res.log_z_se)
        steps = 3 * (res.n_levels - 1) + 5  # mcmc_steps per level before the last, final_steps at kT
        assert res.n_energy_evals == 1000 * (2 + L * steps)  # + the start and the first step's probe
        assert abs(res.history["acceptance"][-1] - 0.65) < 0.15
    assert max(abs(v) for v in z) < 4.0, z
    assert sum(v * v for v in z) / len(z) < 6.0, z
    mala = _run(0)
    assert mala.n_energy_evals == 1000 * (2 + 3 * (mala.n_levels - 1) + 5)


def test_refined_weighted_moments_match_the_target():
    res = _run(7, final_steps=20)
    w = torch.softmax(res.logw, 0)
    flat = res.x.flatten(1)
    mean = (w[:, None] * flat).sum(0)
    var = (w[:, None] * (flat - mean) ** 2).sum(0)
    assert mean.abs().max() < 0.12
    assert (var / SIGMA**2 - 1).abs().max() < 0.2
    assert torch.allclose(res.energies, Quadratic(*SHAPE).energy(res.x))
    assert math.isclose(float(torch.logsumexp(res.logw, 0)) - math.log(len(res.logw)), res.log_z, rel_tol=1e-9)


def test_the_adaptive_schedule_hits_its_conditional_ess():
    res = _run(1, groups=1, target_cess=0.9, kT_start=3.0)
    cess = res.history["cess"][1:]
    assert len(cess) >= 3
    assert all(abs(c - 0.9) < 1e-6 for c in cess[:-1]), cess
    assert cess[-1] >= 0.9 - 1e-9
    assert any("no error bar" in w for w in res.warnings)


def test_next_beta_bisects_the_smallest_group_cess():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(3, 50, generator=g, dtype=torch.float64) * torch.tensor([[1.0], [3.0], [0.5]], dtype=torch.float64)
    logW = torch.full((3, 50), -math.log(50), dtype=torch.float64)
    beta, c = next_beta(logW, e, 0.2, 5.0, 0.95)
    assert 0.2 < beta < 5.0 and abs(c - 0.95) < 1e-9
    assert abs(float(conditional_ess(logW, e, beta - 0.2).min()) - 0.95) < 1e-9
    assert next_beta(logW, e * 1e-6, 0.2, 5.0, 0.95)[0] == 5.0  # a flat energy jumps to the end


def test_systematic_resampling_expected_counts_are_n_times_the_weights():
    g = torch.Generator().manual_seed(0)
    logW = torch.randn(3, 7, generator=g, dtype=torch.float64) * 1.5
    logW[1, 6] = -math.inf  # a trailing zero weight is never drawn
    logW = logW - torch.logsumexp(logW, 1, keepdim=True)
    m, draws = 7, 4000
    counts = torch.zeros(3, 7, dtype=torch.float64)
    for _ in range(draws):
        idx = systematic_resample(logW, g)
        c = torch.zeros(3, 7, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
        expected = m * logW.exp()
        assert bool(((c >= expected.floor() - 1e-9) & (c <= expected.ceil() + 1e-9)).all())
        counts += c
    assert torch.allclose(counts / draws, m * logW.exp(), atol=0.05)
    assert counts[1, 6] == 0


def test_groups_never_mix():
    res = _run(2, groups=5, resample_threshold=1.0)  # resample every level
    n = len(res.ancestors)
    m = n // 5
    assert res.n_resamplings >= 5 * res.n_levels - 5
    assert torch.equal(res.ancestors // m, torch.arange(n) // m)
    assert res.unique_ancestors == len(torch.unique(res.ancestors)) < n
    assert res.log_z_groups.shape == (5,)


def test_auto_start_picks_the_temperature_of_the_highest_flow_ess():
    x, logq = flow_stand_in(4000, 0, scale=1.3, shift=0.0)  # N(0, 1.69 σ²) is π at kT = 1.69
    e = Quadratic(*SHAPE).energy(x)
    kT_s, table = choose_start_kT(e, logq, 1.0)
    assert kT_s == 1.5 and table[1.5] == max(table.values()) and table[1.0] < table[1.5]
    assert _run(0, kT_start="auto").kT_start == pytest.approx(max(_run(0, kT_start="auto").start_ess,
                                                                  key=_run(0, kT_start="auto").start_ess.get))


def test_non_finite_samples_get_weight_zero_and_are_counted():
    x, logq = flow_stand_in(200, 3)
    logq[:7] = float("nan")
    x[7:10] = float("inf")
    res = smc_refine(x, logq, Quadratic(*SHAPE), 1.0, kT_start=1.2, mcmc_steps=2, final_steps=2, groups=4,
                     generator=torch.Generator().manual_seed(0))
    assert res.n_nonfinite == 10 and math.isfinite(res.log_z) and torch.isfinite(res.energies).all()
    logq[:] = float("nan")
    with pytest.raises(EnergyError, match="no sample with a finite energy"):
        smc_refine(x, logq, Quadratic(*SHAPE), 1.0, kT_start=1.2, groups=4)


@pytest.mark.parametrize("kw, match", [({"kT_start": 0.5}, "below the target kT"), ({"mcmc_steps": -1}, ">= 0"),
                                       ({"target_cess": 1.0}, "target_cess"), ({"groups": 600}, "fewer groups"),
                                       ({"kernel": "nuts"}, "unknown MCMC kernel"),
                                       ({"kernel_options": {"leapfrog_steps": 3}}, "takes no option"),
                                       ({"kernel": "hmc", "kernel_options": {"leapfrog_steps": 0}}, "leapfrog_steps")])
def test_bad_settings_name_the_value_and_the_fix(kw, match):
    with pytest.raises(ConfigError, match=match):
        _run(0, **kw)


def test_a_resumed_run_gives_the_same_result(tmp_path, monkeypatch):
    ck = SMCCheckpoint(tmp_path / "smc.pt")
    full = _run(4, kT_start=2.0)
    real = interrupt_after(monkeypatch, smc, "_reweight", 2)
    with pytest.raises(KeyboardInterrupt):
        _run(4, kT_start=2.0, checkpoint=ck)
    assert ck.path.is_file()
    monkeypatch.setattr(smc, "_reweight", real)
    resumed = _run(4, kT_start=2.0, checkpoint=ck)
    assert not ck.path.exists()
    assert torch.equal(resumed.x, full.x) and resumed.log_z == full.log_z
    assert resumed.n_energy_evals == full.n_energy_evals and repr(resumed.history) == repr(full.history)
