"""An all-types table per source engine, loaded into every target and compared row by row.

Each source defines its table (DDL and rows), the SELECT the oracle reads it with, which rows a
given target must reject (values the target cannot hold: they must be rejected and recorded, never
altered), and how a target's plain driver values are brought to the source's form for comparison
(e.g. MySQL returns BIT as bytes where PostgreSQL's text form is '1010').
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from oracle import canonical_rows, compare, fetch, mysql_connect
from tasks import run_task, task_doc

from conveyor.runner import stats as st

BIG_BLOB = bytes(range(256)) * (16 * 1024 * 1024 // 256 + 1)  # just over 16 MiB


@dataclass
class Source:
    engine: str
    columns: list[str]
    create: Callable[[str], None]
    #: target engine -> ids of rows the target must reject
    rejects: dict[str, set[int]] = field(default_factory=dict)
    #: columns holding JSON (compared semantically)
    json_columns: set[str] = field(default_factory=set)
    #: casts the oracle reads a column with, on both sides (PostgreSQL interval as text, ...)
    casts: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- SQLite
SQLITE_COLUMNS = ["id", "i", "big", "r", "d", "dbig", "t", "vc", "b", "dt", "ts", "flag", "js", "u", "dyn"]


def _sqlite_create(url: str) -> None:
    conn = sqlite3.connect(unquote(urlsplit(url).path)[1:])
    conn.execute(
        "CREATE TABLE all_types (id INTEGER PRIMARY KEY, i INTEGER, big BIGINT, r REAL, d DECIMAL(12,2), "
        "dbig DECIMAL_TEXT(40,20), t TEXT, vc VARCHAR(50), b BLOB, dt DATE, ts DATETIME, flag BOOLEAN, "
        "js JSON_TEXT, u UUID, dyn)"
    )
    rows = [
        (1, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
        (
            2,
            -(2**63),
            -(2**63),
            -1.7976931348623157e308,
            "-9999999999.99",
            "-12345678901234567890.12345678901234567890",
            "",
            "",
            b"",
            "1000-01-01",
            "1000-01-01 00:00:00",
            0,
            "{}",
            "00000000-0000-0000-0000-000000000000",
            0,
        ),
        (
            3,
            2**63 - 1,
            2**63 - 1,
            -0.0,
            "9999999999.99",
            "0.00000000000000000001",
            "héllo 😀 𝄞 中文",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            BIG_BLOB,
            "9999-12-31",
            "9999-12-31 23:59:59.999999",
            1,
            '{"b": 1, "a": [1, 2.5, null]}',
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "text",
        ),
        (
            4,
            42,
            7,
            1.5,
            "19.99",
            "3.14159265358979323846",
            "line1\nline2\ttab",
            "x",
            b"\x00\x01\xff",
            "2024-02-29",
            "2024-02-29 12:34:56.123456",
            1,
            "[1, 2, 3]",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            3.25,
        ),
        (
            5,
            "abc",
            1,
            math.inf,
            "0.10",
            "1",
            "nul\x00byte",
            "y",
            b"x",
            "2024-01-01",
            "2024-01-01 00:00:00",
            0,
            '"s"',
            "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
            b"\x01\x02",
        ),
    ]
    conn.executemany(f"INSERT INTO all_types VALUES ({', '.join('?' * 15)})", rows)
    conn.commit()
    conn.close()


SQLITE = Source(
    "sqlite",
    SQLITE_COLUMNS,
    _sqlite_create,
    # 5: text 'abc' in an INTEGER column; a NUL byte in text (PostgreSQL); MySQL: Infinity.
    rejects={"sqlite": set(), "postgresql": {5}, "mysql": {5}},
    json_columns={"js"},
)


# --------------------------------------------------------------------------- normalizers
def f32(value: Any) -> Any:
    """A 32-bit float as the float32 it is (drivers print float4/FLOAT with different digits)."""
    return struct.unpack("f", struct.pack("f", value))[0] if isinstance(value, float) else value


def bit_text(width: int) -> Callable[[Any], Any]:
    """MySQL's BIT bytes -> the '0101' text PostgreSQL and SQLite use."""

    def convert(value: Any) -> Any:
        if isinstance(value, bytes | int):
            number = int.from_bytes(value, "big") if isinstance(value, bytes) else value
            return format(number, f"0{width}b")
        return value

    return convert


