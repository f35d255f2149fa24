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

from molsample.errors import OutputError

__all__ = ["atomic_path", "check_writable", "save_torch_atomic", "temp_path_for", "write_text_atomic"]


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


def check_writable(path: str | os.PathLike, option: str = "--out") -> Path:
    """Fail early when ``path`` (a file or folder still to be written) cannot be written.

    The nearest existing folder on the way to ``path`` must allow creating files (atomic writes
    rename a temporary file there), and an existing ``path`` must itself be writable. Returns ``path``.

    Raises:
        OutputError: a permission, a read-only file system, or a regular file where a folder is
            needed; the message names the path and ``option``.
    """
    path = Path(path)
    fix = f"choose another {option}"
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir() and probe != path:
        raise OutputError(f"cannot write to {path}: {probe} is a file, not a folder; {fix}")
    folder = probe if probe.is_dir() else probe.parent
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write to {path}: permission denied; {fix}")
    return path
