"""Row hashes and decimal texts computed in SQL agree with ``canonical`` on real servers.

The engines hash row texts with SHA-256 (``Dialect.hash60``), as ``canonical.hash60`` does in Python; a
MariaDB DECIMAL column of a known scale skips the test for a decimal point in its canonical text.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from oracle import mysql_connect
from schemas import execute_sql
from tasks import run_task, task_doc

from conveyor.runner.task import task_from_document
from conveyor.validate.canonical import decimal_text, hash60
from conveyor.validate.dialects import MySQLDialect, PostgresDialect
from conveyor.validate.run import Validation
from conveyor.validate.side import Scope

TEXTS = ["", "1,", "12:hello world", "5:café€", "4:😀", "~,-3:a,b"]
ROWS = [
    (1, "12.50", "7", "1.2345"),
    (2, "100.00", "-7", "10.1000"),
    (3, "0.00", "0", "-0.5000"),
    (4, "-0.50", None, "0.0001"),
    (5, None, "1000", None),
]


def test_sql_row_hashes_equal_python_hashes(mysql_url: str, pg_url: str) -> None:
    my, pg = MySQLDialect(), PostgresDialect()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for text in TEXTS:
            row = conn.execute(f"SELECT {pg.hash60('%s::text')}", (text,)).fetchone()
            assert row is not None and row[0] == hash60(text), text
    mconn = mysql_connect(mysql_url)
    try:
        with mconn.cursor() as cur:
            for text in TEXTS:
                cur.execute(f"SELECT {my.hash60('CONVERT(%s USING utf8mb4)')}", (text,))
                assert int(cur.fetchone()[0]) == hash60(text), text
    finally:
        mconn.close()


def test_mariadb_decimal_columns_of_any_scale_match_postgres(
    mysql_source_url: str, pg_url: str, tmp_path: Path
) -> None:
    execute_sql(
        mysql_source_url,
        [
            "CREATE TABLE nums (id int PRIMARY KEY, d2 decimal(12,2), d0 decimal(10,0), d4 decimal(8,4))",
            "INSERT INTO nums VALUES "
            + ", ".join("(" + ", ".join("NULL" if v is None else str(v) for v in row) + ")" for row in ROWS),
        ],
    )
    doc = task_doc(mysql_source_url, pg_url, name="validate-hash-forms")
    load = run_task(doc, tmp_path / "state")
    assert not load.rejected_rows and load.complete
    result = Validation(task_from_document(doc), recheck_delay=0).run()
    assert result.equal, [(t.plan.key, t.error, t.failures) for t in result.tables]

    validation = Validation(task_from_document(doc), recheck_delay=0)
    (plan,) = validation.plans()
    comparer = validation.table_comparer(plan)
    try:
        # the texts MariaDB builds are the canonical ones, and equal rows hash alike on both sides
        texts = sorted(comparer.source.rows(Scope()), key=lambda t: int(t[0] or 0))
        expected = [tuple(None if v is None else decimal_text(Decimal(str(v))) for v in row) for row in ROWS]
        assert texts == expected
        for scope in (Scope(1, 6), Scope(buckets=3)):
            assert comparer.source.checksums(scope, 5) == comparer.target.checksums(scope, 5)
    finally:
        comparer.close()

    execute_sql(pg_url, ["UPDATE nums SET d2 = 12.51 WHERE id = 1", "UPDATE nums SET d4 = 0.001 WHERE id = 4"])
    changed = Validation(task_from_document(doc), recheck_delay=0).run()
    found = {(f.key[0][1], tuple(c for c, _, _ in f.columns)) for t in changed.tables for f in t.failures}
    assert found == {("1", ("d2",)), ("4", ("d4",))}


@pytest.mark.parametrize(("lo", "hi"), [(-10, 10), (-(2**63), 2**63)])
def test_postgres_range_buckets_of_any_span(pg_url: str, lo: int, hi: int) -> None:
    """Sub-range buckets in bigint arithmetic, or numeric where the span does not fit a bigint."""
    ids = [-(2**63), -10, -5, 0, 7, 9, 2**63 - 1]
    execute_sql(
        pg_url,
        [
            "CREATE TABLE spans (id bigint PRIMARY KEY, v int)",
            "INSERT INTO spans VALUES " + ", ".join(f"({i}, 1)" for i in ids),
        ],
    )
    validation = Validation(task_from_document(task_doc(pg_url, pg_url, name="validate-spans")), recheck_delay=0)
    (plan,) = validation.plans()
    comparer = validation.table_comparer(plan)
    try:
        split = 4
        width = -(-(hi - lo) // split)
        expected: dict[int, int] = {}
        for i in ids:
            if lo <= i < hi:
                expected[(i - lo) // width] = expected.get((i - lo) // width, 0) + 1
        sums = comparer.target.checksums(Scope(lo, hi), split)
        assert {b: n for b, (n, _) in sums.items()} == expected
    finally:
        comparer.close()


def test_chunks_checksummed_ahead_on_every_lane_find_each_difference_in_key_order(
    mysql_source_url: str, pg_url: str, tmp_path: Path
) -> None:
    """Many small chunks on three lanes (a lane starts a chunk whenever one ends): every difference is
    found once, and reported in key order."""
    execute_sql(
        mysql_source_url,
        [
            "CREATE TABLE many (id int PRIMARY KEY, v varchar(10), doc json)",
            "INSERT INTO many SELECT seq, CONCAT('v', seq), JSON_OBJECT('n', seq) FROM seq_1_to_400",
        ],
    )
    doc = task_doc(
        mysql_source_url,
        pg_url,
        name="validate-lanes",
        ValidationSettings={"PartitionSize": 7, "ThreadCount": 3},
    )
    load = run_task(doc, tmp_path / "state")
    assert not load.rejected_rows and load.complete
    changed = [3, 97, 98, 250, 399]
    execute_sql(
        pg_url,
        [f"UPDATE many SET v = 'x' WHERE id IN ({', '.join(map(str, changed[:3]))})"]
        + [f"""UPDATE many SET doc = '{{"n": 0}}' WHERE id = {i}""" for i in changed[3:]],
    )
    (table,) = Validation(task_from_document(doc), recheck_delay=0).run().tables
    assert table.chunks > 10
    assert [int(f.key[0][1] or 0) for f in table.failures] == changed


def test_rows_finished_in_python_are_read_from_small_sub_ranges(
    mysql_source_url: str, pg_url: str, tmp_path: Path
) -> None:
    """JSON against PostgreSQL (texts finished in Python): a differing first-pass sub-range of 250 keys is
    split once more by the databases before its rows are read."""
    execute_sql(
        mysql_source_url,
        [
            "CREATE TABLE docs (id int PRIMARY KEY, doc json)",
            "INSERT INTO docs SELECT seq, JSON_OBJECT('n', seq) FROM seq_1_to_1000",
        ],
    )
    doc = task_doc(mysql_source_url, pg_url, name="validate-small-leaves")
    assert run_task(doc, tmp_path / "state").complete
    execute_sql(pg_url, ["""UPDATE docs SET doc = '{"n": 0}' WHERE id IN (300, 777)"""])
    validation = Validation(task_from_document(doc), recheck_delay=0)
    (plan,) = validation.plans()
    comparer = validation.table_comparer(plan)
    try:
        diff = comparer.compare()
    finally:
        comparer.close()
    assert sorted(int(f.key[0][1] or 0) for f in diff.failures) == [300, 777]
    assert len(diff.scopes) == 2 and all((s.hi or 0) - (s.lo or 0) <= 16 for s in diff.scopes)


def test_timestamps_of_whole_seconds_and_fractions_match_postgres(
    mysql_source_url: str, pg_url: str, tmp_path: Path
) -> None:
    """A timestamp column of whole seconds gives its text with a zero fraction appended (no formatting
    function); other precisions are formatted. Both agree with the canonical texts."""
    execute_sql(
        mysql_source_url,
        [
            "CREATE TABLE times (id int PRIMARY KEY, d0 datetime, d6 datetime(6), t0 timestamp NULL)",
            "INSERT INTO times VALUES (1, '2021-01-01 00:00:01', '2021-01-01 00:00:01.5', '2021-06-30 23:59:59'), "
            "(2, '0999-12-31 23:59:59', '9999-12-31 23:59:59.999999', NULL), (3, NULL, NULL, '1970-01-02 00:00:00')",
        ],
    )
    doc = task_doc(mysql_source_url, pg_url, name="validate-times")
    assert run_task(doc, tmp_path / "state").complete
    with psycopg.connect(pg_url) as conn:
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'times'::regclass AND attnum > 1"
            ).fetchall()
        )
    assert types == {
        "d0": "timestamp(0) without time zone",
        "d6": "timestamp(6) without time zone",
        "t0": "timestamp(0) with time zone",
    }
    validation = Validation(task_from_document(doc), recheck_delay=0)
    (plan,) = validation.plans()
    comparer = validation.table_comparer(plan)
    try:
        expected = [
            ("1", "2021-01-01 00:00:01.000000", "2021-01-01 00:00:01.500000", "2021-06-30 23:59:59.000000"),
            ("2", "0999-12-31 23:59:59.000000", "9999-12-31 23:59:59.999999", None),
            ("3", None, None, "1970-01-02 00:00:00.000000"),
        ]
        for side in (comparer.source, comparer.target):
            assert sorted(side.rows(Scope())) == expected
        assert comparer.source.checksums(Scope(1, 4), 3) == comparer.target.checksums(Scope(1, 4), 3)
    finally:
        comparer.close()
    execute_sql(pg_url, ["UPDATE times SET t0 = t0 + interval '1 second' WHERE id = 3"])
    (table,) = Validation(task_from_document(doc), recheck_delay=0).run().tables
    assert [(f.key[0][1], [c for c, _, _ in f.columns]) for f in table.failures] == [("3", ["t0"])]
