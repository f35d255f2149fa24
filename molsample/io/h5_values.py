"""Values into and out of HDF5: arrays (numpy or torch) to numpy, stored attributes to plain Python."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plain_attr", "to_numpy"]


def to_numpy(a: Any, dtype: Any = None) -> np.ndarray:
    """A numpy array of ``a`` (a torch tensor is detached and moved to the CPU first)."""
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def plain_attr(v: Any) -> Any:
    """h5py attribute value → plain Python value."""
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return [plain_attr(e) for e in v.tolist()] if v.dtype.kind in "OS" else v.tolist()
    return v
