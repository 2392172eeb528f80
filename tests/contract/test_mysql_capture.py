"""MySQL / MariaDB change data capture against a real MariaDB: the snapshot/stream handoff, every kind
of change, values equal to the snapshot reader's, time zones, binlog rotation, big transactions,
restarts, purged binlogs, schema changes, TLS, and the pre-flight checks' messages."""

from __future__ import annotations

import contextlib
import json
import math
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from alltypes import MYSQL
from cdc_support import assert_parted_by_bytes
from servers import MariaDBServer, unique_db_name

from conveyor.convert.schema_change import RenameColumn, shape
from conveyor.endpoints.config import MySQLConfig, parse_endpoint
from conveyor.endpoints.mysql.binlog import ROTATE, BinlogStream
from conveyor.endpoints.mysql.capture import (
    BinlogPosition,
    MySQLCapture,
    NeedsResync,
    TableSchema,
    parse_ddl,
    parse_position,
    server_id_for,
)
from conveyor.endpoints.mysql.ddl import (
    Add,
    Drop,
    PrimaryKey,
    Redefine,
    SetDefault,
    Unfollowable,
    column_changes,
)
from conveyor.endpoints.mysql.engine import ENGINE
from conveyor.endpoints.mysql.history import history_from_json, history_json
from conveyor.endpoints.mysql.snapshot import join
from conveyor.errors import TerminalError, TransientError, UserActionError
from conveyor.model.changes import STATEMENT_LOGGED, Idle, Op, SchemaChanged, Transaction
from conveyor.model.rows import Row
from conveyor.model.schema import Table, TableId
from conveyor.model.segments import Segment

IDLE = 0.2  # seconds before stream() yields Idle: keeps the tests quick


# --------------------------------------------------------------------------- helpers
def config(url: str, **fields: Any) -> MySQLConfig:
    cfg = parse_endpoint(url, "endpoint")
    assert isinstance(cfg, MySQLConfig)
    return MySQLConfig.model_validate({**cfg.model_dump(), **fields})


def database_of(url: str) -> str:
    return config(url).database


def connect(url: str, **kwargs: Any) -> Any:
    cfg = config(url)
    password = cfg.password.get_secret_value() if cfg.password else ""
    return pymysql.connect(
        host=cfg.host,
        port=cfg.port,
        user=cfg.user,
        password=password,
        database=cfg.database,
        autocommit=True,
        charset="utf8mb4",
        **kwargs,
    )


def execute(url: str, *statements: str, params: Any = None) -> None:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql, params)
    finally:
        conn.close()


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def tables(url: str, *names: str) -> list[Table]:
    intro = ENGINE.open_introspector(config(url))
    try:
        return [intro.table(TableId(database_of(url), n)) for n in names]
    finally:
        intro.close()


def capture_for(url: str, *names: str, **fields: Any) -> MySQLCapture:
    task = f"{database_of(url)}-{'-'.join(names)}"
    return MySQLCapture(config(url, **fields), task, tables(url, *names), idle_seconds=IDLE)


def until_idle(stream: Iterator[Any], count: int = 1, timeout: float = 20.0) -> list[Any]:
    """Events up to the first Idle after ``count`` transactions or schema changes (or the first
    Idle after 2 s when none come)."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    for event in stream:
        if isinstance(event, Idle):
            if len(out) >= count or (not out and time.monotonic() - started > 2):
                return out
        else:
            out.append(event)
        assert time.monotonic() < deadline, f"only {len(out)} of {count} events within {timeout} s"
    return out


def transactions(events: list[Any]) -> list[Transaction]:
    return [e for e in events if isinstance(e, Transaction)]


def snapshot_rows(url: str, table: Table) -> list[Row]:
    reader = join(config(url))
    try:
        return [r for b in reader.read(table, Segment(table.id, 0), 1000) for r in b.rows]
    finally:
        reader.close()


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type (an aware datetime with the same zone); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, datetime) and a.tzinfo != b.tzinfo:
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal):
        return str(a) == str(b)  # the same scale too
    return bool(a == b)


def assert_same_rows(expected: list[Row], got: list[Row], columns: tuple[str, ...]) -> None:
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        diffs = [(c, w, h) for c, w, h in zip(columns, want, have, strict=True) if not same(w, h)]
        assert not diffs, f"row {want[0]}: {[(c, repr(w)[:60], repr(h)[:60]) for c, w, h in diffs]}"


@contextlib.contextmanager
def global_setting(server: MariaDBServer, name: str, value: Any) -> Iterator[None]:
    """A server variable changed for the block (the server is this xdist worker's own)."""
    admin = server._admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"SELECT @@GLOBAL.{name}")
            old = cur.fetchone()[0]
            cur.execute(f"SET GLOBAL {name} = %s", (value,))
        yield
    finally:
        with admin.cursor() as cur:
            cur.execute(f"SET GLOBAL {name} = %s", (old,))
        admin.close()


# --------------------------------------------------------------------------- the handoff
def test_snapshot_and_stream_meet_exactly(mysql_url: str) -> None:
    """Rows committed before the snapshot's binlog position are in the snapshot, the others in the
    stream; none twice, none lost, while a writer commits throughout."""
    execute(mysql_url, "CREATE TABLE handoff (id int PRIMARY KEY, v varchar(20))")
    execute(mysql_url, "INSERT INTO handoff SELECT seq, 'initial' FROM seq_1_to_100")
    capture = capture_for(mysql_url, "handoff")
    capture.check()
    committed: set[int] = set(range(1, 101))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            conn = connect(mysql_url)
            key = 1000
            with conn.cursor() as cur:
                while not stop.is_set():
                    key += 1
                    cur.execute("INSERT INTO handoff VALUES (%s, 'concurrent')", (key,))
                    committed.add(key)
                    time.sleep(0.002)
            conn.close()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        snapshot, start = capture.handoff(workers=1, hold=False)
        time.sleep(0.2)  # more commits after the position, before the snapshot is read
        try:
            (table,) = capture.tables
            reader = snapshot.reader()
            snapshot_ids = [r[0] for b in reader.read(table, Segment(table.id, 0), 500) for r in b.rows]
        finally:
            snapshot.close()
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert isinstance(start, BinlogPosition) and start.gtid
    assert len(committed) > len(snapshot_ids) > 101  # the writer committed on both sides of the point

    streamed: list[int] = []
    deadline = time.monotonic() + 30
    stream = capture.stream(start)
    try:
        for event in stream:
            if isinstance(event, Transaction):
                streamed += [c.after[0] for c in event.changes if c.after is not None]
            elif isinstance(event, Idle) and set(streamed) | set(snapshot_ids) >= committed:
                break
            assert time.monotonic() < deadline, f"{len(committed - set(streamed) - set(snapshot_ids))} rows missing"
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert len(streamed) == len(set(streamed)), "a row streamed twice"
    assert not set(streamed) & set(snapshot_ids), "a row both in the snapshot and in the stream"
    assert set(streamed) | set(snapshot_ids) == committed
    capture.close()


