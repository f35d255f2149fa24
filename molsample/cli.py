"""The ``molsample`` command line: a thin click group over the library.

Each command lives in its own module under :mod:`molsample.commands` and is registered
here. User errors (:class:`molsample.errors.MolsampleError`) are printed without a
traceback and exit with status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from molsample.errors import MolsampleError
from molsample.runtime.threads import set_threads

#: command name → "module:function" of a click.Command, imported only when used.
COMMANDS: dict[str, str] = {
    "systems": "molsample.commands.systems_cmd:systems",
    "energy": "molsample.commands.systems_cmd:energy",
    "pretrain": "molsample.commands.pretrain_cmd:pretrain",
    "tilt": "molsample.commands.tilt_cmd:tilt",
    "sample": "molsample.commands.sample_cmd:sample",
    "reference": "molsample.commands.reference_cmd:reference",
    "report": "molsample.commands.report_cmd:report",
    "export": "molsample.commands.export_cmd:export",
    "refine": "molsample.commands.refine_cmd:refine",
    "check": "molsample.commands.check_cmd:check",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (fast ``--help``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if self._importable(n))

    @staticmethod
    def _importable(name: str) -> bool:
        return importlib.util.find_spec(COMMANDS[name].split(":")[0]) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not self._importable(name):
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="molsample")
@click.option("--threads", type=int, default=None, envvar="MOLSAMPLE_THREADS",
              help="CPU threads for torch (default: half the cores, 1 to 4; on a busy 2-core machine "
                   "pretraining took 2.6-3.1x longer per step with 2 threads than with 1, "
                   "benchmarks/thread_default.py; env MOLSAMPLE_THREADS).")
def cli(threads: int | None) -> None:
    """molsample: Boltzmann-generator sampling of molecules and clusters."""
    if threads is not None and threads < 1:
        raise click.BadParameter(f"--threads must be >= 1, got {threads}")
    set_threads(threads)


def _rank_tag() -> str:
    """`` (rank k of K)`` in a distributed run, else empty."""
    if "molsample.runtime.distributed" not in sys.modules:
        return ""
    world = sys.modules["molsample.runtime.distributed"].current_world()
    return f" (rank {world.rank} of {world.world_size})" if world.distributed else ""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C. A subclass, not KeyboardInterrupt itself: CPython marks an
    exact KeyboardInterrupt that leaves a nested evaluation as unhandled and then ends the process
    by SIGINT, even after the command caught it and chose its exit status (130)."""


def _stop_on_sigterm() -> None:
    """Treat SIGTERM (a batch scheduler's end of the job, ``kill``) like Ctrl-C: the running stage
    records its time, checkpoints stay, and the resume hint is printed."""
    import signal
    import threading

    def interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
        raise Terminated

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _hint_global_option(exc: click.ClickException) -> None:
    """Add to "No such option: --threads" after a command that global options go before it."""
    name = getattr(exc, "option_name", None)
    ctx = getattr(exc, "ctx", None)
    if not isinstance(exc, click.exceptions.NoSuchOption) or ctx is None or ctx.parent is None:
        return
    if any(name in p.opts for p in cli.params):
        exc.message = exc.message.rstrip(".") + (f": {name} is an option of molsample itself and goes before the command: "
                        f"molsample {name} N {ctx.info_name} ...")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """Print a Python warning as the tool's own one line, ``warning: ...`` (no source path)."""
    click.echo(f"warning{_rank_tag()}: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the CLI, turning user errors into exit status 2 and Python warnings
    into ``warning: ...`` lines."""
    import warnings

    _stop_on_sigterm()
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="molsample", standalone_mode=False)
    except MolsampleError as exc:
        click.echo(f"Error{_rank_tag()}: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("interrupted (nothing half-written is kept; `molsample tilt` runs continue with --resume)",
                   err=True)
        sys.exit(130)
    except click.ClickException as exc:
        _hint_global_option(exc)
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    finally:
        warnings.showwarning = shown
        if "molsample.runtime.distributed" in sys.modules:  # leave the process group of a torchrun run
            sys.modules["molsample.runtime.distributed"].shutdown_world()


if __name__ == "__main__":  # pragma: no cover
    main()
