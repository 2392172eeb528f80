"""add-column expressions: DMS writes them in SQLite's syntax, so SQLite evaluates them.

``$NAME`` in an expression is a SQLite named parameter: a source column's value, or a DMS header
(``$AR_H_*``: the change; ``$AR_M_*``: the source table). One in-memory connection per thread
prepares each expression once (SQLite's statement cache) and evaluates it per row.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the headers Conveyor can give a value, with what they hold (full load: the row as loaded)
HEADERS = {
    "AR_H_OPERATION": "INSERT, UPDATE or DELETE; INSERT in full load",
    "AR_H_TIMESTAMP": "the source commit time (UTC; full load: the time the row was read)",
    "AR_H_COMMIT_TIMESTAMP": "the source commit time (UTC; full load: the time the row was read)",
    "AR_H_TRANSACTION_ID": "the source transaction id (NULL in full load)",
    "AR_H_STREAM_POSITION": "the position of the change in the source log (NULL in full load)",
    "AR_M_SOURCE_SCHEMA": "the source schema",
    "AR_M_SOURCE_TABLE_NAME": "the source table",
}
#: DMS headers no source here can give a value, with the reason
UNKNOWN_HEADERS = {
    "AR_H_USER": "neither PostgreSQL's logical decoding nor MySQL's row binlog records the user who made a change",
    "AR_H_CHANGE_SEQ": "DMS's change sequence is its own counter; use $AR_H_STREAM_POSITION (the change's place in "
    "the source log) or $AR_H_COMMIT_TIMESTAMP",
}
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_local = threading.local()


def parameters(expression: str) -> list[str]:
    """The ``$NAME`` parameters an expression refers to (outside string literals)."""
    without_literals = re.sub(r"'(?:[^']|'')*'", "''", expression)
    return list(dict.fromkeys(_PARAM.findall(without_literals)))


def check(expression: str) -> str | None:
    """Why SQLite cannot prepare the expression, or None."""
    try:
        _connection().execute(f"SELECT {expression}", dict.fromkeys(parameters(expression))).fetchone()
    except sqlite3.Error as exc:
        return str(exc)
    return None


def _connection() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(":memory:", check_same_thread=True)
    return conn


@dataclass(frozen=True)
class Expression:
    text: str
    names: tuple[str, ...] = field(init=False)
    sql: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(parameters(self.text)))
        object.__setattr__(self, "sql", f"SELECT {self.text}")

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """SQLite's value of the expression; ``values`` holds every name (as SQLite values)."""
        row = _connection().execute(self.sql, values).fetchone()
        return row[0] if row else None