def as_time(value: Any) -> Any:
    """PyMySQL's TIME timedelta and SQLite's TIME text -> datetime.time."""
    if isinstance(value, timedelta) and timedelta(0) <= value < timedelta(days=1):
        return (datetime.min + value).time()
    if isinstance(value, str):
        return time.fromisoformat(value)
    return value


def decimal_text(value: Any) -> Any:
    """Exact decimals kept as text (SQLite DECIMAL_TEXT, MySQL text for unconstrained numeric)."""
    return Decimal(value) if isinstance(value, str) else value


def rstrip(value: Any) -> Any:
    """CHAR(n): PostgreSQL pads with spaces, MySQL strips them on read; both mean the same value."""
    return value.rstrip(" ") if isinstance(value, str) else value


# --------------------------------------------------------------------------- PostgreSQL
PG_COLUMNS = [
    "id",
    "i16",
    "i32",
    "i64",
    "num",
    "num_ps",
    "f4",
    "f8",
    "b",
    "c",
    "vc",
    "t",
    "by",
    "d",
    "tm",
    "ts",
    "tstz",
    "iv",
    "j",
    "jb",
    "u",
    "ip",
    "cid",
    "mac",
    "m",
    "bt",
    "vbt",
    "ai",
    "at",
    "mood",
]


