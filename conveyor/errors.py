"""Errors, classified by what happens next.

* ``UserActionError``: the user must fix something (config, credentials, privileges). One line,
  naming the thing and the fix; the CLI prints it without a traceback.
* ``TransientError``: retrying may succeed (connection reset, deadlock, serialization failure).
* ``TerminalError``: the task cannot go on (a table vanished mid-load, a gap in a change log).
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


class UserActionError(ConveyorError):
    """Something the user has to fix; the message says what and how."""


class ConfigError(UserActionError):
    """The task file or command line is wrong; ``path`` names the offending key."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # pickled with its own arguments (a worker process sends errors to the runner)
        return type(self), (self.message, self.path)


class TransientError(ConveyorError):
    """Worth retrying."""


class TerminalError(ConveyorError):
    """The task stops; retrying would not help."""


class StopTask(TerminalError):
    """The task's policy says stop the whole task (e.g. ``DataErrorPolicy: STOP_TASK``)."""


class PassThroughRefused(TerminalError):
    """The target refused a row of a raw (pass-through) copy, which cannot tell which: the segment can be
    copied again decoded, row by row where needed."""


class RowRejected(ConveyorError):
    """A single row cannot be written to the target; handled by the task's error policy."""

    def __init__(self, reason: str, column: str | None = None) -> None:
        self.reason = reason
        self.column = column
        super().__init__(f"column {column}: {reason}" if column else reason)

    def __reduce__(self) -> tuple[type[RowRejected], tuple[str, str | None]]:
        return type(self), (self.reason, self.column)


class NeedsResync(TerminalError):
    """Changes are lost between the target's position and what the source can still send (a dropped
    or invalidated slot, a purged binlog): only a new full load makes the target whole again."""

    #: how to make the target whole again, said after every reason
    RECOVERY = (
        "to reload the target: conveyor cleanup TASK_FILE (drops the stored position, and the slot on PostgreSQL), "
        "then run the task as full-load-and-cdc"
    )

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"NEEDS_RESYNC: {reason}; {self.RECOVERY}")

    def __reduce__(self) -> tuple[type[NeedsResync], tuple[str]]:
        return type(self), (self.reason,)