# --------------------------------------------------------------------------- kinds of changes
def test_every_kind_of_change(mysql_url: str) -> None:
    execute(
        mysql_url,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(50), qty int)",
        "CREATE TABLE log (msg varchar(20), n int)",  # no primary key
        "CREATE TABLE other (id int PRIMARY KEY)",  # not selected
    )
    capture = capture_for(mysql_url, "items", "log")
    assert capture.check() == []
    start = capture.begin()
    conn = connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (1, 'one', 10)")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO items VALUES (2, 'two', 20), (3, 'three', 30)")
        cur.execute("UPDATE items SET qty = qty + 1 WHERE id = 2")
        cur.execute("INSERT INTO other VALUES (1)")
        cur.execute("COMMIT")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO items VALUES (9, 'rolled back', 0)")
        cur.execute("ROLLBACK")
        cur.execute("UPDATE items SET id = 4 WHERE id = 3")  # a key update
        cur.execute("DELETE FROM items WHERE id = 1")
        cur.execute("INSERT INTO other VALUES (2)")  # a transaction without selected tables
        cur.execute("INSERT INTO log VALUES ('dup', 1), ('dup', 1), ('other', NULL)")
        cur.execute("DELETE FROM log WHERE msg = 'dup' LIMIT 1")
        cur.execute("UPDATE log SET n = 2 WHERE n IS NULL")
        cur.execute("TRUNCATE TABLE log")
    conn.close()
    stream = capture.stream(start)
    txns = transactions(until_idle(stream))
    stream.close()  # type: ignore[attr-defined]
    items, log = (TableId(database_of(mysql_url), n) for n in ("items", "log"))
    got = [[(c.op, c.table.name, c.before, c.after) for c in t.changes] for t in txns]
    assert got == [
        [(Op.INSERT, "items", None, (1, "one", 10))],
        [
            (Op.INSERT, "items", None, (2, "two", 20)),
            (Op.INSERT, "items", None, (3, "three", 30)),
            (Op.UPDATE, "items", (2, "two", 20), (2, "two", 21)),
        ],
        [(Op.UPDATE, "items", (3, "three", 30), (4, "three", 30))],
        [(Op.DELETE, "items", (1, "one", 10), None)],
        [
            (Op.INSERT, "log", None, ("dup", 1)),
            (Op.INSERT, "log", None, ("dup", 1)),
            (Op.INSERT, "log", None, ("other", None)),
        ],
        [(Op.DELETE, "log", ("dup", 1), None)],
        [(Op.UPDATE, "log", ("other", None), ("other", 2))],
        [(Op.TRUNCATE, "log", None, None)],
    ]
    assert {c.table for t in txns for c in t.changes} == {items, log}
    assert all(c.columns == ("id", "name", "qty") for c in txns[0].changes)
    positions = [t.commit_position for t in txns]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for txn in txns:
        assert isinstance(txn.txid, str) and txn.txid.count("-") == 2  # a MariaDB GTID
        assert txn.commit_ts is not None and abs((datetime.now(UTC) - txn.commit_ts).total_seconds()) < 60
        assert txn.commit_position.gtid and txn.txid in txn.commit_position.gtid
    capture.close()


# --------------------------------------------------------------------------- values
EXTRA_TYPES = (
    "CREATE TABLE extra_types (id int PRIMARY KEY, d0 decimal(10,0), d5 decimal(20,5) NOT NULL DEFAULT 0, "
    "d30 decimal(30,10), t2 time(2), t4 time(4), t0 time, dt3 datetime(3), dt0 datetime, ts0 timestamp NULL, "
    "ts3 timestamp(3) NULL, mu mediumint unsigned, m mediumint, y year, b3 bit(3), "
    "l1 varchar(20) CHARACTER SET latin1, c5 char(5), c5b char(5) CHARACTER SET latin1 COLLATE latin1_bin, "
    "bin3 binary(3), tb tinyblob, tt tinytext, big bigint unsigned NOT NULL DEFAULT 0, "
    "gen int AS (id * 2) VIRTUAL, sm smallint unsigned NOT NULL DEFAULT 0, fl float NOT NULL DEFAULT 0, "
    "e enum('a','b') NOT NULL DEFAULT 'a', st set('x','y','z','w','v','u','t','s','r'), pt point, "
    "u8 varchar(300) CHARACTER SET utf8mb3, dt date, u uuid, i4 inet4, i6 inet6)"
)
EXTRA_ROWS = [
    "INSERT INTO extra_types (id) VALUES (1)",
    "INSERT INTO extra_types VALUES (2, -12345, -123456789012345.12345, 12345678901234567890.0123456789, "
    "'-00:00:00.5', '-12:34:56.1234', '838:59:59', '2024-02-29 12:34:56.789', '0000-00-00 00:00:00', "
    "'1970-01-01 00:00:01', '2038-01-19 03:14:07.999', 16777215, -8388608, 0, b'101', 'é ü ß', 'ab  ', "
    "'x ', 'a', x'00ff', 'tiny', 18446744073709551615, DEFAULT, 65535, 3.25, 'b', 'x,s,r', POINT(1, 2), "
    "REPEAT('€', 300), '2024-00-00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '0.0.0.0', '::')",
    "INSERT INTO extra_types VALUES (3, 0, 0.00001, -0.0000000001, '00:00:00.01', '23:59:59.9999', '-838:59:59', "
    "'1000-01-01 00:00:00.001', '9999-12-31 23:59:59', NULL, NULL, 0, 8388607, 2155, b'000', '', '', '', '', '', "
    "'', 0, DEFAULT, 0, -1.5, 'a', '', NULL, '', '0000-00-00', '6ba7b810-9dad-11d1-80b4-00c04fd430c8', "
    "'255.0.0.1', '1:0:2:0:3:0:4:5')",
    "INSERT INTO extra_types (id, u, i4, i6) VALUES (4, '00000000-0000-0000-0000-000000000000', '1.2.3.4', "
    "'::ffff:1.2.3.4'), (5, NULL, NULL, '::1.2.3.4'), (6, NULL, NULL, '1:0:0:2:0:0:0:3'), (7, NULL, NULL, '::100')",
]


def test_values_equal_the_snapshot_readers(mysql_url: str) -> None:
    """The all-types table of the full-load tests, and more edge cases, streamed as inserts, then as
    the before images of updates: the same tuples as the snapshot reader's, value for value."""
    execute(mysql_url, "CREATE TABLE all_types (id int PRIMARY KEY)", EXTRA_TYPES)
    capture = capture_for(mysql_url, "all_types", "extra_types")
    execute(mysql_url, "DROP TABLE all_types")
    start = capture.begin()
    MYSQL.create(mysql_url)
    execute(mysql_url, "SET SESSION sql_mode = ''", *EXTRA_ROWS)
    capture = capture_for(mysql_url, "all_types", "extra_types")
    capture.check()
    all_types, extra = capture.tables
    expected = {t.id: snapshot_rows(mysql_url, t) for t in capture.tables}
    assert len(expected[all_types.id]) == 5 and len(expected[extra.id]) == 7
    execute(mysql_url, "UPDATE all_types SET id = id + 100", "UPDATE extra_types SET id = id + 100")
    stream = capture.stream(start)
    events = until_idle(stream, count=7)  # the all-types inserts, 4 more inserts, 2 updates
    stream.close()  # type: ignore[attr-defined]
    assert not [e for e in events if isinstance(e, SchemaChanged)]  # CREATE TABLE as described
    for table in capture.tables:
        changes = [c for t in transactions(events) for c in t.changes if c.table == table.id]
        inserted = [c.after for c in changes if c.op is Op.INSERT]
        before = [c.before for c in changes if c.op is Op.UPDATE]
        assert_same_rows(expected[table.id], inserted, table.column_names)  # type: ignore[arg-type]
        assert_same_rows(expected[table.id], before, table.column_names)  # type: ignore[arg-type]
    capture.close()


