"""PostgreSQL change data capture end to end, into every target: the full load meets the stream exactly
and the target follows the source under concurrent writes (TOAST values, key updates, duplicates)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_support import (
    Running,
    diff_tables,
    drop_capture,
    postgres_source,
    stopped_after_the_full_load,
    wait_equal,
    wait_until,
    write_workload,
)
from oracle import fetch
from servers import PostgresServer, unique_db_name
from tasks import cli, task_doc, write_task

from conveyor.endpoints.postgres.capture import PostgresCapture
from conveyor.endpoints.sql.changes import ApplyResult, ChangeApplier
from conveyor.errors import StopTask, TransientError
from conveyor.model.changes import Idle, Transaction
from conveyor.model.schema import TableId
from conveyor.runner.fullload import FullLoad


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def target_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param])
    )


@pytest.fixture
def source_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "cdcsrc_" + request.node.name, "cdc")


@pytest.mark.parametrize("batch_apply", [False, True], ids=["transactional", "batch"])
def test_full_load_and_cdc_follows_the_source_exactly(
    source_url: str, target_url: str, batch_apply: bool, tmp_path: Path
) -> None:
    doc = {**task_doc(source_url, target_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    doc["settings"] = {"TargetMetadata": {"BatchApplyEnabled": batch_apply}}
    writers = [threading.Thread(target=write_workload, args=(source_url, 150, seed, 0.01)) for seed in (1, 2)]
    for w in writers:
        w.start()  # writes before, during and after the snapshot
    task = Running(doc, tmp_path / "state")
    for w in writers:
        w.join()
    wait_until(task, lambda: task.runner.cdc.started is not None)
    write_workload(source_url, 40, seed=4)  # and surely some while streaming
    wait_equal(task, source_url, target_url)
    result = task.finish()
    assert result.cdc is not None and result.cdc.applied_changes > 0
    stats = {t.table: t for t in result.tables}
    assert stats["items"].full_load_rows >= 3000 and stats["items"].applied_updates > 0

    # a second run continues from the target's position: later changes arrive, nothing twice
    write_workload(source_url, 60, seed=3)
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, target_url)
    again = task.finish()
    assert again.cdc is not None and again.cdc.applied_changes > 0
    assert all(t.full_load_rows == 0 for t in again.tables)


def test_cdc_only_starts_now_and_creates_missing_tables(source_url: str, target_url: str, tmp_path: Path) -> None:
    doc = {**task_doc(source_url, target_url, name="cdc"), "migration_type": "cdc"}
    doc["table_mappings"] = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "items",
                "object-locator": {"schema-name": "public", "table-name": "items"},
                "rule-action": "include",
            }
        ]
    }
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("INSERT INTO items VALUES (-1, 'after start', 1, 2.5, NULL)")
        conn.execute("UPDATE items SET qty = 99 WHERE id = -1")
        conn.execute("INSERT INTO items VALUES (-2, 'gone', 1, 2.5, NULL)")
        conn.execute("DELETE FROM items WHERE id = -2")
    target_schema = "public" if target_url.startswith("postgres") else None
    expected = [(-1, "after start", 99)]  # only what happened after the start
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = [tuple(r) for r in fetch(target_url, "items", ["id", "name", "qty"], schema=target_schema)]
        if rows == expected and task.runner.cdc.applied_changes == 4:
            break
        task.check()
        time.sleep(0.2)
    result = task.finish()
    assert rows == expected
    (stats,) = result.tables
    assert (stats.inserts, stats.updates, stats.deletes) == (2, 1, 1)
    assert (stats.applied_inserts, stats.applied_updates, stats.applied_deletes) == (2, 1, 1)


def test_cleanup_drops_the_slot_and_the_stored_position(source_url: str, pg_url: str, tmp_path: Path) -> None:
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    task.finish()
    path = write_task(doc, tmp_path / "task.yaml")
    proc = cli("cleanup", str(path), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 0, proc.stderr
    assert "dropped replication slot conveyor_cdc on the source" in proc.stderr
    assert "dropped publication conveyor_cdc on the source" in proc.stderr
    assert "dropped the stored CDC position on the target" in proc.stderr
    with psycopg.connect(source_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'conveyor_cdc'"
        ).fetchone() == (0,)
    proc = cli("cleanup", str(path), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 0 and "nothing to clean up" in proc.stderr


def test_schema_changes_reach_the_target_and_other_ddl_suspends_one_table(
    source_url: str, target_url: str, tmp_path: Path
) -> None:
    doc = {**task_doc(source_url, target_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("UPDATE items SET qty = 1 WHERE id = 1")
        conn.execute("ALTER TABLE items ADD COLUMN email varchar(50)")
        conn.execute("INSERT INTO items (id, name, qty, email) VALUES (-1, 'with email', 3, 'a@b.c')")
        conn.execute("ALTER TABLE items RENAME COLUMN qty TO quantity")
        conn.execute("UPDATE items SET quantity = 42, email = 'x@y.z' WHERE id = 2")
        conn.execute("ALTER TABLE items ALTER COLUMN name TYPE varchar(300)")
        conn.execute("INSERT INTO items (id, name) VALUES (-2, %s)", ("n" * 250,))
        conn.execute("ALTER TABLE items DROP COLUMN price")
        conn.execute("INSERT INTO items (id, name, quantity) VALUES (-3, 'after drop', 7)")
        conn.execute("DELETE FROM items WHERE id = 3")
    schema = "public" if target_url.startswith("postgres") else None
    wait_until(task, lambda: (-3,) in {tuple(r) for r in fetch(target_url, "items", ["id"], schema=schema)})
    with psycopg.connect(source_url, autocommit=True) as conn:
        # the last column dropped, one of its type added in its place: the catalog's column numbers say it
        # is no rename (the stream reaches it while the catalog still shows it), so the old values go
        conn.execute("ALTER TABLE items DROP COLUMN email, ADD COLUMN tally varchar(50)")
        conn.execute("INSERT INTO items (id, name, tally) VALUES (-6, 'tally', 'six')")
        conn.execute("UPDATE items SET tally = 'sixty' WHERE id = 6")
        # not a change Conveyor follows: bag is suspended, items goes on
        conn.execute("ALTER TABLE bag ALTER COLUMN b TYPE int USING length(b)")
        conn.execute("INSERT INTO bag VALUES (1, 1)")
        conn.execute("INSERT INTO items (id, name) VALUES (-4, 'still streaming')")
    wait_until(task, lambda: "bag" in str(task.runner.suspended))
    wait_until(task, lambda: (-4,) in {tuple(r) for r in fetch(target_url, "items", ["id"], schema=schema)})
    result = task.finish()
    assert not diff_tables(source_url, target_url, [("items", (0,))])
    stats = {t.table: t for t in result.tables}
    assert stats["items"].ddls == 5 and stats["items"].applied_ddls == 5
    assert stats["bag"].state == "Table error" and "suspended" in (stats["bag"].error or "")


def test_a_commit_time_stop_position_applies_exactly_what_committed_before_it(
    source_url: str, pg_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (-1, 'before the start')")
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "cdc"}
    task = Running(doc, tmp_path / "state")  # creates the slot; stopped at once
    wait_until(task, lambda: task.runner.cdc.started is not None)
    task.finish()
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (-2, 'before the stop')")
        time.sleep(1.1)
        stop_at = conn.execute("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')")
        stop_text = stop_at.fetchone()[0]  # type: ignore[index]
        time.sleep(1.1)
        conn.execute("INSERT INTO items (id, name) VALUES (-3, 'after the stop')")
    doc["cdc_stop_position"] = f"commit_time:{stop_text}"
    path = write_task(doc, tmp_path / "task.yaml")
    proc = cli("run", str(path), "--state-dir", str(tmp_path / "state"), "--json", "--no-progress", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "reached the stop position" in proc.stderr
    ids = {r[0] for r in fetch(pg_url, "items", ["id"], schema="public")}
    assert -2 in ids and -3 not in ids and -1 not in ids  # cdc starts at the slot, not before
    stats = json.loads(proc.stdout)
    assert stats["Status"] == "stopped" and stats["CdcStatistics"]["CheckpointPosition"].startswith("lsn=")
    assert stats["StopReason"].startswith("reached the stop position commit_time:")


def test_a_bad_start_or_stop_position_is_a_clear_error(source_url: str, pg_url: str, tmp_path: Path) -> None:
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "cdc", "cdc_stop_position": "when:ever"}
    proc = cli("run", str(write_task(doc, tmp_path / "t.yaml")))
    assert proc.returncode == 2 and "cdc_stop_position" in proc.stderr and "server_time:" in proc.stderr
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "cdc", "cdc_start_position": "banana"}
    proc = cli("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"), "--json")
    assert proc.returncode == 1 and "is not a PostgreSQL LSN" in proc.stderr and "Traceback" not in proc.stderr
    failed = json.loads(proc.stdout)  # --json: a status document even for a task that failed at once
    assert failed["Status"] == "failed" and "is not a PostgreSQL LSN" in failed["StopReason"]
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "cdc", "cdc_start_time": "2026-01-01T00:00:00"}
    proc = cli("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1 and "cannot start change data capture at a time" in proc.stderr
    with psycopg.connect(source_url) as conn:  # refused before anything was created
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)


def test_a_start_position_needs_a_slot_that_holds_it(source_url: str, pg_url: str, tmp_path: Path) -> None:
    """``cdc_start_position`` before the task's slot exists is refused, leaving nothing on the source; with
    the publication and then the slot made beforehand it starts exactly there, also as the checkpoint
    Conveyor prints (``lsn=...``); a slot made without the publication is named as the mistake."""
    doc = {**task_doc(source_url, pg_url, name="cdcstart"), "migration_type": "cdc"}
    with psycopg.connect(source_url, autocommit=True) as conn:
        earlier = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO items (id, name) VALUES (-1, 'before any slot')")
    doc["cdc_start_position"] = earlier
    proc = cli("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s1"), timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cdc_start_position {earlier} is before replication slot conveyor_cdcstart existed" in proc.stderr
    with psycopg.connect(source_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        conn.execute("SELECT pg_create_logical_replication_slot('conveyor_cdcstart', 'pgoutput')")
    doc["cdc_start_position"] = f"lsn={earlier}"
    proc = cli("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s2"), timeout=60)
    assert proc.returncode == 1 and "publication conveyor_cdcstart does not" in proc.stderr, proc.stderr
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot('conveyor_cdcstart')")
        conn.execute("CREATE PUBLICATION conveyor_cdcstart FOR TABLE items, bag")
        conn.execute("SELECT pg_create_logical_replication_slot('conveyor_cdcstart', 'pgoutput')")
        conn.execute("INSERT INTO items (id, name) VALUES (-2, 'before the start')")
        # the insert position: its commit record is in it (the test servers commit without waiting for the write)
        start = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO items (id, name) VALUES (-3, 'after the start')")
    doc["cdc_start_position"] = f"lsn={start}"
    task = Running(doc, tmp_path / "s3")
    wait_until(task, lambda: (-3,) in {tuple(r) for r in fetch(pg_url, "items", ["id"], schema="public")})
    task.finish()
    ids = {r[0] for r in fetch(pg_url, "items", ["id"], schema="public")}
    assert -3 in ids and -2 not in ids and -1 not in ids


def test_many_rejected_changes_are_said_ten_per_table_and_all_counted(
    source_url: str, pg_url: str, tmp_path: Path
) -> None:
    doc = stopped_after_the_full_load(source_url, pg_url, tmp_path)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM items WHERE id <= 30")  # gone from the target: deleting them is refused
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("DELETE FROM items WHERE id <= 30")
        stop = conn.execute(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC' + interval '3 s', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        )
        doc["cdc_stop_position"] = f"server_time:{stop.fetchone()[0]}"  # type: ignore[index]
    path = write_task(doc, tmp_path / "task.yaml")
    proc = cli("run", str(path), "--state-dir", str(tmp_path / "state"), "--json", "--no-progress", timeout=60)
    assert proc.returncode == 3, proc.stderr  # finished, rows rejected
    lines = [line for line in proc.stderr.splitlines() if line.startswith("apply error:")]
    assert len(lines) == 11 and "more changes rejected" in lines[-1], proc.stderr
    items = next(t for t in json.loads(proc.stdout)["TableStatistics"] if t["TableName"] == "items")
    assert (items["Deletes"], items["AppliedDeletes"], items["ApplyErrorRows"]) == (30, 0, 30)
    with psycopg.connect(pg_url) as conn:
        recorded = conn.execute("SELECT count(*) FROM conveyor_apply_exceptions").fetchone()
    assert recorded == (30,)


def test_a_big_transaction_comes_in_parts_and_lands_whole(
    source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.runner.cdc.PART_CHANGES", 2_000)  # parts of 2,000 changes: memory stays flat
    parts: list[int] = []
    apply_part = ChangeApplier.apply_part

    def counted(self: ChangeApplier, transaction: Transaction) -> ApplyResult:
        parts.append(len(transaction.changes))
        if len(parts) == 3:  # the connection lost mid-transaction, once: it is streamed and applied again
            raise TransientError("injected: the target went away")
        return apply_part(self, transaction)

    monkeypatch.setattr(ChangeApplier, "apply_part", counted)
    doc = {**task_doc(source_url, target_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    schema = "public" if target_url.startswith("postgres") else None
    seen: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            seen.append(len(fetch(target_url, "items", ["id"], schema=schema)))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with psycopg.connect(source_url) as conn:  # one transaction: 12,000 inserts, 1,000 updates, 500 deletes
        conn.execute("INSERT INTO items SELECT g, 'big ' || g, 1, 2.5, NULL FROM generate_series(10001, 22000) g")
        conn.execute("UPDATE items SET qty = -1 WHERE id BETWEEN 1 AND 1000")
        conn.execute("DELETE FROM items WHERE id BETWEEN 2001 AND 2500")
    wait_equal(task, source_url, target_url)
    sampling.set()
    sampler.join()
    result = task.finish()
    assert set(seen) <= {3000, 14500}, sorted(set(seen))  # never anything in between
    assert 14500 in seen
    assert len(parts) >= 6 and max(parts) <= 2_000, parts
    items = next(t for t in result.tables if t.table == "items")  # counted once, though streamed twice in part
    assert (items.inserts, items.updates, items.deletes) == (12_000, 1_000, 500)
    assert (items.applied_inserts, items.applied_updates, items.applied_deletes) == (12_000, 1_000, 500)
    assert result.cdc is not None and result.cdc.incoming_changes == 0


def test_a_stop_amid_a_big_transactions_parts_counts_nothing_of_it(
    source_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked to stop while a transaction's parts are open: they are rolled back, so none of its changes is
    counted; the next run applies and counts it once. One of exactly two parts' size is one applied
    transaction, with its latency."""
    monkeypatch.setattr("conveyor.runner.cdc.PART_CHANGES", 1_000)
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    stream = PostgresCapture.stream

    def stopped_amid_parts(self: PostgresCapture, start: Any) -> Iterator[Any]:
        events = stream(self, start)
        try:
            for event in events:
                yield event
                if isinstance(event, Transaction) and event.partial:  # SIGTERM, then a quiet moment
                    task.stop.set()
                    yield Idle(None)
        finally:
            events.close()  # type: ignore[attr-defined]

    monkeypatch.setattr(PostgresCapture, "stream", stopped_amid_parts)
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url) as conn:  # 3,000 changes: parts of 1,000, the commit brings none
        conn.execute("INSERT INTO items SELECT g, 'big', 1, 1, NULL FROM generate_series(10001, 13000) g")
    task.thread.join(60)
    stopped = task.finish()
    assert stopped.stopped == "asked to stop"
    items = next(t for t in stopped.tables if t.table == "items")
    assert (items.inserts, items.applied_inserts) == (0, 0)
    assert stopped.cdc is not None and stopped.cdc.incoming_changes == 0
    assert len(fetch(pg_url, "items", ["id"], schema="public")) == 3000  # nothing of it on the target

    monkeypatch.setattr(PostgresCapture, "stream", stream)
    again = Running(doc, tmp_path / "state")
    wait_equal(again, source_url, pg_url)
    result = again.finish()
    items = next(t for t in result.tables if t.table == "items")
    assert (items.inserts, items.applied_inserts) == (3000, 3000)
    assert result.cdc is not None and result.cdc.applied_transactions == 1
    assert result.cdc.latency_source > 0 and result.cdc.latency_target > 0


