"""Errors cross process boundaries (worker processes send them to the runner) with their class,
message and attributes intact, so the runner still acts on their classification."""

from __future__ import annotations

import pickle

import pytest

from conveyor.endpoints.sql.applier import StaleLease
from conveyor.errors import (
    ConfigError,
    ConveyorError,
    RowRejected,
    StopTask,
    TerminalError,
    TransientError,
    UserActionError,
)
from conveyor.runner.executor import portable


@pytest.mark.parametrize(
    "error",
    [
        ConveyorError("base"),
        UserActionError("grant SELECT"),
        ConfigError("unknown key", "settings.FullLoadSettings.Nope"),
        ConfigError("no path"),
        TransientError("deadlock"),
        TerminalError("table gone"),
        StopTask("t: row rejected"),
        StaleLease("lease 3 is stale"),
        RowRejected("value too long", "name"),
        RowRejected("no column"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle_with_their_class_and_message(error: ConveyorError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and copy.args == error.args
    assert vars(copy) == vars(error)
    assert portable(error) is error


def test_unpicklable_error_keeps_its_classification() -> None:
    class Odd(TransientError):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.callback = lambda: None  # not picklable

    error = portable(Odd("connection reset"))
    assert type(error) is TransientError and str(error) == "connection reset"
