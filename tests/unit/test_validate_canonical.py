"""The canonical text forms validation compares (``validate/canonical.py``), and the bookkeeping that
turns CDC re-validation reads into verdicts (``validate/intask.Recheck``)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L
from conveyor.validate import intask
from conveyor.validate.canonical import (
    Kind,
    column_kind,
    decimal_text,
    float_text,
    hash60,
    json_text,
    row_text,
    text,
    time_text,
    timestamp_text,
)
from conveyor.validate.compare import RECORD_DIFF, RowFailure
from conveyor.validate.dialects import MySQLDialect, PostgresDialect
from conveyor.validate.intask import Recheck


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.50"), "12.5"),
        (Decimal("100.00"), "100"),
        (Decimal("-0.00"), "0"),
        (Decimal("1E+3"), "1000"),
        ("0.000100", "0.0001"),
        (Decimal("NaN"), "NaN"),
        (Decimal("-Infinity"), "-Infinity"),
        (2.5, "2.5"),
    ],
)
def test_decimals_are_exact_without_trailing_zeros(value: object, expected: str) -> None:
    assert decimal_text(value) == expected


def test_floats_compare_at_their_precision() -> None:
    assert float_text(1 / 3, 15) == "333333333333333e-1"
    assert float_text(1 / 3, 15) == float_text(1 / 3 + 1e-17, 15)  # below double precision: the same
    assert float_text(1 / 3, 15) != float_text(1 / 3 * (1 + 1e-12), 15)
    assert float_text(0.1, 6) == float_text(0.100000001, 6)  # a float32 stored in a double column
    assert float_text(-2500.0, 15) == "-250000000000000e3"
    assert (float_text(0.0, 15), float_text(-0.0, 15)) == ("0", "0")
    assert [float_text(x, 15) for x in (float("nan"), float("inf"), float("-inf"))] == ["NaN", "Infinity", "-Infinity"]


def test_timestamps_are_instants_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert timestamp_text(datetime(2024, 1, 1, 3, 0, tzinfo=plus2)) == "2024-01-01 01:00:00.000000"
    assert timestamp_text(datetime(2024, 1, 1, 1, 0, tzinfo=UTC)) == "2024-01-01 01:00:00.000000"
    assert timestamp_text(datetime(2024, 1, 1, 1, 0, 0, 5)) == "2024-01-01 01:00:00.000005"  # naive: as is
    assert text(Kind.TIMESTAMPTZ, datetime(2023, 12, 31, 23, 30, tzinfo=timezone(-timedelta(hours=1)))) == (
        "2024-01-01 00:30:00.000000"
    )


def test_times_dates_and_intervals() -> None:
    assert time_text(time(9, 5, 7, 12)) == "09:05:07.000012"
    assert time_text(timedelta(hours=30, seconds=1)) == "30:00:01.000000"  # MySQL TIME beyond a day
    assert time_text(-timedelta(minutes=90)) == "-01:30:00.000000"
    assert text(Kind.DATE, date(2024, 2, 29)) == "2024-02-29"


def test_json_is_compared_by_meaning() -> None:
    assert json_text('{"b": [1, 2.50, {"y": null, "x": true}],   "a": "é"}') == (
        '{"a":"é","b":[1,2.5,{"x":true,"y":null}]}'
    )
    assert json_text({"n": 1.0}) == json_text('{"n": 1}') == json_text(b'{"n":1.00}')
    assert json_text('{"a": [1, 2]}') != json_text('{"a": [2, 1]}')  # array order is meaning
    assert json_text("not json") == "not json"


def test_text_kinds() -> None:
    assert text(Kind.CHAR, "ab   ") == "ab"  # CHAR padding is no data
    assert text(Kind.TEXT, "ab   ") == "ab   "  # trailing spaces of text are
    assert text(Kind.BOOL, 2) == "1" and text(Kind.BOOL, False) == "0"
    assert text(Kind.BINARY, b"\x00\xff") == "00ff"
    assert text(Kind.UUID, uuid.UUID("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert text(Kind.INT, True) == "1" and text(Kind.INT, None) is None


def test_column_kind_comes_from_the_source_type() -> None:
    double, single = ColumnType(L.FLOAT, bits=64), ColumnType(L.FLOAT, bits=32)
    assert column_kind(double, double) is Kind.FLOAT64
    assert column_kind(double, single) is Kind.FLOAT32
    assert column_kind(ColumnType(L.CHAR, 4), ColumnType(L.VARCHAR, 4)) is Kind.CHAR
    assert column_kind(ColumnType(L.VARCHAR, 4), ColumnType(L.CHAR, 4)) is Kind.TEXT


def test_row_text_tells_null_from_empty_and_never_joins_two_rows_alike() -> None:
    assert row_text([None]) != row_text([""])
    assert row_text(["ab", "c"]) != row_text(["a", "bc"])
    assert row_text(["ab", None]) == "2:ab-"
    assert row_text(["é", "€😀"]) == "2:é7:€😀"  # lengths in UTF-8 bytes
    h = hash60(row_text(["x"]))
    assert 0 <= h < 2**60 and h == hash60("1:x")


def test_delimited_row_text_is_cheaper_and_still_tells_rows_apart() -> None:
    flags = [True, False, True]
    assert row_text(["12", "a,b", None], flags) == "12,3:a,b~,"
    assert row_text([None, None, "1"], flags) == "~,-1,"
    # a text holding the delimiter, or values moved between columns, never join alike
    rows: list[list[str | None]] = [
        ["1", "2,3", "4"],
        ["1", "2", "3,4"],
        ["1", None, "4"],
        ["1", "", "4"],
        [None, "", "4"],
        ["1", "~", "4"],
    ]
    assert len({row_text(r, flags) for r in rows if "," not in (r[2] or "")}) == 5
    assert row_text(["1", "x"], [False, False]) == row_text(["1", "x"])


def _diff(value: str) -> RowFailure:
    return RowFailure(RECORD_DIFF, (("id", "5"),), (("name", "a", value),))


def test_recheck_reports_a_failure_only_after_two_equal_reads_with_the_stream_caught_up() -> None:
    r = Recheck()
    r.changed([(5,), (6,)], now=0.0)
    assert r.due(now=0.0, limit=10) == [(5,), (6,)] and r.pending == 0
    r.observed((6,), None, 0.1, lambda at: True)  # equal: validated
    r.observed((5,), _diff("b"), 0.1, lambda at: True)  # differs once: suspect
    assert (r.pending, r.failures) == (1, {})
    assert r.due(now=0.5, limit=10) == []  # read again only after RECHECK_SECONDS
    assert r.due(now=1.2, limit=10) == [(5,)]
    r.observed((5,), _diff("b"), 1.2, lambda at: False)  # the stream has not applied what came before the read
    assert r.pending == 1 and not r.failures
    r.observed((5,), _diff("b"), 2.5, lambda at: at == 0.1)  # caught up with the first read
    assert r.failures == {(5,): _diff("b")} and r.pending == 0


def test_recheck_keeps_a_row_still_changing_pending() -> None:
    r = Recheck()
    r.changed([(5,)], now=0.0)
    r.due(now=0.0, limit=10)
    r.observed((5,), _diff("b"), 0.1, lambda at: True)
    r.changed([(5,)], now=0.5)  # changed on the source again: the next verdict starts over
    r.observed((5,), _diff("b"), 1.2, lambda at: True)  # a read in flight before the change: no verdict
    assert r.pending == 1 and not r.failures and (5,) in r.queued
    r.due(now=1.3, limit=10)
    r.observed((5,), _diff("c"), 1.3, lambda at: True)  # another difference than the first: suspect anew
    assert r.pending == 1 and not r.failures
    r.observed((5,), None, 2.5, lambda at: True)  # caught up: equal
    assert r.pending == 0 and not r.failures


def test_recheck_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intask, "MAX_QUEUED", 3)
    r = Recheck()
    r.changed([(k,) for k in range(5)], now=0.0)
    r.changed([(1,)], now=0.1)  # a queued key is refreshed, not counted
    assert (len(r.queued), r.suspended) == (3, 2)
    assert r.due(now=1.0, limit=2) == [(0,), (1,)] and len(r.queued) == 1


def test_a_column_is_delimited_only_where_its_sql_cannot_hold_a_comma() -> None:
    my, pg = MySQLDialect(), PostgresDialect()
    integer, text_type = ColumnType(L.INTEGER), ColumnType(L.TEXT)
    assert my.column("`n`", integer, Kind.INT, False).delimited and pg.column('"n"', integer, Kind.INT, False).delimited
    # a masked value, or an integer kept in a text column, is any text
    assert not my.column("UPPER(`n`)", integer, Kind.INT, False).delimited
    assert not pg.column('"n"', text_type, Kind.INT, False).delimited
    assert my.column("UPPER(`d`)", ColumnType(L.DATE), Kind.DATE, False).delimited  # DATE_FORMAT's alphabet
    assert not my.column("`t`", text_type, Kind.TEXT, False).delimited
    assert not pg.column('"j"', ColumnType(L.JSON), Kind.JSON, False).delimited
