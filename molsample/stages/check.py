"""``molsample check``: the solver gap of a finished run's log q, written as run-file attributes ``check_*``.

Reads the run file's samples (``/coordinates``, ``/logq``, ``/logw``; ``/internal_coordinates`` for a
flow in internal coordinates), the run's solver (``[final] ode_method``/``ode_steps`` of its config)
and ``model.pt``, then (:mod:`molsample.flows.solver_check`):

* recomputes log q of a subset of the samples with a finer solver: the shift fine − stored, and
  what it does to log Ẑ and the ESS on the subset;
* for a handful of fresh base samples (flows of at most
  :data:`~molsample.flows.solver_check.MAX_JACOBIAN_DIM` coordinates), the exact log-density of the
  discrete solver map against the solver's own log q.

Every check happens and every number is computed before the one atomic write of the attributes, so
an error leaves the run file as it was.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from molsample.errors import ConfigError, RunFileError
from molsample.flows.ode import SOLVERS
from molsample.flows.solver_check import MAX_JACOBIAN_DIM, discrete_gap, fine_log_q, shifted_summaries
from molsample.io.hdf5 import RunFile
from molsample.io.run_paths import resolve_run_path, run_model_path

__all__ = ["SolverCheck", "check_run", "check_summary"]


@dataclass
class SolverCheck:
    """What ``molsample check`` measured (nats; ``discrete_*`` NaN when the check was skipped).

    Attributes:
        method, steps: the run's solver; fine_method, fine_steps: the finer one.
        n: samples of the subset; shift_mean, shift_std: log q fine − stored over them.
        log_z_stored, log_z_fine, ess_stored, ess_fine: log Ẑ and ESS of the subset, stored and
            with the fine log q; log_z_shift: their difference.
        discrete_n, discrete_gap_mean, discrete_gap_std: log q_solver − log q_discrete on fresh base samples.
    """

    method: str
    steps: int
    fine_method: str
    fine_steps: int
    n: int
    shift_mean: float
    shift_std: float
    log_z_stored: float
    log_z_fine: float
    log_z_shift: float
    ess_stored: float
    ess_fine: float
    discrete_n: int
    discrete_gap_mean: float
    discrete_gap_std: float

    def attrs(self) -> dict[str, float | int | str]:
        """The run-file attributes: every field as ``check_<field>``."""
        return {f"check_{k}": v for k, v in asdict(self).items()}


def _run_solver(config: dict) -> tuple[str, int]:
    """The solver of the run's final samples (the ``[final]`` defaults for configs without one)."""
    from molsample.stages.config import FinalConfig

    fin = config.get("final", {}) if isinstance(config, dict) else {}
    return str(fin.get("ode_method", FinalConfig.ode_method)), int(fin.get("ode_steps", FinalConfig.ode_steps))


