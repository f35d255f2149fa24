"""Ranks and collectives over :mod:`torch.distributed`, for runs started by ``torchrun``.

A run is distributed when ``torchrun`` (or ``molsample ... --nproc K``, which starts it) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Every rank then draws the same global random numbers
(batches, times, base samples) from the same seeded generator and computes only its own
contiguous shard of them; the shards are gathered in rank order. A K-process run therefore
follows the 1-process run with the same seed and global batch, up to the order of floating-point
reductions (docs/distributed.md).

Backends: gloo on CPU, nccl on CUDA. Rank 0 writes every file; the others write nothing.
A collective that fails (a rank died, or waited longer than the timeout) raises
:class:`~molsample.errors.DistributedError`, which names the rank and says how to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist

from molsample.errors import DistributedError

__all__ = ["World", "collective", "current_world", "ddp", "init_world", "launched_by_torchrun", "secondary_rank",
           "shutdown_world", "timeout_s"]

#: seconds a collective waits for the other ranks before it fails (env MOLSAMPLE_DIST_TIMEOUT)
DEFAULT_TIMEOUT_S = 1800.0

RESUME_HINT = ("the run folder keeps the last checkpoint (pretraining step, annealing level, final batch): run the "
               "same command with --resume, with the same or a different number of processes")


def launched_by_torchrun() -> bool:
    """True when the environment of ``torchrun`` (RANK, WORLD_SIZE) is set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def secondary_rank() -> bool:
    """True in a process of a torchrun run other than rank 0 (before or after it joins the group)."""
    return launched_by_torchrun() and os.environ.get("RANK", "0") != "0"


def timeout_s() -> float:
    """The collective timeout in seconds (env ``MOLSAMPLE_DIST_TIMEOUT``, default 1,800)."""
    text = os.environ.get("MOLSAMPLE_DIST_TIMEOUT", "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise DistributedError(f"MOLSAMPLE_DIST_TIMEOUT={text!r} is not a number of seconds; e.g. 600") from None
    if not value > 0:
        raise DistributedError(f"MOLSAMPLE_DIST_TIMEOUT={text!r} must be > 0 seconds")
    return value


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run.

    Attributes:
        rank: 0 … world_size − 1 (rank 0 writes the files).
        world_size: number of processes (1: not distributed).
        backend: ``"gloo"``, ``"nccl"`` or ``"none"`` (one process).
        local_rank: rank on this node (selects the CUDA device).
    """

    rank: int = 0
    world_size: int = 1
    backend: str = "none"
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (the first ``n % world_size`` ranks get one more)."""
        base, extra = divmod(int(n), self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def check_divisible(self, n: int, what: str) -> None:
        """Raise :class:`DistributedError` unless ``n`` splits evenly over the ranks (equal shards keep
        the mean of the ranks' losses equal to the loss of the whole batch)."""
        if n % self.world_size:
            raise DistributedError(f"{what} = {n} does not split evenly over {self.world_size} processes; "
                                   f"use a multiple of {self.world_size} or another number of processes")

    def gather(self, t: torch.Tensor, *, what: str = "samples") -> torch.Tensor:
        """Concatenate every rank's ``t`` (shards of any length along dim 0) in rank order; on all ranks."""
        if not self.distributed:
            return t
        comm = _comm_device(self.backend)
        with collective(self, f"gathering {what}"):
            local = t.detach().to(comm).contiguous()
            n = torch.tensor([local.shape[0]], dtype=torch.int64, device=comm)
            sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
            dist.all_gather(sizes, n)
            counts = [int(s) for s in sizes]
            padded = local.new_zeros((max(counts), *local.shape[1:]))
            padded[: local.shape[0]] = local
            parts = [torch.zeros_like(padded) for _ in range(self.world_size)]
            dist.all_gather(parts, padded)
        return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(t.device)

    def sum(self, value: float) -> float:
        """Σ over ranks of a number (float64), on all ranks."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device(self.backend))
        with collective(self, "summing a statistic"):
            dist.all_reduce(t)
        return float(t)

    def barrier(self, what: str = "waiting for the other processes") -> None:
        """Wait until every rank gets here."""
        if self.distributed:
            with collective(self, what):
                dist.barrier()


_WORLD = World()


def current_world() -> World:
    """The :class:`World` set up by :func:`init_world` (one process when there is none)."""
    return _WORLD


def _comm_device(backend: str) -> torch.device:
    """Where the backend's collectives take their tensors (nccl: this rank's GPU; gloo: the CPU)."""
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_world(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group of ``torchrun`` (once per process) and return ``(world, device)``.

    Without torchrun's environment this is one process (backend ``none``). With it the backend is
    nccl for a CUDA ``device`` (each rank then uses ``cuda:LOCAL_RANK``) and gloo otherwise.
    """
    global _WORLD
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return _WORLD, device
    if dist.is_initialized():
        if _WORLD.local_rank and device.type == "cuda":
            device = torch.device("cuda", _WORLD.local_rank)
        return _WORLD, device
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise DistributedError(f"rank {rank} has LOCAL_RANK {local} but this node has {torch.cuda.device_count()} "
                                   "CUDA device(s); start at most that many processes per node")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, rank=rank, world_size=size,
                                timeout=datetime.timedelta(seconds=timeout_s()))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"rank {rank} could not join the {size}-process group ({backend}): {exc}; check "
                               "MASTER_ADDR/MASTER_PORT (torchrun sets them) and that every rank was started") from exc
    _WORLD = World(rank=rank, world_size=size, backend=backend, local_rank=local)
    return _WORLD, device


def shutdown_world() -> None:
    """Leave the process group (at the end of a command)."""
    global _WORLD
    if dist.is_available() and dist.is_initialized():
        try:  # leave together: a rank that tears down its group while another still uses it can abort
            dist.barrier()
        except Exception:  # noqa: BLE001 - a failed peer: the launcher reports it; just leave
            pass
        dist.destroy_process_group()
    _WORLD = World()


@contextlib.contextmanager
def collective(world: World, what: str) -> Iterator[None]:
    """Turn a failed collective into a :class:`DistributedError` naming the rank and the way to resume."""
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as exc:
        if not world.distributed:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(
            f"rank {world.rank} of {world.world_size} lost the other processes while {what} (one of them "
            f"stopped, or did not answer within {timeout_s():g} s): {first}. {RESUME_HINT}") from exc


def ddp(module: torch.nn.Module, world: World) -> Any:
    """``module`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (itself for one process).

    Gradients are averaged over the ranks in the backward pass; the ranks hold identical weights,
    so buffers are not re-broadcast at every forward.
    """
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    with collective(world, "setting up data-parallel training"):
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                       forward_sync_buffers=False)
