"""The roles an engine plays, documented here and only here.

A source engine provides an ``Introspector`` (what tables exist) and a ``Snapshot`` whose
``SnapshotReader``s read table segments, all in one consistent view where the engine allows.
Readers in other processes share the view too: the snapshot gives a picklable ``token()``, and the
engine's ``join_snapshot(config, token)`` (an ``EngineSpec`` field) opens a reader inside it from
any process, see ``Snapshot``.
A target engine provides ``Applier``s that create tables and load segments; each segment is
committed in one target transaction together with its row in the target's control table, so a
segment is either wholly there or not at all (this is what makes resume exact).
A source engine with ``cdc`` provides a ``Capture``: the task's change stream, the snapshot that
meets it exactly, and the acknowledgements that let the source discard its log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from conveyor.convert.schema_change import ColumnChange
from conveyor.model.changes import Idle, SchemaChanged, Transaction
from conveyor.model.findings import Finding
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import SchemaObjects, Table, TableId
from conveyor.model.segments import Segment, SourcePartition
from conveyor.model.types import ColumnType


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can do; checked by the contract tests against the roles it provides."""

    transactional_ddl: bool
    max_identifier_length: int
    schemas: bool  # has a namespace level below the database (PostgreSQL schemas)
    exported_snapshots: bool  # several connections can read one consistent snapshot
    ctid_segments: bool = False
    cdc: bool = False
    #: a primary key can be added to a filled table (DMS CreatePkAfterFullLoad)
    late_primary_key: bool = False
    #: a same-engine copy streams the engine's own encoded rows (PostgreSQL binary COPY): no Python
    #: work per row, so loading it on threads is as fast as in worker processes, without their start-up
    raw_copy: bool = False
    #: the capture can deliver a table's values as the engine's own text form (``Capture.text_tables``),
    #: which the same engine's applier takes as they are: no parsing into Python values and back
    cdc_text_values: bool = False
    #: the change log holds the rows a foreign key's ON DELETE / ON UPDATE action changed (PostgreSQL's
    #: WAL does; MySQL's binlog does not: a replica's own foreign keys make them)
    logs_foreign_key_actions: bool = False


class PrepMode(StrEnum):
    DROP_AND_CREATE = "DROP_AND_CREATE"
    TRUNCATE_BEFORE_LOAD = "TRUNCATE_BEFORE_LOAD"
    DO_NOTHING = "DO_NOTHING"


class ErrorPolicy(StrEnum):
    LOG_ERROR = "LOG_ERROR"
    STOP_TASK = "STOP_TASK"
    IGNORE_RECORD = "IGNORE_RECORD"
    SUSPEND_TABLE = "SUSPEND_TABLE"


@dataclass(slots=True)
class RejectedRow:
    table: TableId
    key: dict[str, Any]
    column: str | None
    reason: str
    row: dict[str, Any]


@dataclass(slots=True)
class LoadResult:
    rows: int = 0
    bytes: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)


class Introspector(Protocol):
    def schemas(self) -> list[str]:
        """Schemas (PostgreSQL), databases (MySQL) or ``main`` (SQLite) holding user tables."""
        ...

    def table_ids(self, schema: str) -> list[TableId]: ...

    def table(self, table_id: TableId) -> Table:
        """The full description; raises ``UserActionError`` when the table does not exist."""
        ...

    def objects(self, schema: str) -> SchemaObjects:
        """Views, standalone sequences, enum types, and the triggers, procedures and functions schema
        conversion lists but does not convert."""
        ...

    def close(self) -> None: ...


class SnapshotReader(Protocol):
    """Reads from one connection that sees the snapshot; used by one worker at a time."""

    def estimate_rows(self, table: Table) -> int: ...

    def key_bounds(self, table: Table, column: str) -> tuple[int, int] | None:
        """Min and max of an integer key column, or None for an empty table."""
        ...

    def page_count(self, table: Table) -> int:
        """Heap pages, for ctid segments (PostgreSQL only)."""
        ...

    def read(self, table: Table, segment: Segment, batch_rows: int, decode: bool = True) -> Iterator[RowBatch]:
        """Rows of the segment in batches of at most ``batch_rows``: canonical values, or with
        ``decode=False`` the driver's own values, for a target of the same engine and types."""
        ...

    def close(self) -> None: ...


