"""Writing PostgreSQL tables with COPY.

* Rows from another engine: ``COPY ... FROM STDIN`` with psycopg writing each row in C. Binary format
  when psycopg's binary dumpers take every column's canonical values (decided once per table from
  the target's catalog, see ``types.binary_dumper_oids``); otherwise text format, where the server
  parses each value (inet, bit, interval given as text; columns whose type differs from the plan).
* PostgreSQL to PostgreSQL: the source's ``COPY ... TO`` chunks are streamed unchanged into one
  ``COPY ... FROM`` per segment; nothing is decoded (``load_batches`` below).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from conveyor.endpoints.base import Encoder, ErrorPolicy, LoadResult, PrepMode, RejectedRow
from conveyor.endpoints.config import PostgresConfig
from conveyor.endpoints.postgres import types
from conveyor.endpoints.postgres.arrays import array_literal, copy_text, joined_texts
from conveyor.endpoints.postgres.connect import copy, literal, quote, run
from conveyor.endpoints.postgres.errors import first_line, privilege_message
from conveyor.endpoints.sql.applier import SEGMENTS_TABLE, BulkLoadRefused, SqlApplier, shutdown_socket
from conveyor.errors import PassThroughRefused, UserActionError
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

TARGET_COLUMNS_SQL = """
SELECT a.attname, a.atttypid, coalesce(bt.typname, t.typname), coalesce(bt.typtype, t.typtype), et.typname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
LEFT JOIN pg_type et ON et.oid = coalesce(bt.typelem, t.typelem) AND coalesce(bt.typcategory, t.typcategory) = 'A'
WHERE n.nspname = %s AND c.relname = %s
"""
TABLE_EXISTS_SQL = (
    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')"
)
SCHEMA_EXISTS_SQL = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
TYPE_EXISTS_SQL = (
    "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typname = %s"
)
#: SQLSTATE classes of errors about a row's values: 22 data exception, 23 integrity constraint violation
DATA_ERROR_CLASSES = ("22", "23")


#: batch apply's column of texts (a PostgreSQL source's own text form) goes as one text (``joined_texts``),
#: which the server cuts back into them
_SPLIT = "string_to_array(%s, E'\\x1e', E'\\x1f')"


#: an explicit cast to one of these with a length cuts a longer value short (SQL's rule), where assigning it
#: to the column refuses it: batch apply's arrays are cast to the unbounded type, the column checks the length
_UNBOUNDED = {"varchar": "varchar", "bpchar": "bpchar", "bit": "varbit", "varbit": "varbit"}


@functools.lru_cache(maxsize=512)
def _unbounded(native: str) -> str:
    """``native`` for batch apply's casts: ``character varying(20)`` -> ``varchar`` (``_UNBOUNDED``)."""
    name, args, is_array = types.parse_native(native)
    return _UNBOUNDED[name] if args and name in _UNBOUNDED and not is_array else native


class _DumpError(Exception):
    """psycopg could not write a value into COPY (a value of the wrong type or range)."""


@dataclass(frozen=True, slots=True)
class _CopyPlan:
    statement: str
    types: list[int | str] | None  # binary COPY's set_types; None = text COPY


