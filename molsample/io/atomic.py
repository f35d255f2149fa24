"""Atomic file writes: write to a temporary file in the target's folder, rename on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temp_path_for(path: str | os.PathLike, suffix: str = "") -> Path:
    """A new, unique, empty temporary file next to ``path`` (same folder, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path; on a clean exit it replaces ``path``, on an exception it is deleted.

    ``suffix`` is appended to the temporary name (e.g. ``".png"`` for writers that pick the
    format from the extension).
    """
    tmp = temp_path_for(path, suffix)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def save_torch_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, models)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
