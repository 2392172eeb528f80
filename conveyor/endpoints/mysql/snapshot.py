"""Reading MySQL / MariaDB tables in one consistent view across worker connections.

MySQL cannot share one snapshot between connections (PostgreSQL exports snapshots), so Conveyor
does what mydumper does: the coordinator takes ``FLUSH TABLES WITH READ LOCK`` (no write can commit
while it is held), every reader connection starts a ``WITH CONSISTENT SNAPSHOT`` transaction, the
binlog position is noted, and the lock is released. Connections are opened before the lock, so it
is held for one round trip per reader. Readers are handed out from that pool; a reader asked for
beyond it (a worker reconnecting after an error) has a snapshot of its own, and a warning says so.

Worker processes cannot take connections from a pool in the runner's process, so with ``hold=True``
the lock outlives the constructor: each worker process ``join()``s (connects and begins its
snapshot) while it is held, and the runner calls ``release()`` once all have. The lock is held for
a connection and a round trip per worker, run in parallel; ``HOLD_TIMEOUT`` bounds it whatever
happens, so writes on the source never wait on a stuck worker.

Without the RELOAD privilege the lock is refused: each reader then has its own snapshot (every
table is consistent, tables are not with one another) and ``warnings`` says so. Non-InnoDB tables
(MyISAM) are consistent only while the lock is held, as with mydumper.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
from pymysql.connections import TEXT_TYPES
from pymysql.cursors import SSCursor

from conveyor.endpoints.config import MySQLConfig
from conveyor.endpoints.mysql import types
from conveyor.endpoints.mysql.connect import connect, quote
from conveyor.endpoints.mysql.errors import error_code, message
from conveyor.endpoints.mysql.protocol import RowParser, fetch_rows
from conveyor.endpoints.sql.snapshot import Decoder, SqlSnapshotReader
from conveyor.errors import TerminalError, TransientError
from conveyor.model.rows import RowBatch
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.segments import Segment, SourcePartition

log = logging.getLogger(__name__)

#: a batch also ends at this many bytes, so rows of large BLOBs do not pile up in memory
BATCH_BYTES = 64 * 1024 * 1024
#: seconds FLUSH TABLES WITH READ LOCK may wait for running statements
LOCK_WAIT_TIMEOUT = 60
#: seconds a held lock (``hold=True``) waits for worker processes to join before it is let go
HOLD_TIMEOUT = 30
BEGIN_SQL = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"
BINARY_CHARSET = 63


#: a table's partitions and subpartitions in their order (one row with NULLs: not partitioned)
PARTITIONS_SQL = (
    "SELECT PARTITION_NAME, SUBPARTITION_NAME FROM information_schema.PARTITIONS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY PARTITION_ORDINAL_POSITION, SUBPARTITION_ORDINAL_POSITION"
)


class MySQLSnapshotReader(SqlSnapshotReader):
    """Streams segments with an unbuffered cursor through ``protocol.fetch_rows``.

    With ``decode=False`` (a MySQL target) values stay in MySQL's own text form, as str, or bytes
    for binary columns: the target loads the same text back into the same column type.
    """

    param = "%s"

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self._active: Any = None
        self._parsers: dict[tuple[Any, ...], RowParser] = {}

    def quote(self, name: str) -> str:
        return quote(name)

    def decoder(self, column: Column) -> Decoder | None:
        """Wire bytes -> canonical value (``read`` inlines the same conversions per row)."""
        return types.fallback(column.type)

    def select_expression(self, column: Column) -> str:
        return types.select_expression(column.type, quote(column.name))

    def select_sql(self, table: Table, segment: Segment, decode: bool = True) -> tuple[str, list[Any]]:
        # FLOAT is read as a double in both modes: its text form has only 6 significant digits.
        return super().select_sql(table, segment, decode=True)

    def stream_cursor(self) -> Any:
        return self.conn.cursor(SSCursor)

    def relation(self, table: Table, segment: Segment) -> str:
        if not segment.partitions:
            return self.qualified(table)
        return f"{self.qualified(table)} PARTITION ({', '.join(quote(p.name) for p in segment.partitions)})"

    def partitions(self, table: Table) -> list[SourcePartition]:
        self._finish_active()
        with self.conn.cursor() as cur:
            cur.execute(PARTITIONS_SQL, (table.id.schema, table.id.name))
            rows = cur.fetchall()
        tops: dict[str, bool] = {}  # partition -> has subpartitions
        subs: list[tuple[str, str]] = []
        for partition, sub in rows:
            if partition is None:
                return []  # not partitioned
            tops[partition] = tops.get(partition, False) or sub is not None
            if sub is not None:
                subs.append((partition, sub))
        out = [SourcePartition(TableId(table.id.schema, p), (), not has_subs) for p, has_subs in tops.items()]
        return out + [
            SourcePartition(TableId(table.id.schema, s), (TableId(table.id.schema, p),), True) for p, s in subs
        ]

    def estimate_rows(self, table: Table) -> int:
        self._finish_active()
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (table.id.schema, table.id.name),
            )
            row = cur.fetchone()
        return int(row[0] or 0) if row else 0

    def key_bounds(self, table: Table, column: str) -> tuple[int, int] | None:
        self._finish_active()
        return super().key_bounds(table, column)

    def read(self, table: Table, segment: Segment, batch_rows: int, decode: bool = True) -> Iterator[RowBatch]:
        sql, params = self.select_sql(table, segment, decode)
        self._finish_active()
        cur = self.stream_cursor()
        self._active = cur
        names = table.column_names
        try:
            cur.execute(sql, params or None)
            parser = self._parser(table, cur, decode)
            while True:
                rows, nbytes = fetch_rows(cur, parser, batch_rows, BATCH_BYTES)
                if not rows:
                    break
                yield RowBatch(names, rows, byte_count=nbytes)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == 1146:
                raise TerminalError(
                    f"table {table.id} no longer exists on the source; it was dropped during the load"
                ) from exc
            raise
        finally:
            if self._active is cur:
                self._active = None
            with contextlib.suppress(Exception):
                cur.close()  # drains what is left of an abandoned result

    def _parser(self, table: Table, cur: Any, decode: bool) -> RowParser:
        if decode:
            key: tuple[Any, ...] = (table.id, True, tuple(c.type for c in table.columns))
            parser = self._parsers.get(key)
            if parser is None:
                columns = [c.type for c in table.columns]
                parser = RowParser(
                    [types.decode_expr(t) for t in columns], types.DECODE_NAMES, [types.fallback(t) for t in columns]
                )
                self._parsers[key] = parser
            return parser
        fields = cur._result.fields
        text = [not (f.type_code in TEXT_TYPES and f.charsetnr == BINARY_CHARSET) for f in fields]
        key = (table.id, False, tuple(text))
        parser = self._parsers.get(key)
        if parser is None:
            parser = RowParser(
                ["x.decode()" if t else None for t in text],
                {},
                [types.fallback_text if t else None for t in text],
            )
            self._parsers[key] = parser
        return parser

    def _finish_active(self) -> None:
        """Only one result streams per connection; close one a consumer abandoned."""
        if self._active is not None:
            with contextlib.suppress(Exception):
                self._active.close()
            self._active = None

    def close(self) -> None:
        self._finish_active()
        super().close()


def join(config: MySQLConfig, token: Any = None) -> MySQLSnapshotReader:
    """A reader on a new connection that begins its consistent snapshot now: inside the shared view
    while a held snapshot keeps the lock (see ``MySQLSnapshot``), a view of its own after that."""
    return prepare_join(config)(token)


def prepare_join(config: MySQLConfig) -> Callable[[Any], MySQLSnapshotReader]:
    """``join`` in two steps: connect now (TLS and login take a while), begin the snapshot when the
    returned function is called, while the lock is held."""
    conn = connect(config, "source")
    try:
        _execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    except BaseException:
        conn.close()
        raise

    def begin(token: Any = None) -> MySQLSnapshotReader:
        try:
            _execute(conn, BEGIN_SQL)
        except BaseException:
            conn.close()
            raise
        return MySQLSnapshotReader(conn)

    return begin


class MySQLSnapshot:
    """One consistent view for ``workers`` readers plus the runner's coordinating reader.

    ``hold=False``: every reader is opened here, in one lock window, and handed out by ``reader()``.
    ``hold=True``: only the coordinating reader is opened here; the lock stays until ``release()``
    while worker processes ``join()``, at most ``HOLD_TIMEOUT`` seconds.
    """

    def __init__(self, config: MySQLConfig, workers: int, hold: bool = False) -> None:
        self.config = config
        self.warnings: list[str] = []
        #: binlog file, offset and GTID set at the snapshot, when the user may read them (for CDC)
        self.position: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._extra_warned = False
        #: while held: the connection holding FLUSH TABLES WITH READ LOCK, and the timer bounding it
        self._holder: Any = None
        self._timer: threading.Timer | None = None
        self._expired = False
        connections: list[Any] = []
        try:
            for _ in range(1 if hold else workers + 1):
                conn = connect(config, "source")
                connections.append(conn)
                _execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._begin_all(connections, workers + 1, hold)
        except BaseException:
            for conn in connections:
                with contextlib.suppress(Exception):
                    conn.close()
            raise
        self._pool = [MySQLSnapshotReader(conn) for conn in connections]

    def _begin_all(self, connections: list[Any], readers: int, hold: bool) -> None:
        coordinator: Any = connect(self.config, "source")
        locked = False
        try:
            _execute(coordinator, f"SET SESSION lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
            try:
                _execute(coordinator, "FLUSH TABLES WITH READ LOCK")
                locked = True
            except pymysql.err.MySQLError as exc:
                code = error_code(exc)
                if code == 1205:
                    raise TransientError(
                        f"FLUSH TABLES WITH READ LOCK waited {LOCK_WAIT_TIMEOUT} s for long-running statements "
                        f"on {self.config.display()}; retry when they are done"
                    ) from None
                if code not in (1044, 1045, 1142, 1227):
                    raise
                self._warn(
                    f"{self.config.display()}: FLUSH TABLES WITH READ LOCK was refused ({message(exc)}): each of "
                    f"the {readers} reader connections has its own snapshot, so every table is consistent "
                    f"but tables are not consistent with one another; for one view run: GRANT RELOAD ON *.* TO "
                    f"'{self.config.user}'@'%'"
                )
            for conn in connections:
                _execute(conn, BEGIN_SQL)
            if locked:
                self.position = _binlog_position(coordinator)
            if locked and hold:
                self._holder, coordinator = coordinator, None
                self._timer = threading.Timer(HOLD_TIMEOUT, self._expire)
                self._timer.daemon = True
                self._timer.start()
        finally:
            if coordinator is not None:
                if locked:
                    with contextlib.suppress(Exception):
                        _execute(coordinator, "UNLOCK TABLES")
                with contextlib.suppress(Exception):
                    coordinator.close()

    def reader(self) -> MySQLSnapshotReader:
        with self._lock:
            if self._pool:
                return self._pool.pop(0)
            if not self._extra_warned:
                self._extra_warned = True
                self._warn(
                    f"{self.config.display()}: a reader was opened after the snapshot (a reconnect, or more "
                    "workers than planned); it reads with a snapshot of its own"
                )
        return join(self.config)

    def token(self) -> None:
        return None  # nothing to pass: a reader joins by beginning its snapshot while the lock is held

    def release(self) -> None:
        with self._lock:
            expired = self._expired
            self._unlock()
        if expired:
            raise TerminalError(
                f"{self.config.display()}: FLUSH TABLES WITH READ LOCK was released after {HOLD_TIMEOUT} s "
                "while worker processes were still opening their snapshots, so they may not share one view; "
                "the task stops: run it again (or lower MaxFullLoadSubTasks)"
            )

    def _expire(self) -> None:
        """The timer: writes on the source have waited long enough."""
        with self._lock:
            if self._holder is not None:
                self._expired = True
                log.warning("%s: read lock held for %s s; releasing it", self.config.display(), HOLD_TIMEOUT)
                self._unlock()

    def _unlock(self) -> None:
        """Caller holds ``self._lock``."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        holder, self._holder = self._holder, None
        if holder is not None:
            with contextlib.suppress(Exception):
                _execute(holder, "UNLOCK TABLES")
            with contextlib.suppress(Exception):
                holder.close()

    def _warn(self, text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(text)

    def close(self) -> None:
        with self._lock:
            self._unlock()
            pool, self._pool = self._pool, []
        for reader in pool:
            reader.close()


def _execute(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def _binlog_position(conn: Any) -> dict[str, str] | None:
    """Where the binlog stood at the snapshot; None when binlog is off or the user may not see it."""
    for sql in ("SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"):
        try:
            rows = _execute(conn, sql)
        except pymysql.err.MySQLError:
            continue
        if not rows:
            return None
        position = {"file": str(rows[0][0]), "pos": str(rows[0][1])}
        for gtid_sql in ("SELECT @@GLOBAL.gtid_binlog_pos", "SELECT @@GLOBAL.gtid_executed"):
            with contextlib.suppress(pymysql.err.MySQLError):
                position["gtid"] = str(_execute(conn, gtid_sql)[0][0] or "")
                break
        return position
    return None
