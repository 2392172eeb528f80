"""Writing SQLite tables: large transactions of executemany INSERTs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from conveyor.endpoints.base import Encoder
from conveyor.endpoints.sql.applier import SEGMENTS_TABLE, SqlApplier
from conveyor.endpoints.sqlite import types
from conveyor.endpoints.sqlite.connect import quote
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import Table, TableId
from conveyor.model.types import ColumnType


class SQLiteApplier(SqlApplier):
    param = "?"
    alter_constraints = False
    index_names_per_schema = True
    max_identifier_length = 1000
    null_safe_equals = "IS"
    row_locator = "rowid"

    def quote(self, name: str) -> str:
        return quote(name)

    def qualified(self, table_id: TableId) -> str:
        # One schema ("main"); SQLite rejects qualified names in REFERENCES and CREATE INDEX ... ON.
        return quote(table_id.name)

    def map_type(self, column_type: ColumnType) -> str:
        return types.to_native(column_type)

    def encoder(self, column_type: ColumnType, native: str) -> Encoder | None:
        return types.encoder(column_type, native)

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
        return sql

    def primary_key_clause(self, table: Table) -> str | None:
        pk = table.primary_key
        if pk and len(pk.columns) == 1:
            return None  # declared on the column itself, see ``column_sql``
        return super().primary_key_clause(table)

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
