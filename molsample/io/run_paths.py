"""Where a run's file is: a run folder, a run file, or a run name under ``./runs/``."""

from __future__ import annotations

import os
from pathlib import Path

from molsample.errors import MissingFileError

#: File name of the run file inside a run folder.
RUN_FILE_NAME = "samples.h5"
#: Files a started ``molsample tilt`` job leaves in its run folder before ``samples.h5`` exists.
RUN_STARTED_MARKERS = ("config.toml", "checkpoints", "base_data.pt", "pretrained.pt", "model.pt", "timings.json")


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
        if any((p / name).exists() for name in RUN_STARTED_MARKERS):
            raise MissingFileError(
                f"run folder {p} has no {RUN_FILE_NAME}; the run did not finish writing samples — continue it "
                f"with `molsample tilt ... --resume --out {p}` or pass the .h5 file itself"
            )
        raise MissingFileError(
            f"{p} holds no run (no {RUN_FILE_NAME}, no checkpoints); pass a run folder written by "
            f"`molsample tilt` (e.g. runs/lj13-itm-default) or a run file (.h5)"
        )
    raise MissingFileError(
        f"run {p} does not exist; pass a run folder such as runs/lj13-tilt/ or its {RUN_FILE_NAME}"
    )


def run_model_path(run_file: str | os.PathLike) -> Path:
    """The tilted model (``model.pt``) beside a run file, for drawing more samples from the run.

    Raises:
        MissingFileError: the run folder has no ``model.pt``; the message says how to get one.
    """
    run_file = Path(run_file)
    model = run_file.parent / "model.pt"
    if not model.is_file():
        folder = run_file.parent
        raise MissingFileError(
            f"run {folder} has no tilted model ({model} is missing); finish or redo the run with "
            f"`molsample tilt ... --resume --out {folder}`, or copy the run's model.pt into {folder}"
        )
    return model
