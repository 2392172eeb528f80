"""`target-table-has-unique-key-or-primary-key-for-cdc` against real target tables, found through the
task's mappings (a renamed table) on PostgreSQL and MariaDB targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas import execute_sql
from servers import PostgresServer, unique_db_name
from tasks import cli, write_task

from conveyor.assess.assessment import Assessment, Result, Status, assess
from conveyor.runner.task import task_from_document

KEY = "target-table-has-unique-key-or-primary-key-for-cdc"
RULES = [
    {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "all",
        "object-locator": {"schema-name": "public", "table-name": "%"},
        "rule-action": "include",
    },
    {
        "rule-type": "transformation",
        "rule-id": "2",
        "rule-name": "rename",
        "rule-target": "table",
        "object-locator": {"schema-name": "public", "table-name": "dup"},
        "rule-action": "rename",
        "value": "copies",
    },
]
SOURCE = [f"CREATE TABLE {t} (id int PRIMARY KEY, v text)" for t in ("keyed", "plain", "dup", "fresh")]


def doc(source: str, target: str, migration_type: str, prep: str = "DROP_AND_CREATE") -> dict[str, Any]:
    return {
        "name": "assess-target-keys",
        "source": source,
        "target": target,
        "migration_type": migration_type,
        "table_mappings": {"rules": RULES},
        "settings": {"FullLoadSettings": {"TargetTablePrepMode": prep}},
    }


def outcome(assessment: Assessment) -> Result:
    return next(r for r in assessment.results if r.key == KEY)


def test_existing_target_tables_without_a_key(pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    execute_sql(pg_url, SOURCE)
    target = pg_server.create_database(unique_db_name("assess_keys"))
    try:
        execute_sql(
            target,
            [
                "CREATE TABLE keyed (id int PRIMARY KEY, v text)",
                "CREATE TABLE plain (id int, v text)",  # no key, no repeated id: warns
                "CREATE TABLE copies (id int, v text)",  # the renamed dup: id 1 twice fails
                "INSERT INTO plain VALUES (1, 'a'), (2, 'b')",
                "INSERT INTO copies VALUES (1, 'a'), (1, 'b'), (2, 'c')",
            ],
        )
        cdc = outcome(assess(task_from_document(doc(pg_url, target, "cdc"))))
        assert cdc.status is Status.FAILED and not cdc.blocking
        assert "public.copies already holds several rows with id = 1" in cdc.message
        assert 'ADD PRIMARY KEY ("id")' in cdc.message
        assert "2 existing target table(s)" in cdc.message
        assert "public.plain (changes match on key (id))" in cdc.message
        assert "keyed" not in cdc.message and "fresh" not in cdc.message
        proc = cli("assess", str(write_task(doc(pg_url, target, "cdc"), tmp_path / "task.yaml")))
        assert proc.returncode == 1 and KEY in proc.stdout

        # the full load empties the tables first: their rows cannot repeat a key, the missing key warns
        truncated = outcome(
            assess(task_from_document(doc(pg_url, target, "full-load-and-cdc", "TRUNCATE_BEFORE_LOAD")))
        )
        assert truncated.status is Status.WARNING and "public.copies" in truncated.message
        kept = outcome(assess(task_from_document(doc(pg_url, target, "full-load-and-cdc", "DO_NOTHING"))))
        assert kept.status is Status.FAILED
        # DROP_AND_CREATE creates every table anew, with the source's key
        assert outcome(assess(task_from_document(doc(pg_url, target, "full-load-and-cdc")))).status is Status.PASSED
        assert outcome(assess(task_from_document(doc(pg_url, target, "full-load")))).status is Status.SKIPPED

        execute_sql(target, ["DELETE FROM copies WHERE v = 'b'", "CREATE UNIQUE INDEX copies_id ON copies (id)"])
        fixed = outcome(assess(task_from_document(doc(pg_url, target, "cdc"))))
        assert fixed.status is Status.WARNING and "copies" not in fixed.message
    finally:
        pg_server.drop_database(target)


def test_mariadb_target_table_without_a_key(pg_url: str, mysql_url: str) -> None:
    execute_sql(pg_url, SOURCE)
    execute_sql(mysql_url, ["CREATE TABLE plain (id int, v text)", "CREATE TABLE keyed (id int, UNIQUE KEY (id))"])
    result = outcome(assess(task_from_document(doc(pg_url, mysql_url, "cdc"))))
    assert result.status is Status.WARNING
    assert "1 existing target table(s)" in result.message and ".plain (changes match on key (id))" in result.message