@pytest.mark.parametrize("batch_apply", [False, True], ids=["transactional", "batch"])
def test_a_window_the_target_lost_is_streamed_again_and_counted_once(
    source_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_apply: bool
) -> None:
    apply = ChangeApplier.apply
    failed: list[int] = []

    def failing_once(
        self: ChangeApplier, task: str, lease: int, transactions: list[Transaction], *a: Any, **k: Any
    ) -> Any:
        if not failed and sum(len(t.changes) for t in transactions) >= 50:
            failed.append(len(transactions))
            raise TransientError("injected: the target went away")
        return apply(self, task, lease, transactions, *a, **k)

    monkeypatch.setattr(ChangeApplier, "apply", failing_once)
    monkeypatch.setattr("conveyor.runner.cdc.RETRY_DELAYS", (0.1,))
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    doc["settings"] = {"TargetMetadata": {"BatchApplyEnabled": batch_apply}}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url) as conn:  # 50 transactions: 40 inserts, 20 updates, 10 deletes each
        for n in range(50):
            with conn.transaction():
                base = 10_001 + 40 * n
                conn.execute(
                    "INSERT INTO items SELECT g, 'w', 1, 1, NULL FROM generate_series(%s::int, %s::int) g",
                    (base, base + 39),
                )
                conn.execute("UPDATE items SET qty = qty + 1 WHERE id BETWEEN %s AND %s", (base, base + 19))
                conn.execute("DELETE FROM items WHERE id BETWEEN %s AND %s", (base + 30, base + 39))
    wait_equal(task, source_url, pg_url)
    result = task.finish()
    assert failed, "the injected failure never happened"
    items = next(t for t in result.tables if t.table == "items")
    assert (items.inserts, items.updates, items.deletes) == (2_000, 1_000, 500)
    assert (items.applied_inserts, items.applied_updates, items.applied_deletes) == (2_000, 1_000, 500)


