"""PostgreSQL change data capture end to end, into every target: the full load meets the stream exactly
and the target follows the source under concurrent writes (TOAST values, key updates, duplicates)."""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from oracle import canonical_rows, compare, fetch
from servers import PostgresServer, unique_db_name
from tasks import task_doc

from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.postgres.capture import drop
from conveyor.runner.cdc import ChangeProcessing
from conveyor.runner.fullload import RunResult
from conveyor.runner.task import task_from_document

SOURCE_SQL = """
CREATE TABLE items (id bigint PRIMARY KEY, name varchar(100) NOT NULL, qty int, price numeric(10,2), big text);
CREATE TABLE bag (a int, b varchar(20));
ALTER TABLE bag REPLICA IDENTITY FULL;
INSERT INTO items SELECT g, 'item ' || g, g % 17, g / 4.0, CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 400) END
  FROM generate_series(1, 3000) g;
INSERT INTO bag SELECT g % 10, 'v' || (g % 3) FROM generate_series(1, 200) g;
"""


def big_value(rng: random.Random) -> str:
    """~10 KB that does not compress, so PostgreSQL stores it out of line (TOAST)."""
    return "".join(rng.choices(string.ascii_letters, k=10_000))


def write_workload(url: str, transactions: int, seed: int, pause: float = 0.0) -> None:
    """Multi-row transactions: inserts, updates (some of the key, some of TOAST values, most leaving
    them alone), deletes, duplicate rows in a keyless table, and a few rollbacks."""
    rng = random.Random(seed)
    next_id = 1_000_000 + seed * 100_000
    with psycopg.connect(url, autocommit=False) as conn:
        for n in range(transactions):
            for _ in range(rng.randint(1, 6)):
                action = rng.random()
                target = rng.randint(1, 3000)
                if action < 0.3:
                    next_id += 1
                    conn.execute(
                        "INSERT INTO items VALUES (%s, %s, %s, %s, %s)",
                        (next_id, f"new {next_id}", rng.randint(0, 9), rng.randint(0, 10**6) / 100, None),
                    )
                elif action < 0.6:
                    conn.execute("UPDATE items SET qty = qty + 1, name = name || '+' WHERE id = %s", (target,))
                elif action < 0.65:
                    conn.execute("UPDATE items SET big = %s WHERE id = %s", (big_value(rng), target))
                elif action < 0.7:
                    next_id += 1
                    conn.execute("UPDATE items SET id = %s WHERE id = %s", (next_id, target))
                elif action < 0.8:
                    conn.execute("DELETE FROM items WHERE id = %s", (target,))
                elif action < 0.9:
                    conn.execute("INSERT INTO bag VALUES (%s, %s)", (rng.randint(0, 9), f"v{rng.randint(0, 2)}"))
                else:
                    conn.execute(
                        "DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE a = %s LIMIT 1)", (rng.randint(0, 9),)
                    )
            if n % 25 == 7:
                conn.rollback()
            else:
                conn.commit()
            time.sleep(pause)


def diff(source_url: str, target_url: str) -> str:
    """'' when every table is equal row by row, else what differs."""
    out = []
    for table, key in (("items", (0,)), ("bag", ())):
        src = canonical_rows(fetch(source_url, table, schema="public"))
        dst = canonical_rows(fetch(target_url, table, schema="public" if target_url.startswith("postgres") else None))
        d = compare(src, dst, key)
        if not d.equal:
            out.append(f"{table}: {d}")
    return "\n".join(out)


def wait_equal(task: Running, source_url: str, target_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task.check()
        try:
            found = diff(source_url, target_url)
        except Exception as exc:  # the full load has not created the table yet
            if not any(m in str(exc) for m in ("does not exist", "doesn't exist", "no such table")):
                raise
            found = str(exc)
        if not found:
            return
        time.sleep(0.5)
    raise AssertionError(found)


def wait_until(task: Running, condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        task.check()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Running:
    """A change-processing task on a thread of this process, stopped like SIGTERM stops it."""

    def __init__(self, doc: dict[str, Any], state_dir: Path) -> None:
        self.stop = threading.Event()
        self.runner = ChangeProcessing(task_from_document(doc), str(state_dir), stop=self.stop)
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.runner.run()
        except BaseException as exc:
            self.error = exc

    def check(self) -> None:
        """The task is still running (its error, if it failed)."""
        if not self.thread.is_alive():
            if self.error is not None:
                raise self.error
            raise AssertionError(f"the task ended early: {self.result}")

    def finish(self) -> RunResult:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the task did not stop within 60 s"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def target_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param])
    )


@pytest.fixture
def source_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = unique_db_name("cdcsrc_" + request.node.name)
    url = pg_server.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SOURCE_SQL)
    yield url
    drop(parse_endpoint(url, "source"), "cdc")  # the slot would keep the database from being dropped
    pg_server.drop_database(name)


def test_full_load_and_cdc_follows_the_source_exactly(source_url: str, target_url: str, tmp_path: Path) -> None:
    doc = {**task_doc(source_url, target_url, name="cdc"), "migration_type": "full-load-and-cdc"}
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
