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
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from oracle import canonical_rows, compare, fetch
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


def bits(value: Any) -> Any:
    """MySQL's BIT bytes -> the '0101' text PostgreSQL and SQLite use."""
    if isinstance(value, bytes):
        return bin(int.from_bytes(value, "big"))[2:]
    return value


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
    assert table.full_load_error_rows == len(expected_rejects)
    json_idx = [source.columns.index(c) for c in source.json_columns]
    normalize = {source.columns.index(c): fn for c, fn in (target_normalize or {}).items()}
    src_normalize = {source.columns.index(c): fn for c, fn in (source_normalize or {}).items()}
    src_rows = canonical_rows(
        (r for r in fetch(src_url, "all_types", source.columns) if r[0] not in expected_rejects),
        json_idx,
        src_normalize,
    )
    dst_rows = canonical_rows(
        fetch(dst_url, "all_types", source.columns, schema=_schema(dst_url, source)), json_idx, normalize
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


def decimal_text(value: Any) -> Any:
    return Decimal(value) if isinstance(value, str) else value