class Snapshot(Protocol):
    """A consistent view of the source, opened by ``EngineSpec.open_snapshot(config, workers, hold)``
    for ``workers`` readers besides the runner's own. ``warnings`` says where the view is weaker than
    asked (e.g. no privilege to lock tables).

    Two ways to hand out readers:

    * in-process (``hold=False``): ``reader()``, from any worker thread;
    * across processes (``hold=True``): each worker process calls the engine's
      ``join_snapshot(config, token)`` with this snapshot's ``token()``, then the runner calls
      ``release()`` once every worker has joined. Readers joined before ``release()`` see the view;
      where the engine can share it later too (PostgreSQL's exported snapshot lives until
      ``close()``), so do readers joined after. MySQL / MariaDB keeps ``FLUSH TABLES WITH READ LOCK``
      from ``open_snapshot`` until ``release()`` (no write commits while workers begin their
      snapshots), bounded by a timeout after which ``release()`` raises ``TerminalError``; a reader
      joined after ``release()`` has a snapshot of its own. ``reader()`` still serves the runner's
      coordinating reader. An engine may split joining in two (``EngineSpec.prepare_join``): connect
      before the snapshot is opened, join with the token later, so a lock waits for less.
    """

    warnings: list[str]

    def reader(self) -> SnapshotReader: ...

    def token(self) -> Any:
        """What a worker process needs to join the view (picklable; None when nothing is shared)."""
        ...

    def release(self) -> None:
        """Every worker has joined: let go of what held the view still (a no-op unless ``hold``)."""
        ...

    def close(self) -> None: ...


