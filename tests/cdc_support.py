"""Change data capture from PostgreSQL in tests: a source database with a workload, the task on a
thread, and row-by-row comparison with the target."""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
from oracle import canonical_rows, compare, fetch
from servers import PostgresServer, unique_db_name
from tasks import task_doc

from conveyor.endpoints.config import PostgresConfig, parse_endpoint
from conveyor.endpoints.postgres.capture import drop
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.endpoints.sql.changes import ChangeApplier, ChangeTarget
from conveyor.model.changes import Transaction
from conveyor.model.schema import Table, TableId
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


TABLES = (("items", (0,)), ("bag", ()))
#: the tables of tests/faults/workload.py's ``Workload``
WORKLOAD_TABLES = (("cdc_items", (0,)), ("cdc_bag", ()))


def diff(source_url: str, target_url: str) -> str:
    """'' when every table is equal row by row, else what differs."""
    return diff_tables(source_url, target_url, TABLES)


def schema_of(url: str) -> str | None:
    """Where the tests' tables are: ``public`` on PostgreSQL, the URL's own database elsewhere."""
    return "public" if url.startswith("postgres") else None


def diff_tables(source_url: str, target_url: str, tables: Sequence[tuple[str, tuple[int, ...]]]) -> str:
    """'' when the tables (name, key column positions) are equal row by row, else what differs."""
    out = []
    for table, key in tables:
        src = canonical_rows(fetch(source_url, table, schema=schema_of(source_url)))
        dst = canonical_rows(fetch(target_url, table, schema=schema_of(target_url)))
        d = compare(src, dst, key)
        if not d.equal:
            out.append(f"{table}: {d}")
    return "\n".join(out)


class Alive(Protocol):
    def check(self) -> None:
        """Raise when the task is no longer running."""


def wait_equal(
    task: Alive,
    source_url: str,
    target_url: str,
    timeout: float = 60,
    tables: Sequence[tuple[str, tuple[int, ...]]] = TABLES,
) -> None:
    """Until the tables (name, key column positions) are equal row by row; raises what differs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task.check()
        try:
            found = diff_tables(source_url, target_url, tables)
        except Exception as exc:  # the full load has not created the table yet
            if not any(m in str(exc) for m in ("does not exist", "doesn't exist", "no such table")):
                raise
            found = str(exc)
        if not found:
            return
        time.sleep(0.5)
    raise AssertionError(found)


def wait_until(task: Alive, condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        task.check()
        if time.monotonic() >= deadline:
            output = getattr(task, "output", None)
            raise AssertionError("timed out" + (f"; the task printed:\n{output()}" if callable(output) else ""))
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


def drop_capture(url: str, task: str) -> None:
    """Drop a task's slot and publication on a PostgreSQL source (a slot keeps its database from being dropped)."""
    config = parse_endpoint(url, "source")
    assert isinstance(config, PostgresConfig)
    drop(config, task)


def postgres_source(pg_server: PostgresServer, hint: str, task: str, sql: str = SOURCE_SQL) -> Iterator[str]:
    """A fresh PostgreSQL source database holding ``sql``'s tables, for a fixture to yield from;
    afterwards the task's slot and publication go, then the database."""
    name = unique_db_name(hint)
    url = pg_server.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)
    try:
        yield url
    finally:
        drop_capture(url, task)
        pg_server.drop_database(name)


def assert_parted_by_bytes(txns: list[Transaction], rows: int, width: int, limit: int) -> None:
    """A transaction of ``rows`` inserts (keys 1..rows, a ``width``-character second column) delivered in
    parts by bytes: each part closes at the first change that takes it to ``limit`` bytes, then the rest
    with the commit."""
    *parts, last = txns
    assert len(parts) >= 3 and all(t.partial and len(t.changes) < rows for t in parts)
    assert all(limit <= t.size < limit + width + 5_000 for t in parts), [t.size for t in parts]
    assert not last.partial and last.size < limit and last.commit_position is not None
    assert [c.after[0] for t in txns for c in t.changes if c.after] == list(range(1, rows + 1))
    assert all(len(c.after[1]) == width for t in txns for c in t.changes if c.after)


def text_change_applier(url: str, table_name: str) -> tuple[SqlApplier, ChangeApplier, Table, list[str]]:
    """A change applier into the target table ``table_name`` at ``url`` as the runner makes one for a table
    whose changes come in the source's own text form (no encoders); with the table and its native types."""
    config = parse_endpoint(url, "target")
    spec = engine_for(config)
    schema = spec.default_schema(config)
    applier = spec.open_applier(config, schema)
    assert isinstance(applier, SqlApplier)
    table = spec.open_introspector(config).table(TableId(schema, table_name))
    natives = [applier.map_type(c.type) for c in table.columns]
    changes = ChangeApplier(applier, {table.id: ChangeTarget(table, [None] * len(natives), natives)})
    return applier, changes, table, natives


def stopped_after_the_full_load(source_url: str, target_url: str, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """A full-load-and-cdc task that streamed and stopped; its document, to run it again."""
    doc = {**task_doc(source_url, target_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    if settings:
        doc["settings"] = settings
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    task.finish()
    return doc
