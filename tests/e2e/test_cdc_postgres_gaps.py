"""PostgreSQL change data capture: columns dropped or renamed while the task was stopped, a source that
stops answering catalog queries, and apply failures inside a psycopg pipeline."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cdc_support import Running, postgres_source, stopped_after_the_full_load, wait_equal, wait_until
from oracle import fetch
from proxy import FaultProxy
from servers import PostgresServer

from conveyor.endpoints.config import PostgresConfig, parse_endpoint
from conveyor.endpoints.postgres.applier import PostgresApplier
from conveyor.endpoints.postgres.capture import PostgresCapture
from conveyor.endpoints.postgres.engine import ENGINE
from conveyor.errors import TransientError
from conveyor.model.schema import TableId
from conveyor.runner.cdc import cleanup
from conveyor.runner.task import task_from_document

ITEMS = TableId("public", "items")


@pytest.fixture
def source_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "cdcgap_" + request.node.name, "cdc")


def source_sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def target_columns(url: str, table: str) -> list[str]:
    """A PostgreSQL table's columns, in order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


# ----------------------------------------------------------------------------- columns changed while stopped
@pytest.mark.parametrize("target", ["pg_url", "mysql_url", "sqlite_url"])
def test_a_column_dropped_while_stopped_is_dropped_on_the_target(
    source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target_url = str(request.getfixturevalue(target))
    doc = stopped_after_the_full_load(source_url, target_url, tmp_path)
    source_sql(  # nothing else on items since the stop: no relation message shows the old definition
        source_url,
        "ALTER TABLE items DROP COLUMN price",
        "INSERT INTO items (id, name, qty) VALUES (-7, 'while stopped', 7)",
        "UPDATE items SET qty = 70 WHERE id = 7",
        "DELETE FROM items WHERE id = 8",
    )
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, target_url)  # every column, row by row: price is gone on the target too
    result = task.finish()
    assert not any(t.apply_error_rows for t in result.tables)
    assert not task.runner.suspended
    assert any("dropped price: the source lost them while stopped" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("target", ["pg_url", "mysql_url", "sqlite_url"])
def test_a_column_added_while_stopped_fills_the_rows_as_the_source_did(
    source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Defaults changed or dropped after the ADD COLUMN, before the task runs again: the target's rows take
    what the source's rows took (PostgreSQL keeps it), not the catalog's default of now."""
    target_url = str(request.getfixturevalue(target))
    doc = stopped_after_the_full_load(source_url, target_url, tmp_path)
    source_sql(
        source_url,
        "ALTER TABLE items ADD COLUMN s1 int DEFAULT 5, ADD COLUMN s2 text DEFAULT 'old', "
        "ADD COLUMN s3 int NOT NULL DEFAULT 6",
        "ALTER TABLE items ALTER COLUMN s1 DROP DEFAULT, ALTER COLUMN s2 SET DEFAULT 'new', "
        "ALTER COLUMN s3 DROP DEFAULT",
        "INSERT INTO items (id, name, s3) VALUES (-9, 'after', 9)",
    )
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, target_url)  # every column, row by row
    result = task.finish()
    assert not task.runner.suspended and not any(t.apply_error_rows for t in result.tables)


def test_a_table_created_while_stopped_is_left_out_with_a_warning(source_url: str, pg_url: str, tmp_path: Path) -> None:
    """Every table selected: one created since the task first ran is not in its publication, and the stream
    would hold only its later changes: it is left out, named, and the others stream on."""
    doc = stopped_after_the_full_load(source_url, pg_url, tmp_path)
    source_sql(source_url, "CREATE TABLE newt (id int PRIMARY KEY)", "INSERT INTO newt VALUES (1)")
    source_sql(source_url, "INSERT INTO items (id, name) VALUES (-9, 'after the create')")
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, pg_url)
    result = task.finish()
    assert any("public.newt matches the table mappings but is not one of the tables" in w for w in result.warnings), (
        result.warnings
    )
    assert "newt" not in {t.table for t in result.tables} and not task.runner.suspended


def test_a_drop_after_changes_the_stream_still_holds_ends_exact(source_url: str, pg_url: str, tmp_path: Path) -> None:
    """Changes before the drop come with the old definition: the column comes back for them, then goes."""
    doc = stopped_after_the_full_load(source_url, pg_url, tmp_path)
    source_sql(
        source_url,
        "UPDATE items SET price = 1.5, qty = 1 WHERE id = 3",
        "ALTER TABLE items DROP COLUMN price",
        "INSERT INTO items (id, name, qty) VALUES (-8, 'after the drop', 8)",
    )
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, pg_url)
    result = task.finish()
    assert not task.runner.suspended and not any(t.apply_error_rows for t in result.tables)


def test_a_drop_while_stopped_suspends_the_table_when_alters_are_not_followed(
    source_url: str, pg_url: str, tmp_path: Path
) -> None:
    policy = {"ChangeProcessingDdlHandlingPolicy": {"HandleSourceTableAltered": False}}
    doc = stopped_after_the_full_load(source_url, pg_url, tmp_path, **policy)
    source_sql(source_url, "ALTER TABLE items DROP COLUMN price", "INSERT INTO bag VALUES (42, 'after')")
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, pg_url, tables=[("bag", ())])  # the other table goes on
    result = task.finish()
    items = next(t for t in result.tables if t.table == "items")
    assert items.state == "Table error"
    assert "price were dropped on the source while the task was stopped (HandleSourceTableAltered is false)" in (
        items.error or ""
    )
    assert "price" in target_columns(pg_url, "items")  # left as it was


def test_a_column_renamed_while_stopped_suspends_the_table(source_url: str, pg_url: str, tmp_path: Path) -> None:
    doc = stopped_after_the_full_load(source_url, pg_url, tmp_path)
    source_sql(
        source_url,
        "ALTER TABLE items RENAME COLUMN qty TO quantity",
        "UPDATE items SET quantity = 1000 WHERE id = 1",
        "INSERT INTO bag VALUES (43, 'after')",
    )
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, pg_url, tables=[("bag", ())])
    result = task.finish()
    items = next(t for t in result.tables if t.table == "items")
    assert items.state == "Table error"
    error = items.error or ""
    assert "columns qty left the source and quantity came while the task was stopped" in error
    assert "cannot be told apart; reload the table" in error
    assert target_columns(pg_url, "items") == ["id", "name", "qty", "price", "big"]  # nothing guessed
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT qty FROM items WHERE id = 1").fetchone() == (1,)


def test_columns_only_the_target_has_stay(source_url: str, pg_url: str, tmp_path: Path) -> None:
    """A column the user added on the target is not the source's to drop: the source never lost one."""
    doc = stopped_after_the_full_load(source_url, pg_url, tmp_path)
    source_sql(pg_url, "ALTER TABLE items ADD COLUMN audit text DEFAULT 'target'")
    source_sql(source_url, "INSERT INTO items (id, name) VALUES (-9, 'after')")
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: (-9, "target") in {tuple(r) for r in fetch(pg_url, "items", ["id", "audit"], "public")})
    result = task.finish()
    assert not task.runner.suspended and not any(t.apply_error_rows for t in result.tables)
    assert "audit" in target_columns(pg_url, "items")


def test_a_user_column_survives_a_drop_of_another_column_while_stopped(
    source_url: str, pg_url: str, tmp_path: Path
) -> None:
    """The source's catalog shows a dropped column, yet only the column the last run recorded as the source's
    goes: the one the user added on the target is no source column, and keeps its values."""
    doc = stopped_after_the_full_load(source_url, pg_url, tmp_path)
    source_sql(pg_url, "ALTER TABLE items ADD COLUMN audit text DEFAULT 'target'", "UPDATE items SET audit = 'mine'")
    source_sql(
        source_url, "ALTER TABLE items DROP COLUMN price", "INSERT INTO items (id, name, qty) VALUES (-10, 'x', 1)"
    )
    task = Running(doc, tmp_path / "state")
    columns = ["id", "name", "qty", "big"]
    wait_until(task, lambda: sorted(fetch(source_url, "items", columns)) == sorted(fetch(pg_url, "items", columns)))
    result = task.finish()
    assert not task.runner.suspended and not any(t.apply_error_rows for t in result.tables)
    assert target_columns(pg_url, "items") == [*columns, "audit"]  # price dropped, audit kept
    audits = dict(fetch(pg_url, "items", ["id", "audit"]))
    assert audits.pop(-10) == "target" and set(audits.values()) == {"mine"}, audits
    kept = [w for w in result.warnings if "left as they are" in w]
    assert kept == ["target columns the source never had are left as they are: public.items.audit"], result.warnings
    assert any("dropped price: the source lost them while stopped" in w for w in result.warnings), result.warnings
    with psycopg.connect(pg_url) as conn:  # this run's record: the source's columns now
        recorded = conn.execute(
            "SELECT column_names FROM conveyor_cdc_columns WHERE task_name = 'cdc' AND table_name = 'items'"
        ).fetchone()
    assert recorded is not None and json.loads(recorded[0]) == columns
    cleanup(task_from_document(doc), str(tmp_path / "state"))
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM conveyor_cdc_columns WHERE task_name = 'cdc'").fetchone() == (0,)


# ----------------------------------------------------------------------------- a source that stops answering
def test_a_hung_catalog_query_is_transient(source_url: str, pg_server: PostgresServer) -> None:
    """Slot checks, the clock and lag queries on a server that takes the query and never answers: a
    TransientError once the catalog timeout has passed, and the next query works once the network does."""
    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        config = parse_endpoint(proxy.url(source_url), "source")
        assert isinstance(config, PostgresConfig)
        config = PostgresConfig.model_validate({**config.model_dump(), "connect_timeout": 2})
        capture = PostgresCapture(config, "hung", catalog_timeout=2.0)
        try:
            assert capture.slot_status() is None
            for query in (capture.clock, capture.slot_status, lambda: capture.lag_bytes(0)):
                proxy.blackhole(True)
                started = time.monotonic()
                with pytest.raises(TransientError, match="did not answer a query within 2 s"):
                    query()
                assert time.monotonic() - started < 5
                proxy.blackhole(False)
                capture.clock()
        finally:
            capture.close()


# ----------------------------------------------------------------------------- failures inside a pipeline
def test_a_failure_inside_a_pipeline_ends_it_quietly(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_endpoint(pg_url, "target")
    assert isinstance(config, PostgresConfig)
    source_sql(pg_url, "CREATE TABLE t (id int PRIMARY KEY)")
    applier = ENGINE.open_applier(config, "public")
    assert isinstance(applier, PostgresApplier)
    try:
        caplog.set_level(logging.WARNING, logger="psycopg")
        # a client-side failure while a statement's error waits for the pipeline's sync
        with pytest.raises(ValueError, match="an encoder failed"), applier.pipeline():
            applier.execute("INSERT INTO t VALUES (1), (1)")
            raise ValueError("an encoder failed")
        applier.rollback()
        assert applier.execute("SELECT count(*) FROM t").fetchone() == (0,)  # the connection still works
        applier.rollback()
        # the connection is lost inside the pipeline
        pid = applier.execute("SELECT pg_backend_pid()").fetchone()[0]
        with pytest.raises(psycopg.OperationalError), applier.pipeline():
            applier.execute("INSERT INTO t VALUES (2)")
            source_sql(pg_url, f"SELECT pg_terminate_backend({int(pid)})")
            time.sleep(0.5)
            applier.executemany("INSERT INTO t VALUES (%s)", [(3,), (4,)])
            applier.execute("SELECT 1").fetchone()
        assert not [r for r in caplog.records if "error ignored" in r.getMessage()], caplog.text
    finally:
        applier.close()
