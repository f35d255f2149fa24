"""What ``molsample tilt`` prints at the end."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from molsample.flows.diagnostics import weight_diagnostics
from molsample.stages.context import RunContext
from molsample.stages.refine import refine_rows

__all__ = ["RunSummary", "summarize_run"]


@dataclasses.dataclass
class RunSummary:
    """The end-of-run numbers; :meth:`lines` formats them.

    ``extra`` holds further ``(label, text)`` rows (e.g. mean reward and sliced-W of reward-mode
    runs); ``warnings`` lines (the degenerate-weights diagnostics of
    :func:`~molsample.flows.diagnostics.weight_diagnostics`) are printed last, each prefixed
    ``warning:``; ``log_z_text`` replaces the ``log Z ± se`` row (it drops the ± se when the ESS
    is a handful of samples).
    """

    run_dir: Path
    system: str
    method: str
    mode: str
    n_samples: int
    ess: float
    log_z: float
    log_z_se: float
    mean_energy: float
    energy_unit: str
    n_nonfinite: int
    levels: int
    energy_evals: int
    wall_time_s: float
    n_dropped: int = 0
    cpu_time_s: float = math.nan
    extra: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    log_z_text: str = ""

    def lines(self) -> list[str]:
        out = [
            f"run           {self.run_dir}",
            f"system        {self.system} ({self.mode} tilt, {self.method}, {self.levels} levels)",
            f"samples       {self.n_samples} ({self.n_nonfinite} with non-finite energy or log q, weight 0"
            + (f"; {self.n_dropped} mirror images, weight 0)" if self.n_dropped else ")"),
            f"ESS           {self.ess:.4f} ({self.ess * self.n_samples:.0f} effective samples)",
            f"log Z         {self.log_z_text or f'{self.log_z:.4f} ± {self.log_z_se:.4f}'}",
            f"mean energy   {self.mean_energy:.4f} {self.energy_unit} (reweighted)",
        ]
        out += [f"{label:<13} {text}" for label, text in self.extra]
        out += [f"energy evals  {self.energy_evals}",
                f"wall time     {self.wall_time_s:.1f} s" + ("" if math.isnan(self.cpu_time_s)
                                                              else f" (CPU {self.cpu_time_s:.1f} s)")]
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _reward_rows(ctx: RunContext) -> list[tuple[str, str]]:
    """Mean raw reward of the flow samples and, with reference samples, their sliced-W distance."""
    reward, ws = ctx.reward, ctx.samples
    if reward is None or reward.mode != "reward" or reward.fn is None:
        return []
    x = ws.x.double().cpu()
    with torch.no_grad():
        r = reward.fn(x)
    rows = [("mean reward", f"{float(r[torch.isfinite(r)].mean()):.4f} (flow samples, unweighted)")]
    ref = ctx.reference_x
    if ref is not None:
        from molsample.analysis.metrics import sliced_wasserstein

        rows.append(("sliced-W", f"{sliced_wasserstein(x, torch.as_tensor(ref).double()):.4f} "
                                 "(flow samples vs reference, 128 projections)"))
    return rows


def summarize_run(ctx: RunContext) -> RunSummary:
    """The :class:`RunSummary` of a finished run context."""
    ws = ctx.samples
    w = torch.softmax(ws.logw, 0)
    finite = torch.isfinite(ws.energy)
    mean_e = float((w[finite] * ws.energy[finite]).sum()) if finite.any() else math.nan
    t = ctx.timings
    diag = weight_diagnostics(ws.logw)
    return RunSummary(
        run_dir=ctx.run_dir, system=ctx.system.name, mode=ctx.mode,
        method=f"reused {ctx.cfg.start.model}" if ctx.cfg.start.model else ctx.cfg.tilt.method,
        n_samples=len(ws.logw), ess=ws.summary.ess, log_z=ws.summary.log_z, log_z_se=ws.summary.log_z_se,
        mean_energy=mean_e, energy_unit=ctx.system.energy_unit, n_nonfinite=ctx.n_nonfinite,
        n_dropped=int(ctx.chirality.get("chirality_dropped", 0)), levels=ctx.levels,
        energy_evals=ctx.reward.n_energy_evals, wall_time_s=t.total_wall_s if t else math.nan,
        cpu_time_s=t.total_cpu_s if t else math.nan,
        extra=_reward_rows(ctx) + refine_rows(ctx.refine),
        warnings=diag.warnings(), log_z_text=diag.log_z_text(),
    )
