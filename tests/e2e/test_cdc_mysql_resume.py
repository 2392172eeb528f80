"""MySQL / MariaDB change data capture resumed after schema changes made while the task was stopped
(SIGTERM, ``conveyor run`` as a subprocess): the restart plans each table as the stored position holds
it, and the stream's own ALTER statements bring the target along at their place, so rows written
before and after each change land exactly, into PostgreSQL and into MariaDB."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from oracle import canonical_rows, compare, fetch, mysql_connect
from schemas import execute_sql
from tasks import task_doc, write_task
from test_cdc_faults import no_task_outlives_its_test, streaming  # noqa: F401  (kills leftover runs)
from test_cdc_kill import TaskProcess

#: one table per kind of change, each with rows the full load copies
SOURCE_SQL = [
    "CREATE TABLE t_after (id int PRIMARY KEY, a int, b varchar(20))",
    "CREATE TABLE t_default (id int PRIMARY KEY, a int)",
    "CREATE TABLE t_modify (id int PRIMARY KEY, n int, s varchar(5))",
    "CREATE TABLE t_rename (id int PRIMARY KEY, a int, b varchar(20))",
    "CREATE TABLE t_drop (id int PRIMARY KEY, a int, b varchar(20))",
    *(
        f"INSERT INTO {t} SELECT seq, seq * 10, CONCAT('v', seq) FROM seq_1_to_20"
        for t in ("t_after", "t_rename", "t_drop")
    ),
    "INSERT INTO t_modify SELECT seq, seq * 10, 'abc' FROM seq_1_to_20",
    "INSERT INTO t_default SELECT seq, seq FROM seq_1_to_20",
]

#: while the task is stopped: rows, the change, rows written under the new definition
WHILE_STOPPED = [
    "INSERT INTO t_after VALUES (101, 1, 'before')",
    "UPDATE t_after SET b = 'updated before' WHERE id = 1",
    "DELETE FROM t_after WHERE id = 2",
    "ALTER TABLE t_after ADD COLUMN c varchar(10) AFTER a",
    "INSERT INTO t_after (id, a, c, b) VALUES (102, 2, 'after', 'after')",
    "UPDATE t_after SET c = 'set', b = 'updated after' WHERE id IN (1, 3)",
    "DELETE FROM t_after WHERE id = 4",
    "INSERT INTO t_modify VALUES (101, 1, 'ab')",
    "UPDATE t_modify SET n = -5 WHERE id = 1",
    "ALTER TABLE t_modify MODIFY n bigint, MODIFY s varchar(40)",
    "INSERT INTO t_modify VALUES (102, 1099511627776, 'longer than five')",  # 2**40: only a bigint holds it
    "UPDATE t_modify SET n = -1099511627776, s = 'widened' WHERE id = 2",
    "DELETE FROM t_modify WHERE id = 3",
    "INSERT INTO t_rename VALUES (101, 1, 'before')",
    "UPDATE t_rename SET b = 'updated before' WHERE id = 1",
    "ALTER TABLE t_rename RENAME COLUMN b TO b2",
    "INSERT INTO t_rename VALUES (102, 2, 'after')",
    "UPDATE t_rename SET b2 = 'updated after' WHERE id IN (1, 2)",
    "DELETE FROM t_rename WHERE id = 3",
    "INSERT INTO t_drop VALUES (101, 1, 'before')",
    "UPDATE t_drop SET b = 'updated before', a = -1 WHERE id = 1",
    "ALTER TABLE t_drop DROP COLUMN b",
    "INSERT INTO t_drop VALUES (102, 2)",
    "UPDATE t_drop SET a = -2 WHERE id IN (1, 2)",
    "DELETE FROM t_drop WHERE id = 3",
]

#: after the restart, while it streams again
AFTER_RESTART = [
    "INSERT INTO t_after (id, a, c, b) VALUES (103, 3, 'restarted', 'x')",
    "INSERT INTO t_modify VALUES (103, 2199023255552, 'streamed')",
    "UPDATE t_rename SET b2 = 'streamed' WHERE id = 4",
    "INSERT INTO t_drop VALUES (103, 3)",
]

FOLLOWED = ("t_after", "t_modify", "t_rename", "t_drop")


@pytest.fixture(params=["pg_url", "mysql_url"])
def target_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def columns_of(url: str, table: str) -> list[tuple[str, str]]:
    """(name, data type) of each column, in the table's order."""
    sql = (
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position"
    )
    if url.startswith("postgres"):
        with psycopg.connect(url) as conn:
            return [(str(n), str(t)) for n, t in conn.execute(sql, ("public", table)).fetchall()]
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, (unquote(urlsplit(url).path.lstrip("/")), table))
            return [(str(n), str(t)) for n, t in cur.fetchall()]
    finally:
        conn.close()


def rows(url: str, table: str, names: list[str]) -> list[Any]:
    return canonical_rows(fetch(url, table, names, schema="public" if url.startswith("postgres") else None))


