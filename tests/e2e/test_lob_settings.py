"""DMS LOB settings end to end on real servers: limited LOB mode truncates (text on a character boundary)
and counts in full load and change processing, JSON too long is a rejected row, a lob-settings rule
overrides the task per table, and SupportLobs false leaves LOB columns out. Checked row by row."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_until
from oracle import fetch, mysql_connect
from servers import PostgresServer, unique_db_name
from tasks import run_task, task_doc

from conveyor.transform.lobs import clip

KB = 1024
BIG_JSON = json.dumps({"k": "v" * 2000})
PG_SQL = f"""
CREATE TABLE docs (id int PRIMARY KEY, body text, data bytea, doc jsonb, note varchar(10));
INSERT INTO docs VALUES
  (1, 'short', '\\x0102', '{{"a": 1}}', 'n'),
  (2, repeat('é', 700), decode(repeat('ab', 1500), 'hex'), '[1, 2]', 'n'),
  (3, repeat('€', 400), NULL, NULL, NULL),
  (4, 'ok', NULL, '{BIG_JSON}', 'json');
CREATE TABLE whole (id int PRIMARY KEY, body text);
INSERT INTO whole VALUES (1, repeat('x', 5000));
CREATE TABLE small (id int PRIMARY KEY, body text);
INSERT INTO small VALUES (1, repeat('y', 5000));
"""


def table_rule(rule_id: str, table: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule-type": "table-settings",
        "rule-id": rule_id,
        "rule-name": f"lob-{table}",
        "object-locator": {"schema-name": "public", "table-name": table},
        "lob-settings": settings,
    }


def mappings(*tables: str) -> dict[str, Any]:
    include = [
        {
            "rule-type": "selection",
            "rule-id": str(i),
            "rule-name": t,
            "object-locator": {"schema-name": "%", "table-name": t},
            "rule-action": "include",
        }
        for i, t in enumerate(tables, 1)
    ]
    return {
        "rules": [
            *include,
            table_rule("20", "whole", {"mode": "unlimited", "bulk-max-size": "0"}),
            table_rule("21", "small", {"mode": "limited", "bulk-max-size": "2"}),
        ]
    }


LIMITED: dict[str, Any] = {
    "TargetMetadata": {"SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 1}
}


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql)]


def expected_docs(source: str, limit: int = KB) -> list[tuple[Any, ...]]:
    """The source's docs rows as limited LOB mode writes them: JSON longer than the limit is rejected."""
    out = []
    for id_, body, data, doc, note in pg_rows(source, "SELECT id, body, data, doc::text, note FROM docs ORDER BY id"):
        if doc is not None and len(doc.encode()) > limit:
            continue
        out.append((id_, clip(body, limit), None if data is None else clip(bytes(data), limit), doc, note))
    return out


DOCS = "SELECT id, body, data, doc::text, note FROM docs ORDER BY id"


def target_docs(url: str) -> list[tuple[Any, ...]]:
    return [(i, b, None if d is None else bytes(d), j, n) for i, b, d, j, n in pg_rows(url, DOCS)]


