"""CDC and the source's ADD COLUMN ... DEFAULT: a constant default is followed at the stream's place (the
target fills its existing rows with it, as the source did; on PostgreSQL with the value the rows took,
even for now() or a default changed since); a default the source computed for each row (clock_timestamp(),
uuid()) suspends the table, and the suspension is stored on the target with the position, so a restart
(SIGTERM or kill -9) keeps the table suspended while the other tables go on streaming."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdc_support import Running, postgres_source, wait_equal, wait_until
from oracle import canonical_rows, compare, fetch
from schemas import execute_sql
from servers import PostgresServer
from tasks import task_doc, write_task
from test_cdc_faults import no_task_outlives_its_test, streaming  # noqa: F401  (kills leftover runs)
from test_cdc_kill import TaskProcess
from test_cdc_mysql_resume import columns_of, rows, wait_same

from conveyor.model.schema import TableId

PG_SQL = """
CREATE TABLE keep (id int PRIMARY KEY, a int);
CREATE TABLE added (id int PRIMARY KEY, a int);
CREATE TABLE volatile (id int PRIMARY KEY, a int);
INSERT INTO keep SELECT g, g FROM generate_series(1, 50) g;
INSERT INTO added SELECT g, g FROM generate_series(1, 50) g;
INSERT INTO volatile SELECT g, g FROM generate_series(1, 50) g;
"""
TABLES = [("keep", (0,)), ("added", (0,)), ("volatile", (0,))]
FOLLOWED = [("keep", (0,)), ("added", (0,))]
VOLATILE = TableId("public", "volatile")


@pytest.fixture
def pg_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "susp_" + request.node.name, "suspend", PG_SQL)


@pytest.fixture(params=["pg_url", "mysql_url"])
def target_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def test_postgres_add_column_default_is_followed_and_a_suspension_survives_a_restart(
    pg_source: str, target_url: str, tmp_path: Path
) -> None:
    doc = {**task_doc(pg_source, target_url, name="suspend"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_equal(task, pg_source, target_url, tables=TABLES)
    before_volatile = canonical_rows(fetch(target_url, "volatile", ["id", "a"], schema=_schema(target_url)))
    execute_sql(
        pg_source,
        [
            "UPDATE added SET a = -1 WHERE id = 1",
            "ALTER TABLE added ADD COLUMN d int DEFAULT 7, ADD COLUMN s varchar(30) DEFAULT 'it''s 100%', "
            "ADD COLUMN n numeric(6,2) NOT NULL DEFAULT 1.5, ADD COLUMN b boolean DEFAULT true, "
            "ADD COLUMN day date DEFAULT '2024-02-29', ADD COLUMN k int NOT NULL DEFAULT 3, "
            "ADD COLUMN on_day date DEFAULT now()",
            # changed before the stream reaches the table's next change: the rows keep what they took (7, 3)
            "ALTER TABLE added ALTER COLUMN d SET DEFAULT 70, ALTER COLUMN k DROP DEFAULT",
            "INSERT INTO added VALUES (101, 1, 8, 'new', 2.25, false, '2001-01-01', 4, '2002-02-02')",
            "UPDATE added SET d = 9, a = -2 WHERE id = 2",
            "DELETE FROM added WHERE id = 3",
            "ALTER TABLE volatile ADD COLUMN t timestamptz DEFAULT clock_timestamp()",  # a value per row
            "INSERT INTO volatile (id, a) VALUES (101, 1)",
            "INSERT INTO keep VALUES (101, 1)",
        ],
    )
    wait_equal(task, pg_source, target_url, tables=FOLLOWED)  # every column, row by row: the defaults filled
    wait_until(task, lambda: bool(task.runner.suspended))
    first = task.finish()
    assert set(task.runner.suspended) == {VOLATILE}, task.runner.suspended
    assert any("column t was added with a default the target cannot follow" in w for w in first.warnings)
    assert not any(t.apply_error_rows for t in first.tables)

    # the next run: volatile stays suspended (the catalog's definition would have planned it with t), the
    # others stream, volatile's later changes are not applied
    execute_sql(pg_source, ["INSERT INTO keep VALUES (102, 2)", "INSERT INTO volatile (id, a) VALUES (102, 2)"])
    again = Running(doc, tmp_path / "state")
    execute_sql(
        pg_source, ["INSERT INTO added (id, a, k) VALUES (102, 2, 5)", "UPDATE volatile SET a = 0 WHERE id = 4"]
    )
    wait_equal(again, pg_source, target_url, tables=FOLLOWED)
    result = again.finish()
    assert set(again.runner.suspended) == {VOLATILE}
    assert any("public.volatile: suspended by an earlier run" in w for w in result.warnings), result.warnings
    volatile = next(t for t in result.tables if t.table == "volatile")
    assert volatile.state == "Table error" and "column t was added with a default" in (volatile.error or "")
    assert "t" not in [n for n, _ in columns_of(target_url, "volatile")]
    after = canonical_rows(fetch(target_url, "volatile", ["id", "a"], schema=_schema(target_url)))
    assert compare(before_volatile, after, (0,)).equal  # nothing applied after the ALTER, nothing lost before


def _schema(url: str) -> str | None:
    return "public" if url.startswith("postgres") else None


MYSQL_SQL = [
    "CREATE TABLE m_keep (id int PRIMARY KEY, a int)",
    "CREATE TABLE m_added (id int PRIMARY KEY, a int)",
    "CREATE TABLE m_volatile (id int PRIMARY KEY, a int)",
    *(f"INSERT INTO {t} SELECT seq, seq FROM seq_1_to_30" for t in ("m_keep", "m_added", "m_volatile")),
]


def test_mysql_add_column_default_is_followed_and_a_suspension_survives_kill_9(
    mysql_source_url: str, target_url: str, tmp_path: Path
) -> None:
    source = mysql_source_url
    execute_sql(source, MYSQL_SQL)
    doc = {**task_doc(source, target_url, name="msuspend"), "migration_type": "full-load-and-cdc"}
    task_file = write_task(doc, tmp_path / "task.yaml")
    run = streaming(task_file, tmp_path / "state")
    wait_same(run, source, target_url, ("m_keep", "m_added", "m_volatile"))
    before_volatile = rows(target_url, "m_volatile", ["id", "a"])
    execute_sql(
        source,
        [
            "UPDATE m_added SET a = -1 WHERE id = 1",
            "ALTER TABLE m_added ADD COLUMN d int DEFAULT 7, ADD COLUMN s varchar(30) NOT NULL DEFAULT 'it''s 100%', "
            "ADD COLUMN n decimal(6,2) DEFAULT -1.5",
            "INSERT INTO m_added VALUES (101, 1, 8, 'new', 2.25)",
            "UPDATE m_added SET d = 9, a = -2 WHERE id = 2",
            "ALTER TABLE m_volatile ADD COLUMN u varchar(36) DEFAULT (uuid())",
            "INSERT INTO m_volatile (id, a) VALUES (101, 1)",
            "INSERT INTO m_keep VALUES (101, 1)",
        ],
    )
    wait_same(run, source, target_url, ("m_keep", "m_added"))
    _wait_output(run, "m_volatile: suspended")
    run.kill()  # kill -9, wherever the stored position is: before the ALTER, or past it with the suspension

    execute_sql(source, ["INSERT INTO m_keep VALUES (102, 2)", "INSERT INTO m_volatile (id, a) VALUES (102, 2)"])
    again = streaming(task_file, tmp_path / "state")
    execute_sql(source, ["INSERT INTO m_added (id, a) VALUES (102, 2)", "UPDATE m_volatile SET a = 0 WHERE id = 4"])
    wait_same(again, source, target_url, ("m_keep", "m_added"))
    _wait_output(again, "m_volatile: suspended")
    assert again.stop() == 1, again.output()  # a table is in error
    output = again.output()
    assert "column u was added with a default the target cannot follow" in output, output
    assert "apply error" not in output and "NEEDS_RESYNC" not in output, output
    assert [n for n, _ in columns_of(target_url, "m_volatile")] == ["id", "a"]
    assert compare(before_volatile, rows(target_url, "m_volatile", ["id", "a"]), (0,)).equal

    # a third run, after the position surely moved past the ALTER: still suspended, from the target's record
    execute_sql(source, ["INSERT INTO m_keep VALUES (103, 3)"])
    third = streaming(task_file, tmp_path / "state")
    wait_same(third, source, target_url, ("m_keep", "m_added"))
    assert third.stop() == 1, third.output()
    assert "suspended by an earlier run" in third.output(), third.output()
    assert "apply error" not in third.output(), third.output()


def _wait_output(run: TaskProcess, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in run.output():
        run.check()
        assert time.monotonic() < deadline, run.output()
        time.sleep(0.2)


def test_mysql_statement_logged_change_suspends_only_its_table(
    mysql_source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """A session whose binlog_format is not ROW logs its changes as SQL, without their rows: that table is
    suspended where the statement is (nothing of it applied from there on, the reason named), while the
    other tables go on streaming exactly, in this run and the next."""
    source = mysql_source_url
    execute_sql(
        source, ["CREATE TABLE s_keep (id int PRIMARY KEY, a int)", "CREATE TABLE s_stmt (id int PRIMARY KEY, a int)"]
    )
    execute_sql(source, [f"INSERT INTO {t} SELECT seq, seq FROM seq_1_to_20" for t in ("s_keep", "s_stmt")])
    doc = {**task_doc(source, sqlite_url, name="stmt"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source, sqlite_url, tables=[("s_keep", (0,)), ("s_stmt", (0,))])
    before = rows(sqlite_url, "s_stmt", ["id", "a"])
    execute_sql(source, ["SET SESSION binlog_format = 'STATEMENT'", "INSERT INTO s_stmt VALUES (101, 1)"])
    execute_sql(source, ["INSERT INTO s_keep VALUES (101, 1)", "UPDATE s_stmt SET a = -1 WHERE id = 1"])
    wait_equal(task, source, sqlite_url, tables=[("s_keep", (0,))])
    wait_until(task, lambda: bool(task.runner.suspended))
    first = task.finish()
    assert [t.name for t in task.runner.suspended] == ["s_stmt"], task.runner.suspended
    assert any("logged as SQL" in w and "binlog_format" in w for w in first.warnings), first.warnings
    assert compare(before, rows(sqlite_url, "s_stmt", ["id", "a"]), (0,)).equal  # nothing after the statement

    execute_sql(source, ["INSERT INTO s_keep VALUES (102, 2)", "INSERT INTO s_stmt VALUES (102, 2)"])
    again = Running(doc, tmp_path / "state")
    wait_equal(again, source, sqlite_url, tables=[("s_keep", (0,))])
    second = again.finish()
    assert any("suspended by an earlier run" in w for w in second.warnings), second.warnings
    assert compare(before, rows(sqlite_url, "s_stmt", ["id", "a"]), (0,)).equal
