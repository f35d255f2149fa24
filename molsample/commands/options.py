"""Options shared by the commands, so that the same thing is spelled the same way everywhere."""

from __future__ import annotations

from typing import Any, Callable

import click

from molsample.runtime.devices import DEVICE_CHOICES

__all__ = ["DeviceType", "device_option", "progress_option", "show_progress_flag"]


class DeviceType(click.ParamType):
    """``cpu``, ``cuda`` or ``cuda:N`` (checked against the machine when the run starts)."""

    name = "device"

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return "[" + "|".join(DEVICE_CHOICES) + "|cuda:N]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        if text in DEVICE_CHOICES or (text.startswith("cuda:") and text[5:].isdigit()):
            return text
        self.fail(f"{value!r} is not a device; use cpu, cuda or cuda:N", param, ctx)


def device_option(default: str | None = "cpu") -> Callable:
    """``--device [cpu|cuda|cuda:N]``."""
    return click.option("--device", type=DeviceType(), default=default, show_default=default is not None,
                        help="Torch device" + ("" if default else " (default: the config's, cpu)") + ".")


def progress_option(f: Callable) -> Callable:
    """``--progress/--no-progress`` (bars are drawn only on a terminal) and a hidden ``--quiet`` alias."""
    f = click.option("--quiet", "quiet", is_flag=True, hidden=True, help="Same as --no-progress.")(f)
    return click.option("--progress/--no-progress", "progress", default=True, show_default=True,
                        help="Progress bars (only when stderr is a terminal; in a log file a plain progress "
                             "line about every 30 s instead).")(f)


def show_progress_flag(progress: bool, quiet: bool) -> bool:
    """The effective progress setting of :func:`progress_option`'s two flags; when on, a log file
    (stderr not a terminal) gets a plain progress line about every 30 s instead of bars."""
    from molsample.runtime.progress import log_progress_lines

    on = bool(progress) and not quiet
    log_progress_lines(on)
    return on