def test_timestamps_are_instants_whatever_the_time_zones(mysql_url: str, mysql_server: MariaDBServer) -> None:
    """TIMESTAMP values written from sessions in different zones, under another server zone, stream
    as the same aware UTC datetimes the snapshot reader gives."""
    execute(mysql_url, "CREATE TABLE moments (id int PRIMARY KEY, ts timestamp(6) NULL, dt datetime(6))")
    capture = capture_for(mysql_url, "moments")
    start = capture.begin()
    with global_setting(mysql_server, "time_zone", "+03:00"):
        for i, zone in enumerate(["'+05:30'", "'-08:00'", "@@GLOBAL.time_zone", "'SYSTEM'"]):
            execute(
                mysql_url,
                f"SET time_zone = {zone}",
                f"INSERT INTO moments VALUES ({i}, '2024-06-01 12:00:00.123456', '2024-06-01 12:00:00.123456')",
            )
        stream = capture.stream(start)
        events = until_idle(stream)
        stream.close()  # type: ignore[attr-defined]
    (table,) = capture.tables
    expected = snapshot_rows(mysql_url, table)
    streamed = [c.after for t in transactions(events) for c in t.changes]
    assert_same_rows(expected, streamed, table.column_names)  # type: ignore[arg-type]
    instants = [row[1] for row in expected]
    assert instants[0] == datetime(2024, 6, 1, 6, 30, 0, 123456, tzinfo=UTC)
    assert instants[1] == datetime(2024, 6, 1, 20, 0, 0, 123456, tzinfo=UTC)
    assert instants[2] == datetime(2024, 6, 1, 9, 0, 0, 123456, tzinfo=UTC)  # the server's zone, +03:00
    assert instants[3] == datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)  # the host's, UTC here
    capture.close()


