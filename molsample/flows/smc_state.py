"""The state of an SMC run (:mod:`molsample.flows.smc`) and its per-level checkpoint."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from molsample.errors import RunFileError
from molsample.io.atomic import save_torch_atomic

__all__ = ["SMCCheckpoint", "SMCState", "read_checkpoint", "write_checkpoint"]


@dataclass
class SMCState:
    """Everything that changes from level to level.

    Attributes:
        x, e, f: ``(n, P, d)`` particles, ``(n,)`` energies, ``(n, P, d)`` forces.
        logW: ``(G, m)`` log-weights normalized within each group.
        log_z: ``(G,)`` each group's running log Ẑ_g.
        anc: ``(n,)`` index of each particle's initial flow sample.
        h: ``(G,)`` step size of each group.
        beta: current inverse temperature; cess: conditional ESS of the last reweighting (NaN at the start).
        history: per-level lists (see :class:`~molsample.flows.smc.SMCResult`).
        n_resamplings, n_evals: counters; cpu_s: CPU seconds of earlier invocations (resume).
        meta: start settings (kT_start, start_ess, n_nonfinite, warnings).
    """

    x: Tensor
    e: Tensor
    f: Tensor
    logW: Tensor
    log_z: Tensor
    anc: Tensor
    h: Tensor
    beta: float
    cess: float = float("nan")
    history: dict[str, list[float]] = field(default_factory=dict)
    n_resamplings: int = 0
    n_evals: int = 0
    cpu_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SMCCheckpoint:
    """Where :func:`~molsample.flows.smc.smc_refine` saves its state after every level.

    ``path`` is written atomically; a call with the same inputs and settings resumes from it, drawing
    the same random numbers as an uninterrupted run; it is deleted when the run completes.
    """

    path: str | os.PathLike


def write_checkpoint(ckpt: SMCCheckpoint | None, key: dict, state: SMCState,
                     generator: torch.Generator | None) -> None:
    """Save ``state`` (with the generator's state and ``key``) to ``ckpt.path`` atomically (its folder
    is created when missing)."""
    if ckpt is None:
        return
    Path(ckpt.path).parent.mkdir(parents=True, exist_ok=True)
    rng = generator.get_state() if generator is not None else None
    save_torch_atomic({"key": key, "state": asdict(state), "rng": rng}, Path(ckpt.path))


def read_checkpoint(ckpt: SMCCheckpoint | None, key: dict, generator: torch.Generator | None) -> SMCState | None:
    """The saved state when ``ckpt.path`` exists and was written with the same ``key``, else ``None``.

    Restores the generator's state. A damaged checkpoint raises :class:`RunFileError`.
    """
    if ckpt is None or not Path(ckpt.path).is_file():
        return None
    try:
        blob = torch.load(Path(ckpt.path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise RunFileError(f"SMC checkpoint {ckpt.path} cannot be read ({type(exc).__name__}); delete it to "
                           "start over") from None
    if blob.get("key") != key:
        return None
    if generator is not None and blob.get("rng") is not None:
        generator.set_state(blob["rng"])
    return SMCState(**blob["state"])
