"""The DMS table-mapping language end to end: transformation rules, source filters and parallel-load
ranges on real servers, checked row by row on the target, in full load and in change processing."""

from __future__ import annotations

import itertools
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql
import pytest
from cdc_support import Running, postgres_source, wait_until
from oracle import fetch
from servers import PostgresServer, unique_db_name
from tasks import run_task, task_doc

from conveyor.model.schema import Column, Table, TableId
from conveyor.model.types import ColumnType, LogicalType
from conveyor.transform.filters import bounds_sql

PG_SQL = """
CREATE TABLE people (id int PRIMARY KEY, first text NOT NULL, last text, secret text, region varchar(10),
  created date, score numeric(6,2));
INSERT INTO people SELECT g, 'f' || g, 'l' || g, 's' || g, (ARRAY['eu','us','ap'])[g % 3 + 1],
  DATE '2024-01-01' + g, g / 4.0 FROM generate_series(1, 300) g;
CREATE TABLE skipped (id int PRIMARY KEY);
"""
MYSQL_SQL = [
    "CREATE TABLE people (id int PRIMARY KEY, first varchar(20) NOT NULL, last varchar(20), secret varchar(20), "
    "region varchar(10), created date, score decimal(6,2))",
    "CREATE TABLE skipped (id int PRIMARY KEY)",
]
COLUMNS = ["id", "first", "surname", "region", "created", "score", "full_name", "op", "BI_id"]


def rules(schema: str) -> dict[str, Any]:
    def t(rid: int, target: str, action: str, locator: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {
            "rule-type": "transformation",
            "rule-id": str(rid),
            "rule-name": f"r{rid}",
            "rule-target": target,
            "rule-action": action,
            "object-locator": {"schema-name": schema, **locator},
            **extra,
        }

    table = {"table-name": "people"}
    return {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "people",
                "object-locator": {"schema-name": schema, "table-name": "people"},
                "rule-action": "include",
                "filters": [
                    {
                        "filter-type": "source",
                        "column-name": "region",
                        "filter-conditions": [
                            {"filter-operator": "eq", "value": "eu"},
                            {"filter-operator": "eq", "value": "us"},
                        ],
                    },
                    {
                        "filter-type": "source",
                        "column-name": "id",
                        "filter-conditions": [{"filter-operator": "between", "start-value": "1", "end-value": "250"}],
                    },
                ],
            },
            t(10, "table", "rename", table, value="persons"),
            t(11, "table", "add-prefix", table, value="x_"),  # loses to rule 10 (lower rule-id wins)
            t(12, "column", "rename", {**table, "column-name": "last"}, value="surname"),
            t(13, "column", "remove-column", {**table, "column-name": "secret"}),
            t(
                14,
                "column",
                "change-data-type",
                {**table, "column-name": "score"},
                **{"data-type": {"type": "string", "length": 20}},
            ),
            t(
                15,
                "column",
                "add-column",
                table,
                value="full_name",
                expression="$first || ' ' || $last",
                **{"data-type": {"type": "string", "length": 50}},
            ),
            t(
                16,
                "column",
                "add-column",
                table,
                value="op",
                expression="$AR_H_OPERATION",
                **{"data-type": {"type": "string", "length": 10}},
            ),
            t(17, "column", "add-before-image-columns", table, **{"before-image-def": {"column-prefix": "BI_"}}),
            {
                "rule-type": "table-settings",
                "rule-id": "30",
                "rule-name": "ranges",
                "object-locator": {"schema-name": schema, "table-name": "people"},
                "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [["100"], ["200"]]},
            },
        ]
    }


def expected(rows: list[tuple[Any, ...]], ops: dict[int, str] | None = None) -> list[tuple[Any, ...]]:
    """Source (id, first, last, secret, region, created, score) -> the target rows the rules make."""
    out = []
    for id_, first, last, _secret, region, created, score in rows:
        if region in ("eu", "us") and 1 <= id_ <= 250:
            op = (ops or {}).get(id_, "INSERT")
            full = None if last is None else f"{first} {last}"
            out.append((id_, first, last, region, str(created), str(score), full, op))
    return sorted(out)


def target_rows(url: str) -> list[tuple[Any, ...]]:
    schema = "public" if url.startswith("postgres") else None
    rows = fetch(url, "persons", COLUMNS[:-1], schema=schema)
    return sorted((r[0], r[1], r[2], r[3], str(r[4]), str(r[5]), r[6], r[7]) for r in rows)


def pg_source_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute("SELECT id, first, last, secret, region, created, score FROM people")]


