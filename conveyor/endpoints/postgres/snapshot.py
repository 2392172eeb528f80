"""Reading PostgreSQL tables: every worker inside one exported snapshot.

A coordinator connection opens a REPEATABLE READ transaction and exports its snapshot; each reader
imports it (``SET TRANSACTION SNAPSHOT``) on its own connection, so all workers see the same
database state. The coordinator stays open until ``close()``: an exported snapshot lives only as
long as the transaction that exported it.

Two ways out:
* decoded (another engine's target): a binary server-side cursor, fetched ``batch_rows`` at a time;
  the server casts what psycopg would not load canonically (``types.SELECT_CASTS``), so no
  Python code runs per value. (Measured: faster than ``COPY ... (FORMAT binary)`` parsed by
  ``copy.rows()``, which pays a Python generator round per row.)
* raw (a PostgreSQL target): ``COPY ... TO STDOUT (FORMAT binary)`` read straight from libpq and
  handed over in ~1 MiB chunks, never decoded; the applier streams them into ``COPY ... FROM``.
"""

from __future__ import annotations

import contextlib
import itertools
import selectors
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import IsolationLevel, pq
from psycopg.adapt import AdaptersMap, Transformer

from conveyor.endpoints.config import PostgresConfig
from conveyor.endpoints.postgres import types
from conveyor.endpoints.postgres.connect import connect, copy, literal, quote, run
from conveyor.endpoints.postgres.errors import first_line, privilege_message
from conveyor.endpoints.postgres.introspect import ESTIMATE_SQL
from conveyor.endpoints.sql.snapshot import Decoder, SqlSnapshotReader
from conveyor.errors import TerminalError, UserActionError
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.segments import Segment, SourcePartition

#: bytes per pass-through chunk: big enough that per-chunk costs vanish, small enough to stream
RAW_CHUNK_BYTES = 1 << 20
#: built-in date/time types whose values may not fit Python's datetime ('infinity', year 10000, BC, 24:00)
DATETIME_OIDS: dict[int, str] = {1082: "date", 1083: "time", 1266: "timetz", 1114: "timestamp", 1184: "timestamptz"}

OID_SQL = (
    "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s"
)
PAGES_SQL = "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int8"
#: every partition below a table, each with its parent (pg_partition_tree: PostgreSQL 12+)
PARTITIONS_SQL = (
    "SELECT t.relid::oid, t.parentrelid::oid, t.isleaf, n.nspname, c.relname "
    "FROM pg_catalog.pg_partition_tree(%s::oid::regclass) t JOIN pg_catalog.pg_class c ON c.oid = t.relid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE t.level > 0 ORDER BY t.level, n.nspname, c.relname"
)


