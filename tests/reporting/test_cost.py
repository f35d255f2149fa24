"""The cost of a run's effective samples from its run-file attributes, by hand: which stages count,
the making cost of reused outputs, and what is unknown (NaN in numbers, None in summary.json, absent
rows) when evaluations, base data or effective samples are missing. (The report's use of it is in
test_report.py.)"""

from __future__ import annotations

import json
import math

import pytest

from molsample.reporting.cost import SAMPLER_STAGES, SamplingCost, sampling_cost

STAGES = {"start": 0.5, "base_data": 0.2, "pretrain": 40.0, "tilt": 50.0, "final": 8.0, "refine": 30.0,
          "reference": 7.0, "report": 2.0}


def attrs(**extra) -> dict:
    out = {"kind": "tilt", "energy_evals": 2000, "stage_cpu_s": json.dumps(STAGES)}
    out.update(extra)
    return out


def test_only_the_sampler_stages_count():
    cost = sampling_cost(attrs(), ess=0.5, n_samples=400)
    assert set(cost.stage_cpu_s) == set(SAMPLER_STAGES) == {"start", "base_data", "pretrain", "tilt", "final"}
    assert cost.total_cpu_s == pytest.approx(0.5 + 0.2 + 40.0 + 50.0 + 8.0)
    assert cost.effective == 200.0 and cost.n_samples == 400 and cost.flow_evals == 2000
    assert cost.per_1000_evals()[0] == pytest.approx(100.0)  # 200 effective per 2000 evaluations
    assert cost.cpu_per_effective() == pytest.approx((98.7 / 200, 8.0 / 200))


@pytest.mark.parametrize("made, expected", [(25.0, 25.0), (0.1, 0.2)], ids=["reused", "made-here"])
def test_a_reused_output_counts_at_the_larger_of_its_making_and_loading_cost(made, expected):
    base = {"method": "mala", "n": 500, "n_energy_evals": 6000, "cpu_time_s": made, "kT0": 1.25}
    pre = {"steps": 100, "cpu_time_s": 2 * made}
    cost = sampling_cost(attrs(base_data_cost=json.dumps(base), pretrain_cost=json.dumps(pre)), 0.5, 400)
    assert cost.stage_cpu_s["base_data"] == pytest.approx(expected)
    assert cost.stage_cpu_s["pretrain"] == pytest.approx(max(40.0, 2 * made))
    assert cost.base_evals == 6000
    # with the base data's evaluations: 200 effective per 8000 evaluations
    assert cost.per_1000_evals() == pytest.approx((100.0, 25.0))


def test_a_stage_the_run_did_not_time_is_not_added_from_its_making_cost():
    cpu = {k: v for k, v in STAGES.items() if k != "base_data"}
    base = {"n": 500, "n_energy_evals": 6000, "cpu_time_s": 25.0}
    cost = sampling_cost(attrs(stage_cpu_s=json.dumps(cpu), base_data_cost=json.dumps(base)), 0.5, 400)
    assert "base_data" not in cost.stage_cpu_s


@pytest.mark.parametrize("bad", [
    {"kind": "reference"},
    {"stage_cpu_s": None},
    {"stage_cpu_s": "{not json"},
    {"stage_cpu_s": json.dumps([1.0, 2.0])},
], ids=["not-a-tilt-run", "no-timings", "broken-json", "not-a-table"])
def test_runs_without_stage_timings_have_no_cost(bad):
    a = attrs(**bad)
    if a["stage_cpu_s"] is None:
        del a["stage_cpu_s"]
    assert sampling_cost(a, 0.5, 400) is None


def test_a_non_finite_ess_has_no_cost():
    assert sampling_cost(attrs(), math.nan, 400) is None


def test_unknown_numbers_are_nan_and_none_in_the_summary():
    cost = SamplingCost(effective=0.0, n_samples=100, flow_evals=None, base_data=None, stage_cpu_s={"final": 3.0})
    assert all(math.isnan(v) for v in cost.per_1000_evals() + cost.cpu_per_effective())
    d = cost.to_dict()
    for key in ("effective_per_1000_evals", "effective_per_1000_evals_with_base_data", "cpu_s_per_effective",
                "cpu_s_per_effective_further"):
        assert d[key] is None
    json.dumps(d)  # summary.json takes it as it is
    assert cost.rows() == []


def test_the_base_data_evaluations_count_only_when_known():
    cost = SamplingCost(effective=50.0, n_samples=100, flow_evals=500, base_data=None,
                        stage_cpu_s={"base_data": 1.0, "final": 4.0})
    flow, total = cost.per_1000_evals()
    assert flow == pytest.approx(100.0) and math.isnan(total)
    rows = dict(cost.rows())
    assert rows["effective samples per 1,000 energy evaluations"] == "100 (tilt + final samples)"
    assert "the base data's making cost is not recorded" in rows["CPU-s per effective sample"]
    assert rows["CPU-s per effective sample"].startswith("0.1 all stages (base data, final samples")
    assert "0.08 for further samples from this model (800 CPU-s per 10,000 effective samples)" in \
        rows["CPU-s per effective sample"]


def test_the_rows_describe_the_base_data_at_their_making_cost():
    base = {"method": "pt", "n": 1024, "n_energy_evals": 123456, "cpu_time_s": 12.345678, "n_effective": 300.0,
            "kT0": 1.25}
    cost = SamplingCost(effective=20.0, n_samples=40, flow_evals=1000, base_data=base, stage_cpu_s={"final": 2.0})
    rows = dict(cost.rows())
    assert rows["base data (cost when made)"] == ("1,024 samples, pt at kT0 = 1.25, 123,456 energy evaluations, "
                                                  "12.35 CPU-s, 300 effective samples")
    assert rows["effective samples per 1,000 energy evaluations"] == \
        f"20 (tilt + final samples); {1000 * 20 / 124456:.3g} counting the base data"
