"""Weight diagnostics: closed forms on hand-made weights, the degenerate verdict and the ESS curve."""

import json
import math

import numpy as np
import pytest
import torch

from molsample.flows.diagnostics import MIN_EFFECTIVE_SAMPLES, ess_curve, weight_diagnostics
from molsample.flows.weights import ess, normalized_weights


def test_equal_weights_are_healthy():
    d = weight_diagnostics(torch.zeros(200))
    assert d.ess == pytest.approx(1.0) and d.ess_samples == pytest.approx(200)
    assert d.max_share == pytest.approx(1 / 200) and d.n_half == 100
    assert not d.degenerate and d.warnings() == [] and d.log_z_reliable
    assert d.log_z == pytest.approx(0.0) and "±" in d.log_z_text()


def test_one_dominant_sample_is_degenerate_and_log_z_is_not_precise():
    logw = torch.full((256,), -50.0)
    logw[17] = 0.0
    d = weight_diagnostics(logw)
    assert d.ess_samples == pytest.approx(1.0, rel=1e-6) and d.n_half == 1
    assert d.max_share == pytest.approx(1.0, rel=1e-6) and d.degenerate and not d.log_z_reliable
    text = d.log_z_text()
    assert "unreliable: 1 effective sample)" in text and "±" not in text
    w = d.warnings()
    assert w[0].startswith("DEGENERATE WEIGHTS") and "1 effective sample of 256" in w[0]
    assert "carries 100.0% of the total; 1 sample carries half" in w[1]


def test_known_two_level_weights():
    # 10 samples of weight 4 and 90 of weight 1: Σw = 130, Σw² = 250, ESS count = 130²/250 = 67.6
    logw = np.log(np.r_[np.full(10, 4.0), np.ones(90)])
    d = weight_diagnostics(logw)
    assert d.ess_samples == pytest.approx(67.6) and d.ess == pytest.approx(0.676)
    assert d.max_share == pytest.approx(4 / 130)
    # half of 130 is 65: the 10 heavy samples give 40, then 25 light ones: 35 samples
    assert d.n_half == 35
    assert not d.degenerate  # 67.6 >= 50, share 3 % < 10 %
    assert d.ess == pytest.approx(ess(torch.as_tensor(logw)))


def test_thresholds_each_trigger():
    assert weight_diagnostics(torch.zeros(MIN_EFFECTIVE_SAMPLES - 1)).degenerate  # too few effective samples
    logw = torch.zeros(100_000)
    logw[:500] = 10.0  # ~500 effective samples of 100,000: ESS fraction 0.005 < 0.01
    assert weight_diagnostics(logw).degenerate
    logw = torch.zeros(1000)
    logw[0] = math.log(200.0)  # share 200/1199 = 17 % > 10 %, ESS count 1199²/40999 = 35 ... also low
    assert weight_diagnostics(logw).max_share == pytest.approx(200 / 1199)


def test_non_finite_weights_are_counted_and_all_zero_is_loud():
    logw = torch.tensor([0.0, float("nan"), float("inf"), -float("inf")] + [0.0] * 60)
    d = weight_diagnostics(logw)
    assert d.n_nonfinite == 3 and d.ess_samples == pytest.approx(61)
    assert any("3 of 64 samples have a non-finite" in w for w in d.warnings())
    bad = weight_diagnostics(torch.full((5,), float("nan")))
    assert bad.degenerate and bad.ess == 0.0 and "all 5 log-weights are non-finite" in bad.warnings()[0]
    assert "undefined" in bad.log_z_text()
    json.dumps(bad.to_dict(), allow_nan=False)  # JSON-safe


def test_to_dict_uses_machine_keys():
    d = weight_diagnostics(torch.zeros(100)).to_dict()
    assert {"ess", "ess_samples", "log_z", "log_z_se", "max_weight_share", "n_half_weight", "degenerate"} <= set(d)
    assert isinstance(d["log_z"], float) and d["degenerate"] is False


def test_ess_curve_matches_prefix_ess_and_survives_huge_log_weights():
    g = torch.Generator().manual_seed(0)
    logw = 1e4 + 3 * torch.randn(300, generator=g, dtype=torch.float64)
    curve = ess_curve(logw)
    for k in (1, 2, 17, 300):
        assert curve[k - 1] == pytest.approx(k * ess(logw[:k]), rel=1e-9)
    assert curve[0] == pytest.approx(1.0)
    lead = torch.tensor([-float("inf"), -float("inf"), 0.0, 0.0])
    assert ess_curve(lead).tolist() == pytest.approx([0.0, 0.0, 1.0, 2.0])


def test_normalized_weights_sum_to_one_and_reject_all_zero():
    w = normalized_weights(np.array([0.0, np.log(3.0), np.nan]))
    assert w.tolist() == pytest.approx([0.25, 0.75, 0.0])
    from molsample.errors import EnergyError

    with pytest.raises(EnergyError, match="non-finite"):
        normalized_weights(torch.full((3,), float("nan")))
