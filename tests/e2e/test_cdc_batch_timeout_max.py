"""Batch apply's BatchApplyTimeoutMax (PostgreSQL -> PostgreSQL): while the target applies a window, the
next one goes on growing for at most Max seconds; then the stream waits for the target."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_equal, wait_until
from servers import PostgresServer
from tasks import task_doc

MAX = 1  # BatchApplyTimeoutMax, seconds (its least value)
ROWS, EVERY = 40, 0.1  # the source commits one row every EVERY seconds while the target table is locked
TICKS_SQL = "CREATE TABLE ticks (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"


@pytest.fixture
def source_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "cdcsrc_" + request.node.name, "cdc", TICKS_SQL)


def test_a_window_grows_at_most_max_seconds_while_the_target_is_busy(
    source_url: str, pg_url: str, tmp_path: Path
) -> None:
    """The target table is locked while the source commits a row every 0.1 s for 4 s: the first window waits
    on the lock, the next one collects transactions for BatchApplyTimeoutMax seconds, then the stream
    stops reading. Each row's ``at`` is its source commit time, and the target rows a window wrote share
    one ``xmin`` (one target transaction; the bulk path takes no savepoints)."""
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    doc["settings"] = {
        "TargetMetadata": {"BatchApplyEnabled": True},
        # Min 0: a window goes as soon as the target is free, so the first one is the first transaction
        "ChangeProcessingTuning": {"BatchApplyTimeoutMin": 0, "BatchApplyTimeoutMax": MAX},
    }
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with (
        psycopg.connect(pg_url) as lock,
        psycopg.connect(source_url, autocommit=True) as src,
    ):
        lock.execute("LOCK TABLE ticks IN EXCLUSIVE MODE")  # the apply's INSERT waits; reads do not
        start = time.monotonic()
        for i in range(1, ROWS + 1):
            time.sleep(max(0.0, start + (i - 1) * EVERY - time.monotonic()))
            src.execute("INSERT INTO ticks (id) VALUES (%s)", (i,))
        # read from the source and not yet applied: the first window and the one that grew for Max seconds
        incoming = task.runner.cdc.incoming_changes
        lock.rollback()
    wait_equal(task, source_url, pg_url, tables=[("ticks", (0,))])
    task.finish()
    assert incoming <= 1 + (MAX + 1) / EVERY < ROWS, incoming  # the stream waited for the target

    with psycopg.connect(pg_url) as conn:
        windows = conn.execute(
            "SELECT array_agg(id ORDER BY id), max(at) - min(at) FROM ticks GROUP BY xmin::text ORDER BY min(id)"
        ).fetchall()
    (first, _), (grown, span), *_ = windows
    assert first == [1], windows  # applied alone, while the target was locked
    assert grown[0] == 2 and len(grown) >= 3, windows  # grew while the target applied the first
    assert span <= timedelta(seconds=MAX + 1.5), windows  # Max ignored: it would span ~ROWS * EVERY seconds