@pytest.mark.parametrize("batch_apply", [False, True], ids=["transactional", "batch"])
def test_wide_rows_come_in_parts_and_windows_bounded_by_bytes(
    source_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_apply: bool
) -> None:
    """Few changes, many bytes (LOBs): a transaction comes in parts and a window closes at their byte
    bounds, far below the change counts; the target still never shows a transaction half applied."""
    limit = 512 << 10
    monkeypatch.setattr("conveyor.runner.cdc.PART_BYTES", limit)
    monkeypatch.setattr("conveyor.runner.cdc.WINDOW_BYTES", limit)
    parts: list[int] = []
    windows: list[int] = []
    apply_part, apply = ChangeApplier.apply_part, ChangeApplier.apply

    def counted_part(self: ChangeApplier, transaction: Transaction) -> ApplyResult:
        parts.append(transaction.size)
        return apply_part(self, transaction)

    def counted(self: ChangeApplier, task: str, lease: int, transactions: list[Transaction], *a: Any, **k: Any) -> Any:
        windows.append(sum(t.size for t in transactions))
        return apply(self, task, lease, transactions, *a, **k)

    monkeypatch.setattr(ChangeApplier, "apply_part", counted_part)
    monkeypatch.setattr(ChangeApplier, "apply", counted)
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    doc["settings"] = {"TargetMetadata": {"BatchApplyEnabled": batch_apply}}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url) as conn:  # 40 rows of ~100 KB in one transaction (4 MB)
        conn.execute(
            "INSERT INTO items SELECT g, 'wide', 1, 1, repeat(md5(g::text), 3200) "
            "FROM generate_series(100001, 100040) g"
        )
    with psycopg.connect(source_url, autocommit=True) as conn:  # then 60 transactions of one wide row
        for g in range(100041, 100101):
            conn.execute("INSERT INTO items VALUES (%s, 'wide', 1, 1, repeat(md5(%s::text), 3200))", (g, g))
    wait_equal(task, source_url, pg_url)
    task.finish()
    wide = 102_400 + 200  # one change message: the value and the rest of the row
    assert len(parts) >= 6 and all(limit <= p < limit + wide for p in parts), parts
    assert all(w < limit + wide for w in windows), windows
    assert sum(windows) + sum(parts) >= 100 * 102_400  # every change was counted


