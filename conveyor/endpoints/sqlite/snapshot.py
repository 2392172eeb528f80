"""Reading SQLite tables."""

from __future__ import annotations

import sqlite3
from typing import Any

from conveyor.endpoints.config import SQLiteConfig
from conveyor.endpoints.sql.snapshot import Decoder, SqlSnapshotReader
from conveyor.endpoints.sqlite import types
from conveyor.endpoints.sqlite.connect import connect, quote
from conveyor.model.schema import Column, Table
from conveyor.transform.values import sqlite_value


class SQLiteSnapshotReader(SqlSnapshotReader):
    param = "?"

    def quote(self, name: str) -> str:
        return quote(name)

    def bind_value(self, value: Any) -> Any:
        return sqlite_value(value)

    def decoder(self, column: Column) -> Decoder | None:
        fn: Decoder | None = types.decoder(column.type)
        return fn

    def estimate_rows(self, table: Table) -> int:
        row: Any = self.conn.execute(f"SELECT count(*) FROM {self.qualified(table)}").fetchone()
        return int(row[0])


def join(config: SQLiteConfig, token: Any = None) -> SQLiteSnapshotReader:
    """A reader on a new read-only connection (there is no shared view to join)."""
    conn: sqlite3.Connection = connect(config, readonly=True)
    return SQLiteSnapshotReader(conn)


class SQLiteSnapshot:
    """SQLite cannot share one read transaction between connections: each reader sees the file as
    of its own first read. Conveyor documents this; a quiet source is consistent."""

    def __init__(self, config: SQLiteConfig) -> None:
        self.config = config
        self.warnings: list[str] = []
        connect(config, readonly=True).close()

    def reader(self) -> SQLiteSnapshotReader:
        return join(self.config)

    def token(self) -> None:
        return None

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass
