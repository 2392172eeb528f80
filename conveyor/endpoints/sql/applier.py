"""The applier skeleton: owns the sequence of a segment load; engines fill the hooks.

A segment is loaded in one target transaction, ending with the lease check and the segment's
control row, so it commits whole or not at all. When the target rejects a row the skeleton rolls
back and loads the segment again batch by batch and row by row under savepoints, so each bad row is
found, recorded and (by policy) skipped while every good row still arrives.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from conveyor.convert.schema_change import AddColumn, ColumnChange, DropColumn, RenameColumn, WidenColumn, apply_change
from conveyor.endpoints.base import (
    Encoder,
    ErrorPolicy,
    LoadResult,
    PrepMode,
    RejectedRow,
    describe_row,
)
from conveyor.errors import RowRejected, StopTask, TerminalError
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import (
    Column,
    ExpressionIndex,
    ForeignKey,
    GeneratedColumn,
    Index,
    Key,
    SequenceDef,
    Table,
    TableId,
)
from conveyor.model.types import ColumnType

SEGMENTS_TABLE = "conveyor_segments"
LEASES_TABLE = "conveyor_leases"
EXCEPTIONS_TABLE = "conveyor_apply_exceptions"
#: characters of a rejected row kept in the exceptions table's ``statement`` column
RECORDED_ROW_CHARS = 64 << 10


class StaleLease(TerminalError):
    """Another run of the task took a newer lease; this one must stop writing."""


class BulkLoadRefused(Exception):
    """The engine's bulk load refused a table, not its rows (PostgreSQL: COPY into a table under row-level
    security): its batch goes the ordered way, and its inserts go as statements from then on."""


class SqlApplier:
    """Shared applier for DB-API targets. Subclasses set the class constants and hooks."""

    #: the engine's name (``EngineSpec.name``): the SQL dialect schema conversion writes for it
    engine = ""
    #: placeholder for a bound parameter in the driver's paramstyle
    param = "%s"
    #: bytes one statement (its SQL with the values written in) may take on the server; None: no limit
    #: that batch apply's multi-row statements could meet (MySQL's ``max_allowed_packet`` has one)
    statement_bytes: int | None = None
    #: whether ALTER TABLE can add constraints after creation (SQLite cannot)
    alter_constraints = True
    #: whether index names live per schema (PostgreSQL, SQLite) rather than per table (MySQL)
    index_names_per_schema = True
    max_identifier_length = 63
    #: native types of the control tables' columns
    text_type = "TEXT"
    bigint_type = "BIGINT"
    timestamp_type = "TIMESTAMP"
    #: NULL-safe equality, for matching old rows in change apply
    null_safe_equals = "IS NOT DISTINCT FROM"
    #: the pseudo-column locating one physical row (PostgreSQL ctid, SQLite rowid), used to change a
    #: single row of a table without a key; None: the engine takes ``LIMIT 1`` on UPDATE/DELETE (MySQL)
    row_locator: str | None = "ctid"
    #: ALTER TABLE templates for a source's column changes during CDC: ``{table}`` qualified, ``{column}``
    #: (the old name), ``{new}`` and ``{index}`` quoted, ``{native}`` the target type, ``{definition}`` the
    #: whole column as CREATE TABLE declares it
    add_column_sql = "ALTER TABLE {table} ADD COLUMN {definition}"
    drop_column_sql = "ALTER TABLE {table} DROP COLUMN {column}"
    rename_column_sql = "ALTER TABLE {table} RENAME COLUMN {column} TO {new}"
    alter_type_sql = "ALTER TABLE {table} ALTER COLUMN {column} TYPE {native}"
    drop_not_null_sql = "ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"
    #: names of a table's columns on the target, bound (schema, table)
    columns_sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
    #: indexes over a column, bound (schema, table, column): dropped before the column, since MySQL would
    #: keep them on the other columns and SQLite refuses the drop; None where DROP COLUMN takes them along
    #: (PostgreSQL), which is what ``apply_change`` records
    column_indexes_sql: str | None = None
    drop_index_sql = "DROP INDEX {index}"

    def __init__(self, connection: Any, control_schema: str) -> None:
        self.conn = connection
        self.control_schema = control_schema
        self._ensure_lock = threading.Lock()

    # ----------------------------------------------------------------- hooks for engines
    def quote(self, name: str) -> str:
        raise NotImplementedError

    def map_type(self, column_type: ColumnType) -> str:
        raise NotImplementedError

    def encoder(self, column_type: ColumnType, native: str) -> Encoder | None:
        raise NotImplementedError

    def logical_type(self, native: str) -> ColumnType | None:
        return None

    def bulk_insert(
        self, table: Table, columns: Sequence[str], natives: Sequence[str], batch: RowBatch, rows: list[Row]
    ) -> None:
        """Write rows fast; may raise the driver's errors (the skeleton classifies them)."""
        raise NotImplementedError

    def is_data_error(self, exc: BaseException) -> bool:
        """True when the error is about a row's values (so other rows may still load)."""
        raise NotImplementedError

    def identity_clause(self, native: str) -> str:
        """Column suffix making an integer column generate values (empty when the engine cannot)."""
        return ""

    def reset_identity_sql(self, table: Table, column: Column) -> list[str]:
        """After a full load: SQL making the identity go on after the loaded rows and after the source's
        last value (``Column.identity_last``), where the engine does not do it by itself."""
        return []

    #: CREATE SEQUENCE's clause for a sequence that does not cycle; None: the engine has no sequences
    no_cycle: str | None = None
    #: the bounds of the engine's sequences (a source's MINVALUE / MAXVALUE outside them is its default)
    sequence_range = (-(2**63), 2**63 - 1)

    def create_sequence_sql(self, seq: SequenceDef, target: TableId) -> list[str] | None:
        """Statements creating a sequence that goes on after the source's last value, or None where the
        engine has no sequences."""
        if self.no_cycle is None:
            return None
        lo, hi = self.sequence_range
        parts = [f"CREATE SEQUENCE {self.qualified(target)} INCREMENT BY {int(seq.increment)}"]
        if seq.min_value is not None and lo < seq.min_value <= hi:
            parts.append(f"MINVALUE {int(seq.min_value)}")
        if seq.max_value is not None and lo <= seq.max_value < hi:
            parts.append(f"MAXVALUE {int(seq.max_value)}")
        parts += [f"START WITH {int(seq.start)}", "CYCLE" if seq.cycle else self.no_cycle]
        out = [" ".join(parts)]
        if seq.last_value is not None:
            out.append(self.set_sequence_sql(target, int(seq.last_value)))
        return out

    def set_sequence_sql(self, target: TableId, last_value: int) -> str:
        """The statement making a sequence's next value the one after ``last_value``."""
        raise NotImplementedError

    def drop_table_sql(self, table: Table) -> str:
        return f"DROP TABLE IF EXISTS {self.qualified(table.id)}"

    def truncate_sql(self, table: Table) -> str:
        return f"TRUNCATE TABLE {self.qualified(table.id)}"

    def table_exists(self, table_id: TableId) -> bool:
        raise NotImplementedError

    def upsert_control_sql(self) -> str:
        """Insert a segment row, replacing an older one for the same key."""
        raise NotImplementedError

    def limit_one_sql(self, table: Table, head: str, where: str) -> str:
        """``head`` (an UPDATE ... SET or DELETE FROM) restricted to the row ``where`` names; for a table
        without a key, to one of the identical rows it may match (the table is a multiset)."""
        if table.row_key():
            return f"{head} WHERE {where}"
        if self.row_locator is None:
            return f"{head} WHERE {where} LIMIT 1"
        loc = self.row_locator
        return f"{head} WHERE {loc} = (SELECT {loc} FROM {self.qualified(table.id)} WHERE {where} LIMIT 1)"

    # ----------------------------------------------------------------- naming
    def qualified(self, table_id: TableId) -> str:
        return f"{self.quote(table_id.schema)}.{self.quote(table_id.name)}"

    def control(self, name: str) -> str:
        return self.qualified(TableId(self.control_schema, name))

    def params(self, count: int) -> str:
        return ", ".join([self.param] * count)

    def object_name(self, table: Table, name: str) -> str:
        """Index/constraint name, made unique per schema where the target needs it."""
        if self.index_names_per_schema and not name.startswith(table.id.name):
            name = f"{table.id.name}_{name}"
        return name[: self.max_identifier_length]

    # ----------------------------------------------------------------- transactions
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        if params:
            cur.execute(sql, params)
        else:
            cur.execute(sql)
        return cur

    def interrupt(self) -> None:
        """From another thread: make the call this connection is blocked in fail now (a watchdog's
        way out of a server that stopped answering). The connection is unusable afterwards."""
        raise NotImplementedError

    #: run in the apply transaction before bulk statements that join change rows to the table: makes the
    #: planner look each row up by key. It would otherwise walk or hash the whole table once a batch's
    #: estimated row count grows (a merge join over the full index at ~10k rows, a hash join at ~40k),
    #: making apply cost grow with the table instead of with the changes.
    index_joins_sql: str | None = None

    def commit_lazily(self) -> bool:
        """From now on, let commits return before their log is on disk, where the engine can do so per
        session; ``log_positions`` then says when they are durable. False: commits stay durable on return."""
        return False

    def log_positions(self) -> tuple[int, int]:
        """After ``commit_lazily``: (where the target's log ends now, how far it is on disk)."""
        raise NotImplementedError

    #: seconds the server keeps this session idle before ending it, where ``bound_idle_session`` set them
    idle_timeout: float | None = None

    def bound_idle_session(self, seconds: int) -> None:
        """Where a server keeps the session of a client that vanished (a network partition) until the
        session's idle timeout, with its transaction's locks (the task's lease row): make that ``seconds``
        (``idle_timeout``); the caller then keeps the session busier (``ping``). Nothing elsewhere
        (PostgreSQL asks for TCP keepalives, ``postgres.connect.SESSION``; SQLite has no server)."""

    def foreign_key_actions(self, logged: bool) -> str | None:
        """For change processing from a source whose log holds the rows its foreign keys' ON DELETE / ON
        UPDATE actions changed (``logged``): keep the target's own keys from acting on them a second time; a
        warning where it cannot (None: done). Here nothing to do: these sessions run without foreign-key
        checks. (A log without them, MySQL's, leaves rows those actions changed behind: see ``cdc``.)"""
        return None

    def ping(self) -> None:
        """A round trip that keeps an idle session alive."""
        self.execute("SELECT 1").fetchall()
        self.commit()

    def takes_arrays(self, natives: Sequence[str]) -> bool:
        """Batch apply's bulk statements may take columns of these native types as one array parameter
        each (``array_param``, ``array_rows``)."""
        return False

    def array_param(self, values: list[Any], native: str) -> tuple[str, str, Any]:
        """One column's values as one array parameter: (its SQL, an array; the cast each element then
        takes in the statement to be of type ``native``, '' for none; the parameter)."""
        raise NotImplementedError

    def array_rows(self, arrays: Sequence[str]) -> str:
        """A table expression of rows whose columns are the elements of ``arrays`` (``array_param``'s SQL)."""
        raise NotImplementedError

    def any_of(self, column: str, array: str, cast: str) -> str:
        """``column`` equals an element of ``array_param``'s array (whose elements take ``cast``)."""
        raise NotImplementedError

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Callable[[], None] | None:
        """Batch apply's net inserts into ``table`` (qualified) by the engine's bulk load (driver values,
        no encoder): a call that sends them into the open transaction, outside any ``pipeline``. Built
        without the connection (``prepare_net``'s thread). None: the engine has none, or not for these
        rows (they go as an INSERT)."""
        return None

    def update_rows_sql(self, table: str, key: Sequence[str], columns: Sequence[str], rows: int) -> str | None:
        """One statement setting ``columns`` of ``rows`` rows of ``table`` (qualified), each found by
        ``key``, whose row count is the rows it matched (batch apply's net updates); bound per row: the
        new values in ``columns``' order, then the key. None where the engine has none: one UPDATE a row."""
        return None

    def pipeline(self) -> contextlib.AbstractContextManager[Any]:
        """Statements inside are sent without waiting for each other's results, where the driver can
        (their cursors' results are in when the block ends); errors surface by the block's end."""
        return contextlib.nullcontext()

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        cur = self.conn.cursor()
        cur.executemany(sql, params)
        return cur

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def savepoint(self, name: str) -> None:
        self.execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        """Undo to the savepoint, and end it: PostgreSQL and SQLite keep a savepoint rolled back to, so the
        next of the same name would nest inside it, and a window of thousands of refused changes nested
        thousands deep (PostgreSQL then runs out of lock-table memory at the next write, for ever)."""
        self.execute(f"ROLLBACK TO SAVEPOINT {name}")
        self.execute(f"RELEASE SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.execute(f"RELEASE SAVEPOINT {name}")

    # ----------------------------------------------------------------- control tables
    def control_ddl(self) -> list[str]:
        t, b, ts = self.text_type, self.bigint_type, self.timestamp_type
        return [
            f"CREATE TABLE IF NOT EXISTS {self.control(LEASES_TABLE)} "
            f"(task_name VARCHAR(200) NOT NULL PRIMARY KEY, lease {b} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.control(SEGMENTS_TABLE)} "
            f"(task_name VARCHAR(200) NOT NULL, table_name VARCHAR(400) NOT NULL, segment {b} NOT NULL, "
            f"rows_loaded {b} NOT NULL, rows_rejected {b} NOT NULL, lease {b} NOT NULL, "
            f"finished_at {ts} NOT NULL, PRIMARY KEY (task_name, table_name, segment))",
            f"CREATE TABLE IF NOT EXISTS {self.control(EXCEPTIONS_TABLE)} "
            f"(task_name VARCHAR(200) NOT NULL, table_owner VARCHAR(200) NOT NULL, "
            f"table_name VARCHAR(200) NOT NULL, error_time {ts} NOT NULL, row_key {t}, "
            f"column_name VARCHAR(200), error {t} NOT NULL, statement {t})",
        ]

    def start_task(self, task_name: str, fresh: bool) -> int:
        for ddl in self.control_ddl():
            self.execute(ddl)
        p = self.param
        if fresh:
            self.execute(f"DELETE FROM {self.control(SEGMENTS_TABLE)} WHERE task_name = {p}", (task_name,))
        row = self.execute(
            f"SELECT lease FROM {self.control(LEASES_TABLE)} WHERE task_name = {p}", (task_name,)
        ).fetchone()
        lease = (row[0] if row else 0) + 1
        if row:
            self.execute(
                f"UPDATE {self.control(LEASES_TABLE)} SET lease = {p} WHERE task_name = {p}", (lease, task_name)
            )
        else:
            self.execute(
                f"INSERT INTO {self.control(LEASES_TABLE)} (task_name, lease) VALUES ({p}, {p})", (task_name, lease)
            )
        self.commit()
        return lease

    def done_segments(self, task_name: str) -> dict[tuple[str, int], tuple[int, int]]:
        rows = self.execute(
            f"SELECT table_name, segment, rows_loaded, rows_rejected FROM {self.control(SEGMENTS_TABLE)} "
            f"WHERE task_name = {self.param}",
            (task_name,),
        ).fetchall()
        self.commit()
        return {(r[0], int(r[1])): (int(r[2]), int(r[3])) for r in rows}

    def check_lease(self, task_name: str, lease: int) -> None:
        """Fencing: inside the segment's transaction, lock the lease row and verify it is ours."""
        self.send_lease_check(task_name, lease)()

    def send_lease_check(self, task_name: str, lease: int) -> Callable[[], None]:
        """``check_lease`` in two halves: the statement goes now (into an open ``pipeline`` too), the
        returned call verifies its result once it is in (raises ``StaleLease``)."""
        p = self.param
        cur = self.execute(
            f"UPDATE {self.control(LEASES_TABLE)} SET lease = lease WHERE task_name = {p} AND lease = {p}",
            (task_name, lease),
        )

        def verify() -> None:
            if cur.rowcount != 1:
                raise StaleLease(
                    f"task {task_name!r} was started again elsewhere (lease {lease} is stale); this run stops"
                )

        return verify

    def record_rejects(self, task_name: str, rejects: list[RejectedRow]) -> None:
        if not rejects:
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        cur = self.conn.cursor()
        cur.executemany(
            f"INSERT INTO {self.control(EXCEPTIONS_TABLE)} (task_name, table_owner, table_name, error_time, "
            f"row_key, column_name, error, statement) VALUES ({self.params(8)})",
            [
                (task_name, r.table.schema, r.table.name, now, _to_json(r.key), r.column, r.reason, _recorded(r.row))
                for r in rejects
            ],
        )

    # ----------------------------------------------------------------- DDL
    def column_sql(self, table: Table, index: int, native: str) -> str:
        column = table.columns[index]
        sql = f"{self.quote(column.name)} {native}"
        if column.identity:
            sql += self.identity_clause(native)
        if not column.nullable:
            sql += " NOT NULL"
        return sql

    def create_table_sql(self, table: Table, natives: Sequence[str]) -> str:
        parts = [self.column_sql(table, i, n) + self.converted_column_sql(table, i) for i, n in enumerate(natives)]
        if table.converted:
            parts.extend(self.generated_column_sql(g) for g in table.generated_columns)
        pk = self.primary_key_clause(table)
        if pk:
            parts.append(pk)
        if table.converted:
            parts.extend(
                f"CONSTRAINT {self.quote(self.object_name(table, c.name))} CHECK ({c.expression})" for c in table.checks
            )
        if not self.alter_constraints:
            parts.extend(self.foreign_key_sql(fk) for fk in table.foreign_keys)
        return f"CREATE TABLE {self.qualified(table.id)} ({', '.join(parts)})"

    # Schema conversion's parts (``conveyor.convert.ddl``): written only for a table it converted, whose
    # defaults, expressions and checks are then in this target's SQL.
    def converted_column_sql(self, table: Table, index: int) -> str:
        """A converted column's DEFAULT and comment, after its definition."""
        column = table.columns[index]
        if not table.converted:
            return ""
        sql = f" DEFAULT {column.default}" if column.default is not None else ""
        return sql + self.column_comment_clause(column.comment)

    def column_comment_clause(self, comment: str | None) -> str:
        """Inline column comment, where the engine has one (MySQL); others comment in ``comment_sql``."""
        return ""

    def comment_sql(self, table: Table) -> list[str]:
        """Statements setting the table's comment (and its columns', where not inline)."""
        return []

    def create_schema_sql(self, schema: str) -> str | None:
        """The statement creating a schema, where the engine has them below the database."""
        return None

    def create_enum_sql(self, type_id: TableId, values: Sequence[str]) -> str | None:
        """The statement creating a named enum type, where the engine has them (PostgreSQL)."""
        return None

    def generated_column_sql(self, column: GeneratedColumn) -> str:
        kind = "STORED" if column.stored else "VIRTUAL"
        null = "" if column.nullable else " NOT NULL"
        native = self.map_type(column.type)
        return f"{self.quote(column.name)} {native} GENERATED ALWAYS AS ({column.expression}) {kind}{null}"

    def expression_index_sql(self, table: Table, index: ExpressionIndex) -> str:
        unique = "UNIQUE " if index.unique else ""
        name = self.quote(self.object_name(table, index.name))
        using = f" USING {index.method}" if index.method != "btree" else ""
        where = f" WHERE {index.predicate}" if index.predicate else ""
        return f"CREATE {unique}INDEX {name} ON {self.qualified(table.id)}{using} ({', '.join(index.elements)}){where}"

    def primary_key_clause(self, table: Table) -> str | None:
        if not table.primary_key:
            return None
        return f"PRIMARY KEY ({self.column_list(table.primary_key.columns)})"

    def column_list(self, columns: Iterable[str]) -> str:
        return ", ".join(self.quote(c) for c in columns)

    def foreign_key_sql(self, fk: ForeignKey) -> str:
        return (
            f"FOREIGN KEY ({self.column_list(fk.columns)}) REFERENCES {self.qualified(fk.ref_table)} "
            f"({self.column_list(fk.ref_columns)}) ON DELETE {fk.on_delete} ON UPDATE {fk.on_update}"
        )

    def prepare(self, table: Table, native_types: list[str], mode: PrepMode) -> None:
        exists = self.table_exists(table.id)
        if mode is PrepMode.DROP_AND_CREATE and exists:
            self.execute(self.drop_table_sql(table))
            exists = False
        if not exists:
            self.execute(self.create_table_sql(table, native_types))
        elif mode is PrepMode.TRUNCATE_BEFORE_LOAD:
            self.execute(self.truncate_sql(table))
        self.commit()

    def unique_sql(self, table: Table, key: Key) -> str:
        name = self.quote(self.object_name(table, key.name))
        return f"CREATE UNIQUE INDEX {name} ON {self.qualified(table.id)} ({self.column_list(key.columns)})"

    def index_sql(self, table: Table, index: Index) -> str:
        unique = "UNIQUE " if index.unique else ""
        name = self.quote(self.object_name(table, index.name))
        return f"CREATE {unique}INDEX {name} ON {self.qualified(table.id)} ({self.column_list(index.columns)})"

    def add_primary_key_sql(self, table: Table) -> str | None:
        """SQL adding the primary key after the load (``CreatePkAfterFullLoad``), or None when the
        engine cannot (SQLite fixes keys at CREATE TABLE)."""
        if not self.alter_constraints or not table.primary_key:
            return None
        return f"ALTER TABLE {self.qualified(table.id)} ADD PRIMARY KEY ({self.column_list(table.primary_key.columns)})"

    def finish_sql(self, table: Table, add_primary_key: bool = False, after_load: bool = True) -> list[str]:
        """What ``finish`` runs: keys and indexes, then (``after_load``) identities past the loaded maximum."""
        statements = []
        if add_primary_key:
            pk = self.add_primary_key_sql(table)
            if pk:
                statements.append(pk)
        statements += [self.unique_sql(table, k) for k in table.unique_keys]
        statements += [self.index_sql(table, i) for i in table.indexes]
        if table.converted:
            statements += [self.expression_index_sql(table, i) for i in table.expression_indexes]
            statements += self.comment_sql(table)
        for column in table.columns:
            if column.identity and after_load:
                statements += self.reset_identity_sql(table, column)
        return statements

    def finish(self, table: Table, native_types: list[str], add_primary_key: bool = False) -> list[str]:
        warnings: list[str] = []
        for sql in self.finish_sql(table, add_primary_key):
            try:
                self.execute(sql)
                self.commit()
            except Exception as exc:  # an index that cannot be built is reported, the data stays
                self.rollback()
                if not self.is_already_exists(exc) and "multiple primary keys" not in str(exc).lower():
                    warnings.append(f"{table.id}: could not run {sql!r}: {first_line(exc)}")
        return warnings

    def is_already_exists(self, exc: BaseException) -> bool:
        return "already exists" in str(exc).lower() or "duplicate key name" in str(exc).lower()

    def add_foreign_key_sql(self, table: Table, fk: ForeignKey) -> str:
        name = self.quote(self.object_name(table, fk.name))
        return f"ALTER TABLE {self.qualified(table.id)} ADD CONSTRAINT {name} {self.foreign_key_sql(fk)}"

    def add_foreign_keys(self, table: Table) -> list[str]:
        if not self.alter_constraints:
            return []
        warnings: list[str] = []
        for fk in table.foreign_keys:
            sql = self.add_foreign_key_sql(table, fk)
            try:
                self.execute(sql)
                self.commit()
            except Exception as exc:
                self.rollback()
                if not self.is_already_exists(exc):
                    warnings.append(f"{table.id}: foreign key {fk.name} not created: {first_line(exc)}")
        return warnings

    # ----------------------------------------------------------------- schema changes during CDC
    def alter_table(self, table: Table, changes: Sequence[ColumnChange], native_types: Sequence[str]) -> Table:
        """Run the changes on the target ``table`` (whose columns have ``native_types``) and commit;
        returns the table as it is now. One transaction where DDL is transactional; where it commits
        itself (MySQL) each step first checks the target's columns and skips what is done already, so
        the whole list can run again after a crash between two statements (the stream position is
        stored only after this returns). Consecutive widenings run together (SQLite rebuilds once). An added
        column's default is in this target's SQL (``convert.added_default``): it fills the existing rows."""
        natives = dict(zip(table.column_names, native_types, strict=True))
        widened: dict[str, Column] = {}  # widened column -> its definition before
        try:
            present = {r[0] for r in self.execute(self.columns_sql, (table.id.schema, table.id.name)).fetchall()}
            for change in changes:
                if isinstance(change, WidenColumn):
                    old = table.column(change.column.name)
                    widened.setdefault(old.name, old)
                    # widening is about the type: the target's identity (and converted default) stays
                    kept = replace(change.column, identity=old.identity, default=old.default, comment=old.comment)
                    table = apply_change(table, WidenColumn(kept))
                    continue
                if widened:
                    self.widen_columns(table, widened, natives)
                    widened = {}
                table = self.alter_column(table, change, natives, present)
            if widened:
                self.widen_columns(table, widened, natives)
            self.commit()
        except Exception:
            self.rollback()
            raise
        return table

    def alter_column(self, table: Table, change: ColumnChange, natives: dict[str, str], present: set[str]) -> Table:
        """An added, dropped or renamed column, unless ``present`` (the target's column names) shows it
        is done already; returns the table after it and keeps ``natives`` and ``present`` up to date."""
        after = apply_change(table, change)
        match change:
            case AddColumn(column):
                native = natives[column.name] = self.column_native(after, column.name, natives)
                if column.name not in present:
                    definition = self.column_sql(after, len(after.columns) - 1, native)
                    if column.default is not None:
                        definition += f" DEFAULT {column.default}"
                    self.alter(self.add_column_sql, after, column.name, definition=definition)
                    present.add(column.name)
            case DropColumn(name):
                if name in present:
                    if self.column_indexes_sql:
                        params = (table.id.schema, table.id.name, name)
                        for (index,) in self.execute(self.column_indexes_sql, params).fetchall():
                            self.alter(self.drop_index_sql, table, name, index=self.quote(index))
                    self.alter(self.drop_column_sql, table, name)
                    present.discard(name)
                del natives[name]
            case RenameColumn(old, new):
                natives[new] = natives.pop(old)
                if old in present:
                    definition = self.column_sql(after, after.column_names.index(new), natives[new])
                    self.alter(self.rename_column_sql, table, old, new=self.quote(new), definition=definition)
                    present.discard(old)
                    present.add(new)
        return after

    def widen_columns(self, table: Table, before: dict[str, Column], natives: dict[str, str]) -> None:
        """Give the widened columns of ``table`` their new target types (where the type changes) and drop
        NOT NULL where it went; ``before``: their old definitions. An engine with one statement for both
        (MySQL's MODIFY) runs it once. Re-running is harmless: the type is the same, NULL stays NULL."""
        for name, old in before.items():
            index = table.column_names.index(name)
            native = self.column_native(table, name, natives)
            templates = []
            if native != natives[name]:
                templates.append(self.alter_type_sql)
            if table.columns[index].nullable and not old.nullable:
                templates.append(self.drop_not_null_sql)
            natives[name] = native
            definition = self.column_sql(table, index, native)
            for template in dict.fromkeys(templates):
                self.alter(template, table, name, native=native, definition=definition)

    def column_native(self, table: Table, name: str, natives: dict[str, str]) -> str:
        """The target type of a new or widened column (``natives``: the table's other columns)."""
        return self.map_type(table.column(name).type)

    def alter(self, template: str, table: Table, column: str, **fields: str) -> None:
        self.execute(template.format(table=self.qualified(table.id), column=self.quote(column), **fields))

    # ----------------------------------------------------------------- loading
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
        active = [(i, fn) for i, fn in enumerate(encoders) if fn is not None]
        try:
            result = self.load_batches(table, batches, active, policy, on_progress, native_types, careful=False)
        except Exception as exc:
            self.rollback()
            if not self.is_data_error(exc):
                raise
            if policy in (ErrorPolicy.STOP_TASK, ErrorPolicy.SUSPEND_TABLE):
                raise policy_error(policy, f"{table.id}: the target rejected a row: {first_line(exc)}") from exc
            result = self.load_batches(table, batches, active, policy, on_progress, native_types, careful=True)
        try:
            self.check_lease(task_name, lease)
            self.execute(
                self.upsert_control_sql(),
                (
                    task_name,
                    str(table.id),
                    segment,
                    result.rows,
                    len(result.rejected),
                    lease,
                    datetime.now(UTC).replace(tzinfo=None),
                ),
            )
            if policy is ErrorPolicy.LOG_ERROR:
                self.record_rejects(task_name, result.rejected)
            self.commit()
        except Exception:
            self.rollback()
            raise
        return result

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
        """Encode and write every batch of a segment inside the open transaction (a hook: engines with a
        faster whole-segment path, like PostgreSQL's single COPY, override it and call back here)."""
        result = LoadResult()
        for batch in batches():
            if batch.raw is not None:
                rows: list[Row] = []
            else:
                rows = self.encode(table, batch, active, result.rejected)
                if result.rejected and policy in (ErrorPolicy.STOP_TASK, ErrorPolicy.SUSPEND_TABLE):
                    bad = result.rejected[0]
                    raise policy_error(policy, f"{table.id}: row {bad.key} rejected: column {bad.column}: {bad.reason}")
            if careful:
                self._insert_careful(table, batch, rows, native_types, result)
            else:
                self.bulk_insert(table, batch.columns, native_types, batch, rows)
                result.rows += len(batch) if batch.raw is not None else len(rows)
            result.bytes += batch.byte_count
            on_progress(len(batch) if batch.raw is not None else len(rows), batch.byte_count)
        return result

    def encode(
        self, table: Table, batch: RowBatch, active: list[tuple[int, Encoder]], rejected: list[RejectedRow]
    ) -> list[Row]:
        if not active:
            return batch.rows
        out: list[Row] = []
        append = out.append
        for row in batch.rows:
            values = list(row)
            try:
                for i, fn in active:
                    v = values[i]
                    if v is not None:
                        values[i] = fn(v)
            except RowRejected as exc:
                rejected.append(
                    self.rejected_row(table, batch.columns, row, exc.column or batch.columns[i], exc.reason)
                )
                continue
            append(tuple(values))
        return out

    def rejected_row(
        self, table: Table, columns: tuple[str, ...], row: Row, column: str | None, reason: str
    ) -> RejectedRow:
        data = describe_row(columns, row)
        key_cols = table.row_key() or columns
        return RejectedRow(table.id, {k: data.get(k) for k in key_cols}, column, reason, data)

    def _insert_careful(
        self, table: Table, batch: RowBatch, rows: list[Row], native_types: Sequence[str], result: LoadResult
    ) -> None:
        """Batch under a savepoint; when it fails, each row under its own savepoint."""
        if batch.raw is not None:
            raise TerminalError(f"{table.id}: the target rejected pass-through data; rerun without it")
        self.savepoint("conveyor_batch")
        try:
            self.bulk_insert(table, batch.columns, native_types, batch, rows)
            self.release("conveyor_batch")
            result.rows += len(rows)
            return
        except Exception as exc:
            self.rollback_to("conveyor_batch")
            if not self.is_data_error(exc):
                raise
        single = RowBatch(batch.columns, [])
        for row in rows:
            single.rows = [row]
            self.savepoint("conveyor_row")
            try:
                self.bulk_insert(table, batch.columns, native_types, single, [row])
                self.release("conveyor_row")
                result.rows += 1
            except Exception as exc:
                self.rollback_to("conveyor_row")
                if not self.is_data_error(exc):
                    raise
                result.rejected.append(self.rejected_row(table, batch.columns, row, None, first_line(exc)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def policy_error(policy: ErrorPolicy, message: str) -> TerminalError:
    """DataErrorPolicy STOP_TASK stops the task; SUSPEND_TABLE fails only the table."""
    return StopTask(message) if policy is ErrorPolicy.STOP_TASK else TerminalError(message)


def written_bytes(params: Sequence[Any]) -> int:
    """At most the bytes ``params`` take written into a statement: a text escaped, in UTF-8 (4 bytes a
    character at most), bytes escaped (2 a byte), any other value 64; 8 more each for quotes and separators."""
    return sum(
        4 * len(v) if isinstance(v, str) else 2 * len(v) if isinstance(v, bytes | bytearray) else 56 for v in params
    ) + 8 * len(params)


def shutdown_socket(sock: int | socket.socket) -> None:
    """Shut a connection's socket down under its driver (a file descriptor or a socket): the call
    blocked on it fails at once."""
    if isinstance(sock, int):
        with socket.socket(fileno=os.dup(sock)) as dup:
            dup.shutdown(socket.SHUT_RDWR)
    else:
        sock.shutdown(socket.SHUT_RDWR)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _recorded(row: Any) -> str:
    """A rejected row as JSON for people reading the exceptions table: its first ``RECORDED_ROW_CHARS``
    characters (the row itself stays on the source; a LOB of many MB must not make this insert fail too)."""
    text = _to_json(row)
    if len(text) <= RECORDED_ROW_CHARS:
        return text
    return f"{text[:RECORDED_ROW_CHARS]}... ({len(text):,} characters in all)"


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)
