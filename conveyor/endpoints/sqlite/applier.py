"""Writing SQLite tables: large transactions of executemany INSERTs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from conveyor.endpoints.base import Encoder
from conveyor.endpoints.sql.applier import SEGMENTS_TABLE, SqlApplier
from conveyor.endpoints.sqlite import types
from conveyor.endpoints.sqlite.connect import literal, quote
from conveyor.errors import TerminalError
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.types import ColumnType


class SQLiteApplier(SqlApplier):
    engine = types.ENGINE
    param = "?"
    alter_constraints = False
    index_names_per_schema = True
    max_identifier_length = 1000
    null_safe_equals = "IS"
    row_locator = "rowid"
    # the PRAGMA table functions take the table (and schema) as constraints on their hidden columns
    columns_sql = "SELECT name FROM pragma_table_info WHERE schema = ? AND arg = ?"
    column_indexes_sql = (
        "SELECT il.name FROM pragma_index_list AS il JOIN pragma_index_info AS ii ON ii.arg = il.name "
        "AND ii.schema = il.schema WHERE il.schema = ? AND il.arg = ? AND ii.name = ? AND il.origin = 'c'"
    )

    def quote(self, name: str) -> str:
        return quote(name)

    def qualified(self, table_id: TableId) -> str:
        # One schema ("main"); SQLite rejects qualified names in REFERENCES and CREATE INDEX ... ON.
        return quote(table_id.name)

    def map_type(self, column_type: ColumnType) -> str:
        return types.to_native(column_type)

    def encoder(self, column_type: ColumnType, native: str) -> Encoder | None:
        return types.encoder(column_type, native)

    def logical_type(self, native: str) -> ColumnType | None:
        return types.to_logical(native)

    def interrupt(self) -> None:
        self.conn.interrupt()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        return self.conn.executemany(sql, params)

    def truncate_sql(self, table: Table) -> str:
        return f"DELETE FROM {self.qualified(table.id)}"

    def column_sql(self, table: Table, index: int, native: str) -> str:
        sql = super().column_sql(table, index, native)
        pk = table.primary_key
        if pk and len(pk.columns) == 1 and pk.columns[0] == table.columns[index].name:
            # ``INTEGER PRIMARY KEY`` makes the column the rowid: SQLite's identity.
            sql += " PRIMARY KEY"
            if self.autoincrement(table.columns[index], native):
                sql += " AUTOINCREMENT"
        return sql

    @staticmethod
    def autoincrement(column: Column, native: str) -> bool:
        """An identity whose source had handed out values: AUTOINCREMENT, whose ``sqlite_sequence`` row
        keeps the target from giving out any of them again (a plain rowid takes the maximum + 1)."""
        return column.identity and column.identity_last is not None and native.upper() == "INTEGER"

    def reset_identity_sql(self, table: Table, column: Column) -> list[str]:
        last = column.identity_last
        if last is None or not self.autoincrement(column, self.map_type(column.type)):
            return []
        name = literal(table.id.name)
        return [
            f"UPDATE sqlite_sequence SET seq = max(seq, {int(last)}) WHERE name = {name}",
            f"INSERT INTO sqlite_sequence (name, seq) SELECT {name}, {int(last)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = {name})",
        ]

    def primary_key_clause(self, table: Table) -> str | None:
        pk = table.primary_key
        if pk and len(pk.columns) == 1:
            return None  # declared on the column itself, see ``column_sql``
        return super().primary_key_clause(table)

    def widen_columns(self, table: Table, before: dict[str, Column], natives: dict[str, str]) -> None:
        """SQLite checks no length or precision, but the declared type still gives a column its
        affinity (DECIMAL_TEXT keeps digits that DECIMAL would round) and describes it to readers, and
        NOT NULL can only go with the table: so the table is rebuilt with the new definitions, the
        documented way (copy into a new table, drop, rename, indexes again), inside this transaction.
        Nothing happens when the declared types and nullability are already the new ones."""
        for name in before:
            natives[name] = self.map_type(table.column(name).type)
        declared = {
            r[0]: (r[1], bool(r[2]))
            for r in self.execute(
                'SELECT name, type, "notnull" FROM pragma_table_info WHERE schema = ? AND arg = ?',
                (table.id.schema, table.id.name),
            ).fetchall()
        }
        if all(declared.get(name) == (natives[name], not table.column(name).nullable) for name in before):
            return
        if set(declared) != set(table.column_names):
            raise TerminalError(
                f"{table.id}: the target has columns {sorted(declared)}, not {sorted(table.column_names)}; "
                "cannot rebuild it to widen columns"
            )
        rebuilt = table.renamed(TableId(table.id.schema, f"{table.id.name}__conveyor_rebuild"))
        columns = self.column_list(table.column_names)
        self.execute(self.create_table_sql(rebuilt, [natives[c] for c in table.column_names]))
        self.execute(
            f"INSERT INTO {self.qualified(rebuilt.id)} ({columns}) SELECT {columns} FROM {self.qualified(table.id)}"
        )
        self.execute(self.drop_table_sql(table))
        self.execute(f"ALTER TABLE {self.qualified(rebuilt.id)} RENAME TO {self.qualified(table.id)}")
        for key in table.unique_keys:
            self.execute(self.unique_sql(table, key))
        for index in table.indexes:
            self.execute(self.index_sql(table, index))

    def table_exists(self, table_id: TableId) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table_id.name,)
        ).fetchone()
        return row is not None

    def upsert_control_sql(self) -> str:
        return (
            f"INSERT OR REPLACE INTO {self.control(SEGMENTS_TABLE)} (task_name, table_name, segment, "
            f"rows_loaded, rows_rejected, lease, finished_at) VALUES ({self.params(7)})"
        )

    def bulk_insert(
        self, table: Table, columns: Sequence[str], natives: Sequence[str], batch: RowBatch, rows: list[Row]
    ) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        sql = (
            f"INSERT INTO {self.qualified(table.id)} ({self.column_list(columns)}) VALUES ({self.params(len(columns))})"
        )
        self.conn.executemany(sql, rows)

    def is_data_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | OverflowError | sqlite3.ProgrammingError)
