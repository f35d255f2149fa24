"""Run-config files: a TOML table per file, and ``extends = "other.toml"`` to start from another file
(path relative to the file that names it), so a variant of a recipe states only what it changes.

    # runs/aldp-internal-seed1.toml
    extends = "aldp-internal.toml"
    [pretrain]
    seed = 1
"""

from __future__ import annotations

from pathlib import Path

from molsample.errors import ConfigError
from molsample.io.toml import read_toml

__all__ = ["deep_update", "read_config_file"]


def deep_update(base: dict, new: dict) -> dict:
    """``base`` with ``new`` merged in, tables key by key (``new`` wins); neither is modified."""
    out = dict(base)
    for k, v in new.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: Path, _chain: tuple[Path, ...] = ()) -> dict:
    """The table of the run-config file ``path`` on top of the file its ``extends`` key names (recursively),
    without the keys ``extends`` and ``preset``.

    Raises:
        ConfigError: a missing or unreadable file, ``extends`` not a string, or a cycle of ``extends``.
    """
    path = Path(path)
    table = read_toml(path, what="config file")
    table.pop("preset", None)
    parent = table.pop("extends", None)
    if parent is None:
        return table
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends = {parent!r} must be a file name (a string), e.g. extends = \"base.toml\"")
    here = path.resolve()
    target = (path.parent / parent).resolve()
    chain = (*_chain, here)
    if target in chain:
        loop = " -> ".join(p.name for p in (*chain, target))
        raise ConfigError(f"{path}: extends makes a cycle ({loop}); remove one of the extends keys")
    if not target.is_file():
        raise ConfigError(f"{path}: extends = {parent!r} but {target} is not a file; name an existing config "
                          "file, relative to this one")
    return deep_update(read_config_file(target, chain), table)