class Capture(Protocol):
    """Change data capture of one task's selected tables, opened by
    ``EngineSpec.open_capture(config, task_name, tables)`` (``tables`` as the introspector describes
    them). Positions are the engine's own values (PostgreSQL: an LSN as int); ``position_json`` /
    ``position_from_json`` turn them into what the target's state table stores.

    The runner's sequence: ``check()``; then either ``handoff()`` (full-load-and-cdc: the snapshot for
    the full load and the position where the stream continues it) or ``begin()`` (cdc: from now);
    ``stream(start)``; after each target commit that stored a position, ``ack(position)``.
    Positions compare with ``<`` in log order.
    """

    #: seconds with nothing to deliver before ``stream()`` yields ``Idle`` (the runner sets it). A stream
    #: also yields ``Idle`` as soon as the source has nothing more ready after a whole transaction: the
    #: runner then sends what it holds, so a lone transaction waits for no company
    idle_seconds: float
    #: a transaction with more changes than this, or more than ``part_bytes`` bytes of them, is delivered
    #: in parts (``Transaction.partial``), so memory stays bounded whatever its size; None: whole (the
    #: runner sets both)
    part_changes: int | None
    part_bytes: int | None
    #: tables whose values the runner wants as the source's own text (str; None for NULL; UNCHANGED as
    #: ever) instead of Python values: a same-engine target reads that text exactly (the runner sets it,
    #: only for engines with ``Capabilities.cdc_text_values``)
    text_tables: frozenset[TableId]

    def check(self) -> list[str]:
        """Pre-flight: every server setting and privilege CDC needs; the first problem raises
        ``UserActionError`` with the fix. Returns warnings."""
        ...

    def preflight(self, tables: bool = True) -> list[Finding]:
        """What ``check()`` checks, every finding at once under its assessment key (``conveyor assess``);
        ``tables=False``: the server's settings and the user's privileges only."""
        ...

    def handoff(self, workers: int, hold: bool) -> tuple[Snapshot, Any]:
        """Begin capturing and open a snapshot (as ``EngineSpec.open_snapshot``) at exactly the returned
        position: a transaction committed before it is in the snapshot, a later one is streamed."""
        ...

    def begin(self, start: Any = None) -> Any:
        """Begin capturing without a snapshot; returns the position the stream starts from: now, or ``start``
        (the user's start position), or a ``UserActionError`` when the source cannot deliver what follows it."""
        ...

    def parse_position(self, text: str) -> Any:
        """A user's ``CdcStartPosition`` (PostgreSQL LSN ``16/B374D848``; MySQL ``file:offset``);
        ``UserActionError`` when it is malformed."""
        ...

    def position_at(self, at: datetime) -> Any:
        """DMS's CdcStartTime: where the first transaction committed at or after ``at`` (UTC) begins;
        ``UserActionError`` where the engine cannot go back in time (PostgreSQL)."""
        ...

    def position_json(self, position: Any) -> dict[str, Any]: ...

    def position_from_json(self, data: dict[str, Any]) -> Any: ...

    def stream(self, start: Any) -> Iterator[Transaction | SchemaChanged | Idle]:
        """Whole transactions committed after ``start`` on the selected tables, in commit order;
        ``SchemaChanged`` before the first change written under a new table definition; ``Idle``
        when nothing came for a while. Connection trouble raises ``TransientError`` (stream again
        from the stored position); a gap in the log raises ``TerminalError`` starting ``NEEDS_RESYNC``."""
        ...

    def ack(self, position: Any) -> None:
        """The target stored everything up to ``position``: the source may discard it."""
        ...

    def clock(self) -> tuple[datetime, Any]:
        """The source's clock and the end of its log, read together (for ``server_time`` stop points:
        every transaction committed before that time is at or before that position)."""
        ...

    def lag_bytes(self, position: Any) -> int | None:
        """How much log the source holds beyond ``position`` (None where it cannot say)."""
        ...

    def drop(self) -> list[str]:
        """Remove what capture created on the source (``conveyor cleanup``); returns what went."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Partitions(Protocol):
    """A snapshot reader of a source with table partitions (PostgreSQL declarative partitioning, MySQL /
    MariaDB): DMS parallel-load by partition reads each partition alone (``Segment.partitions``)."""

    def partitions(self, table: Table) -> list[SourcePartition]:
        """Every partition of ``table`` at every level, parents before their subpartitions; empty for a
        table without partitions."""
        ...


@runtime_checkable
class DroppedColumns(Protocol):
    """A capture whose source remembers that a table lost columns (PostgreSQL keeps a dropped column's
    slot in its catalog): on resume, target columns gone from the source can be told dropped there."""

    def dropped_columns(self, table: TableId) -> int:
        """How many columns ``table`` has ever lost on the source (0: none, so none was dropped)."""
        ...


@runtime_checkable
class PositionDefinitions(Protocol):
    """A capture whose positions carry the selected tables' definitions valid at them (MySQL / MariaDB:
    the binlog's rows carry no column names). On resume the runner plans those tables as they were at the
    stored position, not as the catalog has them now: the stream's own ``SchemaChanged`` events then bring
    each to its current definition at its place in the stream, and the target follows them there. A
    capture without it (PostgreSQL) is planned from the catalog and reconciled (``DroppedColumns``)."""

    def definitions_at(self, position: Any) -> dict[TableId, Table]:
        """The tables whose definitions ``position`` holds: the columns the stream decodes their rows by
        there, and the primary key. Tables it does not know are left out."""
        ...


Encoder = Callable[[Any], Any]


class Applier(Protocol):
    """Writes to the target from one connection; used by one worker at a time."""

    def map_type(self, column_type: ColumnType) -> str:
        """The target's native type for a logical type (homogeneous: the source's own)."""
        ...

    def encoder(self, column_type: ColumnType, native: str) -> Encoder | None:
        """Canonical value -> driver value for a target column; raises ``RowRejected``."""
        ...

    def logical_type(self, native: str) -> ColumnType | None:
        """The logical type of a native type as DDL writes it (a task's type-mapping override), or
        None when the engine does not know it."""
        ...

    def start_task(self, task_name: str, fresh: bool) -> int:
        """Create the control tables, take the next lease number and return it."""
        ...

    def done_segments(self, task_name: str) -> dict[tuple[str, int], tuple[int, int]]:
        """(target table, segment number) -> (rows loaded, rows rejected) for segments committed by
        earlier runs of the task."""
        ...

    def prepare(self, table: Table, native_types: list[str], mode: PrepMode) -> None:
        """Create (or truncate) the target table with its primary key."""
        ...

    def load(
        self,
        task_name: str,
        lease: int,
        table: Table,
        segment: int,
        batches: Callable[[], Iterable[RowBatch]],
        encoders: list[Encoder | None],
        policy: ErrorPolicy,
        on_progress: Callable[[int, int], None],
        native_types: Sequence[str] = (),
    ) -> LoadResult:
        """Load one segment in one transaction together with its control row.

        ``batches`` may be called again to re-read the segment when the target rejects a row
        and the segment is reloaded row by row to find it.
        """
        ...

    def finish(self, table: Table, native_types: list[str], add_primary_key: bool = False) -> list[str]:
        """Unique keys, secondary indexes and identity values after the data (and the primary key,
        when it was left out of ``prepare`` for speed); returns warnings."""
        ...

    def add_foreign_keys(self, table: Table) -> list[str]: ...

    def record_rejects(self, task_name: str, rejects: list[RejectedRow]) -> None: ...

    def close(self) -> None: ...

    def alter_table(self, table: Table, changes: Sequence[ColumnChange], native_types: Sequence[str]) -> Table:
        """Follow a source's column changes during CDC (``convert.schema_change.diff_table``) on the target
        table ``table``, whose columns have ``native_types``; new and widened columns get ``map_type``'s
        types. Committed before it returns, and safe to run again with the same changes (a crash may
        come between DDL statements that commit themselves). Returns the target table as it is now."""
        ...


def describe_row(columns: tuple[str, ...], row: Row) -> dict[str, Any]:
    """A row as a column -> value dict, for error records."""
    return dict(zip(columns, row, strict=False))