def test_a_quiet_stream_keeps_a_mysql_target_session_alive(
    source_url: str, mysql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply session's idle timeout is bounded on MySQL/MariaDB (a session lost to a partition ends,
    with its locks, within it) and a quiet stream pings it: quiet for twice the timeout, no retry."""
    monkeypatch.setattr("conveyor.runner.cdc.TARGET_IDLE_SECONDS", 2)
    doc = {**task_doc(source_url, mysql_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (-1, 'before the quiet')")
        wait_equal(task, source_url, mysql_url)
        time.sleep(5)  # the server would end a session idle for 2 s
        conn.execute("INSERT INTO items (id, name) VALUES (-2, 'after the quiet')")
    wait_equal(task, source_url, mysql_url)
    result = task.finish()
    assert not [w for w in result.warnings if "retrying" in w], result.warnings


def test_foreign_keys_on_the_target_hold_whatever_the_fold(
    pg_server: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    name = unique_db_name("cdcfk")
    source_url = pg_server.create_database(name)
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE parent (id int PRIMARY KEY); "
            "CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id)); "
            "INSERT INTO parent VALUES (1)"
        )
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    doc["settings"] = {"TargetMetadata": {"BatchApplyEnabled": True}}  # one window for both transactions
    task = Running(doc, tmp_path / "state")
    try:
        wait_until(task, lambda: task.runner.cdc.started is not None)
        with psycopg.connect(source_url) as conn:
            conn.execute("INSERT INTO child VALUES (10, 1)")
            conn.commit()
            # folded per table, child first: its final row points at a parent the fold inserts later
            conn.execute(
                "INSERT INTO parent VALUES (2); UPDATE child SET parent_id = 2; DELETE FROM parent WHERE id = 1"
            )
            conn.commit()
        wait_equal(task, source_url, pg_url, tables=[("parent", (0,)), ("child", (0,))])
        result = task.finish()
        assert not any(t.apply_error_rows for t in result.tables)
        with psycopg.connect(pg_url) as conn:  # the target has the foreign key: it was enforced throughout
            assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone() == (1,)
    finally:
        drop_capture(source_url, "cdc")
        pg_server.drop_database(name)


def test_ddl_inside_a_transaction_in_parts_suspends_that_table(
    source_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.runner.cdc.PART_CHANGES", 500)
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url) as conn:  # one transaction, parts before and after its DDL
        conn.execute("INSERT INTO items SELECT g, 'big ' || g, 1, 2.5, NULL FROM generate_series(10001, 12000) g")
        conn.execute("ALTER TABLE items ADD COLUMN extra int")
        conn.execute("INSERT INTO items (id, name, extra) VALUES (-5, 'after the ddl', 5)")
        conn.execute("INSERT INTO bag VALUES (42, 'other table')")
    wait_until(task, lambda: TableId("public", "items") in task.runner.suspended)
    wait_equal(task, source_url, pg_url, tables=[("bag", ())])  # the other table goes on
    result = task.finish()
    items = next(t for t in result.tables if t.table == "items")
    assert items.state == "Table error" and "inside a transaction of more than 500 changes" in (items.error or "")


def test_columns_added_while_stopped_reach_the_target(source_url: str, target_url: str, tmp_path: Path) -> None:
    doc = {**task_doc(source_url, target_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    task.finish()
    with psycopg.connect(source_url, autocommit=True) as conn:  # nothing else on items since the stop
        conn.execute("ALTER TABLE items ADD COLUMN email varchar(50)")
        conn.execute("INSERT INTO items (id, name, email) VALUES (-7, 'while stopped', 'a@b.c')")
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, target_url)
    result = task.finish()
    assert not any(t.apply_error_rows for t in result.tables)
    assert any("added email" in w for w in result.warnings)


def test_dates_python_cannot_hold_reach_sqlite_as_postgresql_writes_them(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """BC dates and years past 9999 are kept as PostgreSQL's text, the same through the full load and the
    stream (they used to be written as a description of the value)."""
    values = "'0044-03-15 BC', '294276-12-31 23:59:59.25', '0001-01-01 00:30:00-01 BC', 'infinity'"
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE far (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz, e date)")
        conn.execute(f"INSERT INTO far VALUES (1, {values})")
    doc = {**task_doc(source_url, sqlite_url, name="far"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO far VALUES (2, {values})")
    wait_until(task, lambda: len(fetch(sqlite_url, "far", ["id"])) == 2)
    result = task.finish()
    rows = sorted(fetch(sqlite_url, "far", ["id", "d", "ts", "tz", "e"]))
    far = ("0044-03-15 BC", "294276-12-31 23:59:59.25", "0001-01-01 01:30:00+00 BC", "infinity")
    assert rows == [(1, *far), (2, *far)]
    assert not any(t.apply_error_rows for t in result.tables)


def test_a_target_that_lost_the_position_loads_again_and_says_why(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    doc = {**task_doc(source_url, sqlite_url, name="lost"), "migration_type": "full-load-and-cdc"}
    first = Running(doc, tmp_path / "state")
    wait_until(first, lambda: first.runner.cdc.started is not None)
    first.finish()
    Path(sqlite_url.removeprefix("sqlite:///")).unlink()  # the target database recreated
    again = Running(doc, tmp_path / "state")
    wait_equal(again, source_url, sqlite_url)
    result = again.finish()
    assert any("full load finished before, but the target holds no position" in w for w in result.warnings)
    assert not any("did not finish before" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("batch_apply", [False, True], ids=["transactional", "batch"])
@pytest.mark.parametrize("policy", ["LOG_ERROR", "IGNORE_RECORD", "SUSPEND_TABLE", "STOP_TASK"])
def test_data_error_policy_governs_the_changes_the_target_rejects(
    source_url: str, pg_url: str, tmp_path: Path, policy: str, batch_apply: bool
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the target refuses what the source allows
        conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(100) NOT NULL, qty int CHECK (qty >= 0), "
            "price numeric(10,2), big text)"
        )
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "cdc"}
    doc["settings"] = {
        "ErrorBehavior": {"DataErrorPolicy": policy},
        "TargetMetadata": {"BatchApplyEnabled": batch_apply},
    }
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("INSERT INTO items VALUES (-1, 'fine', 1, 1, NULL)")
        with conn.transaction():
            conn.execute("INSERT INTO items VALUES (-2, 'refused', -5, 1, NULL), (-3, 'fine too', 3, 1, NULL)")
        conn.execute("INSERT INTO bag VALUES (-1, 'other table')")
        conn.execute("INSERT INTO items VALUES (-4, 'after', 4, 1, NULL)")
        conn.execute("INSERT INTO bag VALUES (-2, 'past -4')")
    ids = lambda: {r[0] for r in fetch(pg_url, "items", ["id"], schema="public")}  # noqa: E731
    bag = lambda: {r[0] for r in fetch(pg_url, "bag", ["a"], schema="public")}  # noqa: E731
    if policy == "STOP_TASK":
        task.thread.join(60)
        with pytest.raises(StopTask, match=r"items: the target rejected a change \(key \{'id': '-2'\}\): insert: "):
            task.finish()
        # nothing of the refused change's window (-1 too, where a window held it) nor after it
        assert ids() <= {-1} and not bag() & {-1, -2}
        return
    wait_until(task, lambda: -2 in bag())
    result = task.finish()
    items = next(t for t in result.tables if t.table == "items")
    assert items.apply_error_rows == 1
    with psycopg.connect(pg_url) as conn:
        recorded = conn.execute("SELECT count(*) FROM conveyor_apply_exceptions").fetchone()
        stored = conn.execute("SELECT table_name, reason FROM conveyor_cdc_suspended").fetchall()
    assert recorded == ((0,) if policy == "IGNORE_RECORD" else (1,))
    if policy == "SUSPEND_TABLE":
        assert [name for name, _ in stored] == ["items"] and "qty" in stored[0][1]
        assert -4 not in ids()  # skipped from the suspension on
    else:
        assert stored == [] and ids() >= {-1, -3, -4} and -2 not in ids()


def test_a_second_sigterm_interrupts_and_json_still_says_so(source_url: str, pg_url: str, tmp_path: Path) -> None:
    """The first SIGTERM asks the stream to stop after its commit; a second one, while that commit waits
    (on a lock held here), interrupts at once: exit 143, and --json readers still get a status document."""
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    path = write_task(doc, tmp_path / "task.yaml")
    errors = tmp_path / "stderr.log"
    with errors.open("w") as err:
        state = ["--state-dir", str(tmp_path / "state")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor.control.cli.main", "run", str(path), "--json", "--no-progress", *state],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "streaming changes" not in errors.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, errors.read_text()
            time.sleep(0.1)
        with psycopg.connect(pg_url) as blocker:  # the next commit waits for this lock
            blocker.execute("SELECT * FROM conveyor_cdc_state FOR UPDATE")
            with psycopg.connect(source_url, autocommit=True) as conn:
                conn.execute("INSERT INTO items VALUES (-1, 'waits', 1, 1, NULL)")
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)  # at once: the commit in flight is cancelled
    finally:
        proc.kill()
    assert proc.returncode == 143, errors.read_text()
    status = json.loads(out)
    assert status["Status"] == "failed" and "interrupted" in status["StopReason"]
    assert "Traceback" not in errors.read_text()


def test_asked_to_stop_during_the_full_load_says_so(
    source_url: str, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while full-load-and-cdc still loads: the result says it was asked to stop (the command line
    exits 143 or 130 with that reason), not that zero tables failed."""
    prepare = FullLoad._prepare

    def asked(self: FullLoad, *args: Any) -> None:
        task.stop.set()  # the first SIGTERM, as the first table is prepared
        prepare(self, *args)

    monkeypatch.setattr(FullLoad, "_prepare", asked)
    doc = {**task_doc(source_url, sqlite_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    task.thread.join(60)
    result = task.finish()
    assert result.stopped == "asked to stop during the full load" and not result.complete
    assert result.failed is None


def test_foreign_key_actions_the_wal_holds_are_not_made_twice(source_url: str, pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL's WAL holds the rows ON DELETE CASCADE deleted: the target's own foreign key must not act
    first (the children's DELETEs then found nothing: apply errors)."""
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent ON DELETE CASCADE)")
        conn.execute("INSERT INTO parent VALUES (1), (2)")
        conn.execute("INSERT INTO child VALUES (10, 1), (20, 2)")
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("DELETE FROM parent WHERE id = 1")
    wait_equal(task, source_url, pg_url, tables=[("parent", (0,)), ("child", (0,))])
    result = task.finish()
    assert not any(t.apply_error_rows for t in result.tables), [t.error for t in result.tables]
