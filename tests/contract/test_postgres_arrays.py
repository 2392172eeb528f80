"""Batch apply's array literals read back by PostgreSQL as exactly the values they were built from."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor.endpoints.postgres.arrays import array_literal

CASES: list[tuple[str, list[Any]]] = [
    ("text", ["plain", "", "NULL", "null", 'say "hi"', "back\\slash", "a,b", "{braces}", " spaced ", "ünï 😀", None]),
    ("text", [None, "\x01\x02", None, "", '"', "\\", None]),  # NULLs first and last, control characters
    ("text", [None, None]),
    ("text", []),
    ("int8", [0, -1, 2**63 - 1, -(2**63), None]),
    ("numeric", [Decimal("1.50"), Decimal("-0.000001"), Decimal("12345678901234567890.1234567890"), Decimal("NaN")]),
    ("float8", [0.1, -0.0, 1e-300, 1.7976931348623157e308, math.inf, -math.inf, None]),
    ("bool", [True, False, None]),
    ("timestamp", [datetime(2021, 1, 2, 3, 4, 5, 678901), datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)]),
    (
        "timestamptz",
        [
            datetime(2021, 1, 2, 3, 4, 5, 1, tzinfo=UTC),
            datetime(2021, 6, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ],
    ),
    ("date", [date(2024, 2, 29), date(1, 1, 1)]),
    ("time", [time(0, 0), time(23, 59, 59, 999999)]),
    # columns of one non-text kind with NULLs (each kind's own path)
    ("numeric", [Decimal(1), None, Decimal("-2.50"), Decimal("0.0"), None]),
    ("bool", [None, True, None]),
    ("timestamp", [None, datetime(2021, 1, 2, 3, 4, 5, 678901), None]),
    ("date", [None, date(2024, 2, 29)]),
    ("time", [time(1, 2, 3, 4), None]),
]


@pytest.mark.parametrize(("native", "values"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_array_literals_read_back_exactly(pg_url: str, native: str, values: list[Any]) -> None:
    literal = array_literal(values)
    assert isinstance(literal, str)
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        got = [r[0] for r in conn.execute(f"SELECT unnest(%s::{native}[])", (literal,)).fetchall()]
    expected: list[Any] = [v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo else v for v in values]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        if (isinstance(b, float) and math.isnan(b)) or (isinstance(b, Decimal) and b.is_nan()):
            assert a != a  # NaN
        else:
            assert a == b and type(a) is type(b), (a, b)
            if isinstance(b, float):
                assert math.copysign(1, a) == math.copysign(1, b)
            if isinstance(b, Decimal):
                assert str(a) == str(b)  # the scale too


def test_json_and_unknown_types(pg_url: str) -> None:
    docs: list[Any] = [{"k": 'v "q" \\ ü', "n": [1, 2.5, None, True]}, [], "s", None]
    literal = array_literal([Jsonb(d) if d is not None else None for d in docs])
    assert isinstance(literal, str)
    with psycopg.connect(pg_url) as conn:
        got = [r[0] for r in conn.execute("SELECT unnest(%s::jsonb[])", (literal,)).fetchall()]
    assert got == docs
    values = [b"\x00\xff", None]  # bytes: left to psycopg
    assert array_literal(values) is values


def test_a_text_holding_nul_stays_one_element() -> None:
    """PostgreSQL texts cannot hold NUL, which the fast path joins with: such a column is quoted value by
    value, never split into other elements (the driver then refuses the NUL, naming it)."""
    assert array_literal(["a", "b\x00c", None]) == '{"a","b\x00c",NULL}'
    assert array_literal(["x\x00,\x00y"]) == '{"x\x00,\x00y"}'
