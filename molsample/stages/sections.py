"""The tables of a run config: each ``[section]`` is a dataclass registered with the stages that read it.

A section registers where its dataclass is defined::

    @register_section("refine", stages=("refine",))
    @dataclasses.dataclass
    class RefineConfig:
        enabled: bool = False
        ...
        def validate(self) -> None: ...

:class:`~molsample.stages.config.RunConfig` takes its table defaults from :data:`SECTIONS`, calls
every section's ``validate()`` and refuses at import a registered section it does not declare.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

__all__ = ["SECTIONS", "Section", "register_section", "section_default"]

T = TypeVar("T", bound=type)


@dataclasses.dataclass(frozen=True)
class Section:
    """A registered run-config table.

    Attributes:
        name: the TOML table ``[name]`` and the attribute of ``RunConfig``.
        config: its dataclass (a ``validate()`` method, when it has one, runs with the config's).
        stages: the names of the stages (``TILT_STAGES``) that read it.
        default: builds the table's default value.
    """

    name: str
    config: type
    stages: tuple[str, ...]
    default: Callable[[], Any]


#: Run-config tables by name, in registration order.
SECTIONS: dict[str, Section] = {}


def register_section(name: str, *, stages: tuple[str, ...], default: Callable[[], Any] | None = None
                     ) -> Callable[[T], T]:
    """Decorator: register the dataclass as the run-config table ``[name]`` read by ``stages``;
    ``default`` builds its default value (the dataclass's defaults when ``None``)."""
    def deco(config: T) -> T:
        if name in SECTIONS:
            raise ValueError(f"run-config section [{name}] is registered twice")
        if not dataclasses.is_dataclass(config):
            raise TypeError(f"section [{name}]: {config.__name__} is not a dataclass")
        SECTIONS[name] = Section(name, config, tuple(stages), default or config)
        return config
    return deco


def section_default(name: str) -> Any:
    """The ``dataclasses.field`` of ``RunConfig`` for the registered table ``[name]``."""
    return dataclasses.field(default_factory=SECTIONS[name].default)