def _pg_create(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(
            "CREATE TABLE all_types (id bigint PRIMARY KEY, i16 smallint, i32 integer, i64 bigint, num numeric, "
            "num_ps numeric(12,2), f4 real, f8 double precision, b boolean, c char(5), vc varchar(20), t text, "
            "by bytea, d date, tm time(6), ts timestamp(6), tstz timestamptz(6), iv interval, j json, jb jsonb, "
            "u uuid, ip inet, cid cidr, mac macaddr, m money, bt bit(4), vbt varbit(8), ai integer[], at text[], "
            "mood mood)"
        )
        rows = [
            "(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
            "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
            "(2, -32768, -2147483648, -9223372036854775808, '-12345678901234567890.12345678901234567890', "
            "-9999999999.99, -3.4e38, -1.7976931348623157e308, false, '', '', '', '', '1000-01-01', '00:00:00', "
            "'1000-01-01 00:00:00', '1000-01-01 00:00:00+00', '-1 days', '{}', '{}', "
            "'00000000-0000-0000-0000-000000000000', '0.0.0.0', '0.0.0.0/0', '00:00:00:00:00:00', -1000.50, '0000', "
            "'', '{}', '{}', 'sad')",
            "(3, 32767, 2147483647, 9223372036854775807, '0.000000000000000000000000000001', 9999999999.99, 3.4e38, "
            "1.7976931348623157e308, true, 'héllo', '😀𝄞中文', 'héllo 😀 𝄞 中文, long enough', %(big)s, '9999-12-31', "
            "'23:59:59.999999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:08.123456+00', "
            '\'1 year 2 mons 3 days 04:05:06.789\', \'{"b": 1, "a": [1, 2.5, null], "b": 2}\', '
            "'{\"z\": {\"y\": [true]}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1', '2001:db8::/32', "
            "'08:00:2b:01:02:03', 1234567.89, '1010', '10101', '{1,2,NULL}', '{\"a\",\"b c\",NULL}', 'happy')",
            "(4, 1, 1, 1, 'NaN', 1, 'Infinity', 'NaN', true, 'x', 'x', 'x', 'x', '2024-01-01', '12:00', "
            "'2024-01-01 12:00', '2024-01-01 12:00+02', '1 day', '1', '1', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', "
            "'10.1.2.3/16', '10.1.0.0/16', '08:00:2b:01:02:04', 1, '0001', '1', '{1}', '{x}', 'ok')",
            "(5, 7, 7, 7, '19.99', 19.99, 1.5, '-0', false, 'ab', 'tab\there', 'line1\nline2', '\\x00ff', "
            "'2024-02-29', '12:34:56.123456', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.123456-05', "
            "'01:02:03', '[]', '[]', '6ba7b810-9dad-11d1-80b4-00c04fd430c8', '192.168.0.1', '192.168.0.0/24', "
            "'08:00:2b:01:02:05', 0.01, '1111', '0', '{}', '{\"\"}', 'ok')",
        ]
        for row in rows:
            conn.execute(f"INSERT INTO all_types VALUES {row}", {"big": BIG_BLOB} if "%(big)s" in row else None)


PG_CASTS = {"iv": "text", "m": "numeric", "j": "text"}

POSTGRES = Source(
    "postgresql",
    PG_COLUMNS,
    _pg_create,
    # 4: NaN and Infinity (MySQL has neither; SQLite turns NaN into NULL);
    # 5: -0.0 (MariaDB and SQLite both store it as 0).
    rejects={"postgresql": set(), "mysql": {4, 5}, "sqlite": {4, 5}},
    json_columns={"j", "jb", "ai", "at"},
    casts=PG_CASTS,
)


# --------------------------------------------------------------------------- MySQL / MariaDB
MYSQL_COLUMNS = [
    "id",
    "ti",
    "tiu",
    "si",
    "mi",
    "i",
    "iu",
    "bi",
    "biu",
    "dec65",
    "dec12",
    "f",
    "dbl",
    "ch",
    "vc",
    "tx",
    "bn",
    "vb",
    "lb",
    "d",
    "tm",
    "dt",
    "ts",
    "y",
    "b1",
    "b64",
    "e",
    "st",
    "js",
    "bool1",
]


def _mysql_create(url: str) -> None:
    conn = mysql_connect(url, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', time_zone = '+00:00'")
        cur.execute(
            "CREATE TABLE all_types (id int PRIMARY KEY, ti tinyint, tiu tinyint unsigned, si smallint, mi mediumint, "
            "i int, iu int unsigned, bi bigint, biu bigint unsigned, dec65 decimal(65,30), dec12 decimal(12,2), "
            "f float, dbl double, ch char(10), vc varchar(100), tx text, bn binary(4), vb varbinary(20), lb longblob, "
            "d date, tm time(6), dt datetime(6), ts timestamp(6) NULL DEFAULT NULL, y year, b1 bit(1), b64 bit(64), "
            "e enum('red','green','blue'), st set('a','b','c'), js json, bool1 tinyint(1)) "
            "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )
        nulls = (None,) * 29
        rows = [
            (1, *nulls),
            (
                2,
                -128,
                0,
                -32768,
                -8388608,
                -2147483648,
                0,
                -(2**63),
                0,
                "-99999999999999999999999999999999999.999999999999999999999999999999",
                "-9999999999.99",
                -3.40282e38,
                -1.7976931348623157e308,
                "",
                "",
                "",
                b"\0\0\0\0",
                b"",
                b"",
                "1000-01-01",
                "00:00:00",
                "1000-01-01 00:00:00",
                "1970-01-01 00:00:01",
                1901,
                b"\0",
                0,
                "red",
                "",
                "{}",
                0,
            ),
            (
                3,
                127,
                255,
                32767,
                8388607,
                2147483647,
                4294967295,
                2**63 - 1,
                2**64 - 1,
                "99999999999999999999999999999999999.999999999999999999999999999999",
                "9999999999.99",
                3.40282e38,
                1.7976931348623157e308,
                "héllo😀",
                "emoji 😀 𝄞 中文",
                "long ✓ " * 1000,
                b"\xff\xff\xff\xff",
                bytes(range(20)),
                BIG_BLOB,
                "9999-12-31",
                "23:59:59.999999",
                "9999-12-31 23:59:59.999999",
                "2038-01-19 03:14:07.999999",
                2155,
                b"\x01",
                2**64 - 1,
                "blue",
                "a,b,c",
                '{"b": 1, "a": [1, 2.5, null]}',
                1,
            ),
            (
                4,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                "1",
                "1",
                1.0,
                1.0,
                "x",
                "x",
                "x",
                b"x\0\0\0",
                b"x",
                b"x",
                "0000-00-00",
                "-838:59:59",
                "0000-00-00 00:00:00",
                "0000-00-00 00:00:00",  # a zero TIMESTAMP too
                2000,
                b"\x00",
                5,
                "green",
                "b",
                "1",
                0,
            ),
            (
                5,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                "3.141592653589793238462643383279502884197",
                "19.99",
                1.5,
                -0.0,
                "ab",
                "tab\there",
                "line1\nline2",
                b"ab\0\0",
                b"\x00\xff",
                b"\x00",
                "2024-02-29",
                "12:34:56.123456",
                "2024-02-29 12:34:56.123456",
                "2024-02-29 12:34:56.123456",
                2024,
                b"\x01",
                12345,
                "red",
                "a,c",
                "[1, 2, 3]",
                1,
            ),
        ]
        cur.executemany(f"INSERT INTO all_types VALUES ({', '.join(['%s'] * 30)})", rows)
    conn.commit()
    conn.close()


MYSQL = Source(
    "mysql",
    MYSQL_COLUMNS,
    _mysql_create,
    # 4: zero dates and TIME -838:59:59 (no PostgreSQL or SQLite equivalent). Row 5's -0.0 is already 0
    # once MariaDB has stored it, so nothing is left to reject there.
    rejects={"mysql": set(), "postgresql": {4}, "sqlite": {4}},
    json_columns={"js"},
)


# --------------------------------------------------------------------------- harness
def check_pair(
    source: Source,
    src_url: str,
    dst_url: str,
    dst_engine: str,
    tmp_path: Path,
    target_normalize: dict[str, Callable[[Any], Any]] | None = None,
    source_normalize: dict[str, Callable[[Any], Any]] | None = None,
) -> None:
    """Load the all-types table from source to target and compare every row."""
    source.create(src_url)
    doc = task_doc(src_url, dst_url, name=f"alltypes-{source.engine}-{dst_engine}", FullLoadSettings={"CommitRate": 2})
    result = run_task(doc, tmp_path / "state")
    table = next(t for t in result.tables if t.table == "all_types")
    expected_rejects = source.rejects.get(dst_engine, set())
    assert table.state == st.COMPLETED, table.error
    if table.full_load_error_rows != len(expected_rejects):
        recorded = fetch(
            dst_url, "conveyor_apply_exceptions", ["row_key", "column_name", "error"], schema=_schema(dst_url, source)
        )
        raise AssertionError(f"expected rejects {sorted(expected_rejects)}, got {recorded}")
    json_idx = [source.columns.index(c) for c in source.json_columns]
    normalize = {source.columns.index(c): fn for c, fn in (target_normalize or {}).items()}
    src_normalize = {source.columns.index(c): fn for c, fn in (source_normalize or {}).items()}
    src_rows = canonical_rows(
        (r for r in fetch(src_url, "all_types", source.columns, casts=source.casts) if r[0] not in expected_rejects),
        json_idx,
        src_normalize,
    )
    dst_rows = canonical_rows(
        fetch(dst_url, "all_types", source.columns, schema=_schema(dst_url, source), casts=source.casts),
        json_idx,
        normalize,
    )
    diff = compare(src_rows, dst_rows, key=[0])
    assert diff.equal, str(diff)
    if expected_rejects:
        recorded = fetch(
            dst_url, "conveyor_apply_exceptions", ["table_name", "row_key", "error"], schema=_schema(dst_url, source)
        )
        keys = {json.loads(r[1])["id"] for r in recorded if r[0] == "all_types"}
        assert keys == expected_rejects, recorded


def _schema(url: str, source: Source) -> str | None:
    """Where the table lands on the target: PostgreSQL keeps a PostgreSQL source's schema, and
    puts other engines' tables in ``public``."""
    return "public" if url.startswith("postgres") else None
