"""``--nproc K``: run a command as K processes on this machine through torchrun's elastic agent.

``molsample tilt --nproc 2 ...`` is the same as
``torchrun --standalone --nproc-per-node 2 -m molsample tilt ...``: it starts torchrun's elastic
agent (:func:`torch.distributed.launcher.api.elastic_launch`, one node, a local c10d rendezvous, no
restarts) with the command line minus ``--nproc``. Each process gets ``cores // K`` torch
threads unless ``--threads`` or ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Callable

import click

__all__ = ["nproc_option", "launch_if_asked", "strip_nproc", "warn_if_oversubscribed", "worker_command"]


def nproc_option(f: Callable) -> Callable:
    """``--nproc K``: start K processes (data-parallel, torch.distributed) on this machine."""
    return click.option("--nproc", type=click.IntRange(min=1), default=None,
                        help="Run as K processes on this machine (torchrun, gloo on CPU, nccl on CUDA); "
                             "see docs/distributed.md.")(f)


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc K`` / ``--nproc=K``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def worker_command(argv: list[str]) -> list[str]:
    """The command line every process runs: ``python -m molsample argv`` without ``--nproc``."""
    return [sys.executable, "-m", "molsample", *strip_nproc(argv)]


def warn_if_oversubscribed(nproc: int) -> None:
    """Warn when ``--nproc`` asks for more processes than this process may use cores."""
    from molsample.runtime.threads import usable_cores

    cores = usable_cores()
    if nproc > cores:
        click.echo(f"warning: --nproc {nproc} starts more processes than the {cores} usable CPU cores; they will "
                   f"compete for them and run slower than --nproc {cores}", err=True)


def launch_if_asked(nproc: int | None) -> None:
    """With ``nproc``, run this command line again under torchrun as ``nproc`` processes and exit
    with its status; without it (or inside torchrun already) return and run in this process."""
    from molsample.runtime.distributed import RESUME_HINT, launched_by_torchrun

    if nproc is None:
        return
    warn_if_oversubscribed(nproc)
    if launched_by_torchrun():
        raise click.UsageError("--nproc starts torchrun itself; under torchrun, leave it out "
                               "(torchrun's --nproc-per-node sets the number of processes)")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not os.environ.get("OMP_NUM_THREADS") and "--threads" not in sys.argv[1:]:
        from molsample.runtime.threads import usable_cores

        os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // nproc))  # inherited by the processes
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn")
    cmd = worker_command(sys.argv[1:])
    try:
        elastic_launch(config, cmd[0])(*cmd[1:])
    except ChildFailedError as exc:
        failures = ", ".join(f"rank {rank}: exit status {f.exitcode}" for rank, f in sorted(exc.failures.items()))
        click.echo(f"Error: the {nproc}-process run failed ({failures}; its message is above); {RESUME_HINT}",
                   err=True)
        codes = [f.exitcode for f in exc.failures.values() if f.exitcode and f.exitcode > 0]
        sys.exit(codes[0] if codes else 1)
    except KeyboardInterrupt:
        click.echo(f"interrupted; {RESUME_HINT}", err=True)
        sys.exit(130)
    sys.exit(0)
