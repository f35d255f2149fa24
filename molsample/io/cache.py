"""One cache helper for every stage: a digest of the settings and an atomic save/load keyed by it.

A cached file holds ``{"key": digest, **payload}``; :func:`load_cached` returns the payload only
when the stored key equals the wanted one, so a file written with other settings is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from molsample.io.atomic import save_torch_atomic

__all__ = ["digest", "load_cached", "save_cached"]


def digest(obj: Any, length: int = 16) -> str:
    """Hex digest (``length`` characters) of ``obj`` as sorted-key JSON (non-JSON values via ``str``)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def save_cached(path: str | os.PathLike, key: str, payload: dict[str, Any]) -> Path:
    """Write ``{"key": key, **payload}`` to ``path`` atomically (torch format); returns the path."""
    path = Path(path)
    save_torch_atomic({"key": key, **payload}, path)
    return path


def load_cached(path: str | os.PathLike, key: str, *, map_location: Any = None) -> dict[str, Any] | None:
    """The payload stored at ``path`` under ``key``, or ``None`` when the file is absent, unreadable
    or was written with another key."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location=map_location, weights_only=False)
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    return blob
