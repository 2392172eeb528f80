"""Opening SQLite files with clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conveyor.endpoints.config import SQLiteConfig
from conveyor.errors import UserActionError


def quote(name: str) -> str:
    """SQLite has no driver-side identifier quoting; this is its documented rule."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A string literal, for statements that take no parameters (DDL)."""
    return "'" + value.replace("'", "''") + "'"


def connect(config: SQLiteConfig, readonly: bool) -> sqlite3.Connection:
    path = Path(config.path)
    if readonly and not path.is_file():
        raise UserActionError(f"SQLite database {config.path!r} does not exist; check the source path")
    if not readonly and not path.parent.exists():
        raise UserActionError(f"folder {str(path.parent)!r} for SQLite database {config.path!r} does not exist")
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise UserActionError(f"cannot open SQLite database {config.path!r}: {exc}") from None
    return conn
