"""The source is acknowledged only what the target holds on disk. Change processing commits into a
PostgreSQL target without waiting for each commit's WAL flush (as PostgreSQL's own subscriptions apply),
so a commit that returned may still be lost in a target crash; the slot must not move past it until the
target's WAL is flushed past that commit. The target here flushes rarely (wal_writer_delay = 10 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_until
from servers import LIMITED_PASSWORD, LIMITED_USER, PostgresServer

from conveyor.endpoints.config import PostgresConfig, parse_endpoint
from conveyor.endpoints.postgres.capture import PostgresCapture
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier

TASK = "durable"


@pytest.fixture(scope="module")
def lazy_target() -> Iterator[PostgresServer]:
    """A server whose WAL writer flushes at most every 10 s: commits that do not wait for their flush
    stay unflushed for seconds."""
    server = PostgresServer.launch()
    try:
        with server.connect() as conn:
            conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.destroy()


@pytest.fixture
def source_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "durable_" + request.node.name, TASK)


def _lsn(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(f"SELECT pg_wal_lsn_diff(({query}), '0/0')::bigint").fetchone()
    assert row is not None
    return int(row[0])


def _confirmed(capture: PostgresCapture) -> int:
    status = capture.slot_status()
    assert status is not None and status.confirmed_flush is not None
    return status.confirmed_flush


def test_the_slot_waits_for_the_targets_flush(
    source_url: str, lazy_target: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target_url = lazy_target.create_database("durable_" + request.node.name[-20:].strip("[]_"))
    config = parse_endpoint(source_url, "source")
    assert isinstance(config, PostgresConfig)
    capture = PostgresCapture(config, TASK)
    doc = {"name": TASK, "source": source_url, "target": target_url, "migration_type": "cdc"}
    task = Running(doc, tmp_path / "state")
    next_id = 100_000
    try:
        wait_until(task, lambda: task.runner.cdc.started is not None)
        with psycopg.connect(source_url, autocommit=True) as src, psycopg.connect(target_url, autocommit=True) as dst:
            conclusive = 0
            for _ in range(6):  # a round is conclusive when no WAL flush happened on the target during it
                flushed_before = _lsn(dst, "SELECT pg_current_wal_flush_lsn()")
                written_before = _lsn(src, "SELECT pg_current_wal_insert_lsn()")
                next_id += 1
                src.execute("INSERT INTO items (id, name) VALUES (%s, 'durable')", (next_id,))

                def applied(n: int = next_id) -> bool:
                    return dst.execute("SELECT 1 FROM items WHERE id = %s", (n,)).fetchone() is not None

                wait_until(task, applied)
                time.sleep(0.3)  # several of the task's log queries
                confirmed = _confirmed(capture)
                if _lsn(dst, "SELECT pg_current_wal_flush_lsn()") != flushed_before:
                    continue  # the WAL writer flushed meanwhile: the row may rightly be acknowledged
                conclusive += 1
                # applied and committed on the target, not on its disk: the source keeps it
                assert confirmed <= written_before, (confirmed, written_before)
                # a flush (any commit that waits for it) releases it
                dst.execute("SET synchronous_commit = on")
                dst.execute("CREATE TEMPORARY TABLE flush_now (x int)")
                dst.execute("DROP TABLE flush_now")

                def released(w: int = written_before) -> bool:
                    return _confirmed(capture) > w

                wait_until(task, released, timeout=10)
                if conclusive >= 2:
                    break
            assert conclusive >= 1, "the target's WAL writer flushed during every round"
    finally:
        task.finish()
        capture.close()
    # a clean stop leaves the slot where the target's stored position is: nothing owed
    assert _confirmed(capture) >= written_before


def test_a_target_that_hides_its_wal_positions_keeps_durable_commits(pg_url: str) -> None:
    """Where the apply session cannot read the WAL positions (EXECUTE revoked), commits stay synchronous:
    nothing could tell when a lazy one is on disk."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_current_wal_flush_lsn() FROM PUBLIC")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {LIMITED_USER}")
    limited = parse_endpoint(pg_url, "target")
    assert isinstance(limited, PostgresConfig)
    limited = PostgresConfig.model_validate(
        {**limited.model_dump(), "user": LIMITED_USER, "password": LIMITED_PASSWORD}
    )
    spec = engine_for(limited)
    applier = spec.open_applier(limited, spec.default_schema(limited))
    assert isinstance(applier, SqlApplier)
    try:
        assert applier.commit_lazily() is False
        row = applier.execute("SHOW synchronous_commit").fetchone()
        assert row is not None and row[0] == "on"
        applier.commit()
    finally:
        applier.close()
    superuser = parse_endpoint(pg_url, "target")
    assert isinstance(superuser, PostgresConfig)
    applier = spec.open_applier(superuser, spec.default_schema(superuser))
    assert isinstance(applier, SqlApplier)
    try:
        assert applier.commit_lazily() is True  # a superuser may still read them
        row = applier.execute("SHOW synchronous_commit").fetchone()
        assert row is not None and row[0] == "off"
        applier.commit()
    finally:
        applier.close()
