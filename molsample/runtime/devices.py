"""The one place that turns a device name into a :class:`torch.device`."""

from __future__ import annotations

import torch

from molsample.errors import PlatformError

__all__ = ["DEVICE_CHOICES", "resolve_device"]

#: device names offered by the command line (``cuda:N`` is accepted too)
DEVICE_CHOICES = ("cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """A torch device from ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        PlatformError: an unknown name, CUDA requested but absent, or a CUDA index out of range.
    """
    name = str(name).strip().lower()
    if not (name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise PlatformError(f"unknown device {name!r}; use cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PlatformError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}, "
                            f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise PlatformError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                            "use cuda:0 or cpu")
    return device
