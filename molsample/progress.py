"""Progress bars that stay quiet in logs.

A bar is shown only when asked for and stderr is a terminal: in a log file (not a TTY) tqdm's
carriage-return updates would add thousands of lines, so bars are off there.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

__all__ = ["progress_bar", "show_progress"]


def show_progress(enabled: bool = True) -> bool:
    """Whether to draw bars: ``enabled`` and stderr is an interactive terminal."""
    stream = sys.stderr
    return bool(enabled) and hasattr(stream, "isatty") and stream.isatty()


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A ``tqdm`` bar (``mininterval`` 0.5 s) that is disabled unless :func:`show_progress`."""
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, disable=not show_progress(enabled), **kwargs)
