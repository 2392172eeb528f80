"""Batch apply's net UPDATEs into MySQL / MariaDB: many rows a statement (``MySQLApplier.update_rows_sql``),
writing exactly what one UPDATE a row writes, for every column type, and finding a missing row the same way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from oracle import mysql_connect
from schemas import execute_sql

from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.mysql.applier import MySQLApplier
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.endpoints.sql.changes import ChangeApplier, ChangeTarget
from conveyor.model.changes import UNCHANGED, Change, Op, Transaction
from conveyor.model.schema import Table, TableId
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

COLUMNS = (
    "id int NOT NULL, code varchar(10) NOT NULL, ti tinyint, tiu tinyint unsigned, bi bigint, biu bigint unsigned, "
    "dec65 decimal(65,30), dec12 decimal(12,2), num longtext CHARACTER SET ascii COLLATE ascii_bin, f float, "
    "dbl double, ch char(10), vc varchar(100), tx text, bn binary(4), vb varbinary(20), lb longblob, d date, "
    "tm time(6), dt datetime(6), dt0 datetime, tz datetime(6), ts timestamp(6) NULL DEFAULT NULL, y year, "
    "b1 bit(1), b64 bit(64), e enum('red','green','blue'), st set('a','b','c'), js json, flag tinyint(1), "
    "u char(36), mu uuid, PRIMARY KEY (id, code)"
)
#: columns whose source is PostgreSQL (the types a pg2mysql task writes through these natives)
PG_TYPES = {
    "num": ColumnType(L.DECIMAL, engine="postgresql"),
    "tz": ColumnType(L.TIMESTAMPTZ, engine="postgresql", precision=6),
    "flag": ColumnType(L.BOOLEAN, engine="postgresql"),
    "u": ColumnType(L.UUID, engine="postgresql"),
}
PLUS2 = timezone(timedelta(hours=2))
#: keys: (id, code); 'k' and 'K' are distinct keys under the column's binary collation
KEYS = [(i, code) for i in range(1, 7) for code in ("k", "K")]
#: full rows of new values (every non-key column, in table order), cycled over the keys
NEW_ROWS: list[tuple[Any, ...]] = [
    (None,) * 30,
    (
        -128, 0, -(2**63), 0, Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
        Decimal("-9999999999.99"), Decimal("-1.5E+40"), -3.40282e38, -1.7976931348623157e308, "", "", "",
        b"\0\0\0\0", b"", b"", date(1000, 1, 1), time(0), datetime(1000, 1, 1), datetime(2000, 1, 1, 0, 0, 1),
        datetime(1, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), 1901, "0",
        "0" * 64, "red", "", "{}", False, uuid.UUID(int=0), "00000000-0000-0000-0000-000000000000",
    ),
    (
        127, 255, 2**63 - 1, 2**64 - 1, Decimal("99999999999999999999999999999999999.999999999999999999999999999999"),
        Decimal("9999999999.99"), Decimal("12345678901234567890.123456789012345678901234567890"), 3.40282e38,
        1.7976931348623157e308, "héllo😀", "emoji 😀 𝄞 中文 'q' \\ \" %s", "long ✓ " * 2000, b"\xff\xff\xff\xff",
        bytes(range(20)), bytes(range(256)) * 300, date(9999, 12, 31), timedelta(hours=838, minutes=59, seconds=59),
        datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(9999, 12, 31, 23, 59, 59),
        datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=PLUS2),
        datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
        2155, "1", "1" * 64, "blue", "a,b,c", '{"b": 1, "a": [1, 2.5, null, "x\\u00e9"], "n": 1e400}', True,
        uuid.UUID("12345678-1234-5678-1234-567812345678"), "ffffffff-ffff-ffff-ffff-ffffffffffff",
    ),
    (
        7, 7, 7, 7, Decimal("3.141592653589793238462643383279"), Decimal("19.9"), Decimal("0.1"), 0.1,
        0.1, "ab ", "tab\there ", "line1\nline2\r\0", b"ab\0\0", b"\x00\xff", b"\x00", date(2024, 2, 29),
        time(12, 34, 56, 123456), datetime(2024, 2, 29, 12, 34, 56, 123456), datetime(2024, 2, 29, 12, 34, 56),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=PLUS2), datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
        2024, "1", "101", "green", "a,c", "[1, 2, 3]", True, uuid.UUID(int=2**128 - 1),
        "01234567-89ab-4def-8123-456789abcdef",
    ),
    (
        1, 1, 1, 1, Decimal("1E-30"), Decimal("-0.01"), Decimal("-0.000000000000000000000000000000000000001"),
        1e-40, 5e-324, "x", "x", "x", b"x", b"x", b"x", date(1970, 1, 1),
        timedelta(hours=-838, minutes=-59, seconds=-59),
        datetime(1970, 1, 1), datetime(1970, 1, 1), datetime(1969, 12, 31, 23, 0, tzinfo=timezone(-timedelta(hours=5))),
        None, 2000, "0", "1" + "0" * 63, "red", "b", '"text"', False, None, None,
    ),
]  # fmt: skip


@dataclass
class Target:
    url: str
    changes: ChangeApplier
    applier: MySQLApplier
    schema: str
    lease: int


@pytest.fixture(params=["values", "union"])
def target(mysql_url: str, request: pytest.FixtureRequest) -> Iterator[Target]:
    """Tables ``bulk`` and ``one`` holding every key, a few columns set (the updates then set them all),
    and a task started on them. ``union``: the derived table as a UNION ALL of SELECTs (servers without
    table value constructors)."""
    execute_sql(
        mysql_url,
        [f"CREATE TABLE {name} ({COLUMNS}) COLLATE utf8mb4_bin" for name in ("bulk", "one")]
        + [
            f"INSERT INTO {name} (id, code, ti, vc, tx, d, js) VALUES ({i}, '{code}', {i}, 'v{i}{code}', 'seed', "
            f"'2001-01-01', '[{i}]')"
            for name in ("bulk", "one")
            for i, code in KEYS
        ],
    )
    config = parse_endpoint(mysql_url, "target")
    spec = engine_for(config)
    schema = spec.default_schema(config)
    applier = spec.open_applier(config, schema)
    assert isinstance(applier, MySQLApplier)
    if request.param == "union":
        applier.values_row = None
    intro = spec.open_introspector(config)
    targets = {}
    for name in ("bulk", "one"):
        table = intro.table(TableId(schema, name))
        natives = [applier.map_type(c.type) for c in table.columns]
        types = [PG_TYPES.get(c.name, c.type) for c in table.columns]
        encoders = [applier.encoder(t, n) for t, n in zip(types, natives, strict=True)]
        targets[table.id] = ChangeTarget(table, encoders, natives)
    changes = ChangeApplier(applier, targets)
    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None  # creates the state tables
    yield Target(mysql_url, changes, applier, schema, lease)
    applier.close()


def table_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"SELECT * FROM {table} ORDER BY id, code")
            return list(cur.fetchall())
    finally:
        conn.close()


def updates(applier: ChangeApplier, schema: str, table: str) -> list[Change]:
    """Net updates of every key: whole rows of ``NEW_ROWS``, and every third key only a few columns."""
    columns = applier.targets[TableId(schema, table)].table.column_names
    out = []
    for n, key in enumerate(KEYS):
        values = NEW_ROWS[n % len(NEW_ROWS)]
        if n % 3 == 2:  # a partial update: the other columns keep their values
            values = tuple(v if i % 4 == n % 4 else UNCHANGED for i, v in enumerate(values))
        out.append(Change(Op.UPDATE, TableId(schema, table), columns, None, (*key, *values), None))
    return out


def multi_updates(applier: MySQLApplier) -> int:
    """Multi-table UPDATEs this session ran (the server's count)."""
    return int(applier.execute("SHOW SESSION STATUS LIKE 'Com_update_multi'").fetchone()[1])


def test_net_updates_write_what_one_row_updates_write(target: Target) -> None:
    url, changes, applier, schema, lease = target.url, target.changes, target.applier, target.schema, target.lease
    before = multi_updates(applier)
    result = changes.apply(
        "cdc", lease, [Transaction(1, None, None, updates(changes, schema, "bulk"))], {"n": 1}, net=True
    )
    failed = [(r.key, r.column, r.reason) for r in result.failed]
    assert not failed, failed
    assert result.updates == len(KEYS)
    # one statement per updated column set: the whole rows, and the partial ones (four column sets)
    assert multi_updates(applier) - before == 5
    result = changes.apply("cdc", lease, [Transaction(2, None, None, updates(changes, schema, "one"))], {"n": 2})
    failed = [(r.key, r.column, r.reason) for r in result.failed]
    assert not failed, failed
    assert result.updates == len(KEYS)
    bulk, one = table_rows(url, "bulk"), table_rows(url, "one")
    assert len(bulk) == len(KEYS)
    for got, want in zip(bulk, one, strict=True):
        assert got == want


def test_a_missing_row_sends_the_window_the_careful_way(target: Target) -> None:
    url, changes, schema, lease = target.url, target.changes, target.schema, target.lease
    outcomes = []
    for table, net in (("bulk", True), ("one", False)):
        window = updates(changes, schema, table)
        columns = window[0].columns
        ghost = (99, "k", *NEW_ROWS[2])
        window.insert(3, Change(Op.UPDATE, TableId(schema, table), columns, None, ghost, None))
        # a value the server refuses (too long for varchar(100)): rejected the same way too
        after = window[5].after
        assert after is not None
        too_long = tuple(v if c != "vc" else "x" * 101 for c, v in zip(columns, after, strict=True))
        window.append(Change(Op.UPDATE, TableId(schema, table), columns, None, too_long, None))
        result = changes.apply("cdc", lease, [Transaction(1, None, None, window)], {"n": table}, net=net)
        outcomes.append((result.updates, [(r.key, r.reason) for r in result.failed]))
    assert outcomes[0] == outcomes[1]
    updated, failed = outcomes[0]
    assert updated == len(KEYS) and [key for key, _ in failed] == [
        {"id": 99, "code": "k"},
        dict(zip(("id", "code"), KEYS[4], strict=True)),
    ]
    assert "matched 0 target rows" in failed[0][1] and "Data too long" in failed[1][1]
    assert table_rows(url, "bulk") == table_rows(url, "one")


def small_packet_target(mysql_url: str, name: str, columns: str) -> tuple[SqlApplier, ChangeApplier, Table, int]:
    """Table ``name`` (``id int PRIMARY KEY, <columns>``), an applier whose connection has a 1 MB
    ``max_allowed_packet`` (the global value when it connected, restored then), and a started task."""
    execute_sql(mysql_url, [f"CREATE TABLE {name} (id int PRIMARY KEY, {columns})"])
    admin = mysql_connect(mysql_url)
    with admin.cursor() as cur:
        cur.execute("SELECT @@global.max_allowed_packet")
        (packet,) = cur.fetchone()
        cur.execute("SET GLOBAL max_allowed_packet = 1048576")  # the connection opened next reads it
    try:
        config = parse_endpoint(mysql_url, "target")
        spec = engine_for(config)
        applier = spec.open_applier(config, spec.default_schema(config))
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL max_allowed_packet = %s", (packet,))
        admin.close()
    assert isinstance(applier, MySQLApplier)
    table = spec.open_introspector(config).table(TableId(spec.default_schema(config), name))
    natives = [applier.map_type(c.type) for c in table.columns]
    encoders = [applier.encoder(c.type, n) for c, n in zip(table.columns, natives, strict=True)]
    changes = ChangeApplier(applier, {table.id: ChangeTarget(table, encoders, natives)})
    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None  # creates the state tables
    return applier, changes, table, lease


def test_wide_rows_are_split_below_max_allowed_packet(mysql_url: str) -> None:
    """A window of rows whose multi-row statements would exceed the server's ``max_allowed_packet`` is
    sent as several statements (one too big fails and drops the connection): every row lands, exactly."""
    applier, changes, table, lease = small_packet_target(mysql_url, "wide", "body longtext, raw longblob")
    columns = ("id", "body", "raw")

    def body(i: int, version: str) -> str:
        return f"{version}{i}'\\é😀" * 2000  # ~20 KB, characters the statement escapes or writes in 4 bytes

    inserts = [
        Change(Op.INSERT, table.id, columns, None, (i, body(i, "a"), bytes([i % 256]) * 20_000), None)
        for i in range(200)
    ]
    changes.apply("cdc", lease, [Transaction(1, None, None, inserts)], {"n": 1}, net=True)
    updates = [
        Change(Op.UPDATE, table.id, columns, None, (i, body(i, "b"), b"\0'\\" * 7000), None) for i in range(0, 200, 2)
    ]
    deletes = [Change(Op.DELETE, table.id, columns, (i, None, None), None, None) for i in range(1, 200, 4)]
    result = changes.apply("cdc", lease, [Transaction(2, None, None, [*updates, *deletes])], {"n": 2}, net=True)
    assert (result.updates, result.deletes, result.failed) == (100, 50, [])
    expected = {i: (i, body(i, "a"), bytes([i % 256]) * 20_000) for i in range(200)}
    expected.update({i: (i, body(i, "b"), b"\0'\\" * 7000) for i in range(0, 200, 2)})
    for i in range(1, 200, 4):
        del expected[i]
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute("SELECT id, body, raw FROM wide ORDER BY id")
        assert list(cur.fetchall()) == [expected[i] for i in sorted(expected)]
    conn.close()
    assert changes.read_position("cdc") == {"n": 2}
    applier.close()


def test_a_row_over_max_allowed_packet_is_rejected_with_the_fix(mysql_url: str) -> None:
    """One row bigger than the server's ``max_allowed_packet`` as a statement: refused before it is sent
    (the server would drop the connection, and every retry meet it again), recorded as a rejected row
    naming the setting; the rest of the window lands."""
    applier, changes, table, lease = small_packet_target(mysql_url, "huge", "body longtext")
    columns = ("id", "body")
    fits = "x" * 600_000  # 600 KB: over the pessimistic bound (4 bytes a character), within the packet
    window = [
        Change(Op.INSERT, table.id, columns, None, (1, fits), None),
        Change(Op.INSERT, table.id, columns, None, (2, "y" * 1_100_000), None),
        Change(Op.INSERT, table.id, columns, None, (3, "small"), None),
    ]
    for net in (True, False):
        result = changes.apply("cdc", lease, [Transaction(1, None, None, window)], {"n": int(net)}, net=net)
        assert result.inserts == 2 and [f.key for f in result.failed] == [{"id": 2}]
        assert "max_allowed_packet (1,048,576)" in result.failed[0].reason
        conn = mysql_connect(mysql_url)
        with conn.cursor() as cur:
            cur.execute("SELECT id, body FROM huge ORDER BY id")
            assert list(cur.fetchall()) == [(1, fits), (3, "small")]
            cur.execute("DELETE FROM huge")
            cur.execute("SELECT statement FROM conveyor_apply_exceptions WHERE table_name = 'huge'")
            (recorded,) = cur.fetchall()[-1]  # the row's first 64k characters, for people
            assert recorded.startswith('{"id": 2, "body": "yyy') and recorded.endswith("(1,100,021 characters in all)")
        conn.commit()
        conn.close()
    applier.close()