# --------------------------------------------------------------------------- the binlog
def test_rotation_mid_stream(mysql_url: str) -> None:
    """FLUSH BINARY LOGS between transactions (and while streaming): positions move to the next file."""
    execute(mysql_url, "CREATE TABLE spins (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "spins")
    start = capture.begin()
    execute(mysql_url, "INSERT INTO spins VALUES (1)", "FLUSH BINARY LOGS", "INSERT INTO spins VALUES (2)")
    stream = capture.stream(start)
    first = transactions(until_idle(stream))
    execute(mysql_url, "FLUSH BINARY LOGS", "INSERT INTO spins VALUES (3)")
    second = transactions(until_idle(stream))
    stream.close()  # type: ignore[attr-defined]
    txns = first + second
    assert [c.after for t in txns for c in t.changes] == [(1,), (2,), (3,)]
    files = [t.commit_position.file for t in txns]
    assert files[0] == start.file and files[0] < files[1] < files[2]
    assert txns[0].commit_position < txns[1].commit_position < txns[2].commit_position
    capture.close()


def test_a_50k_row_transaction(mysql_url: str) -> None:
    execute(mysql_url, "CREATE TABLE bulk (id int PRIMARY KEY, v varchar(40), n decimal(12,2))")
    capture = capture_for(mysql_url, "bulk")
    start = capture.begin()
    execute(mysql_url, "INSERT INTO bulk SELECT seq, MD5(seq), seq / 100 FROM seq_1_to_50000")
    started = time.monotonic()
    stream = capture.stream(start)
    (txn,) = transactions(until_idle(stream))
    stream.close()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 15
    assert len(txn.changes) == 50000
    assert txn.changes[-1].after == (50000, query(mysql_url, "SELECT MD5(50000)")[0][0], Decimal("500.00"))
    assert [c.after[0] for c in txn.changes if c.after is not None] == list(range(1, 50001))
    capture.close()


def test_a_big_transaction_comes_in_parts(mysql_url: str) -> None:
    execute(mysql_url, "CREATE TABLE parted (id int PRIMARY KEY, v int)")
    capture = capture_for(mysql_url, "parted")
    capture.part_changes = 1000
    start = capture.begin()
    execute(mysql_url, "INSERT INTO parted SELECT seq, seq FROM seq_1_to_4500")
    execute(mysql_url, "INSERT INTO parted VALUES (-1, 0)")
    stream = capture.stream(start)
    txns = transactions(until_idle(stream))
    stream.close()  # type: ignore[attr-defined]
    # parts end at row-event boundaries: at least part_changes each, then the commit with the rest
    *parts, last, single = txns
    assert len(parts) >= 2 and all(t.partial and len(t.changes) >= 1000 for t in parts)
    assert not last.partial and sum(len(t.changes) for t in [*parts, last]) == 4500
    assert all(t.commit_position is None for t in parts) and last.commit_position < single.commit_position
    assert (len(single.changes), single.partial) == (1, False)
    assert [c.after[0] for t in [*parts, last] for c in t.changes if c.after] == list(range(1, 4501))
    capture.close()


def test_a_transaction_of_wide_rows_comes_in_parts_by_bytes(mysql_url: str) -> None:
    """Few rows, many bytes: parts close at ``part_bytes`` of row images whatever their count."""
    execute(mysql_url, "CREATE TABLE wide (id int PRIMARY KEY, body longtext)")
    capture = capture_for(mysql_url, "wide")
    capture.part_changes, capture.part_bytes = 1000, 1 << 20
    start = capture.begin()
    # ~200 KB a row, one rows event each (an event holds rows up to binlog_row_event_max_size, 8 KB)
    execute(mysql_url, "INSERT INTO wide SELECT seq, REPEAT(MD5(seq), 6400) FROM seq_1_to_20")
    stream = capture.stream(start)
    txns = transactions(until_idle(stream))
    stream.close()  # type: ignore[attr-defined]
    assert_parted_by_bytes(txns, rows=20, width=204_800, limit=1 << 20)
    capture.close()


def test_a_caught_up_binlog_stream_says_so_at_once(mysql_url: str) -> None:
    """Idle follows a transaction as soon as the server has sent nothing more, not after
    ``idle_seconds``: the runner sends a lone transaction on at once (latency)."""
    execute(mysql_url, "CREATE TABLE lone (id int PRIMARY KEY)")
    capture = MySQLCapture(config(mysql_url), "lone", tables(mysql_url, "lone"), idle_seconds=60)
    stream = capture.stream(capture.begin())
    try:
        for i in (1, 2):
            execute(mysql_url, f"INSERT INTO lone VALUES ({i})")
            started = time.monotonic()
            txn = next(stream)
            assert isinstance(txn, Transaction) and txn.changes[0].after == (i,)
            idle = next(stream)
            assert isinstance(idle, Idle) and idle.position == txn.commit_position
            assert time.monotonic() - started < 10, "Idle waited for idle_seconds"
    finally:
        stream.close()  # type: ignore[attr-defined]
        capture.close()


def test_a_restart_from_a_stored_position_delivers_exactly_what_followed(mysql_url: str) -> None:
    execute(mysql_url, "CREATE TABLE steps (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "steps")
    start = capture.begin()
    for i in range(1, 4):
        execute(mysql_url, f"INSERT INTO steps VALUES ({i})")
    stream = capture.stream(start)
    txns = transactions(until_idle(stream))
    idle = next(e for e in stream if isinstance(e, Idle))
    stream.close()  # type: ignore[attr-defined]
    assert [t.changes[0].after for t in txns] == [(1,), (2,), (3,)]
    assert idle.position == txns[-1].commit_position
    stored = capture.position_json(txns[1].commit_position)
    place = {"file": start.file, "pos": txns[1].commit_position.pos, "gtid": txns[1].commit_position.gtid}
    assert {k: v for k, v in stored.items() if k != "tables"} == place
    assert [(t["name"], t["columns"]) for t in stored["tables"]["value"]] == [
        ("steps", [["id", "int(11)", False, None, False, None]])
    ]
    capture.ack(txns[1].commit_position)
    capture.close()

    execute(mysql_url, "INSERT INTO steps VALUES (4)")
    again = capture_for(mysql_url, "steps")
    restarted = again.position_from_json(stored)
    assert restarted == txns[1].commit_position
    stream = again.stream(restarted)
    assert [t.changes[0].after for t in transactions(until_idle(stream))] == [(3,), (4,)]
    stream.close()  # type: ignore[attr-defined]
    stream = again.stream(again.position_from_json(again.position_json(idle.position)))
    assert [t.changes[0].after for t in transactions(until_idle(stream))] == [(4,)]
    stream.close()  # type: ignore[attr-defined]
    # a user's CdcStartPosition
    stream = again.stream(again.parse_position(f"{restarted.file}:{restarted.pos}"))
    assert [t.changes[0].after for t in transactions(until_idle(stream))] == [(3,), (4,)]
    stream.close()  # type: ignore[attr-defined]
    again.close()


def test_positions_parse_order_and_measure(mysql_url: str) -> None:
    assert parse_position(" mysql-bin.000003:4567 ") == BinlogPosition("mysql-bin.000003", 4567)
    for bad in ("mysql-bin.000003", "4567", "mysql-bin.000003:x", "a:b:1", "mysql-bin.000003:2"):
        with pytest.raises(UserActionError, match=r"file:offset, e\.g\. mysql-bin\.000003:4567"):
            parse_position(bad)
    assert BinlogPosition("mysql-bin.999999", 9) < BinlogPosition("mysql-bin.1000000", 4)
    assert BinlogPosition("b.000001", 5, "0-1-2") == BinlogPosition("b.000001", 5)
    assert server_id_for("a") == server_id_for("a") != server_id_for("b")
    execute(mysql_url, "CREATE TABLE sized (id int PRIMARY KEY, v text)")
    capture = capture_for(mysql_url, "sized")
    start = capture.begin()
    execute(mysql_url, "INSERT INTO sized SELECT seq, REPEAT('x', 1000) FROM seq_1_to_100")
    lag = capture.lag_bytes(start)
    assert lag is not None and 100_000 < lag < 200_000
    assert capture.lag_bytes(BinlogPosition("gone.000001", 4)) is None
    clock, end = capture.clock()
    assert clock.tzinfo is UTC and abs((datetime.now(UTC) - clock).total_seconds()) < 60
    assert end >= start and capture.lag_bytes(end) == 0
    assert capture.drop() == []
    capture.close()


def test_a_purged_binlog_asks_for_a_resync(mysql_url: str) -> None:
    execute(mysql_url, "CREATE TABLE gone (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "gone")
    start = capture.begin()
    execute(mysql_url, "INSERT INTO gone VALUES (1)", "FLUSH BINARY LOGS", "INSERT INTO gone VALUES (2)")
    newest = query(mysql_url, "SHOW MASTER STATUS")[0][0]
    # the server keeps files a dump thread reads; those of closed streams end at their next heartbeat
    for (thread,) in query(mysql_url, "SELECT id FROM information_schema.PROCESSLIST WHERE command = 'Binlog Dump'"):
        with contextlib.suppress(pymysql.err.MySQLError):
            execute(mysql_url, f"KILL {int(thread)}")
    deadline = time.monotonic() + 10
    while query(mysql_url, "SHOW BINARY LOGS")[0][0] != newest:  # and until InnoDB's binlog checkpoint passes
        assert time.monotonic() < deadline, "PURGE BINARY LOGS kept the older files"
        execute(mysql_url, f"PURGE BINARY LOGS TO '{newest}'")
        time.sleep(0.2)
    with pytest.raises(NeedsResync, match=rf"^NEEDS_RESYNC: binlog file {start.file} is no longer on .*purged"):
        next(capture.stream(start))
    with pytest.raises(NeedsResync, match="past the end of binlog file"):
        next(capture.stream(BinlogPosition(newest, 1 << 30)))
    number = int(newest.rsplit(".", 1)[1]) + 5
    with pytest.raises(NeedsResync, match="restored from a backup or is another server"):
        next(capture.stream(BinlogPosition(f"mysql-bin.{number:06d}", 4)))
    capture.close()


def test_a_silent_server_is_a_dead_connection(mysql_url: str) -> None:
    """No event and no heartbeat for silence_timeout seconds: TransientError. A healthy idle stream
    outlives its silence timeout (heartbeats), a stream whose socket stops delivering does not."""
    execute(mysql_url, "CREATE TABLE quiet (id int PRIMARY KEY)")
    capture = MySQLCapture(
        config(mysql_url), "quiet", tables(mysql_url, "quiet"), idle_seconds=IDLE, silence_timeout=1.5
    )
    stream = capture.stream(capture.begin())
    idles = 0
    for event in stream:
        idles += isinstance(event, Idle)
        if idles * IDLE > 2.5:
            break
    started = time.monotonic()

    # the server's heartbeats are what kept it alive; a dropped link delivers nothing: recv times out
    def silent(self: BinlogStream, timeout: float) -> bool:
        time.sleep(min(timeout, 0.1))
        return False

    with pytest.MonkeyPatch.context() as patch, pytest.raises(TransientError, match="silent for"):
        patch.setattr(BinlogStream, "_fill", silent)
        for _ in stream:
            pass
    assert time.monotonic() - started < 4
    capture.close()


def test_a_server_restart_is_transient(mysql_url: str, mysql_server: MariaDBServer) -> None:
    """The stream breaks with TransientError; after the restart it continues from the stored position."""
    execute(mysql_url, "CREATE TABLE bounce (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "bounce")
    start = capture.begin()
    execute(mysql_url, "INSERT INTO bounce VALUES (1)")
    stream = capture.stream(start)
    (first,) = transactions(until_idle(stream))
    mysql_server.stop()
    try:
        with pytest.raises(TransientError, match=r"binlog|lost the connection|shutting down"):
            for _ in stream:
                pass
    finally:
        mysql_server.start()
    execute(mysql_url, "INSERT INTO bounce VALUES (2)")
    stream = capture.stream(first.commit_position)
    assert [c.after for t in transactions(until_idle(stream)) for c in t.changes] == [(2,)]
    stream.close()  # type: ignore[attr-defined]
    capture.close()


# --------------------------------------------------------------------------- schema changes
def test_schema_changes_mid_stream(mysql_url: str) -> None:
    execute(mysql_url, "CREATE TABLE evolving (id int PRIMARY KEY, v varchar(10), note text)")
    capture = capture_for(mysql_url, "evolving")
    start = capture.begin()
    # a row and a schema change before the stream starts: the row decodes as it was written
    execute(
        mysql_url, "INSERT INTO evolving VALUES (1, 'a', 'n1')", "ALTER TABLE evolving ADD COLUMN email varchar(50)"
    )
    execute(mysql_url, "INSERT INTO evolving VALUES (2, 'b', 'n2', 'b@x')")
    stream = capture.stream(start)
    events = until_idle(stream)
    steps = [
        ("ALTER TABLE evolving DROP COLUMN note", "INSERT INTO evolving VALUES (3, 'c', 'c@x')"),
        ("ALTER TABLE evolving RENAME COLUMN v TO val", "INSERT INTO evolving VALUES (4, 'd', 'd@x')"),
        (
            "ALTER TABLE evolving MODIFY id bigint, MODIFY val varchar(100)",
            "INSERT INTO evolving VALUES (5, 'e', 'e@x')",
        ),
        ("ALTER TABLE evolving ADD INDEX (val)", "UPDATE evolving SET val = 'E' WHERE id = 5"),
    ]
    for ddl, dml in steps:
        execute(mysql_url, ddl, dml)
        events += until_idle(stream)
    stream.close()  # type: ignore[attr-defined]
    got = [
        (e.description, [c.name for c in e.columns], e.ddl)
        if isinstance(e, SchemaChanged)
        else (e.changes[0].columns, e.changes[0].after)
        for e in events
    ]
    assert got == [
        (("id", "v", "note"), (1, "a", "n1")),
        (
            "added email (varchar(50))",
            ["id", "v", "note", "email"],
            "ALTER TABLE evolving ADD COLUMN email varchar(50)",
        ),
        (("id", "v", "note", "email"), (2, "b", "n2", "b@x")),
        ("dropped note", ["id", "v", "email"], "ALTER TABLE evolving DROP COLUMN note"),
        (("id", "v", "email"), (3, "c", "c@x")),
        ("renamed v to val", ["id", "val", "email"], "ALTER TABLE evolving RENAME COLUMN v TO val"),
        (("id", "val", "email"), (4, "d", "d@x")),
        (
            "changed id from int(11) to bigint(20), changed val from varchar(10) to varchar(100)",
            ["id", "val", "email"],
            "ALTER TABLE evolving MODIFY id bigint, MODIFY val varchar(100)",
        ),
        (("id", "val", "email"), (5, "e", "e@x")),
        (("id", "val", "email"), (5, "E", "e@x")),  # an index changes no column: no SchemaChanged
    ]
    schema_events = [e for e in events if isinstance(e, SchemaChanged)]
    assert all(e.table == e.old_table == capture.tables[0].id for e in schema_events)
    capture.close()


def test_a_restart_before_an_unseen_schema_change_is_loud(mysql_url: str) -> None:
    """Rows written before a schema change that the capture's definitions already include cannot be
    decoded: NeedsResync, never values under the wrong columns."""
    execute(mysql_url, "CREATE TABLE late (id int PRIMARY KEY, v varchar(10))")
    start = capture_for(mysql_url, "late").begin()
    execute(mysql_url, "INSERT INTO late VALUES (1, 'a')", "ALTER TABLE late ADD COLUMN n int")
    capture = capture_for(mysql_url, "late")  # described after the change
    with pytest.raises(NeedsResync, match=r"late have 2 columns, the table has 3 .*reload the table"):
        for _ in capture.stream(start):
            pass
    capture.close()


def test_a_restart_decodes_by_the_definitions_stored_with_its_position(mysql_url: str) -> None:
    """The task stops; rows, ALTERs and more rows are written while it is stopped. A restart from the
    stored position (through JSON, as the target keeps it) decodes each row by the definition it was
    written under, not by the catalog's, and so does a restart from a place between the ALTERs."""
    execute(mysql_url, "CREATE TABLE kept (id int PRIMARY KEY, v varchar(10), n int)")
    capture = capture_for(mysql_url, "kept")
    stream = capture.stream(capture.begin())
    execute(mysql_url, "INSERT INTO kept VALUES (1, 'a', 10)")
    (first,) = transactions(until_idle(stream))
    stream.close()  # type: ignore[attr-defined]
    stored = json.loads(json.dumps(capture.position_json(first.commit_position)))
    capture.close()
    execute(
        mysql_url,
        "INSERT INTO kept VALUES (2, 'b', 20)",
        "UPDATE kept SET n = 11 WHERE id = 1",
        "ALTER TABLE kept ADD COLUMN email varchar(50) AFTER id, MODIFY n bigint",
        "INSERT INTO kept VALUES (3, 'c@x', 'c', 3000000000)",
        "ALTER TABLE kept RENAME COLUMN v TO label",
        "INSERT INTO kept VALUES (4, 'd@x', 'd', 40)",
    )
    again = capture_for(mysql_url, "kept")  # described as the catalog has it now
    stream = again.stream(again.position_from_json(stored))
    events = until_idle(stream, count=6)
    idle = next(e for e in stream if isinstance(e, Idle))
    stream.close()  # type: ignore[attr-defined]

    def described(event: Any) -> Any:
        if isinstance(event, SchemaChanged):
            return event.description, tuple(c.name for c in event.columns)
        change = event.changes[0]
        return change.columns, change.before, change.after

    assert [described(e) for e in events] == [
        (("id", "v", "n"), None, (2, "b", 20)),
        (("id", "v", "n"), (1, "a", 10), (1, "a", 11)),
        ("added email (varchar(50)), changed n from int(11) to bigint", ("id", "email", "v", "n")),
        (("id", "email", "v", "n"), None, (3, "c@x", "c", 3000000000)),
        ("renamed v to label", ("id", "email", "label", "n")),
        (("id", "email", "label", "n"), None, (4, "d@x", "d", 40)),
    ]
    (kept,) = again.position_json(idle.position)["tables"]["value"]
    assert [c[:2] for c in kept["columns"]] == [
        ["id", "int(11)"],
        ["email", "varchar(50)"],
        ["label", "varchar(10)"],
        ["n", "bigint(20)"],
    ]
    # from between the two ALTERs, with the catalog two statements on
    between = json.loads(json.dumps(again.position_json(transactions(events)[2].commit_position)))
    stream = again.stream(again.position_from_json(between))
    assert [described(e) for e in until_idle(stream, count=2)] == [
        ("renamed v to label", ("id", "email", "label", "n")),
        (("id", "email", "label", "n"), None, (4, "d@x", "d", 40)),
    ]
    stream.close()  # type: ignore[attr-defined]
    again.close()


def test_stored_definitions_read_back_as_the_catalog_gave_them(mysql_url: str) -> None:
    """Every type, character set and generated column survives the JSON."""
    MYSQL.create(mysql_url)
    execute(
        mysql_url, "CREATE TABLE gen (id int, g int AS (id * 2) VIRTUAL, v varchar(5) CHARACTER SET latin1, j json)"
    )
    capture = capture_for(mysql_url, "all_types", "gen")
    schemas = {t.id: capture.refresh(t.id) for t in capture.tables}
    assert None in schemas[capture.tables[1].id].targets  # type: ignore[union-attr]  # the generated column
    back = history_from_json(json.loads(json.dumps(history_json(schemas).tables)))  # type: ignore[arg-type]
    assert list(back) == list(schemas)
    for table_id, schema in schemas.items():
        assert schema is not None
        assert back[table_id].targets == schema.targets and back[table_id].table.columns == schema.table.columns
        assert back[table_id].table.id == table_id and back[table_id].table.primary_key == schema.table.primary_key
    with pytest.raises(TerminalError, match="cannot be read"):
        history_from_json([{"schema": "s", "name": "t", "columns": [["id"]]}])
    capture.close()


def test_ddl_statements_name_their_tables() -> None:
    assert parse_ddl("ALTER TABLE `a``b` ADD x int", "db") == parse_ddl("alter online table db.`a``b` add x int", "x")
    ddl = parse_ddl("/* comment */ RENAME TABLE a TO b, other.c TO d", "db")
    assert ddl is not None and ddl.kind == "rename"
    assert ddl.tables == ((TableId("db", "a"), TableId("db", "b")), (TableId("other", "c"), TableId("db", "d")))
    ddl = parse_ddl("ALTER TABLE t RENAME COLUMN a TO b, RENAME TO u", "db")
    assert ddl is not None and ddl.tables == ((TableId("db", "t"), TableId("db", "u")),)
    ddl = parse_ddl("DROP TABLE IF EXISTS `t1`,`x`.`t2` /* generated by server */", "db")
    assert (
        ddl is not None
        and ddl.kind == "drop"
        and [t for t, _ in ddl.tables] == [TableId("db", "t1"), TableId("x", "t2")]
    )
    ddl = parse_ddl("TRUNCATE t", "db")
    assert ddl is not None and ddl.kind == "truncate"
    assert parse_ddl("CREATE INDEX i ON t (a)", "db") is None
    assert parse_ddl("INSERT INTO t VALUES (1)", "db") is None


def test_renamed_and_dropped_tables(mysql_url: str) -> None:
    execute(mysql_url, "CREATE TABLE r1 (id int PRIMARY KEY)", "CREATE TABLE d1 (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "r1", "d1")
    stream = capture.stream(capture.begin())
    until_idle(stream)
    execute(mysql_url, "RENAME TABLE r1 TO r2", "INSERT INTO r2 VALUES (1)", "DROP TABLE d1")
    events = until_idle(stream)
    stream.close()  # type: ignore[attr-defined]
    db = database_of(mysql_url)
    renamed, txn, dropped = events
    assert isinstance(renamed, SchemaChanged) and renamed.old_table == TableId(db, "r1")
    assert renamed.table == TableId(db, "r2") and renamed.description == "renamed to " + str(TableId(db, "r2"))
    assert isinstance(txn, Transaction) and txn.changes[0].table == TableId(db, "r2")
    assert isinstance(dropped, SchemaChanged) and dropped.table == TableId(db, "d1") and dropped.columns == ()
    capture.close()


def test_statement_logged_changes_are_announced_before_the_transaction(mysql_url: str) -> None:
    """Their rows are not in the binlog: the table is named (``STATEMENT_LOGGED``) where the statement is,
    before anything after it; changes logged as rows come as before."""
    execute(mysql_url, "CREATE TABLE stmt (id int PRIMARY KEY)", "CREATE TABLE rows_kept (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "stmt", "rows_kept")
    stream = capture.stream(capture.begin())
    until_idle(stream)
    execute(mysql_url, "SET SESSION binlog_format = 'STATEMENT'", "INSERT INTO stmt VALUES (1)")
    execute(mysql_url, "BEGIN", "INSERT INTO rows_kept VALUES (1)", "INSERT INTO stmt VALUES (2)", "COMMIT")
    events = until_idle(stream)
    stream.close()  # type: ignore[attr-defined]
    capture.close()
    db = database_of(mysql_url)
    logged, after = events
    assert isinstance(logged, SchemaChanged) and logged.table == TableId(db, "stmt")
    assert logged.description.startswith(STATEMENT_LOGGED) and "binlog_format" in logged.description
    assert isinstance(after, Transaction) and [c.table.name for c in after.changes] == ["rows_kept", "stmt"]


def test_xa_transactions_are_refused_on_selected_tables(mysql_url: str) -> None:
    """XA PREPARE logs a transaction whose outcome comes later: refused, never delivered early or lost;
    XA on other tables passes by."""
    execute(mysql_url, "CREATE TABLE xa_kept (id int PRIMARY KEY)", "CREATE TABLE xa_other (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "xa_kept")
    start = capture.begin()
    execute(
        mysql_url, "XA START 'a'", "INSERT INTO xa_other VALUES (1)", "XA END 'a'", "XA PREPARE 'a'", "XA COMMIT 'a'"
    )
    execute(mysql_url, "INSERT INTO xa_kept VALUES (1)")
    stream = capture.stream(start)
    assert [c.after for t in transactions(until_idle(stream)) for c in t.changes] == [(1,)]
    stream.close()  # type: ignore[attr-defined]
    execute(
        mysql_url, "XA START 'b'", "INSERT INTO xa_kept VALUES (2)", "XA END 'b'", "XA PREPARE 'b'", "XA COMMIT 'b'"
    )
    with pytest.raises(TerminalError, match=r"XA transaction changed .*xa_kept"):
        for _ in capture.stream(start):
            pass
    capture.close()


def test_compressed_binlog_events(mysql_url: str, mysql_server: MariaDBServer) -> None:
    """MariaDB's log_bin_compress: row and query events arrive zlib-compressed."""
    execute(mysql_url, "CREATE TABLE squeezed (id int PRIMARY KEY, v text)")
    capture = capture_for(mysql_url, "squeezed")
    start = capture.begin()
    with global_setting(mysql_server, "log_bin_compress", 1):
        execute(mysql_url, "INSERT INTO squeezed SELECT seq, REPEAT('z', 500) FROM seq_1_to_50")
        execute(mysql_url, "ALTER TABLE squeezed ADD COLUMN w int" + " " * 300)
        execute(mysql_url, "INSERT INTO squeezed VALUES (51, REPEAT('y', 400), 7)")
    stream = capture.stream(start)
    events = until_idle(stream)
    stream.close()  # type: ignore[attr-defined]
    first, changed, last = events
    assert isinstance(first, Transaction) and [c.after for c in first.changes][49] == (50, "z" * 500)
    assert isinstance(changed, SchemaChanged) and changed.description == "added w (int(11))"
    assert isinstance(last, Transaction) and last.changes[0].after == (51, "y" * 400, 7)
    capture.close()


# --------------------------------------------------------------------------- pre-flight
class NoBinlogServer(MariaDBServer):
    """A MariaDB with binary logging off (the later option wins)."""

    def _server_argv(self) -> list[str]:
        return [*super()._server_argv(), "--skip-log-bin"]


@pytest.fixture(scope="module")
def no_binlog_server() -> Iterator[MariaDBServer]:
    server = NoBinlogServer.launch()
    try:
        yield server
    finally:
        server.destroy()


def test_binlog_off_is_refused(no_binlog_server: MariaDBServer) -> None:
    url = no_binlog_server.create_database(unique_db_name("no_binlog"))
    execute(url, "CREATE TABLE t (id int PRIMARY KEY)")
    capture = capture_for(url, "t")
    with pytest.raises(UserActionError, match=r"binary logging is off .*log_bin = mysql-bin.*restart"):
        capture.check()
    with pytest.raises(UserActionError, match="binary logging is off"):
        capture.begin()
    capture.close()


@pytest.mark.parametrize(
    ("name", "value", "fix"),
    [
        ("binlog_format", "STATEMENT", r"binlog_format is STATEMENT .*SET GLOBAL binlog_format = 'ROW'"),
        ("binlog_format", "MIXED", r"binlog_format is MIXED .*SET GLOBAL binlog_format = 'ROW'"),
        ("binlog_row_image", "MINIMAL", r"binlog_row_image is MINIMAL .*SET GLOBAL binlog_row_image = 'FULL'"),
    ],
)
def test_server_settings_are_named_with_the_fix(
    mysql_url: str, mysql_server: MariaDBServer, name: str, value: Any, fix: str
) -> None:
    execute(mysql_url, "CREATE TABLE t (id int PRIMARY KEY)")
    capture = capture_for(mysql_url, "t")
    with global_setting(mysql_server, name, value), pytest.raises(UserActionError, match=fix):
        capture.check()
    capture.close()


def test_privileges_are_named_with_the_fix(mysql_url: str, mysql_server: MariaDBServer) -> None:
    """Each missing privilege in turn, as the check meets them; SUPER is never needed."""
    db = database_of(mysql_url)
    user = unique_db_name("cdc", prefix="u")[:32]
    execute(mysql_url, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)", "CREATE TABLE other (id int)")
    admin = mysql_server._admin()
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY 'pw'", (user,))
            cur.execute(f"GRANT SELECT ON `{db}`.* TO '{user}'@'%'")
        url = mysql_server.url(db, user=user, password="pw")
        capture = MySQLCapture(config(url), "privileges", tables(mysql_url, "t"), idle_seconds=IDLE)
        with pytest.raises(UserActionError, match=rf"GRANT BINLOG MONITOR ON \*\.\* TO '{user}'@'%'"):
            capture.check()
        with admin.cursor() as cur:
            cur.execute(f"GRANT BINLOG MONITOR ON *.* TO '{user}'@'%'")
        capture.close()
        with pytest.raises(UserActionError, match=rf"GRANT REPLICATION SLAVE ON \*\.\* TO '{user}'@'%'"):
            capture.check()
        with admin.cursor() as cur:
            cur.execute(f"GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%'")
            cur.execute(f"REVOKE SELECT ON `{db}`.* FROM '{user}'@'%'")
            cur.execute(f"GRANT SELECT ON `{db}`.`other` TO '{user}'@'%'")
        capture.close()
        with pytest.raises(UserActionError, match=r"GRANT SELECT ON"):
            capture.check()
        with admin.cursor() as cur:
            cur.execute(f"GRANT SELECT ON `{db}`.* TO '{user}'@'%'")
        capture.close()
        assert capture.check() == []
        with pytest.raises(
            UserActionError, match=rf"FLUSH TABLES WITH READ LOCK.*GRANT RELOAD ON \*\.\* TO '{user}'@'%'"
        ):
            capture.handoff(workers=1, hold=False)
        with admin.cursor() as cur:
            cur.execute(f"GRANT RELOAD ON *.* TO '{user}'@'%'")
        snapshot, start = capture.handoff(workers=1, hold=False)
        snapshot.close()
        execute(mysql_url, "INSERT INTO t VALUES (2)")
        stream = capture.stream(start)
        assert [c.after for t in transactions(until_idle(stream)) for c in t.changes] == [(2,)]
        stream.close()  # type: ignore[attr-defined]
        capture.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        admin.close()


def test_unsupported_character_sets_are_named(mysql_url: str) -> None:
    execute(mysql_url, "CREATE TABLE armenian (id int PRIMARY KEY, v varchar(10) CHARACTER SET armscii8)")
    capture = capture_for(mysql_url, "armenian")
    with pytest.raises(UserActionError, match=r"column v of .*armenian has character set armscii8.*utf8mb4"):
        capture.check()
    capture.close()


# --------------------------------------------------------------------------- TLS and secrets
def test_the_binlog_connection_uses_tls_and_hides_passwords(mysql_url: str, mysql_server: MariaDBServer) -> None:
    cfg = config(mysql_url, ssl_mode="VERIFY_IDENTITY", ssl_ca=str(mysql_server.ca_file))
    execute(mysql_url, "CREATE TABLE secure (id int PRIMARY KEY)")
    capture = MySQLCapture(cfg, "tls", tables(mysql_url, "secure"), idle_seconds=IDLE)
    start = capture.begin()
    stream = BinlogStream(cfg, server_id_for("tls-probe"), start.file, start.pos)
    try:
        assert isinstance(stream.sock, ssl.SSLSocket) and stream.sock.version() is not None
        event = stream.read(5)
        assert event is not None and event.type == ROTATE
    finally:
        stream.close()
    execute(mysql_url, "INSERT INTO secure VALUES (1)")
    events = capture.stream(start)
    assert [c.after for t in transactions(until_idle(events)) for c in t.changes] == [(1,)]
    events.close()  # type: ignore[attr-defined]
    capture.close()
    wrong = MySQLCapture(config(mysql_url, password="hunter2-wrong"), "tls", capture.tables, idle_seconds=IDLE)
    with pytest.raises(UserActionError) as caught:
        next(wrong.stream(start))
    assert "access denied" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(UserActionError) as caught:
        wrong.check()
    assert "hunter2" not in str(caught.value)


# --------------------------------------------------------------------------- schema history
def test_alters_faster_than_the_stream_decode_each_row_by_its_own_definition(mysql_url: str) -> None:
    """A migration script's ALTERs back to back, streamed after the fact in one go: the catalog holds
    only the last definition, so each SchemaChanged carries the columns right after its statement and
    each row decodes by the definition it was written under (names, order, types, character set)."""
    execute(mysql_url, "CREATE TABLE script (id int PRIMARY KEY, v varchar(10), n int)")
    capture = capture_for(mysql_url, "script")
    start = capture.begin()
    execute(
        mysql_url,
        "INSERT INTO script VALUES (1, 'a', 10)",
        "ALTER TABLE script ADD COLUMN email varchar(50) AFTER id",
        "INSERT INTO script VALUES (2, 'b@x', 'b', 20)",
        "ALTER TABLE script RENAME COLUMN v TO val",
        "INSERT INTO script VALUES (3, 'c@x', 'c', 30)",
        "ALTER TABLE script MODIFY n bigint unsigned NOT NULL FIRST",
        "INSERT INTO script VALUES (40, 4, 'd@x', 'd')",
        "ALTER TABLE script MODIFY val varchar(10) CHARACTER SET latin1",
        "INSERT INTO script VALUES (50, 5, 'e@x', 'café')",
        "ALTER TABLE script DROP COLUMN email, CHANGE val label varchar(20), "
        "ADD (price decimal(14,2), tag enum('x','y'))",
        "INSERT INTO script VALUES (60, 6, 'f', 1.25, 'y')",
        "ALTER TABLE script ADD COLUMN code varchar(5) FIRST, ADD COLUMN mid int AFTER id",
        "INSERT INTO script VALUES ('g', 70, 7, 700, 'g', 2.5, 'x')",
    )
    stream = capture.stream(start)
    events = until_idle(stream, count=12)
    stream.close()  # type: ignore[attr-defined]
    got = [
        (e.description, [c.name for c in e.columns]) if isinstance(e, SchemaChanged) else e.changes[0].after
        for e in events
    ]
    assert got == [
        (1, "a", 10),
        ("added email (varchar(50))", ["id", "email", "v", "n"]),
        (2, "b@x", "b", 20),
        ("renamed v to val", ["id", "email", "val", "n"]),
        (3, "c@x", "c", 30),
        ("changed n from int(11) to bigint unsigned", ["n", "id", "email", "val"]),
        (40, 4, "d@x", "d"),
        (50, 5, "e@x", "café"),  # latin1 then, utf8mb4 in the catalog now; the column list did not change
        (  # CHANGE val label varchar(20): the statement names the rename
            "renamed val to label, added price (decimal(14,2)), added tag (enum('x','y')), dropped email, "
            "changed label from varchar(10) to varchar(20)",
            ["n", "id", "label", "price", "tag"],
        ),
        (60, 6, "f", Decimal("1.25"), "y"),
        # the last statement leaves the table as the catalog has it, which spells the types as the server does
        ("added code (varchar(5)), added mid (int(11))", ["code", "n", "id", "mid", "label", "price", "tag"]),
        ("g", 70, 7, 700, "g", Decimal("2.50"), "x"),
    ]
    assert [e.changes[0].columns for e in transactions(events)][:4] == [
        ("id", "v", "n"),
        ("id", "email", "v", "n"),
        ("id", "email", "val", "n"),
        ("n", "id", "email", "val"),
    ]
    moved = [e for e in events if isinstance(e, SchemaChanged)][2].columns[0]
    assert (moved.type.bits, moved.type.unsigned, moved.nullable) == (64, True, False)
    capture.close()


def test_alter_clauses_the_history_follows() -> None:
    changes = column_changes(
        "ALTER TABLE t ADD c enum('a','b') NOT NULL DEFAULT 'a' FIRST, CHANGE COLUMN a b bigint unsigned AFTER c, "
        "MODIFY v varchar(10) CHARACTER SET latin1, RENAME COLUMN x TO y, DROP COLUMN IF EXISTS z, ADD INDEX (v), "
        "ALTER w SET DEFAULT -1.5, ADD PRIMARY KEY (y, v(3)), ALGORITHM=INPLACE, LOCK=NONE"
    )
    assert [type(c).__name__ for c in changes] == [
        "Add",
        "Redefine",
        "Redefine",
        "RenameColumn",
        "Drop",
        "SetDefault",
        "PrimaryKey",
    ]
    added, changed, modified = changes[0], changes[1], changes[2]
    assert isinstance(added, Add) and added.definition.first and added.definition.column.default == "'a'"
    assert added.definition.column.type.values == ("a", "b") and not added.definition.column.nullable
    assert isinstance(changed, Redefine) and (changed.old, changed.definition.column.name) == ("a", "b")
    assert changed.definition.after == "c" and changed.definition.column.type.native == "bigint unsigned"
    assert isinstance(modified, Redefine) and modified.definition.charset == "latin1"
    assert changes[3:] == [RenameColumn("x", "y"), Drop("z", True), SetDefault("w", "-1.5"), PrimaryKey(("y", "v"))]
    assert column_changes("RENAME TABLE t TO u") == []
    for sql, why in [
        ("ALTER TABLE t CONVERT TO CHARACTER SET latin1", "CONVERT TO"),
        ("ALTER TABLE t ADD g int AS (a + 1) VIRTUAL", "column g"),
        ("ALTER TABLE t ADD p point", "without a logical equivalent"),
        ("ALTER TABLE t ADD ts timestamp", "explicit_defaults_for_timestamp"),
        ("ALTER TABLE t ENGINE=InnoDB DEFAULT CHARSET=latin1", "CHARSET"),
        ("ALTER TABLE t ADD c int, PARTITION BY HASH(id)", "PARTITION"),
    ]:
        with pytest.raises(Unfollowable, match=why):
            column_changes(sql)


def test_a_statement_the_history_cannot_follow_falls_back_to_the_catalog(mysql_url: str) -> None:
    """Right after the statement the catalog is the table's definition; once the table changed again
    later in the binlog it is not, and the capture says which statement it could not follow."""
    execute(mysql_url, "CREATE TABLE unfollowed (id int PRIMARY KEY, v varchar(10))")
    capture = capture_for(mysql_url, "unfollowed")
    stream = capture.stream(capture.begin())
    until_idle(stream)
    execute(
        mysql_url,
        "ALTER TABLE unfollowed CONVERT TO CHARACTER SET latin1",
        "INSERT INTO unfollowed VALUES (1, 'café')",
    )
    assert [c.after for t in transactions(until_idle(stream)) for c in t.changes] == [(1, "café")]
    stream.close()  # type: ignore[attr-defined]
    start = capture.begin()
    execute(
        mysql_url,
        "ALTER TABLE unfollowed CONVERT TO CHARACTER SET utf8mb4",
        "INSERT INTO unfollowed VALUES (2, 'b')",
        "ALTER TABLE unfollowed ADD COLUMN n int",
    )
    with pytest.raises(NeedsResync, match=r"could not follow 'ALTER TABLE unfollowed CONVERT TO .*changed again later"):
        for _ in capture.stream(start):
            pass
    capture.close()


def test_the_history_agrees_with_the_catalog_statement_by_statement(mysql_url: str) -> None:
    """Each statement applied to the definition before it gives what the server made of it: columns,
    order, types, NULL, defaults (set or not), AUTO_INCREMENT and each column's character set."""
    execute(mysql_url, "CREATE TABLE agree (id int NOT NULL, v varchar(10), n int) DEFAULT CHARSET latin1")
    capture = capture_for(mysql_url, "agree")
    table_id = capture.tables[0].id
    schema = capture.refresh(table_id)

    def described(s: TableSchema) -> list[Any]:
        columns = [(c.name, shape(c.type), c.nullable, c.default is None, c.identity) for c in s.table.columns]
        return [columns, [(t.name, t.codec) if t else None for t in s.targets]]

    for sql in [
        "ALTER TABLE agree ADD PRIMARY KEY (id), MODIFY id int AUTO_INCREMENT",
        "ALTER TABLE agree ADD COLUMN IF NOT EXISTS e enum('a','b''c') NOT NULL DEFAULT 'a' FIRST, ADD t text",
        "ALTER TABLE agree ADD (d decimal(14,2) DEFAULT -1.5, f double precision, b bit(3)), DROP n",
        "ALTER TABLE agree CHANGE v Val varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin AFTER e",
        "ALTER TABLE agree MODIFY COLUMN t mediumtext, MODIFY b bit(3) NOT NULL FIRST, ADD INDEX (d)",
        "ALTER TABLE agree ALTER COLUMN d SET DEFAULT 2, ALTER Val DROP DEFAULT, RENAME COLUMN f TO g",
        "ALTER TABLE agree ADD ts timestamp(3) NULL DEFAULT NULL ON UPDATE current_timestamp(3), ENGINE=InnoDB",
        "ALTER TABLE agree ADD j json, ADD bin varbinary(8), ADD u bigint unsigned zerofill, DROP COLUMN IF EXISTS zz",
        "ALTER TABLE agree DROP PRIMARY KEY, MODIFY id bigint NOT NULL, RENAME TO agreed",
        "ALTER TABLE agreed ADD c char, ADD y year, ADD dt datetime(6), ADD s set('x','y') CHARACTER SET ascii, "
        "ADD bo boolean NOT NULL DEFAULT TRUE, ADD fl float(7,4) AFTER c",
    ]:
        assert schema is not None
        table_id = parse_ddl(sql, table_id.schema).tables[0][1]  # type: ignore[union-attr]
        followed = capture.follow(schema, column_changes(sql), table_id)
        execute(mysql_url, sql)
        schema = capture.refresh(table_id)
        assert schema is not None and described(followed) == described(schema), sql
    capture.close()


def test_system_versioned_tables_are_refused_with_the_fix(mysql_url: str) -> None:
    """Their binlog rows carry hidden row_start / row_end columns and log a DELETE as an UPDATE of history."""
    execute(mysql_url, "CREATE TABLE hist (id int PRIMARY KEY, v int) WITH SYSTEM VERSIONING")
    execute(mysql_url, "CREATE TABLE plain (id int PRIMARY KEY, v int)")
    capture = capture_for(mysql_url, "hist", "plain")
    with pytest.raises(UserActionError, match=r"hist is system-versioned: .*DROP SYSTEM VERSIONING"):
        capture.check()
    capture.close()
    capture = capture_for(mysql_url, "plain")
    capture.check()
    capture.close()


def test_rows_logged_without_every_column_suspend_their_table_only(mysql_url: str) -> None:
    """A session with binlog_row_image MINIMAL logs an update's changed columns only: that table's change
    cannot be applied, so it is named (``suspends``) and its rows left out; other tables' rows come."""
    execute(
        mysql_url, "CREATE TABLE slim (id int PRIMARY KEY, a int, b int)", "CREATE TABLE whole (id int PRIMARY KEY)"
    )
    execute(mysql_url, "INSERT INTO slim VALUES (1, 1, 1)")
    capture = capture_for(mysql_url, "slim", "whole")
    stream = capture.stream(capture.begin())
    until_idle(stream)
    execute(
        mysql_url,
        "SET SESSION binlog_row_image = 'MINIMAL'",
        "BEGIN",
        "UPDATE slim SET a = 2 WHERE id = 1",
        "INSERT INTO whole VALUES (1)",
        "COMMIT",
    )
    events = until_idle(stream)
    stream.close()  # type: ignore[attr-defined]
    capture.close()
    refused, txn = events
    assert isinstance(refused, SchemaChanged) and refused.suspends and refused.table.name == "slim"
    assert "binlog_row_image" in refused.description
    assert isinstance(txn, Transaction) and [c.table.name for c in txn.changes] == ["whole"]
