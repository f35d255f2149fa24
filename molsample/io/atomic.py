"""Atomic file writes: write to a temporary file in the target's folder, rename on success.

The temporary file gets the mode a plain ``open(path, "w")`` would give (0666 minus the umask,
e.g. 0644 under umask 022), not ``mkstemp``'s private 0600, so reports and run files can be shared.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    """The process umask (read without changing it where /proc allows, else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_path_for(path: str | os.PathLike, suffix: str = "") -> Path:
    """A new, unique, empty temporary file next to ``path`` (same folder, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
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
