"""Where a run's file is: a run folder, a run file, or a run name under ``./runs/``."""

from __future__ import annotations

import os
from pathlib import Path

from molsample.errors import MissingFileError

#: File name of the run file inside a run folder.
RUN_FILE_NAME = "samples.h5"


def resolve_run_path(path_or_dir: str | os.PathLike) -> Path:
    """The run file for a run folder (``runs/<run>/`` → ``runs/<run>/samples.h5``), a file path, or a
    bare run name found under ``./runs/``."""
    p = Path(path_or_dir)
    candidates = [p / RUN_FILE_NAME if p.is_dir() else p]
    if not p.exists() and not p.is_absolute() and len(p.parts) == 1:
        candidates.append(Path("runs") / p / RUN_FILE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    if p.is_dir():
        raise MissingFileError(
            f"run folder {p} has no {RUN_FILE_NAME}; the run did not finish writing samples — re-run it "
            "(e.g. `molsample tilt ...`) or pass the .h5 file itself"
        )
    raise MissingFileError(
        f"run {p} does not exist; pass a run folder such as runs/lj13-tilt/ or its {RUN_FILE_NAME}"
    )