class PostgresApplier(SqlApplier):
    engine = types.ENGINE
    param = "%s"
    alter_constraints = True
    index_names_per_schema = True
    max_identifier_length = 63
    text_type = "text"
    bigint_type = "bigint"
    timestamp_type = "timestamp"

    def __init__(self, conn: psycopg.Connection[Any], control_schema: str, config: PostgresConfig) -> None:
        super().__init__(conn, control_schema)
        self.config = config
        self._quoted: dict[str, str] = {}
        self._plans: dict[tuple[TableId, tuple[str, ...]], _CopyPlan] = {}
        #: tables (qualified) whose batch apply inserts COPY refused: they go as INSERT statements (``copy_rows``)
        self._copy_refused: set[str] = set()
        #: while a segment loads (not carefully): the COPY its batches share
        self._segment: contextlib.ExitStack | None = None
        self._segment_stream: psycopg.Copy | None = None
        # canonical JSON text into jsonb columns in binary COPY (looked up by oid via set_types only)
        conn.adapters.register_dumper(None, types.JsonbTextBinaryDumper)

    # ----------------------------------------------------------------- hooks
    def quote(self, name: str) -> str:
        q = self._quoted.get(name)
        if q is None:
            # no connection: batch apply builds its statements on another thread (``prepare_net``)
            q = self._quoted[name] = quote(None, name)
        return q

    def map_type(self, column_type: ColumnType) -> str:
        return types.to_native(column_type)

    def encoder(self, column_type: ColumnType, native: str) -> Encoder | None:
        return types.encoder(column_type, native)

    def logical_type(self, native: str) -> ColumnType | None:
        """A built-in type (``numeric(12,2)``, ``character varying``); not arrays, user or extension types."""
        name, args, is_array = types.parse_native(native)
        logical = types.NATIVE_TO_LOGICAL.get(name)
        if logical is None or is_array:
            return None
        params = dict(types.FIXED_PARAMS.get(name, {}))
        if name == "numeric" and args:
            params.update(precision=args[0], scale=args[1] if len(args) > 1 else 0)
        return ColumnType(logical, native=native, engine=types.ENGINE, **params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return run(self.conn, sql, params)

    def interrupt(self) -> None:
        shutdown_socket(self.conn.pgconn.socket)

    def foreign_key_actions(self, logged: bool) -> str | None:
        """PostgreSQL's foreign keys act in every session; a source whose log holds their rows already
        (a PostgreSQL source) needs them quiet, as its own replicas are: session_replication_role replica
        (superuser, or GRANT SET ON PARAMETER session_replication_role), which quiets the target's
        triggers too."""
        if not logged:
            return None
        try:
            self.execute("SET session_replication_role = replica")
            self.commit()
        except psycopg.errors.InsufficientPrivilege:
            self.rollback()
            return (
                "the target's foreign keys with ON DELETE / ON UPDATE actions act again on rows the source's log "
                "already changed (a DELETE of a row already gone becomes an apply error); to prevent it run "
                f"GRANT SET ON PARAMETER session_replication_role TO {self.conn.info.user}"
            )
        return None

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Any]:
        """psycopg's pipeline; a failure inside the block is what the caller gets. psycopg would log
        ("error ignored terminating Pipeline") the second error its end then meets: the lost connection,
        or a statement's error that waited for the sync. The block's failure says it already."""
        failure: Exception | None = None
        try:
            with self.conn.pipeline() as pipeline:
                try:
                    yield pipeline
                except Exception as exc:
                    failure = exc
        except Exception:
            if failure is None:
                raise
        if failure is not None:
            raise failure

    def commit_lazily(self) -> bool:
        # as PostgreSQL's own subscriptions apply: the WAL writer flushes within wal_writer_delay. Only
        # where the WAL positions can be read (a server that hides them keeps durable commits)
        try:
            self.log_positions()
        except psycopg.Error:
            self.rollback()
            return False
        self.execute("SET synchronous_commit = off")
        self.commit()
        return True

    def log_positions(self) -> tuple[int, int]:
        row = self.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint, "
            "pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint"
        ).fetchone()
        self.commit()
        return int(row[0]), int(row[1])

    index_joins_sql = "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"

    def takes_arrays(self, natives: Sequence[str]) -> bool:
        # unnest() flattens arrays of arrays: a column that is itself an array goes the generic way
        return not any(types.parse_native(n)[2] for n in natives)

    def array_param(self, values: list[Any], native: str) -> tuple[str, str, Any]:
        # Texts: each element is read by its type's input function as in a typed array literal, but the server
        # parses no literal (quotes, escapes: JSON is full of them) and Conveyor writes none. bench/cdc.py pg2pg:
        # target CPU per change 7.5 -> 6.8 µs, Conveyor's 4.9 -> 4.5 µs (docs/cdc.md)
        native = _unbounded(native)
        joined = joined_texts(values)
        if joined is not None:
            return _SPLIT, f"::{native}", joined
        return f"%s::{native}[]", "", array_literal(values)

    def array_rows(self, arrays: Sequence[str]) -> str:
        return "unnest(" + ", ".join(arrays) + ")"

    def any_of(self, column: str, array: str, cast: str) -> str:
        return f"{column} = ANY({array}{cast}[])" if cast else f"{column} = ANY({array})"

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Callable[[], None] | None:
        # Rows of texts (a PostgreSQL source's own text form) by text COPY: the server inserts them in bulk
        # (heap_multi_insert), ~6.3 µs a row of its CPU against INSERT ... SELECT FROM unnest's ~10.3 (docs/cdc.md)
        if table in self._copy_refused:
            return None
        text = copy_text(rows)
        if text is None:
            return None
        statement = f"COPY {table} ({self.column_list(columns)}) FROM STDIN"

        def send() -> None:
            try:
                with copy(self.conn.cursor(), statement) as stream:
                    stream.write(text)
            except psycopg.errors.FeatureNotSupported as exc:  # "COPY FROM not supported with row-level security"
                self._copy_refused.add(table)
                raise BulkLoadRefused(f"{table}: {first_line(exc)}") from exc

        return send

    def identity_clause(self, native: str) -> str:
        name, _, is_array = types.parse_native(native)
        return " GENERATED BY DEFAULT AS IDENTITY" if name in ("int2", "int4", "int8") and not is_array else ""

    def reset_identity_sql(self, table: Table, column: Column) -> list[str]:
        name = self.regclass(table.id)
        last = "" if column.identity_last is None else f", {int(column.identity_last)}"
        return [
            f"SELECT setval(pg_get_serial_sequence({name}, {literal(self.conn, column.name)}), m) "
            f"FROM (SELECT greatest(max({self.quote(column.name)}){last}) AS m FROM {self.qualified(table.id)}) AS s "
            "WHERE m IS NOT NULL"
        ]

    no_cycle = "NO CYCLE"

    def set_sequence_sql(self, target: TableId, last_value: int) -> str:
        return f"SELECT setval({self.regclass(target)}, {int(last_value)}, true)"

    def regclass(self, table_id: TableId) -> str:
        """A relation's name as a text literal, for the functions that take one as regclass."""
        return literal(self.conn, sql.Identifier(table_id.schema, table_id.name).as_string(self.conn))

    def comment_sql(self, table: Table) -> list[str]:
        out = []
        if table.comment:
            out.append(f"COMMENT ON TABLE {self.qualified(table.id)} IS {literal(self.conn, table.comment)}")
        for column in table.columns:
            if column.comment:
                target = f"{self.qualified(table.id)}.{self.quote(column.name)}"
                out.append(f"COMMENT ON COLUMN {target} IS {literal(self.conn, column.comment)}")
        return out

    def drop_table_sql(self, table: Table) -> str:
        return f"DROP TABLE IF EXISTS {self.qualified(table.id)} CASCADE"

    def table_exists(self, table_id: TableId) -> bool:
        return run(self.conn, TABLE_EXISTS_SQL, (table_id.schema, table_id.name)).fetchone() is not None

    def upsert_control_sql(self) -> str:
        return (
            f"INSERT INTO {self.control(SEGMENTS_TABLE)} (task_name, table_name, segment, rows_loaded, "
            f"rows_rejected, lease, finished_at) VALUES ({self.params(7)}) "
            "ON CONFLICT (task_name, table_name, segment) DO UPDATE SET rows_loaded = EXCLUDED.rows_loaded, "
            "rows_rejected = EXCLUDED.rows_rejected, lease = EXCLUDED.lease, finished_at = EXCLUDED.finished_at"
        )

    def is_data_error(self, exc: BaseException) -> bool:
        if isinstance(exc, _DumpError | psycopg.DataError | psycopg.IntegrityError):
            return True
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in DATA_ERROR_CLASSES

    # ----------------------------------------------------------------- schemas and types
    def ensure_schema(self, schema: str) -> None:
        # checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when it exists
        if run(self.conn, SCHEMA_EXISTS_SQL, (schema,)).fetchone() is None:
            run(self.conn, f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}")

    def ensure_enum(self, t: ColumnType) -> None:
        """Create a PostgreSQL source's enum type on the target when it is missing."""
        schema, name = types.extra_value(t, "type_schema"), types.extra_value(t, "type_name")
        if not schema or not name or run(self.conn, TYPE_EXISTS_SQL, (schema, name)).fetchone() is not None:
            return
        self.ensure_schema(schema)
        run(self.conn, self.create_enum_sql(TableId(schema, name), t.values))

    def create_enum_sql(self, type_id: TableId, values: Sequence[str]) -> str:
        labels = ", ".join(literal(self.conn, v) for v in values)
        return f"CREATE TYPE {self.qualified(type_id)} AS ENUM ({labels})"

    def create_schema_sql(self, schema: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}"

    def start_task(self, task_name: str, fresh: bool) -> int:
        self.ensure_schema(self.control_schema)
        return super().start_task(task_name, fresh)

    def prepare(self, table: Table, native_types: list[str], mode: PrepMode) -> None:
        # one transaction with the CREATE TABLE (PostgreSQL's DDL is transactional)
        self.ensure_schema(table.id.schema)
        for column, native in zip(table.columns, native_types, strict=True):
            t = column.type
            if t.engine != types.ENGINE or native != t.native:
                continue  # not kept native: enums became text
            if t.logical is L.ENUM:
                self.ensure_enum(t)
            elif t.logical is L.ARRAY and t.element is not None and t.element.logical is L.ENUM:
                self.ensure_enum(t.element)
        super().prepare(table, native_types, mode)

    # ----------------------------------------------------------------- loading rows
    def _copy_plan(self, table: Table, columns: tuple[str, ...]) -> _CopyPlan:
        key = (table.id, columns)
        plan = self._plans.get(key)
        if plan is None:
            found = {
                r[0]: types.TargetColumn(r[0], r[1], r[2], r[3], r[4])
                for r in run(self.conn, TARGET_COLUMNS_SQL, (table.id.schema, table.id.name)).fetchall()
            }
            missing = [c for c in columns if c not in found]
            if missing:
                raise UserActionError(
                    f"target table {table.id} has no column {', '.join(missing)}; "
                    "use TargetTablePrepMode DROP_AND_CREATE or add the columns"
                )
            dumpers = types.binary_dumper_oids([found[c] for c in columns], [table.column(c).type for c in columns])
            fmt = "binary" if dumpers is not None else "text"
            statement = f"COPY {self.qualified(table.id)} ({self.column_list(columns)}) FROM STDIN (FORMAT {fmt})"
            plan = self._plans[key] = _CopyPlan(statement, dumpers)
        return plan

    def encode(
        self, table: Table, batch: RowBatch, active: list[tuple[int, Encoder]], rejected: list[RejectedRow]
    ) -> list[Row]:
        """Encoders whose batch check passes for the whole column are skipped (``types.BATCH_CHECKS``:
        C-speed proofs that every value is already fine); the rest run per value in the skeleton."""
        rows = batch.rows
        if not active or not rows:
            return rows
        pending = []
        for i, fn in active:
            check = types.BATCH_CHECKS.get(fn)
            if check is None or not check(types.present_values(rows, i)):
                pending.append((i, fn))
        return super().encode(table, batch, pending, rejected) if pending else rows

    def _open_copy(self, plan: _CopyPlan) -> contextlib.AbstractContextManager[psycopg.Copy]:
        @contextlib.contextmanager
        def opened() -> Iterator[psycopg.Copy]:
            with copy(self.conn.cursor(), plan.statement) as stream:
                if plan.types is not None:
                    stream.set_types(plan.types)
                yield stream

        return opened()

    def bulk_insert(
        self, table: Table, columns: Sequence[str], natives: Sequence[str], batch: RowBatch, rows: list[Row]
    ) -> None:
        """Rows into COPY: the segment's one open COPY (see ``load_batches``), else a COPY of their own."""
        plan = self._copy_plan(table, tuple(columns))
        segment = self._segment
        if segment is not None:
            if self._segment_stream is None:
                self._segment_stream = segment.enter_context(self._open_copy(plan))
            self._write_rows(self._segment_stream, rows, natives)
            return
        with self._open_copy(plan) as stream:
            self._write_rows(stream, rows, natives)

    @staticmethod
    def _write_rows(stream: psycopg.Copy, rows: list[Row], natives: Sequence[str]) -> None:
        write_row = stream.write_row
        try:
            for row in rows:
                write_row(row)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _DumpError(f"psycopg cannot write a value of the row: {exc}") from exc

    def load_batches(
        self,
        table: Table,
        batches: Callable[[], Iterable[RowBatch]],
        active: list[tuple[int, Encoder]],
        policy: ErrorPolicy,
        on_progress: Callable[[int, int], None],
        native_types: Sequence[str],
        careful: bool,
    ) -> LoadResult:
        """Raw batches (PostgreSQL pass-through) go to ``_load_raw``; decoded ones through the skeleton,
        into one COPY for the whole segment (the server parses while the next batch is read; a COPY per
        batch would leave it idle in between). The careful reload keeps a COPY per batch and row."""
        stream = iter(batches())
        try:
            first = next(stream, None)
            if first is None:
                return LoadResult()
            chained = itertools.chain([first], stream)
            if first.raw is not None:
                return self._load_raw(table, first.columns, chained, on_progress)
            if careful:
                return super().load_batches(table, lambda: chained, active, policy, on_progress, native_types, careful)
            with contextlib.ExitStack() as segment:  # leaving it ends the COPY (or fails it, on an error)
                self._segment, self._segment_stream = segment, None
                try:
                    return super().load_batches(
                        table, lambda: chained, active, policy, on_progress, native_types, careful
                    )
                finally:
                    self._segment = None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UserActionError(privilege_message(exc, first_line(exc), "INSERT")) from None
        finally:
            # Close the reader's generator now, while its connection is open: a traceback holding this
            # frame would otherwise keep it suspended until after the runner closed its connections.
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _load_raw(
        self,
        table: Table,
        columns: tuple[str, ...],
        batches: Iterator[RowBatch],
        on_progress: Callable[[int, int], None],
    ) -> LoadResult:
        result = LoadResult()
        statement = (
            f"COPY {self.qualified(table.id)} ({self.column_list(columns)}) "
            f"FROM STDIN (FORMAT {types.copy_format(table)})"
        )
        cur = self.conn.cursor()
        try:
            with copy(cur, statement) as stream:
                for batch in batches:
                    if batch.raw:
                        stream.write(batch.raw)
                    if batch.byte_count:
                        result.bytes += batch.byte_count
                        on_progress(0, batch.byte_count)
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.Error as exc:
            if not self.is_data_error(exc):
                raise
            # the stream cannot be re-read row by row: the runner copies the segment again, decoded
            raise PassThroughRefused(
                f"{table.id}: the target rejected a row of the PostgreSQL pass-through copy: {first_line(exc)} "
                "(the target table must have the source's column types and accept every row)"
            ) from exc
        result.rows = max(cur.rowcount, 0)
        on_progress(result.rows, 0)
        return result
