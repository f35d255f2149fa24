"""How many CPU threads torch uses: the cores this process may run on and the default thread count.

Nothing here imports torch, so that the command line sets the threads before torch is loaded.
"""

from __future__ import annotations

import sys

__all__ = ["default_threads", "set_threads", "usable_cores"]


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch threads (None: :func:`default_threads`, unless OMP_NUM_THREADS is set).

    Before torch is imported this only sets OMP_NUM_THREADS (torch reads it at import), so
    ``--help`` stays fast.
    """
    import os

    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return
        threads = default_threads()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def default_threads() -> int:
    """The default number of torch threads: half the usable cores, between 1 and 4.

    Torch's own default (all cores) degrades badly when another process competes for them.
    """
    return max(1, min(4, usable_cores() // 2))


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
