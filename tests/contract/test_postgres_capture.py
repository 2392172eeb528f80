"""PostgreSQL change data capture against real servers: the snapshot/stream handoff, every kind of
change, values equal to the snapshot reader's, acknowledgements across reconnects, big
transactions, lost slots, and the pre-flight checks' messages."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_support import assert_parted_by_bytes
from servers import PostgresServer, unique_db_name

from conveyor.endpoints.config import PostgresConfig, parse_endpoint
from conveyor.endpoints.postgres.capture import NeedsResync, PostgresCapture, drop
from conveyor.endpoints.postgres.connect import connect
from conveyor.endpoints.postgres.engine import ENGINE
from conveyor.endpoints.postgres.pgoutput import format_lsn, parse_lsn
from conveyor.endpoints.postgres.replication import ReplicationConnection
from conveyor.endpoints.postgres.snapshot import PostgresSnapshotReader
from conveyor.errors import TransientError, UserActionError
from conveyor.model.changes import UNCHANGED, Idle, Op, SchemaChanged, Transaction
from conveyor.model.schema import Table, TableId
from conveyor.model.segments import Segment

IDLE = 0.2  # seconds before stream() yields Idle: keeps the tests quick


# --------------------------------------------------------------------------- helpers
def config(url: str, **fields: Any) -> PostgresConfig:
    cfg = parse_endpoint(url, "endpoint")
    assert isinstance(cfg, PostgresConfig)
    return PostgresConfig.model_validate({**cfg.model_dump(), **fields})


def execute(url: str, script: str, params: Any = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script, params)


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def tables(url: str, *names: str) -> list[Table]:
    intro = ENGINE.open_introspector(config(url))
    try:
        return [intro.table(TableId("public", n)) for n in names]
    finally:
        intro.close()


def capture_for(url: str, task: str, *names: str, **fields: Any) -> PostgresCapture:
    return PostgresCapture(config(url, **fields), task, tables(url, *names), idle_seconds=IDLE)


def transactions(
    capture: PostgresCapture,
    start: int | None,
    count: int,
    timeout: float = 20.0,
    events: list[Any] | None = None,
) -> list[Transaction]:
    """The first ``count`` transactions of a stream, then whatever else comes before the next Idle;
    other events go to ``events``."""
    out: list[Transaction] = []
    deadline = time.monotonic() + timeout
    stream = capture.stream(start)
    try:
        for event in stream:
            if isinstance(event, Transaction):
                out.append(event)
            elif isinstance(event, Idle):
                if len(out) >= count:
                    break
            elif events is not None:
                events.append(event)
            assert time.monotonic() < deadline, f"only {len(out)} of {count} transactions within {timeout} s"
    finally:
        stream.close()  # type: ignore[attr-defined]
    return out


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type; NaN equals NaN."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal) and a.is_nan():
        return b.is_nan()
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


# --------------------------------------------------------------------------- the handoff
def test_snapshot_and_stream_meet_exactly(pg_url: str) -> None:
    """Rows committed before the slot's consistent point are in its snapshot, the others in the
    stream; none twice, none lost, while writers commit throughout (one of them open across the
    slot's creation)."""
    execute(pg_url, "CREATE TABLE handoff (id int PRIMARY KEY, v text)")
    execute(pg_url, "INSERT INTO handoff SELECT g, 'initial' FROM generate_series(1, 100) g")
    capture = capture_for(pg_url, "handoff", "handoff")
    warnings = capture.check()
    assert all("max_slot_wal_keep_size is unlimited" in w for w in warnings)

    committed: set[int] = set(range(1, 101))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                key = 1000
                while not stop.is_set():
                    key += 1
                    conn.execute("INSERT INTO handoff VALUES (%s, 'concurrent')", (key,))
                    committed.add(key)
                    time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    open_txn = psycopg.connect(pg_url)  # a transaction in flight when the slot is created
    open_txn.execute("INSERT INTO handoff VALUES (500, 'open across the slot creation')")

    def commit_later() -> None:
        time.sleep(1.0)
        open_txn.commit()
        committed.add(500)

    threads = [threading.Thread(target=writer), threading.Thread(target=commit_later)]
    for t in threads:
        t.start()
    try:
        started = time.monotonic()
        with capture.create_slot() as slot:
            waited = time.monotonic() - started
            assert slot.snapshot and slot.held
            time.sleep(0.3)  # more commits after the consistent point, before the snapshot is read
            cfg = config(pg_url)
            reader = PostgresSnapshotReader(connect(cfg, autocommit=False), cfg, slot.snapshot)
            try:
                (table,) = capture.tables
                snapshot_ids = [r[0] for b in reader.read(table, Segment(table.id, 0), 500) for r in b.rows]
            finally:
                reader.close()
        assert not slot.held
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        open_txn.close()
    assert not errors, errors
    assert waited >= 0.8, "CREATE_REPLICATION_SLOT waits for the transaction open when it started"
    assert 500 in snapshot_ids  # it committed before the consistent point
    assert len(committed) > len(snapshot_ids) > 101  # writers committed on both sides of the point

    # stream until every committed row is accounted for, then until the stream is idle (a duplicate
    # would come right after)
    streamed: list[int] = []
    deadline = time.monotonic() + 30
    stream = capture.stream(slot.lsn)
    try:
        for event in stream:
            if isinstance(event, Transaction):
                streamed += [c.after[0] for c in event.changes if c.op is Op.INSERT and c.after is not None]
            elif isinstance(event, Idle) and set(streamed) | set(snapshot_ids) >= committed:
                break
            assert time.monotonic() < deadline, f"{len(committed - set(streamed) - set(snapshot_ids))} rows missing"
    finally:
        stream.close()
    assert len(streamed) == len(set(streamed)), "a row streamed twice"
    assert not set(streamed) & set(snapshot_ids), "a row both in the snapshot and in the stream"
    assert set(streamed) | set(snapshot_ids) == committed
    capture.close()


# --------------------------------------------------------------------------- kinds of changes
def test_every_kind_of_change(pg_url: str) -> None:
    execute(
        pg_url,
        "CREATE TABLE items (id int PRIMARY KEY, name text, doc text, n int); "
        "CREATE TABLE log (at int, msg text); ALTER TABLE log REPLICA IDENTITY FULL; "
        "INSERT INTO items VALUES (1, 'one', NULL, 0), (2, 'two', NULL, 0), (3, 'three', NULL, 0); "
        "INSERT INTO log VALUES (1, 'a'), (2, 'b')",
    )
    capture = capture_for(pg_url, "kinds", "items", "log")
    capture.check()
    capture.create_slot(export_snapshot=False)
    doc = "".join(uuid.uuid4().hex for _ in range(400))  # 12.8 KB, incompressible: stored out of line (TOAST)
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO items VALUES (4, 'four', %s, 0), (5, 'five', NULL, 0)", (doc,))
        conn.execute("UPDATE items SET name = 'ONE' WHERE id = 1")
        conn.execute("UPDATE items SET id = 20 WHERE id = 2")  # the key changes: the old key comes along
        conn.execute("DELETE FROM items WHERE id = 3")
        conn.commit()
        conn.execute("UPDATE items SET n = 1 WHERE id = 4")  # doc is not touched: UNCHANGED
        conn.commit()
        conn.execute("UPDATE log SET msg = 'B' WHERE at = 2")
        conn.execute("DELETE FROM log WHERE at = 1")
        conn.commit()
        conn.execute("TRUNCATE items")
        conn.commit()
    first, toast, full, truncate = transactions(capture, None, 4)
    cols = ("id", "name", "doc", "n")
    assert [(c.op, c.before, c.after) for c in first.changes] == [
        (Op.INSERT, None, (4, "four", doc, 0)),
        (Op.INSERT, None, (5, "five", None, 0)),
        (Op.UPDATE, (1, UNCHANGED, UNCHANGED, UNCHANGED), (1, "ONE", None, 0)),
        (Op.UPDATE, (2, UNCHANGED, UNCHANGED, UNCHANGED), (20, "two", None, 0)),
        (Op.DELETE, (3, UNCHANGED, UNCHANGED, UNCHANGED), None),
    ]
    assert all(c.columns == cols and c.table == TableId("public", "items") for c in first.changes)
    assert first.commit_position > first.changes[-1].position >= first.changes[0].position
    assert first.commit_ts is not None and isinstance(first.txid, int)
    (partial,) = toast.changes
    assert partial.after == (4, "four", UNCHANGED, 1) and partial.before == (4, UNCHANGED, UNCHANGED, UNCHANGED)
    assert [(c.op, c.before, c.after) for c in full.changes] == [
        (Op.UPDATE, (2, "b"), (2, "B")),  # REPLICA IDENTITY FULL: the whole old row
        (Op.DELETE, (1, "a"), None),
    ]
    assert [(c.op, c.table.name) for c in truncate.changes] == [(Op.TRUNCATE, "items")]
    assert first.commit_position < toast.commit_position < full.commit_position < truncate.commit_position

    # a schema change is an event, not a crash; the next changes carry the new columns
    execute(pg_url, "ALTER TABLE items ADD COLUMN email varchar(50); INSERT INTO items VALUES (7, 'x', NULL, 0, 'e')")
    events: list[Any] = []
    (after,) = transactions(capture, truncate.commit_position, 1, events=events)
    (changed,) = events
    assert isinstance(changed, SchemaChanged) and changed.table == TableId("public", "items")
    assert "added email (character varying(50))" in changed.description
    assert [c.name for c in changed.columns] == [*cols, "email"] and changed.columns[-1].nullable
    assert after.changes[0].columns == (*cols, "email") and after.changes[0].after == (7, "x", None, 0, "e")

    # the publication is idempotent; one with other tables is an error naming the fix
    assert capture.ensure_publication() is False
    other = capture_for(pg_url, "kinds", "items")
    with pytest.raises(UserActionError, match=r'also has public\.log.*ALTER PUBLICATION "conveyor_kinds" SET TABLE'):
        other.check()
    assert drop(config(pg_url), "kinds") == ["replication slot conveyor_kinds", "publication conveyor_kinds"]
    assert query(pg_url, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'conveyor_kinds'") == [(0,)]
    assert query(pg_url, "SELECT count(*) FROM pg_publication") == [(0,)]
    # a publication someone made with a row filter would drop changes silently
    execute(pg_url, 'CREATE PUBLICATION "conveyor_kinds" FOR TABLE items WHERE (id > 10), log')
    with pytest.raises(UserActionError, match="row filters or column lists"):
        capture.check()
    capture.close()
    other.close()


def test_partitioned_tables_stream_under_their_own_name(pg_url: str) -> None:
    execute(
        pg_url,
        "CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at); "
        "CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01'); "
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    )
    capture = capture_for(pg_url, "parts", "events")
    capture.check()
    capture.create_slot(export_snapshot=False)
    execute(pg_url, "INSERT INTO events VALUES (1, '2023-05-01'), (2, '2024-05-01'); DELETE FROM events WHERE id = 1")
    (txn,) = transactions(capture, None, 1)
    assert [(c.op, c.table.name, c.after or c.before) for c in txn.changes] == [
        (Op.INSERT, "events", (1, date(2023, 5, 1))),
        (Op.INSERT, "events", (2, date(2024, 5, 1))),
        (Op.DELETE, "events", (1, date(2023, 5, 1))),
    ]
    # a position past the source's WAL (a restored source, another server) is a gap too
    with pytest.raises(NeedsResync, match="past the end of the source's WAL"):
        next(capture.stream(txn.commit_position + (1 << 40)))
    capture.close()


def test_tables_without_a_key_are_refused_with_the_fix(pg_url: str) -> None:
    execute(
        pg_url,
        'CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE "no Key" (v int); CREATE TABLE nothing (id int PRIMARY '
        "KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING",
    )
    capture = capture_for(pg_url, "nokey", "keyed", "no Key", "nothing")
    with pytest.raises(UserActionError) as caught:
        capture.check()
    message = str(caught.value)
    assert 'ALTER TABLE "public"."no Key" REPLICA IDENTITY FULL' in message
    assert 'ALTER TABLE "public"."nothing" REPLICA IDENTITY FULL' in message and "keyed" not in message
    assert query(pg_url, "SELECT count(*) FROM pg_publication") == [(0,)]  # nothing was created
    capture.close()


# --------------------------------------------------------------------------- values
ALL_TYPES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE all_types (
    id int PRIMARY KEY, i16 smallint, i64 bigint, num numeric, num_ps numeric(12,2), f4 real, f8 double precision,
    b boolean, c char(5), vc varchar(20), t text, by bytea, d date, tm time(3), ttz timetz, ts timestamp(6),
    tstz timestamptz, iv interval, j json, jb jsonb, u uuid, ip inet, cid cidr, mac macaddr, mac8 macaddr8,
    m money, bt bit(4), vbt varbit(8), x xml, ch "char", o oid, nm name, ai integer[], at text[], f4a real[],
    ipa inet[], ma money[], jba jsonb[], tsa timestamptz[], mood mood, moods mood[], dom posint, doms posint[],
    rng int4range
);
"""
ALL_ROWS = [
    "(1, -32768, -9223372036854775808, 1234567890123456789012345678901234567890.5, -9999999999.99, 0.1, "
    "'-0', false, '', '', '', '', '0001-01-01', '00:00', '00:00+14', '0001-01-01 00:00', '0001-01-01 00:00:00+00', "
    "'-1 days -00:00:01', '{}', '{}', '00000000-0000-0000-0000-000000000000', '0.0.0.0', '0.0.0.0/0', "
    "'00:00:00:00:00:00', '00:00:00:00:00:00:00:00', -92233720368547758.08, '0000', '', '<a/>', 'a', 0, 'n', '{}', "
    "'{}', '{}', '{}', '{}', '{}', '{}', 'sad', '{}', 1, '{}', 'empty')",
    "(2, 32767, 9223372036854775807, 'NaN', 9999999999.99, 'Infinity', 1e-300, true, 'héllo', '😀𝄞中文', "
    "'tab\there, newline\n, quote '' and backslash \\', '\\x00ff', '9999-12-31', '23:59:59.999', '23:59:59.999-12', "
    "'9999-12-31 23:59:59.999999', '2038-01-19 03:14:08.123456+02', '1 year 2 mons 3 days 04:05:06.789', "
    '\'{"b": 1, "a": [1, 2.5, null], "b": 2}\', \'{"z": {"y": [true]}, "a": 1}\', '
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1', '2001:db8::/32', '08:00:2b:01:02:03', "
    "'08:00:2b:01:02:03:04:05', 92233720368547758.07, '1010', '10101', "
    '\'<?xml version="1.0" encoding="UTF-8"?><a x="1">t</a>\', \'z\', 4294967295, '
    "'a name', '{{1,2},{NULL,4}}', '{\"a\",\"b c\",NULL,\"\"}', '{0.1,NaN,-Infinity}', "
    "'{10.1.2.3,2001:db8::1,10.0.0.0/8}', '{1.50,-2.00,NULL}', '{\"{\\\"a\\\": 1}\",null}', "
    "'{\"2020-01-01 00:00:00+05\",NULL}', 'happy', '{sad,happy}', 42, '{1,2}', '[1,10)')",
    "(3, 0, 0, '-Infinity', 0, '-Infinity', 'NaN', NULL, 'x', 'x', NULL, NULL, 'infinity', NULL, NULL, '-infinity', "
    "'infinity', NULL, 'null', '[]', NULL, '10.1.2.3/16', '10.1.0.0/16', NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '10000-01-01', NULL, NULL, "
    "'0044-03-15 12:00:00 BC', '10000-01-01 00:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


def test_values_equal_the_snapshot_readers(pg_url: str) -> None:
    execute(pg_url, ALL_TYPES)
    capture = capture_for(pg_url, "values", "all_types")
    capture.check()
    capture.create_slot(export_snapshot=False)
    with psycopg.connect(pg_url) as conn:
        for values in ALL_ROWS:
            conn.execute(f"INSERT INTO all_types VALUES {values}")
        conn.execute("UPDATE all_types SET id = id + 100")  # the stream's old keys; the snapshot reads the new ids
        conn.commit()
    (txn,) = transactions(capture, None, 1)
    streamed = {c.after[0]: c.after for c in txn.changes if c.op is Op.INSERT and c.after is not None}
    updated = [c for c in txn.changes if c.op is Op.UPDATE]
    assert len(streamed) == len(updated) == len(ALL_ROWS)

    (table,) = capture.tables
    snapshot = ENGINE.open_snapshot(config(pg_url), 1)
    reader = snapshot.reader()
    try:
        read = {r[0]: r for b in reader.read(table, Segment(table.id, 0), 100) for r in b.rows}
    finally:
        reader.close()
        snapshot.close()
    names = table.column_names
    for key, row in streamed.items():
        expected = read[key + 100]
        for name, got, want in zip(names[1:], row[1:], expected[1:], strict=True):
            assert same(got, want), f"row {key} column {name}: stream {got!r} != snapshot {want!r}"
    for change in updated:  # an update's new image decodes the same way
        assert change.after is not None and all(
            same(g, w) for g, w in zip(change.after, read[change.after[0]], strict=True)
        )
    capture.close()


# --------------------------------------------------------------------------- acknowledgements
def test_ack_decides_what_a_reconnect_resends(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE acked (id int PRIMARY KEY)")
    capture = capture_for(pg_url, "acks", "acked")
    capture.create_slot(export_snapshot=False)
    for i in (1, 2, 3):
        execute(pg_url, "INSERT INTO acked VALUES (%s)", (i,))

    ids = lambda txns: [c.after[0] for t in txns for c in t.changes if c.after]  # noqa: E731
    first = capture.stream(None)
    seen: list[Transaction] = []
    for event in first:
        if isinstance(event, Transaction):
            seen.append(event)
            if len(seen) == 2:
                capture.ack(event.commit_position)  # the target committed transactions 1 and 2
            if len(seen) == 3:
                break
    first.close()  # type: ignore[attr-defined]
    a, b, c = seen
    assert ids(seen) == [1, 2, 3]
    slot = capture.slot_status()
    assert slot is not None and slot.confirmed_flush == b.commit_position and slot.active_pid is None

    # from the slot's confirmed position, and from the target's stored position: only 3 comes again
    assert ids(transactions(capture, None, 1)) == [3]
    again = capture_for(pg_url, "acks", "acked")
    assert ids(transactions(again, b.commit_position, 1)) == [3]
    # a target behind what the slot confirmed has lost changes the source no longer has
    with pytest.raises(NeedsResync, match=f"resumes at {format_lsn(a.commit_position)}.*already confirmed"):
        next(again.stream(a.commit_position))
    # an ack while nothing streams advances the slot at once
    again.ack(c.commit_position)
    slot = again.slot_status()
    assert slot is not None and slot.confirmed_flush == c.commit_position
    assert transactions(again, c.commit_position, 0) == []
    again.ack(b.commit_position)  # never lowers
    assert again.slot_status().confirmed_flush == c.commit_position  # type: ignore[union-attr]

    # Idle positions let a quiet slot move on past other tables' changes
    execute(pg_url, "CREATE TABLE other (id int); INSERT INTO other VALUES (1)")
    lsn_after = parse_lsn(query(pg_url, "SELECT pg_current_wal_lsn()::text")[0][0])
    stream = again.stream(c.commit_position)
    deadline = time.monotonic() + 30
    try:
        for event in stream:
            assert not isinstance(event, Transaction)
            if isinstance(event, Idle) and event.position >= lsn_after:
                idle = event
                break
            assert time.monotonic() < deadline, "Idle never moved past the other table's changes"
    finally:
        stream.close()  # type: ignore[attr-defined]
    again.ack(idle.position)
    assert again.slot_status().confirmed_flush >= lsn_after  # type: ignore[operator, union-attr]
    capture.close()
    again.close()


def test_a_caught_up_stream_says_so_at_once(pg_url: str) -> None:
    """Idle follows a transaction as soon as the server has nothing more ready, not after
    ``idle_seconds``: the runner sends a lone transaction on at once (latency)."""
    execute(pg_url, "CREATE TABLE lone (id int PRIMARY KEY)")
    capture = PostgresCapture(config(pg_url), "lone", tables(pg_url, "lone"), idle_seconds=60)
    capture.create_slot(export_snapshot=False)
    stream = capture.stream(None)
    try:
        for i in (1, 2):
            execute(pg_url, "INSERT INTO lone VALUES (%s)", (i,))
            started = time.monotonic()
            txn = next(stream)
            assert isinstance(txn, Transaction) and txn.changes[0].after == (i,)
            idle = next(stream)
            assert isinstance(idle, Idle) and idle.position >= txn.commit_position
            assert time.monotonic() - started < 10, "Idle waited for idle_seconds"
    finally:
        stream.close()  # type: ignore[attr-defined]
        capture.close()


# --------------------------------------------------------------------------- big transactions
def test_a_50k_row_transaction_streams_with_bounded_memory(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE big (id int PRIMARY KEY, v text, n numeric)")
    capture = capture_for(pg_url, "big", "big")
    capture.create_slot(export_snapshot=False)
    execute(pg_url, "INSERT INTO big SELECT g, 'row ' || g, g * 1.5 FROM generate_series(1, 50000) g")
    before = rss_kib()
    started = time.monotonic()
    (txn,) = transactions(capture, None, 1, timeout=60)
    elapsed = time.monotonic() - started
    grown_mib = (rss_kib() - before) / 1024
    assert len(txn.changes) == 50000 and txn.changes[-1].after == (50000, "row 50000", Decimal("75000.0"))
    print(f"\n50k-row transaction: {elapsed:.2f} s end to end, RSS +{grown_mib:.0f} MiB holding it")
    assert grown_mib < 150, f"RSS grew {grown_mib:.0f} MiB for 50k changes"
    capture.close()


def test_a_transaction_of_wide_rows_comes_in_parts_by_bytes(pg_url: str) -> None:
    """Few rows, many bytes: parts close at ``part_bytes`` of change messages whatever their count."""
    execute(pg_url, "CREATE TABLE wide (id int PRIMARY KEY, body text)")
    capture = capture_for(pg_url, "wide", "wide")
    capture.part_changes, capture.part_bytes = 1000, 1 << 20
    capture.create_slot(export_snapshot=False)
    # ~200 KB each: pgoutput sends the whole value, however TOAST compressed it
    execute(pg_url, "INSERT INTO wide SELECT g, repeat(md5(g::text), 6400) FROM generate_series(1, 20) g")
    txns = transactions(capture, None, 1, timeout=60)
    assert_parted_by_bytes(txns, rows=20, width=204_800, limit=1 << 20)
    capture.close()


# --------------------------------------------------------------------------- gaps
def test_a_dropped_slot_asks_for_a_resync(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE gone (id int PRIMARY KEY)")
    capture = capture_for(pg_url, "gone", "gone")
    capture.create_slot(export_snapshot=False)
    stream = capture.stream(None)
    assert isinstance(next(stream), Idle)  # streaming
    pid = query(pg_url, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'conveyor_gone'")[0][0]
    started = time.monotonic()
    execute(pg_url, "SELECT pg_terminate_backend(%s, 5000)", (pid,))
    execute(pg_url, "SELECT pg_drop_replication_slot('conveyor_gone')")
    # the stream notices; a retry (the runner's, on a transient error) finds the slot gone
    with pytest.raises((NeedsResync, TransientError)) as caught:
        for _ in stream:
            pass
    if not isinstance(caught.value, NeedsResync):
        with pytest.raises(NeedsResync):
            next(capture.stream(None))
    assert time.monotonic() - started < 30
    with pytest.raises(NeedsResync, match=r"^NEEDS_RESYNC: replication slot conveyor_gone does not exist.*lost"):
        next(capture.stream(parse_lsn("0/1000000")))
    capture.close()


def test_a_silent_server_is_a_dead_connection(pg_url: str) -> None:
    """A walsender that stops answering (frozen here with SIGSTOP, like a host gone without a FIN):
    status updates ask for answers, and silence for silence_timeout is a TransientError."""
    execute(pg_url, "CREATE TABLE quiet (id int PRIMARY KEY)")
    capture = PostgresCapture(config(pg_url), "quiet", tables(pg_url, "quiet"), idle_seconds=IDLE, silence_timeout=2)
    capture.create_slot(export_snapshot=False)
    stream = capture.stream(None)
    idles = 0
    for event in stream:  # a healthy idle stream outlives its silence timeout: the server answers
        idles += isinstance(event, Idle)
        if idles * IDLE > 2.6:
            break
    pid = query(pg_url, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'conveyor_quiet'")[0][0]
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="silent for"):
            for _ in stream:
                pass
        assert time.monotonic() - started < 5
    finally:
        os.kill(pid, signal.SIGCONT)
    capture.close()


def test_an_invalidated_slot_asks_for_a_resync(pg_url: str, pg_server: PostgresServer) -> None:
    """max_slot_wal_keep_size lets the server remove WAL a slot still needs; the slot is then lost."""
    execute(pg_url, "CREATE TABLE churn (id int PRIMARY KEY, v text)")
    capture = capture_for(pg_url, "lost", "churn")
    capture.create_slot(export_snapshot=False)
    with pg_server._admin() as admin:
        admin.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        admin.execute("SELECT pg_reload_conf()")
        try:
            for _ in range(10):
                execute(pg_url, "INSERT INTO churn SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g")
                execute(pg_url, "DELETE FROM churn")
                admin.execute("SELECT pg_switch_wal()")
                admin.execute("CHECKPOINT")
                status = capture.slot_status()
                assert status is not None
                if status.wal_status == "lost":
                    break
            assert status is not None and status.wal_status == "lost", status
        finally:
            admin.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            admin.execute("SELECT pg_reload_conf()")
    with pytest.raises(NeedsResync, match=r"invalidated.*lost"):
        next(capture.stream(None))
    capture.close()


# --------------------------------------------------------------------------- pre-flight
class ReplicaWalServer(PostgresServer):
    """A server with wal_level = replica (the command line wins over postgresql.conf)."""

    def _server_argv(self) -> list[str]:
        return [*super()._server_argv(), "-c", "wal_level=replica"]


@pytest.fixture(scope="module")
def replica_server() -> Iterator[PostgresServer]:
    server = ReplicaWalServer.launch()
    try:
        yield server
    finally:
        server.destroy()


def test_wal_level_replica_is_refused(replica_server: PostgresServer) -> None:
    url = replica_server.create_database(unique_db_name("wal_level"))
    execute(url, "CREATE TABLE t (id int PRIMARY KEY)")
    capture = capture_for(url, "wal", "t")
    with pytest.raises(UserActionError, match=r"wal_level is replica .*ALTER SYSTEM SET wal_level = logical.*restart"):
        capture.check()
    with pytest.raises(UserActionError, match="wal_level"):
        capture.create_slot()
    capture.close()


def test_privileges_are_named_with_the_fix(pg_url: str, pg_server: PostgresServer) -> None:
    execute(pg_url, "CREATE TABLE secret (id int PRIMARY KEY)")
    limited = capture_for(pg_url, "priv", "secret", user="limited", password="secret")
    with pytest.raises(
        UserActionError, match=r'user limited lacks the REPLICATION attribute.*ALTER ROLE "limited" REP'
    ):
        limited.check()
    with pytest.raises(
        UserActionError, match=r'user limited may not open a replication connection.*ALTER ROLE "limited"'
    ):
        ReplicationConnection(config(pg_url, user="limited", password="secret"))
    limited.close()

    role = unique_db_name("repl", prefix="r_")
    with pg_server._admin() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'secret'")
    try:
        execute(pg_url, f"GRANT SELECT ON secret TO {role}")
        other = capture_for(pg_url, "priv", "secret", user=role, password="secret")
        with pytest.raises(
            UserActionError,
            match=rf"user {role} cannot create publication conveyor_priv \(it does not own public\.secret.*"
            r'CREATE PUBLICATION "conveyor_priv" FOR TABLE "public"\."secret"',
        ):
            other.check()
        # once the owner created it, the replication user can use it
        owner = capture_for(pg_url, "priv", "secret")
        assert owner.ensure_publication() is True
        other.check()
        other.create_slot(export_snapshot=False)
        execute(pg_url, "INSERT INTO secret VALUES (1)")
        (txn,) = transactions(other, None, 1)
        assert txn.changes[0].after == (1,)
        with pytest.raises(
            UserActionError, match=r'dropped replication slot .* DROP PUBLICATION IF EXISTS "conveyor_priv"'
        ):
            other.drop()
        assert owner.drop() == ["publication conveyor_priv"]
        other.close()
        owner.close()
    finally:
        with pg_server._admin(pg_url.rsplit("/", 1)[1]) as admin:
            with contextlib.suppress(psycopg.Error):
                admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_replication_connections_use_tls_and_hide_passwords(pg_url: str, pg_server: PostgresServer) -> None:
    cfg = config(pg_url, sslmode="verify-full", sslrootcert=str(pg_server.ca_file))
    with ReplicationConnection(cfg) as repl:
        assert repl.pgconn.ssl_in_use
        _, timeline, position, database = repl.identify_system()
        assert timeline >= 1 and position > 0 and database == cfg.database
        assert repl.execute("SHOW TimeZone").get_value(0, 0) == b"UTC"
        assert repl.execute("SHOW IntervalStyle").get_value(0, 0) == b"postgres"
    with pytest.raises(UserActionError) as caught:
        ReplicationConnection(config(pg_url, password="hunter2-wrong"))
    assert "password authentication failed" in str(caught.value) and "hunter2" not in str(caught.value)