def _read(path: Path, n: int) -> tuple[dict, dict, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run config, attrs, the first ``n`` samples with a finite log q: (x, logq, logw) or their z."""
    with RunFile(path, "r") as rf:
        if "samples" not in rf.sample_sets():
            raise RunFileError(f"run file {path} has no flow samples; run `molsample tilt` or `molsample sample` first")
        s = rf.read_samples()
        attrs, config = dict(rf.attrs), rf.read_config()
        z = rf.read_array("internal_coordinates") if "internal_coordinates" in rf else None
    if s["logq"] is None or s["logw"] is None or len(s["x"]) == 0:
        raise RunFileError(f"run file {path} has no flow samples with /logq and /logw; draw some with "
                           f"`molsample sample {path.parent} --n 1000`")
    keep = np.flatnonzero(np.isfinite(s["logq"]))[:n]
    if len(keep) < 2:
        raise RunFileError(f"run file {path} has {len(keep)} samples with a finite log q; the check needs 2 or more")
    x = torch.as_tensor(s["x"][keep] if z is None else z[keep], dtype=torch.float64)
    return config, attrs, x, torch.as_tensor(s["logq"][keep]), torch.as_tensor(s["logw"][keep])


def check_run(run: str | Path, *, n: int = 200, discrete: int = 8, fine_method: str = "rk4",
              fine_steps: int | None = None, seed: int = 0) -> tuple[SolverCheck, Path]:
    """Measure the solver gap of ``run`` and store it as the run file's attributes ``check_*``.

    Args:
        n: samples whose log q is recomputed (the first ``n`` with a finite log q).
        discrete: fresh base samples for the discrete-map gap (0 skips it; skipped too for flows of
            more than :data:`~molsample.flows.solver_check.MAX_JACOBIAN_DIM` coordinates).
        fine_method, fine_steps: the finer solver (steps default: twice the run's, at least 20).
        seed: of the fresh base samples.
    Returns ``(check, run file path)``.
    """
    from molsample.flows.flow import load_flow
    from molsample.systems.cards import load_system

    if n < 2 or discrete < 0:
        raise ConfigError(f"--n {n} / --discrete {discrete}: the check needs n >= 2 and discrete >= 0, e.g. --n 200")
    if fine_method not in SOLVERS:
        raise ConfigError(f"--fine-method {fine_method!r}; choose one of {', '.join(SOLVERS)}")
    path = resolve_run_path(run)
    model = run_model_path(path)
    config, attrs, z, logq_x, logw = _read(path, n)
    if attrs.get("system") is None:
        raise RunFileError(f"run file {path} does not name its system (root attribute 'system')")
    system = load_system(str(attrs["system"]))
    method, steps = _run_solver(config)
    fine_steps = int(fine_steps) if fine_steps is not None else max(2 * steps, 20)
    if fine_steps < 1:
        raise ConfigError(f"--fine-steps {fine_steps}: must be >= 1, e.g. --fine-steps {max(2 * steps, 20)}")
    flow, _ = load_flow(model, system, base_table=(config.get("base") or None))
    flow.field.to(torch.float64)
    if not flow.transform.is_identity:
        z = z.reshape(len(z), *flow.transform.event_shape)
    logdet = flow.transform.forward(z)[1].double()  # /logq = log q(z) − log|det J(z)|
    stored = logq_x.double() + logdet
    shift = fine_log_q(flow.field, flow.base, z, method=fine_method, steps=fine_steps) - stored
    before, after = shifted_summaries(logw, shift)
    dim = math.prod(flow.base.event_shape)
    gap = None
    if discrete > 0 and dim <= MAX_JACOBIAN_DIM and method in ("euler", "midpoint", "rk4"):
        gap = discrete_gap(flow.field, flow.base, discrete, method=method, steps=steps,
                           generator=torch.Generator().manual_seed(seed))
    check = SolverCheck(method=method, steps=steps, fine_method=fine_method, fine_steps=fine_steps, n=len(shift),
                        shift_mean=float(shift.mean()), shift_std=float(shift.std(correction=1)),
                        log_z_stored=before.log_z, log_z_fine=after.log_z, log_z_shift=after.log_z - before.log_z,
                        ess_stored=before.ess, ess_fine=after.ess, discrete_n=0 if gap is None else len(gap.gap),
                        discrete_gap_mean=math.nan if gap is None else gap.mean,
                        discrete_gap_std=math.nan if gap is None else gap.std)
    with RunFile(path, "a") as rf:
        rf.set_attrs(**check.attrs())
    return check, path


def check_summary(c: SolverCheck, path: Path) -> list[str]:
    """The lines ``molsample check`` prints."""
    lines = [
        f"solver        {c.method} × {c.steps} (the run's), checked against {c.fine_method} × {c.fine_steps}",
        f"log q shift   {c.shift_mean:+.4f} ± {c.shift_std:.4f} (fine − stored, mean ± sd over {c.n} samples)",
        f"log Z subset  {c.log_z_stored:.4f} stored → {c.log_z_fine:.4f} fine (shift {c.log_z_shift:+.4f})",
        f"ESS subset    {c.ess_stored:.4f} stored → {c.ess_fine:.4f} fine",
    ]
    if c.discrete_n:
        lines.append(f"discrete map  gap {c.discrete_gap_mean:+.4f} ± {c.discrete_gap_std:.4f} (log q_solver − exact "
                     f"log-density of the {c.method} × {c.steps} map, {c.discrete_n} fresh samples): a bias of every "
                     "log-weight that the standard error does not cover")
    else:
        lines.append("discrete map  not checked (over 100 coordinates, an adaptive solver, or --discrete 0)")
    lines.append(f"wrote the attributes check_* to {path}")
    return lines
