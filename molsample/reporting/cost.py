"""What a run's effective samples cost: per energy evaluation and per CPU-second, every stage
counted (the base data at the price they had when they were made, even when the run reused them
from a cache), and the amortised price of further samples from the trained model."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from molsample.reporting.run_data import json_attr

__all__ = ["SAMPLER_STAGES", "SamplingCost", "sampling_cost"]

#: stages that make the samples (the reference and the report are ground truth and paperwork)
SAMPLER_STAGES = ("start", "base_data", "pretrain", "tilt", "final")
STAGE_LABELS = {"start": "model loading", "base_data": "base data", "pretrain": "pretraining", "tilt": "tilt",
                "final": "final samples"}


@dataclasses.dataclass
class SamplingCost:
    """The cost of a run's ``effective`` samples (ESS × n).

    Attributes:
        effective: effective samples of the final set (ESS fraction × n).
        n_samples: final samples drawn.
        flow_evals: energy evaluations of the tilt and the final samples (``None``: not recorded).
        base_data: the run file's ``base_data_cost`` (method, n, n_energy_evals, cpu_time_s, …) or ``None``.
        stage_cpu_s: CPU seconds of the sampler stages (:data:`SAMPLER_STAGES`), all ranks, all invocations;
            ``base_data`` and ``pretrain`` are the larger of the stage's own time and what their
            output cost when it was made (``base_data_cost``, ``pretrain_cost``: a run that reused
            cached base data or a pretrained field still pays for them).
    """

    effective: float
    n_samples: int
    flow_evals: int | None
    base_data: dict[str, Any] | None
    stage_cpu_s: dict[str, float]

    @property
    def base_evals(self) -> int | None:
        return None if not self.base_data else self.base_data.get("n_energy_evals")

    def per_1000_evals(self) -> tuple[float, float]:
        """Effective samples per 1,000 energy evaluations: (tilt + final only, with the base data)."""
        flow = 1000.0 * self.effective / self.flow_evals if self.flow_evals else math.nan
        total = (self.flow_evals or 0) + (self.base_evals or 0)
        return flow, (1000.0 * self.effective / total if total and self.base_evals is not None else math.nan)

    @property
    def total_cpu_s(self) -> float:
        return float(sum(self.stage_cpu_s.values()))

    def cpu_per_effective(self) -> tuple[float, float]:
        """CPU seconds per effective sample: (all sampler stages, further samples from the trained model)."""
        if not self.effective > 0:
            return math.nan, math.nan
        final = self.stage_cpu_s.get("final", math.nan)
        return self.total_cpu_s / self.effective, final / self.effective

    def rows(self) -> list[tuple[str, str]]:
        """Display rows ``(label, text)`` for the report's headline."""
        out = []
        b = self.base_data
        if b:
            where = f" at kT0 = {b['kT0']:g}" if b.get("kT0") is not None else ""
            parts = [f"{b.get('n') or 0:,} samples, {b.get('method')}{where}"]
            if b.get("n_energy_evals"):
                parts.append(f"{b['n_energy_evals']:,} energy evaluations")
            if b.get("cpu_time_s") is not None:
                parts.append(f"{b['cpu_time_s']:.4g} CPU-s")
            if b.get("n_effective") is not None:
                parts.append(f"{b['n_effective']:.4g} effective samples")
            out.append(("base data (cost when made)", ", ".join(parts)))
        flow, total = self.per_1000_evals()
        if math.isfinite(flow):
            text = f"{flow:.3g} (tilt + final samples)"
            if math.isfinite(total):
                text += f"; {total:.3g} counting the base data"
            out.append(("effective samples per 1,000 energy evaluations", text))
        all_cpu, further = self.cpu_per_effective()
        if math.isfinite(all_cpu):
            stages = ", ".join(STAGE_LABELS.get(s, s) for s in self.stage_cpu_s)
            if not b and "base_data" in self.stage_cpu_s:
                stages += "; the base data's making cost is not recorded in this run file"
            out.append(("CPU-s per effective sample",
                        f"{all_cpu:.3g} all stages ({stages}); {further:.3g} for further samples from this "
                        f"model ({1e4 * further:,.0f} CPU-s per 10,000 effective samples)"))
        return out

    def to_dict(self) -> dict[str, Any]:
        flow, total = self.per_1000_evals()
        all_cpu, further = self.cpu_per_effective()

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"effective_samples": self.effective, "n_samples": self.n_samples, "flow_energy_evals": self.flow_evals,
                "base_data": self.base_data, "stage_cpu_s": self.stage_cpu_s, "total_cpu_s": self.total_cpu_s,
                "effective_per_1000_evals": num(flow), "effective_per_1000_evals_with_base_data": num(total),
                "cpu_s_per_effective": num(all_cpu), "cpu_s_per_effective_further": num(further)}


def sampling_cost(attrs: dict[str, Any], ess: float, n_samples: int) -> SamplingCost | None:
    """The :class:`SamplingCost` of a tilt run from its run-file root attributes, or ``None`` for a
    run without stage timings (a reference run, an old file)."""
    cpu = json_attr(attrs, "stage_cpu_s")
    if attrs.get("kind") != "tilt" or not isinstance(cpu, dict) or not math.isfinite(ess):
        return None
    base = json_attr(attrs, "base_data_cost")
    stages = {s: float(cpu[s]) for s in SAMPLER_STAGES if cpu.get(s) is not None}
    # a stage that reused a cached output took seconds; count what that output cost when it was made
    for stage, made in (("base_data", base), ("pretrain", json_attr(attrs, "pretrain_cost"))):
        if isinstance(made, dict) and made.get("cpu_time_s") is not None and stage in stages:
            stages[stage] = max(stages[stage], float(made["cpu_time_s"]))
    evals = attrs.get("energy_evals")
    return SamplingCost(effective=float(ess) * n_samples, n_samples=int(n_samples),
                        flow_evals=int(evals) if evals is not None else None,
                        base_data=base if isinstance(base, dict) else None, stage_cpu_s=stages)
