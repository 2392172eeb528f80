"""`conveyor assess` against deliberately misconfigured real servers, and the healthy fixtures.

One PostgreSQL and one MariaDB server are launched with bad settings for this module; the rest runs on
the session's servers with users and tables that are wrong on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from oracle import mysql_connect
from schemas import execute_sql
from servers import MariaDBServer, PostgresServer, unique_db_name
from tasks import cli, write_task

from conveyor.assess.assessment import Assessment, Status, assess
from conveyor.runner.task import task_from_document


# --------------------------------------------------------------------------- misconfigured servers
class BadPostgres(PostgresServer):
    """No logical decoding, no slots, no WAL senders, a short sender timeout; prepared transactions allowed."""

    def _server_argv(self) -> list[str]:
        settings = {
            "wal_level": "replica",
            "max_replication_slots": "0",
            "max_wal_senders": "0",
            "wal_sender_timeout": "5s",
            "max_prepared_transactions": "2",
        }
        return [*super()._server_argv(), *(arg for k, v in settings.items() for arg in ("-c", f"{k}={v}"))]


class BadMariaDB(MariaDBServer):
    """Binary logging off (the later option wins); the rest is set per test with SET GLOBAL."""

    def _server_argv(self) -> list[str]:
        return [*super()._server_argv(), "--skip-log-bin", "--local-infile=0"]


@pytest.fixture(scope="module")
def bad_pg() -> Iterator[PostgresServer]:
    server = BadPostgres.launch()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def bad_mariadb() -> Iterator[MariaDBServer]:
    server = BadMariaDB.launch()
    try:
        admin = server._admin()
        with admin.cursor() as cur:
            for setting in (
                "binlog_format = 'STATEMENT'",
                "binlog_row_image = 'MINIMAL'",
                "binlog_expire_logs_seconds = 3600",
            ):
                cur.execute(f"SET GLOBAL {setting}")
        admin.close()
        yield server
    finally:
        server.destroy()


# --------------------------------------------------------------------------- helpers
def task(source: str, target: str, migration_type: str = "cdc", name: str = "assess") -> dict[str, Any]:
    return {"name": name, "source": source, "target": target, "migration_type": migration_type}


def statuses(assessment: Assessment) -> dict[str, Status]:
    return {r.key: r.status for r in assessment.results}


def result(assessment: Assessment, key: str) -> str:
    (found,) = [r for r in assessment.results if r.key == key]
    return found.message


def failed(assessment: Assessment) -> set[str]:
    return {r.key for r in assessment.failed}


# --------------------------------------------------------------------------- PostgreSQL
def test_misconfigured_postgres_fails_every_blocking_check_at_once(
    bad_pg: PostgresServer, sqlite_url: str, tmp_path: Path
) -> None:
    url = bad_pg.create_database(unique_db_name("bad_pg"))
    execute_sql(
        url,
        [
            "CREATE TABLE keyed (id int PRIMARY KEY, v text)",
            "CREATE TABLE loose (a int, doc text)",
            "CREATE TABLE bag (a int, b int)",
            "ALTER TABLE bag REPLICA IDENTITY FULL",
        ],
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO keyed VALUES (1, 'x')")
        conn.execute("PREPARE TRANSACTION 'assess_prepared'")
        try:
            assessment = assess(task_from_document(task(url, sqlite_url)))
        finally:
            conn.execute("ROLLBACK PREPARED 'assess_prepared'")
    got = statuses(assessment)
    assert failed(assessment) == {
        "postgres-check-wallevel",
        "postgres-check-replication-slots-count",
        "postgres-check-maxwalsenders",
        "postgres-check-pk",
    }
    assert "ALTER SYSTEM SET wal_level = logical" in result(assessment, "postgres-check-wallevel")
    assert "max_replication_slots is 0" in result(assessment, "postgres-check-replication-slots-count")
    pk = result(assessment, "postgres-check-pk")
    assert "public.loose (no primary key)" in pk and "bag" not in pk  # REPLICA IDENTITY FULL is enough
    for key in (
        "postgres-check-walsenderstimeout",
        "postgres-check-preparedtxn",
        "table-with-no-primary-key-or-unique-constraint",
        "table-with-lob-but-without-primary-key-or-unique-constraint",
    ):
        assert got[key] is Status.WARNING, key
    assert "5000 ms" in result(assessment, "postgres-check-walsenderstimeout")
    assert "assess_prepared" in result(assessment, "postgres-check-preparedtxn")
    assert "public.loose (doc)" in result(assessment, "table-with-lob-but-without-primary-key-or-unique-constraint")
    assert got["postgres-check-dbversion"] is Status.PASSED
    assert got["postgres-check-replication-privileges"] is Status.PASSED
    assert all(r.blocking for r in assessment.failed)

    # the command line: a table, JSON, exit code 1
    task_file = write_task(task(url, sqlite_url), tmp_path / "task.yaml")
    proc = cli("assess", str(task_file), "--json")
    assert proc.returncode == 1 and proc.stdout, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["summary"]["failed"] == 4
    assert {a["key"] for a in doc["assessments"] if a["status"] == "failed"} == failed(assessment)
    proc = cli("assess", str(task_file), env={"COLUMNS": "200"})
    assert proc.returncode == 1 and "4 failed" in proc.stdout
    assert "failed    postgres-check-wallevel  (blocks run)" in [line.strip() for line in proc.stdout.splitlines()]

    # `conveyor run` names every blocking server check that fails before it starts anything
    proc = cli("run", str(task_file), "--no-progress")
    assert proc.returncode == 1
    for key in ("postgres-check-wallevel", "postgres-check-replication-slots-count", "postgres-check-maxwalsenders"):
        assert key in proc.stderr, proc.stderr
    assert "wal_level is replica" in proc.stderr and "Traceback" not in proc.stderr

    # a full load needs none of it: the change-capture checks are skipped
    full = assess(task_from_document(task(url, sqlite_url, "full-load")))
    assert not full.failed
    assert statuses(full)["postgres-check-wallevel"] is Status.SKIPPED


def test_healthy_postgres_passes(pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    execute_sql(pg_url, ["CREATE TABLE items (id int PRIMARY KEY, name text)"])
    target = pg_server.create_database(unique_db_name("assess_target"))
    try:
        doc = task(pg_url, target, "full-load-and-cdc", name="assess-healthy")
        assessment = assess(task_from_document(doc))
        assert not assessment.failed, [(r.key, r.message) for r in assessment.failed]
        got = statuses(assessment)
        assert got["postgres-check-wallevel"] is Status.PASSED
        assert got["postgres-check-pk"] is Status.PASSED
        assert got["table-with-no-primary-key-or-unique-constraint"] is Status.PASSED
        proc = cli("assess", str(write_task(doc, tmp_path / "task.yaml")))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        pg_server.drop_database(target)


def test_postgres_user_without_privileges(pg_server: PostgresServer, pg_url: str, sqlite_url: str) -> None:
    execute_sql(pg_url, ["CREATE TABLE secret (id int PRIMARY KEY)", "CREATE TABLE open (id int PRIMARY KEY)"])
    execute_sql(pg_url, ["GRANT SELECT ON open TO limited"])
    limited = pg_server.url(pg_url.rsplit("/", 1)[1].split("?")[0], user="limited", password="secret")
    assessment = assess(task_from_document(task(limited, sqlite_url)))
    assert failed(assessment) == {
        "postgres-check-replication-privileges",
        "postgres-check-select-object-privileges",
        "postgres-check-publication",
    }
    assert 'ALTER ROLE "limited" REPLICATION' in result(assessment, "postgres-check-replication-privileges")
    assert "secret" in result(assessment, "postgres-check-select-object-privileges")


def test_postgres_types_without_an_equivalent_are_reported(pg_url: str, sqlite_url: str) -> None:
    execute_sql(
        pg_url,
        ["CREATE TYPE pair AS (a int, b text)", "CREATE TABLE shapes (id int PRIMARY KEY, p pair, r int4range)"],
    )
    assessment = assess(task_from_document(task(pg_url, sqlite_url, "full-load")))
    assert statuses(assessment)["unsupported-data-types-in-source"] is Status.WARNING
    message = result(assessment, "unsupported-data-types-in-source")
    assert "public.shapes" in message and "p (public.pair)" in message and "copied as their text form" in message
    assert not assessment.failed


# --------------------------------------------------------------------------- MariaDB
def test_misconfigured_mariadb_source(bad_mariadb: MariaDBServer, sqlite_url: str, tmp_path: Path) -> None:
    url = bad_mariadb.create_database(unique_db_name("bad_maria"))
    execute_sql(url, ["CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE old (id int PRIMARY KEY) ENGINE=MyISAM"])
    assessment = assess(task_from_document(task(url, sqlite_url)))
    assert failed(assessment) == {
        "mariadb-check-binlog-enabled",
        "mariadb-check-binlog-format",
        "mariadb-check-binlog-image",
    }
    got = statuses(assessment)
    assert got["mariadb-check-binlog-retention-time"] is Status.WARNING
    assert got["mariadb-check-table-storage-engine"] is Status.WARNING
    assert "engine MyISAM" in result(assessment, "mariadb-check-table-storage-engine")
    assert got["mariadb-check-replication-privileges"] is Status.PASSED
    assert got["mariadb-check-server-id"] is Status.PASSED  # MariaDB 10.2+ has no server_id 0
    assert "SET GLOBAL binlog_format = 'ROW'" in result(assessment, "mariadb-check-binlog-format")
    proc = cli("run", str(write_task(task(url, sqlite_url), tmp_path / "task.yaml")), "--no-progress")
    assert proc.returncode == 1 and "mariadb-check-binlog-enabled" in proc.stderr, proc.stderr


def test_mariadb_target_without_local_infile(bad_mariadb: MariaDBServer, sqlite_url: str, tmp_path: Path) -> None:
    execute_sql(sqlite_url, ["CREATE TABLE t (id integer PRIMARY KEY)", "INSERT INTO t VALUES (1)"])
    target = bad_mariadb.create_database(unique_db_name("bad_target"))
    doc = task(sqlite_url, target, "full-load")
    assessment = assess(task_from_document(doc))
    assert failed(assessment) == {"mariadb-check-target-localinfile-set"}
    assert "local_infile is OFF" in result(assessment, "mariadb-check-target-localinfile-set")
    proc = cli("run", str(write_task(doc, tmp_path / "task.yaml")), "--no-progress")
    assert proc.returncode == 1 and "mariadb-check-target-localinfile-set" in proc.stderr, proc.stderr
    conn = mysql_connect(target)
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == ()  # refused before anything was created
    conn.close()


def test_healthy_mariadb_and_its_unsupported_columns(
    mysql_server: MariaDBServer, mysql_source_url: str, pg_url: str
) -> None:
    execute_sql(
        mysql_source_url,
        [
            "CREATE TABLE t (id int PRIMARY KEY, body text)",
            "CREATE TABLE places (id int PRIMARY KEY, g geometry)",
            "CREATE TABLE log (at int, msg text)",
        ],
    )
    assessment = assess(task_from_document(task(mysql_source_url, pg_url, "full-load-and-cdc")))
    assert not assessment.failed, [(r.key, r.message) for r in assessment.failed]
    got = statuses(assessment)
    for key in ("mariadb-check-binlog-format", "mariadb-check-replication-privileges", "mariadb-check-server-id"):
        assert got[key] is Status.PASSED, key
    assert "g (geometry)" in result(assessment, "unsupported-data-types-in-source")
    assert "log (msg)" in result(assessment, "table-with-lob-but-without-primary-key-or-unique-constraint")


def test_mariadb_user_without_replication_privileges(
    mysql_server: MariaDBServer, mysql_source_url: str, sqlite_url: str
) -> None:
    execute_sql(mysql_source_url, ["CREATE TABLE t (id int PRIMARY KEY)"])
    database = mysql_source_url.rsplit("/", 1)[1].split("?")[0]
    user = unique_db_name("assess", prefix="u")[:32]
    admin = mysql_server._admin()
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY 'pw'", (user,))
            cur.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'")
        url = mysql_server.url(database, user=user, password="pw")
        assessment = assess(task_from_document(task(url, sqlite_url)))
        assert failed(assessment) == {"mariadb-check-replication-privileges"}
        message = result(assessment, "mariadb-check-replication-privileges")
        assert f"GRANT BINLOG MONITOR ON *.* TO '{user}'@'%'" in message
        assert f"GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%'" in message
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        admin.close()


def test_postgres_target_user_that_cannot_create_tables(
    pg_server: PostgresServer, pg_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    execute_sql(pg_url, ["REVOKE CREATE ON SCHEMA public FROM PUBLIC"])
    limited = pg_server.url(pg_url.rsplit("/", 1)[1].split("?")[0], user="limited", password="secret")
    doc = task(sqlite_url, limited, "full-load", name="assess-target")
    execute_sql(sqlite_url, ["CREATE TABLE t (id integer PRIMARY KEY)"])
    assessment = assess(task_from_document(doc))
    assert failed(assessment) == {"postgres-check-target-privileges"}
    assert 'GRANT CREATE ON DATABASE "' in result(assessment, "postgres-check-target-privileges")
    proc = cli("run", str(write_task(doc, tmp_path / "task.yaml")), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode != 0 and "postgres-check-target-privileges" in proc.stdout + proc.stderr
    execute_sql(pg_url, ["GRANT USAGE, CREATE ON SCHEMA public TO limited"])
    assert statuses(assess(task_from_document(doc)))["postgres-check-target-privileges"] is Status.PASSED


def test_postgres_logical_decoding_memory_below_its_default(pg_url: str, sqlite_url: str) -> None:
    execute_sql(pg_url, ["CREATE TABLE items (id int PRIMARY KEY)"])
    database = pg_url.rsplit("/", 1)[1].split("?")[0]
    execute_sql(pg_url, [f"ALTER DATABASE \"{database}\" SET logical_decoding_work_mem = '1MB'"])
    assessment = assess(task_from_document(task(pg_url, sqlite_url, name="assess-decoding")))
    key = "postgres-check-for-logical-decoding-work-mem"
    assert statuses(assessment)[key] is Status.WARNING
    assert "logical_decoding_work_mem is 1024 kB" in result(assessment, key)
    assert key not in failed(assessment)
