"""MySQL / MariaDB positions refer to the selected tables' definitions by digest: every target (SQLite,
PostgreSQL, MariaDB) stores each distinct set of definitions once (``conveyor_cdc_position_parts``), in
the transaction of the first position that refers to it, so a commit writes only a small position; a
restart still decodes by the definitions valid at its position, and a position stored with the
definitions inline (by an earlier version) still resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cdc_support import Running, wait_equal, wait_until
from schemas import execute_sql
from tasks import task_doc

from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.mysql.history import History
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier, StaleLease
from conveyor.endpoints.sql.changes import CDC_STATE_TABLE, PARTS_TABLE, ChangeApplier, shared_part
from conveyor.errors import TerminalError
from conveyor.runner.planning import control_schema
from conveyor.runner.task import task_from_document

TABLES = tuple(f"t{i}" for i in range(6))
KEYED = [(t, (0,)) for t in TABLES]
SOURCE_SQL = [
    *(f"CREATE TABLE {t} (id int PRIMARY KEY, a int, b varchar(20), n decimal(10,2))" for t in TABLES),
    *(f"INSERT INTO {t} SELECT seq, seq * 10, CONCAT('v', seq), seq / 4 FROM seq_1_to_20" for t in TABLES),
]
TASK = "positions"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def target_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param])
    )


def task_for(source: str, target: str) -> dict[str, Any]:
    return {**task_doc(source, target, name=TASK), "migration_type": "full-load-and-cdc"}


def control(doc: dict[str, Any]) -> SqlApplier:
    """A connection to the task's control tables on the target."""
    task = task_from_document(doc)
    spec = engine_for(task.target)
    applier = spec.open_applier(task.target, control_schema(task, spec))
    assert isinstance(applier, SqlApplier)
    return applier