def differences(source: str, target: str, tables: tuple[str, ...]) -> str:
    """'' when each table has the same column names on both sides and the same rows, read by the
    source's column order (a target may hold an added column last), else what differs."""
    out = []
    for table in tables:
        names = [n for n, _ in columns_of(source, table)]
        on_target = [n for n, _ in columns_of(target, table)]
        if sorted(on_target) != sorted(names):
            out.append(f"{table}: columns {on_target} on the target, {names} on the source")
            continue
        diff = compare(rows(source, table, names), rows(target, table, names), (0,))
        if not diff.equal:
            out.append(f"{table}: {diff}")
    return "\n".join(out)


def wait_same(run: TaskProcess, source: str, target: str, tables: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 90
    while found := differences(source, target, tables):
        run.check()
        assert time.monotonic() < deadline, f"{found}\n{run.output()}"
        time.sleep(0.5)


def restarted_after(source: str, target: str, tmp_path: Path, tables: tuple[str, ...], sql: list[str]) -> TaskProcess:
    """A full-load-and-cdc task that loaded and streamed ``tables``, stopped by SIGTERM; then ``sql`` on
    the source, and the task started again."""
    execute_sql(source, SOURCE_SQL)
    doc = {**task_doc(source, target, name="mysqlresume"), "migration_type": "full-load-and-cdc"}
    task_file = write_task(doc, tmp_path / "task.yaml")
    run = streaming(task_file, tmp_path / "state")
    execute_sql(source, [f"DELETE FROM {t} WHERE id = 20" for t in tables])
    wait_same(run, source, target, tables)
    assert run.stop() == 0, run.output()
    execute_sql(source, sql)
    return streaming(task_file, tmp_path / "state")


def test_a_restart_follows_schema_changes_made_while_stopped(
    mysql_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """ADD COLUMN ... AFTER, MODIFY to wider types, RENAME COLUMN and DROP COLUMN while stopped, with
    rows before and after each: every row lands in the columns it was written to, and each change is
    made on the target; a third run resumes from a position stored after them."""
    source = mysql_source_url
    again = restarted_after(source, target_url, tmp_path, FOLLOWED, WHILE_STOPPED)
    execute_sql(source, AFTER_RESTART)
    wait_same(again, source, target_url, FOLLOWED)
    assert again.stop() == 0, again.output()
    output = again.output()
    assert "NEEDS_RESYNC" not in output and "retrying" not in output and "apply error" not in output, output
    for what in ("added c", "changed n from int(11) to bigint", "renamed b to b2", "dropped b"):
        assert f"followed the source: {what}" in output, output

    # an added column goes last on the target (neither target engine is told to place it AFTER another)
    assert [n for n, _ in columns_of(target_url, "t_after")] == ["id", "a", "b", "c"]
    assert dict(columns_of(target_url, "t_modify"))["n"] == "bigint"
    assert [n for n, _ in columns_of(target_url, "t_rename")] == ["id", "a", "b2"]
    assert [n for n, _ in columns_of(target_url, "t_drop")] == ["id", "a"]

    # stopped again after the changes: the stored definitions are the new ones
    execute_sql(
        source,
        [
            "INSERT INTO t_after (id, a, c, b) VALUES (104, 4, 'third', 'run')",
            "UPDATE t_modify SET n = 4398046511104 WHERE id = 4",
            "UPDATE t_rename SET b2 = 'third run' WHERE id = 5",
            "DELETE FROM t_drop WHERE id = 6",
        ],
    )
    third = streaming(tmp_path / "task.yaml", tmp_path / "state")
    wait_same(third, source, target_url, FOLLOWED)
    assert third.stop() == 0, third.output()
    assert "followed the source" not in third.output() and "apply error" not in third.output(), third.output()


def test_a_column_added_with_a_default_while_stopped_suspends_its_table(
    mysql_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """The source filled its existing rows with a default it computed (uuid()), which the binlog does not
    carry: the table is suspended where the stream meets the ALTER (the rows before it applied, none
    after), never left with NULLs where the source has the default."""
    source = mysql_source_url
    while_stopped = [
        "INSERT INTO t_default VALUES (101, 1)",
        "UPDATE t_default SET a = -1 WHERE id = 1",
        "ALTER TABLE t_default ADD COLUMN d varchar(36) DEFAULT (uuid())",
        "INSERT INTO t_default VALUES (102, 2, 'x')",
        "UPDATE t_default SET a = -2 WHERE id = 2",
    ]
    again = restarted_after(source, target_url, tmp_path, ("t_default",), while_stopped)
    # what the source held before the ALTER: its rows now, without the two changes after it
    before = canonical_rows((i, 2 if i == 2 else a) for i, a in fetch(source, "t_default", ["id", "a"]) if i != 102)
    deadline = time.monotonic() + 60
    while "t_default: suspended" not in again.output():
        again.check()
        assert time.monotonic() < deadline, again.output()
        time.sleep(0.2)
    assert again.stop() == 1, again.output()  # a table failed
    assert "column d was added with a default the target cannot follow" in again.output(), again.output()
    assert [n for n, _ in columns_of(target_url, "t_default")] == ["id", "a"]
    assert compare(before, rows(target_url, "t_default", ["id", "a"]), (0,)).equal
