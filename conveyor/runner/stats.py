"""Table statistics under AWS DMS's DescribeTableStatistics names, and the listener that shows them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

BEFORE_LOAD = "Before load"
FULL_LOAD = "Full load"
COMPLETED = "Table completed"
ERROR = "Table error"
CANCELLED = "Table cancelled"


@dataclass
class TableStats:
    schema: str
    table: str
    estimated_rows: int = 0
    state: str = BEFORE_LOAD
    full_load_rows: int = 0
    full_load_error_rows: int = 0
    full_load_bytes: int = 0
    segments: int = 0
    segments_done: int = 0
    start: datetime | None = None
    end: datetime | None = None
    last_update: datetime | None = None
    error: str | None = None
    reloaded: bool = False

    def dms(self) -> dict[str, Any]:
        """The DescribeTableStatistics record for this table."""

        def ts(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "SchemaName": self.schema,
            "TableName": self.table,
            "Inserts": 0,
            "Deletes": 0,
            "Updates": 0,
            "Ddls": 0,
            "AppliedInserts": 0,
            "AppliedDeletes": 0,
            "AppliedUpdates": 0,
            "AppliedDdls": 0,
            "FullLoadRows": self.full_load_rows,
            "FullLoadCondtnlChkFailedRows": 0,
            "FullLoadErrorRows": self.full_load_error_rows,
            "FullLoadStartTime": ts(self.start),
            "FullLoadEndTime": ts(self.end),
            "FullLoadReloaded": self.reloaded,
            "LastUpdateTime": ts(self.last_update),
            "TableState": self.state,
            "ValidationPendingRecords": 0,
            "ValidationFailedRecords": 0,
            "ValidationSuspendedRecords": 0,
            "ValidationState": "Not enabled",
            "ErrorMessage": self.error,
        }


class Listener(Protocol):
    """Receives progress as it happens (the terminal UI, logs, the API later)."""

    def table_planned(self, stats: TableStats) -> None: ...

    def rows_loaded(self, stats: TableStats, rows: int) -> None: ...

    def table_changed(self, stats: TableStats) -> None: ...

    def message(self, text: str) -> None: ...


class NullListener:
    def table_planned(self, stats: TableStats) -> None:
        pass

    def rows_loaded(self, stats: TableStats, rows: int) -> None:
        pass

    def table_changed(self, stats: TableStats) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class TaskStats:
    tables: dict[str, TableStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_rows(self, key: str, rows: int, byte_count: int) -> TableStats:
        with self.lock:
            s = self.tables[key]
            s.full_load_rows += rows
            s.full_load_bytes += byte_count
            s.last_update = now()
            return s


def now() -> datetime:
    return datetime.now(UTC)
