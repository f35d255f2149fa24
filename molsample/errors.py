"""User-facing exceptions.

Every error that a user can cause (a bad system name, a malformed card, a wrong tensor
shape, a missing file) raises one of these. The message names the bad value and the fix.
The CLI prints them without a traceback and exits with status 2.
"""

from __future__ import annotations


class MolsampleError(Exception):
    """Base class of all molsample user errors."""


class UnknownSystemError(MolsampleError, KeyError):
    """A system name that is neither a known card nor a path to a card file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(MolsampleError, ValueError):
    """A malformed TOML file, a missing key or a value of the wrong type/range."""


class ShapeError(MolsampleError, ValueError):
    """A tensor whose shape does not match the system (batch, n_particles, dim)."""


class MissingFileError(MolsampleError, FileNotFoundError):
    """A file that a card, a run or a command needs does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OutputError(MolsampleError, PermissionError):
    """An output file or folder that cannot be written (permissions, a read-only disk, a file in the way)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EnergyError(MolsampleError, ValueError):
    """Non-finite energies or overlapping atoms where finite values are required."""


class PlatformError(MolsampleError, ValueError):
    """An OpenMM platform or torch device that is not available on this machine."""


class RunFileError(MolsampleError, ValueError):
    """A run file that is truncated, foreign or of an unknown schema version."""


class DistributedError(MolsampleError, RuntimeError):
    """A distributed run that cannot start or continue: a rank died or timed out, or a batch does
    not split over the processes."""
