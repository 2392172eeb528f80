"""What every ``conveyor`` command shares: exit codes, common options, one-line user errors.

Command modules import from here, never from ``main`` (which imports them to register them).
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from conveyor.errors import ConfigError, ConveyorError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3

T = TypeVar("T")

StateDir = Annotated[str, typer.Option("--state-dir", help="Where task state is kept.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]


@functools.cache
def err() -> Console:
    """The rich console on stderr, made (and rich imported, ~30 ms) only when a command prints through it."""
    from rich.console import Console

    return Console(stderr=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM: the run stops as on Ctrl-C (worker processes end, committed segments stay)."""


def say(line: str) -> None:
    """One unwrapped line on stderr (errors must stay greppable, whatever the terminal width)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def guarded(debug: bool, action: Callable[[], T]) -> T:
    """Run ``action``; user errors become one line on stderr and an exit code, never a traceback."""
    try:
        return action()
    except ConfigError as exc:
        if debug:
            traceback.print_exc()
        say(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except ConveyorError as exc:
        if debug:
            traceback.print_exc()
        say(f"error: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt as exc:
        say("interrupted; run again with --resume to continue")
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        err().print(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED) from None
