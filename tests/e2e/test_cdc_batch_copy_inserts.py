"""Batch apply PostgreSQL -> PostgreSQL: a text table's net inserts go as text COPY (``copy_rows``). Values
that need COPY's escapes, NULLs, a row replaced in its window and a duplicate key that sends the window the
ordered way all land exactly as the source holds them (or are rejected as an INSERT's would be)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_until
from psycopg.types.json import Jsonb
from servers import PostgresServer
from tasks import task_doc

from conveyor.endpoints.postgres.applier import PostgresApplier
from conveyor.endpoints.postgres.arrays import copy_text
from conveyor.endpoints.sql.changes import ChangeApplier
from conveyor.model.changes import Transaction

ORDERS_SQL = """
CREATE TABLE orders (id bigint PRIMARY KEY, n int, amount numeric(12,2), name varchar(100), at timestamp,
  note text, flag boolean, doc jsonb, raw bytea);
INSERT INTO orders VALUES (1, 1, 1.50, 'one', '2026-01-01 00:00:00', 'first', true, '{"a": 1}', NULL),
  (2, 2, 2.50, 'two', NULL, NULL, false, NULL, '\\x0102');
"""
INSERT = "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
#: texts that COPY's text format must escape, or that look like its escapes
TRICKY = [
    "tab\there",
    "new\nline",
    "cr\rhere",
    "crlf\r\n",
    "back\\slash",
    "\\N",
    "\\.",
    "ends with \\",
    "\t",
    "\\t literally",
    "",
    "ünïcødé 日本語 🎉",
]


@pytest.fixture
def source_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "cdcsrc_" + request.node.name, "cdc", ORDERS_SQL)


def table_rows(url: str, exclude: Sequence[int] = ()) -> list[str]:
    """Every row as PostgreSQL prints it whole (each value's own text form), by key."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, orders::text FROM orders ORDER BY id").fetchall()
    return [text for key, text in rows if key not in exclude]


def wait_same(task: Running, source_url: str, target_url: str, exclude: Sequence[int] = ()) -> None:
    deadline = time.monotonic() + 60
    while (want := table_rows(source_url, exclude)) != (got := table_rows(target_url, exclude)):
        task.check()
        assert time.monotonic() < deadline, (want, got)
        time.sleep(0.2)


def test_text_inserts_go_as_copy_and_land_exactly(
    source_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    copied: list[int] = []  # rows of each COPY that batch apply built
    ordered: list[int] = []  # changes of each batch that went the ordered way
    copy_rows, run_ordered = PostgresApplier.copy_rows, ChangeApplier._run_ordered

    def spy_copy(self: PostgresApplier, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
        send = copy_rows(self, table, columns, rows)
        if send is not None:
            copied.append(len(rows))
        return send

    def spy_ordered(self: ChangeApplier, transactions: Sequence[Transaction]) -> Any:
        if changes := sum(len(t.changes) for t in transactions):  # idle checkpoints apply no change
            ordered.append(changes)
        return run_ordered(self, transactions)

    monkeypatch.setattr(PostgresApplier, "copy_rows", spy_copy)
    monkeypatch.setattr(ChangeApplier, "_run_ordered", spy_ordered)
    doc = {**task_doc(source_url, pg_url, name="cdc"), "migration_type": "full-load-and-cdc"}
    doc["settings"] = {"TargetMetadata": {"BatchApplyEnabled": True}}
    task = Running(doc, tmp_path / "state")

    def stop() -> None:  # after a failed check too: the slot is let go before the source is dropped
        task.stop.set()
        task.thread.join(60)

    request.addfinalizer(stop)
    wait_until(task, lambda: task.runner.cdc.started is not None)

    def window(statements: Callable[[psycopg.Connection[Any]], None]) -> None:
        """One source transaction: one batch, whole."""
        with psycopg.connect(source_url) as conn:
            statements(conn)
            conn.commit()

    # plain texts (no value needs escaping), NULLs, empty strings, and row 1 replaced (deleted, inserted)
    def plain(conn: psycopg.Connection[Any]) -> None:
        conn.execute("DELETE FROM orders WHERE id = 1")
        conn.execute(
            INSERT, (1, None, 9.99, "one again", "2026-11-27 12:00:00.123456", "", None, '{"b": [1, 2]}', None)
        )
        for i in range(10, 40):
            conn.execute(
                INSERT,
                (i, i, i / 8, f"név {i}" if i % 3 else None, None, "x" * 100, i % 2 == 0, '{"k": "v"}', None),
            )

    window(plain)
    wait_same(task, source_url, pg_url)
    assert copied == [31] and ordered == [], (copied, ordered)

    # every text COPY must escape, in every text column; JSON with escapes; bytea (its hex form has a backslash)
    def tricky(conn: psycopg.Connection[Any]) -> None:
        for i, text in enumerate(TRICKY, start=100):
            doc = Jsonb({"s": text, "q": 'say "hi"', "path": "C:\\dir"})
            conn.execute(INSERT, (i, -i, None, text, None, text + "|" + text, None, doc, text.encode()))
        conn.execute("DELETE FROM orders WHERE id = 2")  # and a key deleted and inserted again in the window
        conn.execute(INSERT, (2, 2, None, "\\N", None, None, None, None, b"\\N\t\n"))

    window(tricky)
    wait_same(task, source_url, pg_url)
    assert copied == [31, len(TRICKY) + 1] and ordered == [], (copied, ordered)

    # a key the target already holds: the COPY fails, the window goes the ordered way, the one row is rejected
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO orders (id, name) VALUES (1000, 'target only')")

    def duplicate(conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO orders (id, name) VALUES (1000, 'source'), (1001, 'b\\t\tc')")

    window(duplicate)
    wait_same(task, source_url, pg_url, exclude=[1000])
    result = task.finish()
    assert copied == [31, len(TRICKY) + 1, 2] and ordered == [2], (copied, ordered)
    assert table_rows(pg_url)[-2] == '(1000,,,"target only",,,,,)'
    stats = {t.table: t for t in result.tables}["orders"]
    assert stats.apply_error_rows == 1
    assert stats.applied_inserts == 31 + len(TRICKY) + 1 + 1  # the rejected one not counted
    with psycopg.connect(pg_url) as conn:
        errors = conn.execute("SELECT row_key, error FROM conveyor_apply_exceptions").fetchall()
    assert len(errors) == 1 and '"id": "1000"' in errors[0][0] and "duplicate key" in errors[0][1], errors


def test_copy_text_is_what_escaping_each_value_gives() -> None:
    """Random rows of the characters COPY escapes (and what looks like its escapes), against the plain
    per-value escaping; a value that is no text or a NUL that would need a mark: no COPY."""

    def escaped(value: str | None) -> str:
        if value is None:
            return "\\N"
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")

    rng = random.Random(5)
    alphabet = ["a", "\t", "\n", "\r", "\\", "N", ".", "é", "日", " ", "\\N"]
    for _ in range(5000):
        width = rng.randint(1, 4)
        rows = [
            tuple(
                None if rng.random() < 0.2 else "".join(rng.choices(alphabet, k=rng.randint(0, 4)))
                for _ in range(width)
            )
            for _ in range(rng.randint(1, 5))
        ]
        assert copy_text(rows) == "".join("\t".join(map(escaped, row)) + "\n" for row in rows), rows
    assert copy_text([("1", 2)]) is None and copy_text([(None, 2)]) is None
    assert copy_text([("a\x00\\", "b")]) is None  # a NUL where escapes are marked: the INSERT rejects it