def stored(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The task's stored position as the state table holds it, and its stored parts (digest -> JSON)."""
    a = control(doc)
    try:
        p = a.param
        (text,) = a.execute(
            f"SELECT position FROM {a.control(CDC_STATE_TABLE)} WHERE task_name = {p}", (TASK,)
        ).fetchone()
        parts = a.execute(
            f"SELECT digest, part FROM {a.control(PARTS_TABLE)} WHERE task_name = {p}", (TASK,)
        ).fetchall()
        a.commit()
        return str(text), {str(digest): json.loads(part) for digest, part in parts}
    finally:
        a.close()


def streaming(task: Running) -> None:
    wait_until(task, lambda: task.runner.cdc.started is not None)


def applied_at_least(task: Running, changes: int) -> None:
    wait_until(task, lambda: task.runner.cdc.applied_changes >= changes)


def test_a_commit_stores_the_definitions_digest_and_each_set_once(
    mysql_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """The position holds a digest; the definitions it names are stored once, replaced (not added to)
    when a schema change makes new ones; a restart decodes by them though the table changed while stopped."""
    source = mysql_source_url
    execute_sql(source, SOURCE_SQL)
    doc = task_for(source, target_url)
    task = Running(doc, tmp_path / "state")
    streaming(task)
    execute_sql(source, [f"UPDATE {t} SET a = -a WHERE id <= 5" for t in TABLES])
    execute_sql(source, ["INSERT INTO t1 VALUES (101, 1, 'one', 1.25)", "DELETE FROM t2 WHERE id = 3"])
    wait_equal(task, source, target_url, tables=KEYED)
    applied_at_least(task, 32)
    text, parts = stored(doc)
    position = json.loads(text)
    ((digest, definitions),) = parts.items()
    assert position["tables"] == {"sha256": digest} and len(text) < 200, text
    assert [t["name"] for t in definitions] == list(TABLES)
    assert History(tuple(definitions)).digest == digest  # content-addressed
    inline = json.dumps({**position, "tables": definitions}, sort_keys=True)
    assert len(inline) > 8 * len(text)  # what each commit wrote before

    # a schema change: the next positions name new definitions, and the old ones go in the same commit
    execute_sql(source, ["ALTER TABLE t3 ADD COLUMN e int", "INSERT INTO t3 VALUES (101, 1, 'after', 2.5, 7)"])
    wait_equal(task, source, target_url, tables=KEYED)
    wait_until(task, lambda: json.loads(stored(doc)[0])["tables"] != {"sha256": digest})
    text, parts = stored(doc)
    ((changed, definitions),) = parts.items()
    assert json.loads(text)["tables"] == {"sha256": changed} and changed != digest
    (t3,) = [t for t in definitions if t["name"] == "t3"]
    assert [c[0] for c in t3["columns"]] == ["id", "a", "b", "n", "e"]
    task.finish()

    # changed while stopped, rows before and after: the restart decodes the ones before by the stored definitions
    execute_sql(
        source,
        [
            "INSERT INTO t4 VALUES (101, 1, 'before', 1.5)",
            "UPDATE t4 SET b = 'updated before' WHERE id = 1",
            "ALTER TABLE t4 DROP COLUMN b",
            "INSERT INTO t4 VALUES (102, 2, 3.75)",
            "UPDATE t4 SET a = -2 WHERE id IN (1, 2)",
            "UPDATE t5 SET b = 'unchanged table' WHERE id = 4",
        ],
    )
    again = Running(doc, tmp_path / "state")
    wait_equal(again, source, target_url, tables=KEYED)
    applied_at_least(again, 6)
    wait_until(again, lambda: stored(doc)[1].keys() != {changed})
    again.finish()
    text, parts = stored(doc)
    ((latest, definitions),) = parts.items()
    assert json.loads(text)["tables"] == {"sha256": latest}
    (t4,) = [t for t in definitions if t["name"] == "t4"]
    assert [c[0] for c in t4["columns"]] == ["id", "a", "n"]


def test_a_position_stored_with_the_definitions_inline_resumes(
    mysql_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """A target written by an earlier version: the position holds the definitions themselves, and there
    is no parts table. The restart decodes the rows written before a column was dropped by them."""
    source = mysql_source_url
    execute_sql(source, SOURCE_SQL)
    doc = task_for(source, target_url)
    task = Running(doc, tmp_path / "state")
    streaming(task)
    execute_sql(source, ["UPDATE t0 SET a = 0 WHERE id = 1"])
    wait_equal(task, source, target_url, tables=KEYED)
    applied_at_least(task, 1)
    task.finish()
    text, parts = stored(doc)
    ((digest, definitions),) = parts.items()
    a = control(doc)
    try:
        inline = json.dumps({**json.loads(text), "tables": definitions}, sort_keys=True)
        a.execute(f"UPDATE {a.control(CDC_STATE_TABLE)} SET position = {a.param}", (inline,))
        a.execute(f"DROP TABLE {a.control(PARTS_TABLE)}")
        a.commit()
    finally:
        a.close()

    execute_sql(
        source,
        [
            "INSERT INTO t2 VALUES (101, 1, 'before', 1.5)",
            "UPDATE t2 SET b = 'updated before', a = -1 WHERE id = 1",
            "DELETE FROM t2 WHERE id = 2",
            "ALTER TABLE t2 DROP COLUMN b",
            "INSERT INTO t2 VALUES (102, 2, 3.75)",
            "UPDATE t2 SET a = -2 WHERE id IN (1, 3)",
        ],
    )
    again = Running(doc, tmp_path / "state")
    wait_equal(again, source, target_url, tables=KEYED)
    applied_at_least(again, 6)
    again.finish()
    text, parts = stored(doc)
    ((latest, definitions),) = parts.items()
    assert json.loads(text)["tables"] == {"sha256": latest} and latest != digest  # stored the new way from then on
    (t2,) = [t for t in definitions if t["name"] == "t2"]
    assert [c[0] for c in t2["columns"]] == ["id", "a", "n"]


# --------------------------------------------------------------------------- the store itself
@pytest.fixture
def applier(target_url: str) -> SqlApplier:
    config = parse_endpoint(target_url, "target")
    spec = engine_for(config)
    opened = spec.open_applier(config, spec.default_schema(config))
    assert isinstance(opened, SqlApplier)
    return opened


def position(pos: int, definitions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A position with shared definitions (the value is what the digest names; the store takes it as given)."""
    value = definitions if definitions is not None else [{"name": f"v{pos}"}]
    return {"file": "mysql-bin.000001", "pos": pos, "tables": shared_part(History(tuple(value)).digest, value)}


def parts_of(applier: SqlApplier, task: str = "store") -> dict[str, str]:
    a = applier
    rows = a.execute(f"SELECT digest, part FROM {a.control(PARTS_TABLE)} WHERE task_name = {a.param}", (task,))
    found = {str(d): str(p) for d, p in rows.fetchall()}
    a.commit()
    return found


def test_the_store_writes_a_part_once_per_digest_with_its_first_position(applier: SqlApplier) -> None:
    changes = ChangeApplier(applier, {})
    assert changes.read_position("store") is None
    lease = applier.start_task("store", fresh=True)
    first = position(10)
    changes.apply("store", lease, [], first)
    assert changes.read_position("store") == first
    (digest,) = parts_of(applier)
    a = applier
    # marked: a commit with the same definitions leaves the stored part alone, also from a new session
    a.execute(f"UPDATE {a.control(PARTS_TABLE)} SET part = {a.param}", ('["marked"]',))
    a.commit()
    changes.apply("store", lease, [], {**first, "pos": 20})
    ChangeApplier(applier, {}).apply("store", lease, [], {**first, "pos": 30})
    assert parts_of(applier) == {digest: '["marked"]'}
    assert ChangeApplier(applier, {}).read_position("store") == {
        **first,
        "pos": 30,
        "tables": shared_part(digest, ["marked"]),
    }

    # new definitions replace the old ones in the commit of their first position
    second = position(40)
    changes.apply("store", lease, [], second)
    assert list(parts_of(applier)) == [second["tables"]["sha256"]]
    assert changes.read_position("store") == second

    # a commit that fails leaves neither its position nor its definitions
    newer = ChangeApplier(applier, {})
    stale, lease = lease, applier.start_task("store", fresh=False)
    with pytest.raises(StaleLease):
        changes.apply("store", stale, [], position(50))
    assert list(parts_of(applier)) == [second["tables"]["sha256"]]
    assert newer.read_position("store") == second
    third = position(60, [{"name": "v50"}])  # the definitions the failed commit had: written now
    changes.apply("store", lease, [], third)
    assert newer.read_position("store") == third and list(parts_of(applier)) == [third["tables"]["sha256"]]

    # a position without definitions (a user's start position) leaves none behind
    changes.apply("store", lease, [], {"file": "mysql-bin.000002", "pos": 4})
    assert parts_of(applier) == {}

    # other tasks' parts are theirs
    other = position(70)
    changes.apply("other", applier.start_task("other", fresh=True), [], other)
    changes.apply("store", lease, [], third)
    assert list(parts_of(applier, "other")) == [other["tables"]["sha256"]]
    assert changes.forget("store") and parts_of(applier) == {}
    assert changes.read_position("other") == other
    applier.close()


def test_a_position_whose_definitions_are_gone_is_a_clear_error(applier: SqlApplier) -> None:
    changes = ChangeApplier(applier, {})
    changes.read_position("gone")
    changes.apply("gone", applier.start_task("gone", fresh=True), [], position(10))
    a = applier
    a.execute(f"DELETE FROM {a.control(PARTS_TABLE)} WHERE task_name = {a.param}", ("gone",))
    a.commit()
    with pytest.raises(TerminalError, match="conveyor cleanup"):
        changes.read_position("gone")
    applier.close()
