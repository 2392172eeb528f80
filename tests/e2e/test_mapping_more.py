"""More of the table-mapping language on real servers, row by row: change processing from a MariaDB
source (rename, remove-column, add-column expressions, filters, before images) into PostgreSQL, change
processing from PostgreSQL under batch apply, and a MariaDB target in full load."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_until
from oracle import mysql_connect
from servers import PostgresServer
from tasks import run_task, task_doc
from test_mapping_e2e import MYSQL_SQL, PG_SQL, expected, pg_source_rows, rules, target_rows

#: the updates each test makes, by id: their target rows say UPDATE ($AR_H_OPERATION)
UPDATED = {**{i: "UPDATE" for i in range(20, 31)}, 50: "UPDATE"}


def mysql_rows(url: str) -> list[tuple[Any, ...]]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, first, last, secret, region, created, score FROM people")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def mysql_execute(url: str, *statements: str) -> None:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


def fill_mariadb(url: str) -> None:
    mysql_execute(url, *MYSQL_SQL)
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO people VALUES (%s, %s, %s, %s, %s, DATE_ADD('2024-01-01', INTERVAL %s DAY), %s)",
                [
                    (g, f"f{g}", f"l{g}" if g % 7 else None, f"s{g}", ("eu", "us", "ap")[g % 3], g, Decimal(g) / 4)
                    for g in range(1, 301)
                ],
            )
        conn.commit()
    finally:
        conn.close()


def wait_rows(task: Running, want: Callable[[], list[tuple[Any, ...]]], target: str) -> tuple[list[Any], list[Any]]:
    """(wanted, got) once the target's rows are the wanted ones, or after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        wanted, got = want(), target_rows(target)
        if got == wanted or time.monotonic() > deadline:
            return wanted, got
        task.check()
        time.sleep(0.3)


def before_images(url: str) -> dict[int, int | None]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute('SELECT id, "BI_id" FROM persons WHERE id IN (21, 22, 100)').fetchall())


def test_change_processing_from_mariadb_maps_and_filters(mysql_source_url: str, pg_url: str, tmp_path: Path) -> None:
    fill_mariadb(mysql_source_url)
    doc = {**task_doc(mysql_source_url, pg_url, name="mapmaria"), "migration_type": "full-load-and-cdc"}
    doc["table_mappings"] = rules("%")
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    mysql_execute(
        mysql_source_url,
        "INSERT INTO people VALUES (1000, 'a', 'b', 's', 'eu', '2025-01-01', 1.5)",  # id out of the filter's range
        "DELETE FROM people WHERE id = 240",
        "INSERT INTO people VALUES (240, 'c', 'd', 's', 'ap', '2025-01-01', 1.5)",  # region out of the filter
        "DELETE FROM people WHERE id BETWEEN 1 AND 10",
        "UPDATE people SET first = 'changed', secret = 'x' WHERE id BETWEEN 20 AND 30",
        "UPDATE people SET last = NULL WHERE id = 50",
        "UPDATE people SET secret = 'removed col' WHERE id = 60",
    )
    ops = {**UPDATED, 60: "UPDATE"}
    wanted, got = wait_rows(task, lambda: expected(mysql_rows(mysql_source_url), ops), pg_url)
    task.finish()
    assert got == wanted
    assert [(r[1], r[6], r[7]) for r in got if r[0] == 22] == [("changed", "changed l22", "UPDATE")]
    assert before_images(pg_url) == {21: 21, 22: 22, 100: None}


@pytest.fixture
def cdc_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "mapbatch_" + request.node.name, "mapbatch", PG_SQL)


def test_change_processing_under_batch_apply(cdc_source: str, pg_url: str, tmp_path: Path) -> None:
    doc = {
        **task_doc(cdc_source, pg_url, name="mapbatch", TargetMetadata={"BatchApplyEnabled": True}),
        "migration_type": "full-load-and-cdc",
        "table_mappings": rules("public"),
    }
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(cdc_source, autocommit=True) as conn:
        conn.execute("INSERT INTO people VALUES (1000, 'a', 'b', 's', 'eu', '2025-01-01', 1.5)")
        conn.execute("INSERT INTO people VALUES (301, 'x', 'y', 's', 'us', '2025-01-01', 1.5)")  # out: id > 250
        conn.execute("DELETE FROM people WHERE id BETWEEN 1 AND 10")
        with conn.transaction():  # several changes of one row in one batch: netted, the last one wins
            conn.execute("UPDATE people SET first = 'changed', secret = 'x' WHERE id BETWEEN 20 AND 30")
            conn.execute("UPDATE people SET last = 'twice' WHERE id = 25")
        conn.execute("UPDATE people SET last = NULL WHERE id = 50")
    wanted, got = wait_rows(task, lambda: expected(pg_source_rows(cdc_source), UPDATED), pg_url)
    task.finish()
    assert got == wanted
    assert [r[6] for r in got if r[0] == 25] == ["changed twice"]
    assert before_images(pg_url) == {21: 21, 22: 22, 100: None}


def test_full_load_into_mariadb(pg_url: str, mysql_url: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(PG_SQL)
    result = run_task({**task_doc(pg_url, mysql_url), "table_mappings": rules("public")}, tmp_path / "state")
    assert result.complete, result.failed
    (stats,) = result.tables
    assert stats.table == "persons" and stats.segments == 3
    assert target_rows(mysql_url) == expected(pg_source_rows(pg_url))