@pytest.mark.parametrize("target", ["pg_url", "sqlite_url"])
def test_full_load_from_postgres(pg_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    source = pg_url
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(PG_SQL)
    dst = _second_pg(request) if target == "pg_url" else str(request.getfixturevalue(target))
    doc = {**task_doc(source, dst), "table_mappings": rules("public")}
    result = run_task(doc, tmp_path / "state")
    assert result.complete, result.failed
    (stats,) = result.tables
    assert stats.table == "persons" and stats.segments == 3
    assert target_rows(dst) == expected(pg_source_rows(source))


def _second_pg(request: pytest.FixtureRequest) -> str:
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = unique_db_name("dst_" + request.node.name)
    url = server.create_database(name)
    request.addfinalizer(lambda: server.drop_database(name))
    return url


def test_full_load_from_mariadb(mysql_source_url: str, pg_url: str, tmp_path: Path) -> None:
    conn = pymysql.connect(**_mysql_args(mysql_source_url), autocommit=True)
    with conn.cursor() as cur:
        for sql in MYSQL_SQL:
            cur.execute(sql)
        cur.executemany(
            "INSERT INTO people VALUES (%s, %s, %s, %s, %s, DATE_ADD('2024-01-01', INTERVAL %s DAY), %s)",
            [
                (g, f"f{g}", f"l{g}" if g % 7 else None, f"s{g}", ("eu", "us", "ap")[g % 3], g, Decimal(g) / 4)
                for g in range(1, 301)
            ],
        )
        cur.execute("SELECT id, first, last, secret, region, created, score FROM people")
        source_rows = [tuple(r) for r in cur.fetchall()]
    conn.close()
    doc = {**task_doc(mysql_source_url, pg_url), "table_mappings": rules("%")}
    result = run_task(doc, tmp_path / "state")
    assert result.complete, result.failed
    assert target_rows(pg_url) == expected(source_rows)


def _mysql_args(url: str) -> dict[str, Any]:
    u = urlparse(url)
    return {
        "host": u.hostname,
        "port": u.port,
        "user": u.username,
        "password": u.password or "",
        "database": u.path.lstrip("/"),
    }


@pytest.fixture
def cdc_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Any:
    yield from postgres_source(pg_server, "mapsrc_" + request.node.name, "mapcdc")


def test_change_processing_maps_and_filters(cdc_source: str, pg_url: str, tmp_path: Path) -> None:
    with psycopg.connect(cdc_source, autocommit=True) as conn:
        conn.execute(PG_SQL)
    doc = {**task_doc(cdc_source, pg_url, name="mapcdc"), "migration_type": "full-load-and-cdc"}
    doc["table_mappings"] = rules("public")
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(cdc_source, autocommit=True) as conn:
        conn.execute("INSERT INTO people VALUES (1000, 'a', 'b', 's', 'eu', '2025-01-01', 1.5)")  # id out of range
        conn.execute("INSERT INTO people VALUES (0, 'in', 'range?', 's', 'eu', '2025-01-01', 1.5)")  # 0 < 1: out
        conn.execute("DELETE FROM people WHERE id BETWEEN 1 AND 10")
        conn.execute("UPDATE people SET first = 'changed', secret = 'x' WHERE id BETWEEN 20 AND 30")
        conn.execute("UPDATE people SET id = id + 1000 WHERE id = 40")  # key change: leaves the filter
        conn.execute("UPDATE people SET last = NULL WHERE id = 50")
    ops = {i: "UPDATE" for i in range(20, 31)}
    ops[50] = "UPDATE"
    deadline = time.monotonic() + 60
    while True:
        want = expected(pg_source_rows(cdc_source), ops)
        # the key update of 40 is an update whose new row fails the filter: dropped, so 40 stays (DMS)
        want = sorted([*want, *[r for r in _row_40(pg_url) if r[0] == 40]])
        got = target_rows(pg_url)
        if got == want or time.monotonic() > deadline:
            break
        task.check()
        time.sleep(0.3)
    task.finish()
    assert got == want and any(r[0] == 40 for r in got)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute('SELECT id, "BI_id" FROM persons WHERE id IN (21, 22, 100)').fetchall()
    images: dict[int, int | None] = dict(rows)
    assert images == {21: 21, 22: 22, 100: None}


def _row_40(url: str) -> list[tuple[Any, ...]]:
    return [r for r in target_rows(url) if r[0] == 40]


#: (a, b) with NULLs in either column; duplicates too (the table has no key)
POINTS = [
    (1, "z"),
    (2, "a"),
    (2, "m"),
    (2, "m"),
    (2, "n"),
    (3, None),
    (4, "c"),
    (4, "d"),
    (5, "a"),
    (None, "a"),
    (None, None),
    (2, None),
]
BOUNDARIES = [["2", "m"], ["4", "c"]]


def test_parallel_load_ranges_on_two_columns_with_nulls(tmp_path: Path) -> None:
    """DMS's segments: the first holds rows up to and including the first boundary (row-value order over
    the columns), the last those above the last one; every row, NULLs too, is in exactly one segment."""
    source, target = tmp_path / "src.sqlite", tmp_path / "dst.sqlite"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE pts (a INTEGER, b TEXT, n INTEGER)")
    conn.executemany("INSERT INTO pts VALUES (?, ?, ?)", [(a, b, i) for i, (a, b) in enumerate(POINTS)])
    conn.commit()

    table = Table(
        TableId("main", "pts"),
        (Column("a", ColumnType(LogicalType.INTEGER)), Column("b", ColumnType(LogicalType.TEXT))),
    )
    bounds: list[list[str] | None] = [None, *BOUNDARIES, None]
    members = []
    for lo, hi in itertools.pairwise(bounds):
        where, params = bounds_sql(table, ["a", "b"], lo, hi, lambda c: f'"{c}"', "?", lambda v: v)
        members.append({r[0] for r in conn.execute(f"SELECT n FROM pts WHERE {where}", params)})
    conn.close()
    assert sorted(n for m in members for n in m) == list(range(len(POINTS)))  # each row once
    edges = [(int(a), b) for a, b in BOUNDARIES]
    for n, point in enumerate(POINTS):
        if None not in point:
            wanted = sum(1 for edge in edges if point > edge)  # DMS: above the boundaries below it
            assert n in members[wanted], (point, members)

    doc = task_doc(f"sqlite:///{source}", f"sqlite:///{target}", name="ranges-two-columns")
    locator = {"schema-name": "main", "table-name": "pts"}
    doc["table_mappings"] = {
        "rules": [
            {"rule-type": "selection", "rule-id": "1", "rule-name": "1", "object-locator": locator,
             "rule-action": "include"},
            {"rule-type": "table-settings", "rule-id": "2", "rule-name": "2", "object-locator": locator,
             "parallel-load": {"type": "ranges", "columns": ["a", "b"], "boundaries": BOUNDARIES}},
        ]
    }  # fmt: skip
    result = run_task(doc, tmp_path / "state")
    assert result.complete, result.failed
    (stats,) = result.tables
    assert stats.segments == len(BOUNDARIES) + 1
    got = sorted(fetch(f"sqlite:///{target}", "pts", ["n", "a", "b"]))
    assert [tuple(r) for r in got] == [(n, a, b) for n, (a, b) in enumerate(POINTS)]


FAR_DATES_SQL = """
CREATE TABLE far (id int PRIMARY KEY, d date, t time, ts timestamp, tz timestamptz);
INSERT INTO far VALUES
  (1, 'infinity', '24:00:00', '-infinity', '10000-01-01 00:00:00+00'),
  (2, '0044-03-15 BC', '12:00', '0001-01-01 00:00:00 BC', 'infinity'),
  (3, '5874897-12-31', NULL, '294276-12-31 23:59:59.5', NULL);
"""


def test_change_processing_with_renames_copies_values_as_the_full_load_does(
    cdc_source: str, pg_url: str, tmp_path: Path
) -> None:
    """A mapping that only renames leaves PostgreSQL's own values to the target, on both paths: dates
    Python cannot hold (infinity, BC, year 10000+) and time 24:00:00 arrive through the stream too."""
    with psycopg.connect(cdc_source, autocommit=True) as conn:
        conn.execute(FAR_DATES_SQL)
    renames = [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "far", "rule-action": "include",
         "object-locator": {"schema-name": "public", "table-name": "far"}},
        {"rule-type": "transformation", "rule-id": "2", "rule-name": "t", "rule-target": "table",
         "rule-action": "rename", "value": "far_away",
         "object-locator": {"schema-name": "public", "table-name": "far"}},
        {"rule-type": "transformation", "rule-id": "3", "rule-name": "c", "rule-target": "column",
         "rule-action": "rename", "value": "day",
         "object-locator": {"schema-name": "public", "table-name": "far", "column-name": "d"}},
    ]  # fmt: skip
    doc = {**task_doc(cdc_source, pg_url, name="farcdc"), "migration_type": "full-load-and-cdc"}
    doc["table_mappings"] = {"rules": renames}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(cdc_source, autocommit=True) as conn:
        conn.execute("INSERT INTO far SELECT id + 100, d, t, ts, tz FROM far WHERE id <= 3")
        conn.execute("UPDATE far SET d = '4713-01-01 BC', t = '24:00', ts = 'infinity' WHERE id IN (3, 103)")
        conn.execute("DELETE FROM far WHERE id IN (2, 102)")
    query = "SELECT {}::text, t::text, ts::text, tz::text FROM {} ORDER BY 1"
    deadline = time.monotonic() + 60
    while True:
        with psycopg.connect(cdc_source) as src, psycopg.connect(pg_url) as dst:
            dst.execute("SET TIME ZONE 'UTC'")
            src.execute("SET TIME ZONE 'UTC'")
            want = src.execute(query.format("id::text || ' ' || d", "far")).fetchall()
            got = dst.execute(query.format("id::text || ' ' || day", "far_away")).fetchall()
        if got == want or time.monotonic() > deadline:
            break
        task.check()
        time.sleep(0.3)
    result = task.finish()
    assert got == want and len(got) == 4
    assert not any(t.apply_error_rows for t in result.tables)
