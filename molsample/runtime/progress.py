"""Progress bars that stay quiet in logs.

A bar is shown only when asked for and stderr is a terminal: in a log file (not a TTY) tqdm's
carriage-return updates would add thousands of lines, so bars are off there. A command line that
asked for progress (:func:`log_progress_lines`) instead gets one plain line about every
:data:`LOG_INTERVAL_S` seconds in a log, so a long job is not silent for minutes.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

__all__ = ["LOG_INTERVAL_S", "log_progress_lines", "progress_bar", "show_progress"]

#: Seconds between the plain progress lines written instead of bars when stderr is not a terminal.
LOG_INTERVAL_S = 30.0
_log_lines = False


def show_progress(enabled: bool = True) -> bool:
    """Whether to draw bars: ``enabled`` and stderr is an interactive terminal."""
    stream = sys.stderr
    return bool(enabled) and hasattr(stream, "isatty") and stream.isatty()


def log_progress_lines(enabled: bool) -> None:
    """Write plain progress lines (about every :data:`LOG_INTERVAL_S` s, rank 0 only) for the bars that
    are off because stderr is not a terminal. The CLI turns this on unless ``--no-progress``."""
    global _log_lines
    _log_lines = bool(enabled)


def _plain_lines_wanted() -> bool:
    return _log_lines and not show_progress(True) and os.environ.get("RANK", "0") == "0"


def _plain_progress(iterable: Iterable | None, **kwargs: Any):
    """A tqdm whose display is one plain line, written once :data:`LOG_INTERVAL_S` s have passed
    since the start and then at most every :data:`LOG_INTERVAL_S` s (nothing for short loops)."""
    import io

    from tqdm.std import tqdm

    out = sys.stderr

    class PlainProgress(tqdm):
        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            start = getattr(self, "start_t", None)  # tqdm displays once inside __init__, before start_t exists
            if start is None or self.n == 0:
                return True
            now = self._time()
            if now - getattr(self, "_last_line", start) >= LOG_INTERVAL_S:  # set_postfix refreshes more often
                self._last_line = now
                out.write(f"progress: {self.__str__().strip()}\n")
                out.flush()
            return True

    # tqdm's own writes (carriage returns, the newline at close) go nowhere; display() writes the lines
    kwargs.update(mininterval=LOG_INTERVAL_S, file=io.StringIO(), ascii=True, ncols=80)
    return PlainProgress(iterable, **kwargs)


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A ``tqdm`` bar (``mininterval`` 0.5 s) that is disabled unless :func:`show_progress`; in a log
    file, plain lines instead when :func:`log_progress_lines` is on."""
    from tqdm.auto import tqdm

    if not show_progress(enabled) and _plain_lines_wanted():
        return _plain_progress(iterable, **kwargs)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, disable=not show_progress(enabled), **kwargs)
