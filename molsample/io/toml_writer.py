"""A small TOML emitter for nested dicts of str/int/float/bool/lists (the inverse of tomllib).

Only what run configs need: tables (nested dicts), scalars, arrays (lists/tuples, nested),
and dicts inside arrays (written as inline tables). ``None`` values are omitted (TOML has no
null); ``pathlib.Path`` and other ``os.PathLike`` values become strings; numpy scalars and
arrays are converted to Python values. ``tomllib.loads(dumps_toml(d)) == d`` for every
supported ``d`` without ``None``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _key(k: Any) -> str:
    if not isinstance(k, str):
        raise TypeError(f"TOML keys must be strings, got {k!r} ({type(k).__name__})")
    return k if _BARE_KEY.match(k) else _string(k)


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _plain(v: Any) -> Any:
    """numpy scalars/arrays and paths → Python values."""
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy scalar/array, torch tensor
        return v.tolist()
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return v


def _value(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, Mapping):
        items = [f"{_key(k)} = {_value(x)}" for k, x in v.items() if _plain(x) is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, (list, tuple)):
        if any(_plain(x) is None for x in v):
            raise TypeError(f"TOML arrays cannot hold None: {v!r}")
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} ({type(v).__name__}) as TOML; use str, int, float, bool, list or dict")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialize a nested mapping to TOML text."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], prefix: list[str]) -> None:
        scalars = [(k, _plain(v)) for k, v in table.items() if not isinstance(_plain(v), Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(_plain(v), Mapping)]
        if prefix and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_key(p) for p in prefix) + "]")
        for k, v in scalars:
            if v is None:
                continue
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in tables:
            emit(v, prefix + [k])

    if not isinstance(data, Mapping):
        raise TypeError(f"TOML document must be a dict, got {type(data).__name__}")
    emit(data, [])
    return "\n".join(lines) + "\n"