class PostgresSnapshotReader(SqlSnapshotReader):
    def __init__(self, conn: psycopg.Connection[Any], config: PostgresConfig, snapshot_id: str | None) -> None:
        super().__init__(conn)
        self.config = config
        self._quoted: dict[str, str] = {}
        self._cursors = itertools.count()
        self._selector = selectors.DefaultSelector()
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        if snapshot_id is not None:
            try:
                # must be the transaction's first statement; psycopg has just sent BEGIN
                run(conn, f"SET TRANSACTION SNAPSHOT {literal(conn, snapshot_id)}")
            except psycopg.Error as exc:
                raise TerminalError(
                    f"cannot join the source snapshot {snapshot_id}: {first_line(exc)}; "
                    "it ends when the task's coordinating connection closes; restart the task"
                ) from None

    # ------------------------------------------------------------------ hooks
    def quote(self, name: str) -> str:
        q = self._quoted.get(name)
        if q is None:
            q = self._quoted[name] = quote(self.conn, name)
        return q

    def decoder(self, column: Column) -> Decoder | None:
        return None  # SELECT_CASTS and psycopg's loaders give canonical values

    def select_expression(self, column: Column) -> str:
        return types.select_expression(column.type, self.quote(column.name))

    def segment_filter(self, segment: Segment) -> tuple[str, list[Any]]:
        if segment.kind != "ctid":
            return super().segment_filter(segment)
        # TID range scan (PostgreSQL 14+): reads only the segment's heap pages
        clauses, params = ["ctid >= %s::tid"], [f"({int(segment.lo or 0)},0)"]
        if segment.hi is not None:
            clauses.append("ctid < %s::tid")
            params.append(f"({int(segment.hi)},0)")
        return " WHERE " + " AND ".join(clauses), params

    def select_sql(self, table: Table, segment: Segment, decode: bool = True) -> tuple[str, list[Any]]:
        if not segment.partitions:
            return super().select_sql(table, segment, decode)
        # each partition is a table of its own: read directly, only its pages are scanned
        queries, params = [], []
        whole = replace(segment, kind="all", partitions=())
        for partition in segment.partitions:
            sql, values = super().select_sql(replace(table, id=partition), whole, decode)
            queries.append(sql)
            params += values
        return " UNION ALL ".join(queries), params

    def partitions(self, table: Table) -> list[SourcePartition]:
        oid, _ = self._relation(table)
        rows = run(self.conn, PARTITIONS_SQL, (oid,)).fetchall()
        ids = {relid: TableId(schema, name) for relid, _, _, schema, name in rows}
        parents = {relid: parent for relid, parent, _, _, _ in rows}
        out = []
        for relid, _, leaf, _, _ in rows:
            chain, up = [], parents[relid]
            while up in ids:
                chain.append(ids[up])
                up = parents[up]
            out.append(SourcePartition(ids[relid], tuple(reversed(chain)), bool(leaf)))
        return out

    # ------------------------------------------------------------------ sizes
    def _relation(self, table: Table) -> tuple[int, str]:
        row = run(self.conn, OID_SQL, (table.id.schema, table.id.name)).fetchone()
        if row is None:
            raise TerminalError(f"table {table.id} no longer exists on the source; it was dropped during the load")
        return int(row[0]), str(row[1])

    def estimate_rows(self, table: Table) -> int:
        oid, _ = self._relation(table)
        estimate, unanalyzed = run(self.conn, ESTIMATE_SQL, (oid, oid)).fetchone() or (0, False)
        if unanalyzed:
            row = run(self.conn, f"SELECT count(*) FROM {self.qualified(table)}").fetchone()
            return int(row[0]) if row else 0
        return int(estimate)

    def page_count(self, table: Table) -> int:
        oid, relkind = self._relation(table)
        if relkind != "r":
            return 0  # partitioned: ctid is not unique across partitions
        row = run(self.conn, PAGES_SQL, (oid,)).fetchone()
        return int(row[0]) if row else 0

    def key_bounds(self, table: Table, column: str) -> tuple[int, int] | None:
        col = self.quote(column)
        row = run(self.conn, f"SELECT min({col}), max({col}) FROM {self.qualified(table)}").fetchone()
        if row is None or not isinstance(row[0], int) or not isinstance(row[1], int):
            return None
        return int(row[0]), int(row[1])

    # ------------------------------------------------------------------ reading
    def read(self, table: Table, segment: Segment, batch_rows: int, decode: bool = True) -> Iterator[RowBatch]:
        try:
            # a savepoint: a read abandoned half-way (or failed) rolls back to here, and the snapshot
            # transaction stays usable for the worker's next segment
            with self.conn.transaction():
                if decode:
                    yield from self._read_decoded(table, segment, batch_rows)
                else:
                    yield from self._read_raw(table, segment)
        except psycopg.errors.UndefinedTable:
            raise TerminalError(
                f"table {table.id} no longer exists on the source; it was dropped during the load"
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UserActionError(privilege_message(exc, first_line(exc), "SELECT")) from None

    def _read_decoded(self, table: Table, segment: Segment, batch_rows: int) -> Iterator[RowBatch]:
        query, params = self.select_sql(table, segment, decode=True)
        names = table.column_names
        cur = self.conn.cursor(f"conveyor_read_{next(self._cursors)}", binary=True)
        try:
            cur.execute(query, params)
            while True:
                rows = self._fetch(cur, batch_rows)
                if not rows:
                    break
                yield RowBatch(names, rows)
        finally:
            with contextlib.suppress(psycopg.Error):
                cur.close()

    def _fetch(self, cur: psycopg.ServerCursor[Any], size: int) -> list[Row]:
        try:
            return cur.fetchmany(size)
        except psycopg.DataError as exc:
            result = cur.pgresult
            if exc.sqlstate is not None or result is None:
                raise  # the server's error, not psycopg's loaders
            return self._decode_out_of_range(result)

    def _decode_out_of_range(self, result: pq.abc.PGresult) -> list[Row]:
        """Decode a batch again with loaders that keep out-of-range dates as their PostgreSQL text
        ('infinity', year 10000, BC). Only batches holding such values pay for it."""
        adapters = AdaptersMap(self.conn.adapters)
        for oid, name in DATETIME_OIDS.items():
            loader = self.conn.adapters.get_loader(oid, pq.Format.BINARY)
            if loader is not None:
                adapters.register_loader(oid, types.fallback_loader(name, loader(oid, self.conn).load))
        tx = Transformer(_Context(adapters, self.conn))
        tx.set_pgresult(result)
        rows: list[Row] = tx.load_rows(0, result.ntuples, tuple)
        return rows

    def _read_raw(self, table: Table, segment: Segment) -> Iterator[RowBatch]:
        names = table.column_names
        fmt = types.copy_format(table)
        query, params = self.select_sql(table, segment, decode=False)
        if segment.kind == "all" and not segment.filters and table.extra.get("relkind", "r") == "r":
            source = f"{self.qualified(table)} ({', '.join(self.quote(n) for n in names)})"
        else:
            source = f"({query})"  # partitioned tables and segments: COPY of a query
        cur = self.conn.cursor()
        with copy(cur, f"COPY {source} TO STDOUT (FORMAT {fmt})", params):
            reader = _CopyOut(self.conn.pgconn, self._selector)
            for chunk in reader.chunks(RAW_CHUNK_BYTES):
                yield RowBatch(names, [], raw=chunk, row_count=0, byte_count=len(chunk))
        # the rows of the whole segment, known once COPY ends (chunks are not split at rows)
        yield RowBatch(names, [], raw=b"", row_count=reader.rows, byte_count=0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._selector.close()
        super().close()


class _Context:
    """The adaptation context psycopg's Transformer wants: adapters and a connection."""

    def __init__(self, adapters: AdaptersMap, connection: psycopg.Connection[Any]) -> None:
        self.adapters = adapters
        self.connection = connection


class _CopyOut:
    """Reads a running ``COPY ... TO STDOUT`` straight from libpq.

    psycopg's ``Copy.read()`` runs a generator round trip per row; for a pass-through that is pure
    overhead, so this loop asks libpq for rows directly and waits on the socket only when libpq has
    nothing buffered (releasing the GIL for the other workers).
    """

    def __init__(self, pgconn: pq.abc.PGconn, selector: selectors.BaseSelector) -> None:
        self.pgconn = pgconn
        self.selector = selector
        self.rows = 0

    def _wait(self) -> None:
        self.selector.select()
        self.pgconn.consume_input()

    def chunks(self, size: int) -> Iterator[bytes]:
        pgconn = self.pgconn
        buf = bytearray()
        self.selector.register(pgconn.socket, selectors.EVENT_READ)
        try:
            while True:
                nbytes, data = pgconn.get_copy_data(1)
                if nbytes > 0:
                    buf += data
                    if len(buf) >= size:
                        yield bytes(buf)
                        buf.clear()
                elif nbytes == 0:
                    self._wait()
                else:
                    break
            if buf:
                yield bytes(buf)
            while pgconn.is_busy():
                self._wait()
            result = pgconn.get_result()
            while pgconn.get_result() is not None:
                pass
        finally:
            self.selector.unregister(pgconn.socket)
        if result is None or result.status != pq.ExecStatus.COMMAND_OK:
            if result is None:
                raise psycopg.OperationalError("COPY ended without a result")
            raise psycopg.errors.error_from_result(result, encoding=pgconn._encoding)
        self.rows = int(result.command_tuples or 0)


def join(config: PostgresConfig, snapshot_id: str | None) -> PostgresSnapshotReader:
    """A reader on a new connection inside the exported snapshot (from any process)."""
    return PostgresSnapshotReader(connect(config, autocommit=False), config, snapshot_id)


class PostgresSnapshot:
    """The coordinator: holds the exported snapshot open until ``close()``; readers may join it
    until then, from any process (``hold`` changes nothing)."""

    def __init__(self, config: PostgresConfig, workers: int, hold: bool = False) -> None:
        self.config = config
        self.workers = workers
        self.warnings: list[str] = []
        self.coordinator = connect(config, autocommit=False)
        self.coordinator.isolation_level = IsolationLevel.REPEATABLE_READ
        self.coordinator.read_only = True
        row = run(self.coordinator, "SELECT pg_export_snapshot()").fetchone()
        self.snapshot_id: str = row[0] if row else ""

    def reader(self) -> PostgresSnapshotReader:
        return join(self.config, self.snapshot_id)

    def token(self) -> str:
        return self.snapshot_id

    def release(self) -> None:
        pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.coordinator.rollback()
        with contextlib.suppress(Exception):
            self.coordinator.close()