@pytest.fixture
def pg_target(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = unique_db_name("lobdst_" + request.node.name)
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


def test_limited_lob_mode_full_load_truncates_counts_and_rejects_json(
    pg_url: str, pg_target: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(PG_SQL)
    doc = {**task_doc(pg_url, pg_target, **LIMITED), "table_mappings": mappings("docs", "whole", "small")}
    result = run_task(doc, tmp_path / "state")
    assert result.failed is None
    got = target_docs(pg_target)
    assert got == expected_docs(pg_url)
    assert got[1][1] == "é" * 512 and got[2][1] == "€" * 341 and len(got[1][2]) == KB  # whole characters
    stats = {t.table: t for t in result.tables}
    assert stats["docs"].lob_truncations == 3 and stats["docs"].full_load_error_rows == 1
    assert stats["docs"].dms()["LobTruncations"] == 3
    assert any("public.docs: 3 LOB value(s) longer than 1 KB truncated" in w for w in result.warnings)
    # lob-settings: unlimited copies whole, limited 2 KB cuts at 2 KB, whatever the task says
    assert pg_rows(pg_target, "SELECT body FROM whole") == [("x" * 5000,)]
    assert pg_rows(pg_target, "SELECT body FROM small") == [("y" * 2 * KB,)]
    assert stats["whole"].lob_truncations == 0 and stats["small"].lob_truncations == 1


def test_limited_lob_mode_into_sqlite_and_mariadb(pg_url: str, sqlite_url: str, mysql_url: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(PG_SQL)
    for i, target in enumerate((sqlite_url, mysql_url)):
        result = run_task(
            {**task_doc(pg_url, target, **LIMITED), "table_mappings": mappings("docs")}, tmp_path / str(i)
        )
        assert result.failed is None
        # into MariaDB from worker processes, whose counts come back with each segment
        assert [(t.lob_truncations, t.full_load_error_rows) for t in result.tables] == [(3, 1)]
        rows = sorted(fetch(target, "docs", ["id", "body", "data", "note"]))
        want = [(r[0], r[1], r[2], r[4]) for r in expected_docs(pg_url)]
        assert [(r[0], r[1], None if r[2] is None else bytes(r[2]), r[3]) for r in rows] == want


def test_support_lobs_false_leaves_lob_columns_out(mysql_source_url: str, pg_url: str, tmp_path: Path) -> None:
    conn = mysql_connect(mysql_source_url)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE docs (id int PRIMARY KEY, title varchar(20), body mediumtext, data blob, doc json, "
            "tag tinytext)"
        )
        cur.executemany(
            "INSERT INTO docs VALUES (%s, %s, %s, %s, %s, %s)",
            [(i, f"t{i}", "b" * 3000, b"\x00" * 10, '{"a": 1}', "x") for i in range(1, 51)],
        )
    conn.commit()
    conn.close()
    result = run_task(task_doc(mysql_source_url, pg_url, TargetMetadata={"SupportLobs": False}), tmp_path / "s")
    assert result.complete, result.failed
    assert pg_rows(
        pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'docs' ORDER BY ordinal_position"
    ) == [("id",), ("title",)]
    assert pg_rows(pg_url, "SELECT id, title FROM docs ORDER BY id") == [(i, f"t{i}") for i in range(1, 51)]
    assert any("LOB columns body, data, doc, tag are not migrated" in w for w in result.warnings)


@pytest.fixture
def cdc_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "lobsrc_" + request.node.name, "lobcdc", PG_SQL)


@pytest.mark.parametrize("batch_apply", [False, True])
def test_limited_lob_mode_in_change_processing(
    cdc_source: str, pg_target: str, tmp_path: Path, batch_apply: bool
) -> None:
    settings = {"TargetMetadata": {**LIMITED["TargetMetadata"], "BatchApplyEnabled": batch_apply}}
    doc = {
        **task_doc(cdc_source, pg_target, name="lobcdc", **settings),
        "migration_type": "full-load-and-cdc",
        "table_mappings": mappings("docs"),
    }
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(cdc_source, autocommit=True) as conn:
        conn.execute("INSERT INTO docs VALUES (10, repeat('ü', 900), decode(repeat('cd', 1100), 'hex'), NULL, 'i')")
        conn.execute("UPDATE docs SET body = repeat('€', 500), note = 'u' WHERE id = 1")
        conn.execute("UPDATE docs SET note = 'only' WHERE id = 2")  # the long body goes again, truncated again
        conn.execute("INSERT INTO docs VALUES (11, 'fine', NULL, %s, 'j')", (BIG_JSON,))  # rejected
        conn.execute("DELETE FROM docs WHERE id = 3")
    deadline = time.monotonic() + 60
    while True:
        want, got = expected_docs(cdc_source), target_docs(pg_target)
        if got == want or time.monotonic() > deadline:
            break
        task.check()
        time.sleep(0.3)
    result = task.finish()
    assert got == want
    assert got[0][1] == "€" * 341 and got[-1][1] == "ü" * 512
    warned = [w for w in result.warnings if "public.docs" in w and "truncated" in w]
    assert (
        warned and sum(t.lob_truncations for t in result.tables) >= 3
    )  # 10: body, data; 1: body (2: body, unless TOASTed)
