"""The row-hash oracle: says which rows were lost, added or changed between two tables.

It reads both sides with the plain drivers (never Conveyor's own readers, so a decoding bug cannot
hide itself) and reduces every value to a canonical string per kind of value: numbers by exact
decimal value (so SQLite's REAL 19.99 equals PostgreSQL's numeric 19.99, and -0.0 stays -0), text
as text, bytes by digest, date/time values in ISO form (aware ones in UTC), JSON semantically.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:?\d{2}|Z)?)?$")


def canonical(value: Any, as_json: bool = False) -> str:
    """One canonical string per logical value."""
    if value is None:
        return "null"
    if as_json:
        doc = json.loads(value) if isinstance(value, str | bytes) else value
        return "j:" + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return f"n:{int(value)}"
    if isinstance(value, int):
        return f"n:{value}"
    if isinstance(value, float):
        if value != value:
            return "n:NaN"
        if value in (float("inf"), float("-inf")):
            return "n:" + ("Infinity" if value > 0 else "-Infinity")
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if value.is_nan():
            return "n:NaN"
        if value.is_infinite():
            return "n:" + ("Infinity" if value > 0 else "-Infinity")
        text = format(value.normalize(), "f")
        return f"n:{text}"
    if isinstance(value, memoryview | bytearray):
        value = bytes(value)
    if isinstance(value, bytes):
        return f"b:{len(value)}:{hashlib.sha1(value).hexdigest()}"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return "t:" + value.isoformat(sep=" ")
    if isinstance(value, date):
        return "t:" + value.isoformat()
    if isinstance(value, time):
        return "tm:" + value.replace(tzinfo=None).isoformat()
    if isinstance(value, timedelta):
        return f"td:{value // timedelta(microseconds=1)}"
    if isinstance(value, uuid.UUID):
        return f"s:{value}"
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network
        | ipaddress.IPv4Interface
        | ipaddress.IPv6Interface,
    ):
        return f"s:{value}"
    if isinstance(value, list | tuple):
        return "a:[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        return canonical(value, as_json=True)
    if isinstance(value, str):
        match = _ISO.match(value)
        if match:
            try:
                if match.group(1) is None:
                    return canonical(date.fromisoformat(value))
                return canonical(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                pass
        return f"s:{value}"
    return f"?:{value!r}"


Row = tuple[str, ...]


@dataclass
class Diff:
    lost: list[Any] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    mismatched: list[tuple[Any, Row, Row]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.lost or self.extra or self.mismatched)

    def __str__(self) -> str:
        parts = [f"lost={len(self.lost)} extra={len(self.extra)} mismatched={len(self.mismatched)}"]
        for key, a, b in self.mismatched[:5]:
            cols = [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
            parts.append(f"  key {key}: " + "; ".join(f"col {i}: {x[:80]} != {y[:80]}" for i, x, y in cols))
        parts += [f"  lost {k}" for k in self.lost[:5]] + [f"  extra {k}" for k in self.extra[:5]]
        return "\n".join(parts)


def canonical_rows(
    rows: Iterable[Sequence[Any]],
    json_columns: Sequence[int] = (),
    normalize: dict[int, Callable[[Any], Any]] | None = None,
) -> list[Row]:
    out = []
    for row in rows:
        values = list(row)
        for i, fn in (normalize or {}).items():
            if values[i] is not None:
                values[i] = fn(values[i])
        out.append(tuple(canonical(v, i in json_columns and v is not None) for i, v in enumerate(values)))
    return out


def compare(source: list[Row], target: list[Row], key: Sequence[int] = ()) -> Diff:
    """Rows compared by key (positions) when given, else as multisets."""
    diff = Diff()
    if not key:
        a, b = Counter(source), Counter(target)
        diff.lost = list((a - b).elements())
        diff.extra = list((b - a).elements())
        return diff
    left = {tuple(r[i] for i in key): r for r in source}
    right = {tuple(r[i] for i in key): r for r in target}
    for k, row in left.items():
        other = right.get(k)
        if other is None:
            diff.lost.append(k)
        elif other != row:
            diff.mismatched.append((k, row, other))
    diff.extra = [k for k in right if k not in left]
    return diff


# --------------------------------------------------------------------------- reading
def fetch(
    url: str,
    table: str,
    columns: Sequence[str] | None = None,
    schema: str | None = None,
    casts: dict[str, str] | None = None,
) -> list[tuple[Any, ...]]:
    """All rows of a table with the plain driver for the URL's engine; ``casts`` (PostgreSQL only)
    reads a column as another type, e.g. an interval as text, since psycopg's timedelta folds months."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme.startswith("sqlite"):
        conn = sqlite3.connect(unquote(parts.path)[1:])
        try:
            cols = ", ".join(_dq(c) for c in columns) if columns else "*"
            return list(conn.execute(f"SELECT {cols} FROM {_dq(table)}"))
        finally:
            conn.close()
    if scheme.startswith("postgres"):
        import psycopg
        from psycopg import sql

        with psycopg.connect(url, autocommit=True) as pconn:
            pconn.execute("SET TimeZone = 'UTC'")
            cols_sql = (
                sql.SQL(", ").join(
                    sql.SQL("{}::{}").format(sql.Identifier(c), sql.SQL((casts or {})[c]))
                    if c in (casts or {})
                    else sql.Identifier(c)
                    for c in columns
                )
                if columns
                else sql.SQL("*")
            )
            name = sql.Identifier(schema, table) if schema else sql.Identifier(table)
            return list(pconn.execute(sql.SQL("SELECT {} FROM {}").format(cols_sql, name)).fetchall())
    if scheme.startswith(("mysql", "mariadb")):
        mconn = mysql_connect(url, database=schema or unquote(parts.path.lstrip("/")), autocommit=False)
        try:
            with mconn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                cols = ", ".join(f"`{c}`" for c in columns) if columns else "*"
                cur.execute(f"SELECT {cols} FROM `{table}`")
                return list(cur.fetchall())
        finally:
            mconn.close()
    raise ValueError(url)


def mysql_connect(url: str, **kwargs: Any) -> Any:
    """A PyMySQL connection from a mysql:// URL (autocommit, utf8mb4); ``kwargs`` override."""
    import pymysql

    parts = urlsplit(url)
    options: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
        "charset": "utf8mb4",
        "autocommit": True,
    }
    return pymysql.connect(**{**options, **kwargs})


def _dq(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
