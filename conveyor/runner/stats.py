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
    #: change processing: changes captured per kind, and how many of them the target applied
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    ddls: int = 0
    applied_inserts: int = 0
    applied_updates: int = 0
    applied_deletes: int = 0
    applied_ddls: int = 0
    apply_error_rows: int = 0
    #: limited LOB mode: LOB values truncated (full load and change processing)
    lob_truncations: int = 0
    #: validation (``conveyor validate``): DMS's ValidationState and record counts
    validation_state: str = "Not enabled"
    validation_pending: int = 0
    validation_failed: int = 0
    validation_suspended: int = 0

    def dms(self) -> dict[str, Any]:
        """The DescribeTableStatistics record for this table."""

        def ts(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "SchemaName": self.schema,
            "TableName": self.table,
            "Inserts": self.inserts,
            "Deletes": self.deletes,
            "Updates": self.updates,
            "Ddls": self.ddls,
            "AppliedInserts": self.applied_inserts,
            "AppliedDeletes": self.applied_deletes,
            "AppliedUpdates": self.applied_updates,
            "AppliedDdls": self.applied_ddls,
            "FullLoadRows": self.full_load_rows,
            "FullLoadCondtnlChkFailedRows": 0,
            "FullLoadErrorRows": self.full_load_error_rows,
            "ApplyErrorRows": self.apply_error_rows,
            "FullLoadStartTime": ts(self.start),
            "FullLoadEndTime": ts(self.end),
            "FullLoadReloaded": self.reloaded,
            "LastUpdateTime": ts(self.last_update),
            "TableState": self.state,
            "ValidationPendingRecords": self.validation_pending,
            "ValidationFailedRecords": self.validation_failed,
            "ValidationSuspendedRecords": self.validation_suspended,
            "ValidationState": self.validation_state,
            "ErrorMessage": self.error,
            "LobTruncations": self.lob_truncations,
        }


@dataclass
class CdcStats:
    """The task's change processing, under the names of DMS's CloudWatch metrics where it has them."""

    #: the checkpoint string of the last position stored in the target (what a restart continues from)
    checkpoint: str | None = None
    #: seconds between a source commit and Conveyor reading it / the target committing it
    latency_source: float = 0.0
    latency_target: float = 0.0
    #: changes read from the source and not yet committed on the target
    incoming_changes: int = 0
    applied_changes: int = 0
    applied_transactions: int = 0
    #: changes applied per second over the last few seconds
    throughput: float = 0.0
    #: bytes of source log beyond the stored position (PostgreSQL slot lag)
    source_lag_bytes: int | None = None
    started: datetime | None = None

    def dms(self) -> dict[str, Any]:
        return {
            "CheckpointPosition": self.checkpoint,
            "CDCLatencySource": round(self.latency_source, 3),
            "CDCLatencyTarget": round(self.latency_target, 3),
            "CDCIncomingChanges": self.incoming_changes,
            "CDCAppliedChanges": self.applied_changes,
            "CDCAppliedTransactions": self.applied_transactions,
            "CDCThroughputRowsTarget": round(self.throughput, 1),
            "SourceLagBytes": self.source_lag_bytes,
        }


class Listener(Protocol):
    """Receives progress as it happens (the terminal UI, logs, the API later)."""

    def table_planned(self, stats: TableStats) -> None: ...

    def rows_loaded(self, stats: TableStats, rows: int) -> None: ...

    def table_changed(self, stats: TableStats) -> None: ...

    def message(self, text: str) -> None: ...

    def cdc_progress(self, cdc: CdcStats) -> None: ...


class NullListener:
    def table_planned(self, stats: TableStats) -> None:
        pass

    def rows_loaded(self, stats: TableStats, rows: int) -> None:
        pass

    def table_changed(self, stats: TableStats) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def cdc_progress(self, cdc: CdcStats) -> None:
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
