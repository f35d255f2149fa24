"""Reading TOML files with errors that name the file and the fix."""

from __future__ import annotations

import sys
from pathlib import Path

from molsample.errors import ConfigError, MissingFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_toml"]


def read_toml(path: Path, *, what: str = "file", hint: str = "check the path") -> dict:
    """Parse a TOML file: a missing file is a :class:`MissingFileError` (``what`` + ``hint``),
    malformed TOML a :class:`ConfigError` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist; {hint}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML ({exc}); fix the syntax at that line") from exc
