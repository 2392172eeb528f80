"""The MySQL / MariaDB engine against a real server: introspection, round trips with values at the
limits of every type, rejections that are recorded (never silent changes), time zones, snapshots and
the errors a user sees."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
import pytest
from oracle import canonical_rows, compare, fetch, mysql_connect
from servers import MariaDBServer, free_port, unique_db_name, unrelated_ca

from conveyor.endpoints.config import MySQLConfig, parse_endpoint
from conveyor.endpoints.mysql import types
from conveyor.endpoints.mysql.connect import quote
from conveyor.endpoints.mysql.engine import ENGINE
from conveyor.endpoints.mysql.errors import classify
from conveyor.endpoints.mysql.snapshot import MySQLSnapshot
from conveyor.errors import RowRejected, TerminalError, TransientError, UserActionError
from conveyor.model.schema import TableId
from conveyor.model.segments import Segment
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L
from conveyor.runner import stats as st
from conveyor.runner.fullload import FullLoad, RunResult
from conveyor.runner.task import task_from_document

BIG_BLOB = bytes(range(256)) * (16 * 1024 * 1024 // 256) + b"tail"  # just over 16 MiB: several packets

COLUMNS = [
    ("id", "int NOT NULL AUTO_INCREMENT"),
    ("ti", "tinyint"),
    ("tiu", "tinyint unsigned"),
    ("si", "smallint"),
    ("siu", "smallint unsigned"),
    ("mi", "mediumint"),
    ("miu", "mediumint unsigned"),
    ("i", "int"),
    ("iu", "int unsigned"),
    ("bi", "bigint"),
    ("biu", "bigint unsigned"),
    ("flag", "tinyint(1)"),
    ("dec65", "decimal(65,30)"),
    ("dec52", "decimal(5,2)"),
    ("f", "float"),
    ("dbl", "double"),
    ("ch", "char(10)"),
    ("vc", "varchar(100)"),
    ("tt", "tinytext"),
    ("tx", "text"),
    ("mt", "mediumtext"),
    ("bn", "binary(4)"),
    ("vb", "varbinary(20)"),
    ("tb", "tinyblob"),
    ("lb", "longblob"),
    ("d", "date"),
    ("tm", "time"),
    ("tm6", "time(6)"),
    ("dt", "datetime"),
    ("dt6", "datetime(6)"),
    ("ts6", "timestamp(6) NULL DEFAULT NULL"),
    ("y", "year"),
    ("b1", "bit(1)"),
    ("b10", "bit(10)"),
    ("b64", "bit(64)"),
    ("e", "enum('red','green','blue','it''s')"),
    ("st", "set('a','b','c')"),
    ("js", "json"),
    ("u", "uuid"),
    ("ip4", "inet4"),
    ("ip6", "inet6"),
    ("g", "geometry"),
    ("uq", "varchar(20)"),
    ("parent_id", "int"),
]
NAMES = [c for c, _ in COLUMNS]
GEOMETRY = {1: None, 2: "POINT(0 0)", 3: "LINESTRING(0 0, 1 1, 2 3)", 4: None, 5: "POINT(1.5 -2.25)", 6: None}
ROWS: list[dict[str, Any]] = [
    {"id": 1},
    {  # minimums and empties
        "id": 2,
        "ti": -128,
        "tiu": 0,
        "si": -32768,
        "siu": 0,
        "mi": -8388608,
        "miu": 0,
        "i": -2147483648,
        "iu": 0,
        "bi": -(2**63),
        "biu": 0,
        "flag": -1,
        "dec65": "-99999999999999999999999999999999999.999999999999999999999999999999",
        "dec52": "-999.99",
        "f": -3.402823466e38,
        "dbl": -1.7976931348623157e308,
        "ch": "",
        "vc": "",
        "tt": "",
        "tx": "",
        "mt": "",
        "bn": b"\0\0\0\0",
        "vb": b"",
        "tb": b"",
        "lb": b"",
        "d": "1000-01-01",
        "tm": "00:00:00",
        "tm6": "00:00:00.000000",
        "dt": "1000-01-01 00:00:00",
        "dt6": "1000-01-01 00:00:00.000000",
        "ts6": "1970-01-01 00:00:01.000000",
        "y": 1901,
        "b1": 0,
        "b10": 0,
        "b64": 0,
        "e": "red",
        "st": "",
        "js": "{}",
        "u": "00000000-0000-0000-0000-000000000000",
        "ip4": "0.0.0.0",
        "ip6": "::",
        "uq": "min",
    },
    {  # maximums, 4-byte UTF-8, a 16 MiB blob
        "id": 3,
        "ti": 127,
        "tiu": 255,
        "si": 32767,
        "siu": 65535,
        "mi": 8388607,
        "miu": 16777215,
        "i": 2147483647,
        "iu": 4294967295,
        "bi": 2**63 - 1,
        "biu": 2**64 - 1,
        "flag": 127,
        "dec65": "99999999999999999999999999999999999.999999999999999999999999999999",
        "dec52": "999.99",
        "f": 3.402823466e38,
        "dbl": 1.7976931348623157e308,
        "ch": "héllo😀𝄞",
        "vc": "emoji 😀 𝄞 中文 Ünïcödé",
        "tt": "😀" * 60,
        "tx": "long ✓ " * 1000,
        "mt": "𝄞 mediumtext " * 5000,
        "bn": b"\xff\xff\xff\xff",
        "vb": bytes(range(20)),
        "tb": bytes(range(255)),
        "lb": BIG_BLOB,
        "d": "9999-12-31",
        "tm": "23:59:59",
        "tm6": "23:59:59.999999",
        "dt": "9999-12-31 23:59:59",
        "dt6": "9999-12-31 23:59:59.999999",
        "ts6": "2038-01-19 03:14:07.999999",
        "y": 2155,
        "b1": 1,
        "b10": 1023,
        "b64": 2**64 - 1,
        "e": "blue",
        "st": "a,b,c",
        "js": '{"b": 1, "a": [1, 2.5, null], "s": "é😀"}',
        "u": "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "ip4": "255.255.255.255",
        "ip6": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "uq": "max",
    },
    {  # values only MySQL has: zero dates, TIME beyond a day, YEAR 0000
        "id": 4,
        "d": "0000-00-00",
        "tm": "-838:59:59",
        "tm6": "838:59:59.000000",
        "dt": "0000-00-00 00:00:00",
        "dt6": "0000-00-00 00:00:00.000000",
        "y": 0,
        "dbl": -0.0,
        "uq": "zero",
    },
    {  # text the LOAD DATA format must escape, inexact floats, a literal \N
        "id": 5,
        "ti": 7,
        "dec65": "3.141592653589793238462643383279502884197169399375",
        "dec52": "0.01",
        "f": 1.1,
        "dbl": 0.1 + 0.2,
        "ch": "it's",
        "vc": "tab\there",
        "tt": "\\N",
        "tx": "line1\nline2\\back\\slash\r\n",
        "mt": "nul\x00byte",
        "bn": b"ab\0\0",
        "vb": b"\x00\xff\\\t\n\\N",
        "tb": b"\\N",
        "lb": b"\x00",
        "d": "2024-02-29",
        "tm": "12:34:56",
        "tm6": "12:34:56.123456",
        "dt": "2024-02-29 12:34:56",
        "dt6": "2024-02-29 12:34:56.123456",
        "ts6": "2024-02-29 12:34:56.123456",
        "y": 2024,
        "b1": 1,
        "b10": 0b0101010101,
        "b64": 12345,
        "e": "it's",
        "st": "a,c",
        "js": "[1, 2, 3]",
        "u": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "ip4": "192.168.0.1",
        "ip6": "2001:db8::1",
        "uq": "escapes",
        "parent_id": 1,
    },
    {  # floats at their edges
        "id": 6,
        "f": 16777217.0,
        "dbl": 5e-324,
        "dec52": "-0.01",
        "vc": "floats",
        "uq": "floats",
    },
]


# --------------------------------------------------------------------------- helpers
def database_of(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def create_all_types(url: str) -> None:
    definitions = ", ".join(f"{quote(c)} {t}" for c, t in COLUMNS)
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', time_zone = '+00:00'")
        cur.execute("CREATE TABLE parent (id int PRIMARY KEY) ENGINE=InnoDB")
        cur.execute("INSERT INTO parent VALUES (1)")
        cur.execute(
            f"CREATE TABLE all_types ({definitions}, gen int AS (i DIV 2) VIRTUAL, PRIMARY KEY (id), "
            "UNIQUE KEY uq_uq (uq), KEY idx_dt (dt, d), KEY idx_prefix (tx(10)), FULLTEXT KEY ft_vc (vc), "
            "CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )
        for row in ROWS:
            names = [n for n in NAMES if n in row] + ["g"]
            values = ", ".join(["%s"] * (len(names) - 1) + ["ST_GeomFromText(%s)"])
            params = [row[n] for n in names[:-1]] + [GEOMETRY[row["id"]]]
            cur.execute(f"INSERT INTO all_types ({', '.join(map(quote, names))}) VALUES ({values})", params)
    conn.close()


def run(source: str, target: str, state: Path, name: str = "t", **settings: Any) -> RunResult:
    doc: dict[str, Any] = {"name": name, "source": source, "target": target, "migration_type": "full-load"}
    if settings:
        doc["settings"] = settings
    return FullLoad(task_from_document(doc), str(state)).run()


def table_stats(result: RunResult, name: str) -> st.TableStats:
    return next(t for t in result.tables if t.table == name)


def read_exact(url: str, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """Rows with the plain driver; FLOAT read as a double (its text form has 6 digits)."""
    exprs = [f"{quote(c)} * 1e0" if dict(COLUMNS).get(c) == "float" else quote(c) for c in columns]
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT {', '.join(exprs)} FROM {quote(table)} ORDER BY 1")
        rows = list(cur.fetchall())
    conn.close()
    return rows


def bits(width: int) -> Callable[[Any], Any]:
    return lambda v: format(int.from_bytes(v, "big"), f"0{width}b") if isinstance(v, bytes) else v


def as_time(v: Any) -> Any:
    if isinstance(v, dt.timedelta) and dt.timedelta(0) <= v < dt.timedelta(days=1):
        return (dt.datetime.min + v).time()
    return dt.time.fromisoformat(v) if isinstance(v, str) else v


def as_date(v: Any) -> Any:
    return dt.date.fromisoformat(v) if isinstance(v, str) else v


def as_decimal(v: Any) -> Any:
    return Decimal(v) if isinstance(v, str) else v


@pytest.fixture
def other_db(mysql_server: MariaDBServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = unique_db_name(request.node.name, prefix="t2_")
    url = mysql_server.create_database(name)
    yield url
    if mysql_server.is_running():
        mysql_server.drop_database(name)


def config_of(url: str) -> MySQLConfig:
    config = parse_endpoint(url, "endpoint")
    assert isinstance(config, MySQLConfig)
    return config


# --------------------------------------------------------------------------- introspection
def test_introspection_of_every_type(mysql_url: str) -> None:
    create_all_types(mysql_url)
    config = config_of(mysql_url)
    intro = ENGINE.open_introspector(config)
    db = config.database
    assert intro.schemas() == [db]
    assert [t.name for t in intro.table_ids(db)] == ["all_types", "parent"]
    table = intro.table(TableId(db, "all_types"))
    kinds = {c.name: c.type for c in table.columns}
    assert list(kinds) == NAMES  # the generated column is not data to copy
    assert table.extra["generated_columns"] == "gen"
    assert "idx_prefix (column prefix)" in table.extra["skipped_indexes"]
    assert "ft_vc (fulltext)" in table.extra["skipped_indexes"]
    assert table.extra["unsupported_columns"] == "g (geometry)"
    assert table.primary_key is not None and table.primary_key.columns == ("id",)
    assert table.column("id").identity and not table.column("id").nullable
    assert [k.columns for k in table.unique_keys] == [("uq",)]
    assert [(i.name, i.columns) for i in table.indexes] == [("fk_parent", ("parent_id",)), ("idx_dt", ("dt", "d"))]
    (fk,) = table.foreign_keys
    assert (fk.name, fk.columns, fk.ref_table, fk.ref_columns, fk.on_delete) == (
        "fk_parent",
        ("parent_id",),
        TableId(db, "parent"),
        ("id",),
        "CASCADE",
    )
    expected = {
        "ti": (L.INTEGER, 8, False),
        "tiu": (L.INTEGER, 8, True),
        "siu": (L.INTEGER, 16, True),
        "mi": (L.INTEGER, 24, False),
        "iu": (L.INTEGER, 32, True),
        "biu": (L.INTEGER, 64, True),
        "flag": (L.INTEGER, 8, False),  # tinyint(1) stays an integer
        "f": (L.FLOAT, 32, False),
        "dbl": (L.FLOAT, 64, False),
    }
    for name, (logical, nbits, unsigned) in expected.items():
        assert (kinds[name].logical, kinds[name].bits, kinds[name].unsigned) == (logical, nbits, unsigned), name
    assert (kinds["dec65"].logical, kinds["dec65"].precision, kinds["dec65"].scale) == (L.DECIMAL, 65, 30)
    assert (kinds["ch"].logical, kinds["ch"].length) == (L.CHAR, 10)
    assert (kinds["vc"].logical, kinds["vc"].length) == (L.VARCHAR, 100)
    assert {kinds[n].logical for n in ("tt", "tx", "mt")} == {L.TEXT}
    assert (kinds["bn"].logical, kinds["bn"].length) == (L.BINARY, 4)
    assert (kinds["vb"].logical, kinds["vb"].length) == (L.VARBINARY, 20)
    assert {kinds[n].logical for n in ("tb", "lb")} == {L.BLOB}
    assert (kinds["tm6"].logical, kinds["tm6"].precision) == (L.TIME, 6)
    assert (kinds["dt6"].logical, kinds["dt6"].precision) == (L.TIMESTAMP, 6)
    assert (kinds["ts6"].logical, kinds["ts6"].precision) == (L.TIMESTAMPTZ, 6)
    assert kinds["y"].logical is L.YEAR and kinds["d"].logical is L.DATE
    assert (kinds["b64"].logical, kinds["b64"].length) == (L.BIT, 64)
    assert (kinds["e"].logical, kinds["e"].values) == (L.ENUM, ("red", "green", "blue", "it's"))
    assert (kinds["st"].logical, kinds["st"].values) == (L.SET, ("a", "b", "c"))
    assert (kinds["js"].logical, kinds["js"].native) == (L.JSON, "json")  # MariaDB: longtext + json_valid
    assert kinds["u"].logical is L.UUID and kinds["ip4"].logical is L.INET and kinds["ip6"].logical is L.INET
    assert kinds["g"].logical is L.DYNAMIC
    with pytest.raises(UserActionError, match="does not exist"):
        intro.table(TableId(db, "no_such_table"))


# --------------------------------------------------------------------------- round trips
def test_all_types_mysql_to_mysql_exact(mysql_url: str, other_db: str, tmp_path: Path) -> None:
    create_all_types(mysql_url)
    odd = mysql_connect(mysql_url)
    with odd.cursor() as cur:  # names that need quoting everywhere, LOAD DATA included
        cur.execute("CREATE TABLE `we``ird tab` (`i``d` int PRIMARY KEY, `va l` varchar(10), `bl``ob` blob)")
        cur.execute("INSERT INTO `we``ird tab` VALUES (1, 'a', x'00ff'), (2, NULL, '')")
    odd.close()
    result = run(mysql_url, other_db, tmp_path / "state", FullLoadSettings={"CommitRate": 2})
    assert result.complete, (result.failed, [t.error for t in result.tables])
    stats = table_stats(result, "all_types")
    assert (stats.full_load_rows, stats.full_load_error_rows) == (len(ROWS), 0)
    # exact, on the server: every column null-safe equal, the target's types the source's own
    src, dst = quote(database_of(mysql_url)), quote(database_of(other_db))
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        for name in NAMES:
            cur.execute(
                f"SELECT count(*) FROM {src}.all_types s JOIN {dst}.all_types d USING (id) "
                f"WHERE NOT (s.{quote(name)} <=> d.{quote(name)})"
            )
            assert cur.fetchone() == (0,), name
        cur.execute(f"SELECT count(*) FROM {dst}.all_types")
        assert cur.fetchone() == (len(ROWS),)
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = 'all_types' ORDER BY ORDINAL_POSITION",
            (database_of(other_db),),
        )
        assert [r[0] for r in cur.fetchall()] == [*NAMES, "gen"]  # the generated column, computed by the target
        cur.execute(f"SELECT `i``d`, `va l`, `bl``ob` FROM {dst}.`we``ird tab` ORDER BY 1")
        assert cur.fetchall() == ((1, "a", b"\x00\xff"), (2, None, b""))
    conn.close()
    # and by the oracle, row by row
    source = canonical_rows(read_exact(mysql_url, "all_types", NAMES), [NAMES.index("js")])
    target = canonical_rows(read_exact(other_db, "all_types", NAMES), [NAMES.index("js")])
    diff = compare(source, target, key=[0])
    assert diff.equal, str(diff)
    target_table = ENGINE.open_introspector(config_of(other_db)).table(TableId(database_of(other_db), "all_types"))
    assert [k.columns for k in target_table.unique_keys] == [("uq",)]
    assert [fk.ref_table.name for fk in target_table.foreign_keys] == ["parent"]
    assert target_table.column("id").identity


def test_all_types_mysql_to_sqlite_rejects_what_sqlite_cannot_hold(
    mysql_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    create_all_types(mysql_url)
    result = run(mysql_url, sqlite_url, tmp_path / "state", FullLoadSettings={"CommitRate": 2})
    stats = table_stats(result, "all_types")
    assert stats.state == st.COMPLETED, stats.error
    # row 4: TIME -838:59:59 has no SQLite (nor canonical) time of day: rejected, never altered
    assert (stats.full_load_rows, stats.full_load_error_rows) == (len(ROWS) - 1, 1)
    recorded = fetch(sqlite_url, "conveyor_apply_exceptions", ["table_name", "row_key", "column_name", "error"])
    assert [(r[0], json.loads(r[1]), r[2]) for r in recorded] == [("all_types", {"id": 4}, "tm")]
    copied = [n for n in NAMES if n != "g"]
    source = canonical_rows(
        (r for r in read_exact(mysql_url, "all_types", copied) if r[0] != 4),
        [copied.index("js")],
        {
            copied.index(n): fn
            for n, fn in {"b1": bits(1), "b10": bits(10), "b64": bits(64), "tm": as_time, "tm6": as_time}.items()
        },
    )
    target = canonical_rows(
        fetch(sqlite_url, "all_types", copied),
        [copied.index("js")],
        {
            copied.index(n): fn
            for n, fn in {
                "biu": as_decimal,
                "dec65": as_decimal,
                "d": as_date,
                "tm": as_time,
                "tm6": as_time,
            }.items()
        },
    )
    diff = compare(source, target, key=[0])
    assert diff.equal, str(diff)
    geometry = (
        sqlite3.connect(unquote(urlsplit(sqlite_url).path)[1:])
        .execute("SELECT g FROM all_types WHERE id = 3")
        .fetchone()[0]
    )
    assert isinstance(geometry, bytes) and len(geometry) > 4  # MySQL's internal format, unchanged


def test_sqlite_to_mysql_rejects_and_records_bad_values(sqlite_url: str, mysql_url: str, tmp_path: Path) -> None:
    path = unquote(urlsplit(sqlite_url).path)[1:]
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE s (id INTEGER PRIMARY KEY, i INTEGER, r REAL, d DECIMAL(5,2), vc VARCHAR(5), t TEXT, "
        "b BLOB, ts DATETIME, flag BOOLEAN)"
    )
    good: list[tuple[Any, ...]] = [
        (1, 42, 1.5, "1.25", "abc", "tab\tnew\nline\\", b"\x00\x01", "2024-01-01 12:00:00", 1),
        (7, 2**63 - 1, -1.7976931348623157e308, "-999.99", "", "", b"", "9999-12-31 23:59:59.999999", 0),
        (8, None, None, None, None, None, None, None, None),
    ]
    bad: list[tuple[Any, ...]] = [
        (2, "abc", 1.0, "1", "x", "x", b"", None, 0),  # text in an INTEGER column
        (3, 1, float("inf"), "1", "x", "x", b"", None, 0),  # Infinity
        (4, 1, "NaN", "1", "x", "x", b"", None, 0),  # SQLite turns a float NaN into NULL; text NaN stays
        (5, 1, 1.0, "123.456", "x", "x", b"", None, 0),  # more decimals than DECIMAL(5,2)
        (6, 1, 1.0, "1", "toolong", "x", b"", None, 0),  # longer than VARCHAR(5): the server says so
        (9, 1, 1.0, "1", "x", "x", "text", None, 0),  # text in a BLOB column
        (10, 1, 1.0, "1", "x", "x", b"", "not a date", 0),  # text in a DATETIME column
    ]
    conn.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", good + bad)
    conn.commit()
    conn.close()
    result = run(sqlite_url, mysql_url, tmp_path / "state", ErrorBehavior={"DataErrorPolicy": "LOG_ERROR"})
    stats = table_stats(result, "s")
    assert stats.state == st.COMPLETED, stats.error
    assert (stats.full_load_rows, stats.full_load_error_rows) == (len(good), len(bad))
    recorded = {
        json.loads(r[1])["id"]: (r[2], r[3])
        for r in fetch(mysql_url, "conveyor_apply_exceptions", ["table_name", "row_key", "column_name", "error"])
    }
    assert set(recorded) == {2, 3, 4, 5, 6, 9, 10}
    assert recorded[2] == ("i", "text 'abc' is not an integer")
    assert recorded[3][0] == "r" and "Infinity" in recorded[3][1]
    assert recorded[4] == ("r", "text 'NaN' is not a number")
    assert recorded[5][0] == "d" and "decimal places" in recorded[5][1]
    assert recorded[6][0] is None and "vc" in recorded[6][1]  # the server's own message names the column
    assert recorded[9][0] == "b" and "binary" in recorded[9][1]
    assert recorded[10][0] == "ts"
    rows = read_exact(mysql_url, "s", ["id", "i", "r", "d", "vc", "t", "b", "ts", "flag"])
    assert rows == [
        (1, 42, 1.5, Decimal("1.25"), "abc", "tab\tnew\nline\\", b"\x00\x01", dt.datetime(2024, 1, 1, 12), 1),
        (7, 2**63 - 1, -1.7976931348623157e308, Decimal("-999.99"), "", "", b"", dt.datetime.max, 0),
        (8, None, None, None, None, None, None, None, None),
    ]


def test_timestamps_do_not_depend_on_the_server_time_zone(
    mysql_server: MariaDBServer, mysql_url: str, other_db: str, tmp_path: Path
) -> None:
    admin = mysql_connect(mysql_url)
    with admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.time_zone")
        (saved,) = cur.fetchone()
    instants: list[list[Any]] = []
    try:
        for n, zone in enumerate(("+05:30", "-08:00")):
            with admin.cursor() as cur:
                cur.execute("SET GLOBAL time_zone = %s", (zone,))
            local = mysql_connect(mysql_url)  # a new session: the zone above
            with local.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS tz")
                cur.execute("CREATE TABLE tz (id int PRIMARY KEY, ts timestamp(6) NULL, dt datetime(6))")
                cur.execute("INSERT INTO tz VALUES (1, '2024-06-01 12:00:00.123456', '2024-06-01 12:00:00.123456')")
            local.close()
            sqlite = f"sqlite:///{tmp_path / f'tz{n}.db'}"
            assert run(mysql_url, other_db, tmp_path / f"s{n}", name=f"tz{n}").complete
            assert run(mysql_url, sqlite, tmp_path / f"q{n}", name=f"tq{n}").complete
            row = []
            for url in (mysql_url, other_db):
                conn = mysql_connect(url)
                with conn.cursor() as cur:
                    cur.execute("SET time_zone = '+00:00'")
                    cur.execute("SELECT UNIX_TIMESTAMP(ts), ts, dt FROM tz")
                    row.append(cur.fetchone())
                conn.close()
            row.append(tuple(fetch(sqlite, "tz", ["ts", "dt"])[0]))
            instants.append(row)
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = %s", (saved,))
        admin.close()
    plus, minus = instants
    # the local wall time 12:00 was a different instant in each zone; each is copied as that instant
    assert plus[0] == plus[1] and plus[0][1] == dt.datetime(2024, 6, 1, 6, 30, 0, 123456)
    assert minus[0] == minus[1] and minus[0][1] == dt.datetime(2024, 6, 1, 20, 0, 0, 123456)
    assert plus[2] == ("2024-06-01 06:30:00.123456+00:00", "2024-06-01 12:00:00.123456")
    assert minus[2] == ("2024-06-01 20:00:00.123456+00:00", "2024-06-01 12:00:00.123456")


# --------------------------------------------------------------------------- snapshots
def test_snapshot_is_one_view_for_every_reader(mysql_url: str) -> None:
    config = config_of(mysql_url)
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = 10")
        cur.execute("CREATE TABLE v (id int PRIMARY KEY)")
        cur.execute("CREATE TABLE gone (id int PRIMARY KEY)")
        cur.execute("INSERT INTO v VALUES (1), (2), (3)")
    intro = ENGINE.open_introspector(config)
    table, gone = (intro.table(TableId(config.database, name)) for name in ("v", "gone"))
    snapshot = MySQLSnapshot(config, 2)
    try:
        assert snapshot.warnings == [] and snapshot.position and snapshot.position["file"]
        with conn.cursor() as cur:
            cur.execute("INSERT INTO v VALUES (4)")
            cur.execute("DROP TABLE gone")  # no reader has touched it, so no metadata lock holds it
        readers = [snapshot.reader() for _ in range(3)]
        for reader in readers:
            assert [r for b in reader.read(table, Segment(table.id, 0), 10) for r in b.rows] == [(1,), (2,), (3,)]
        late = snapshot.reader()  # beyond the pool: its own, later snapshot, and a warning
        assert len([r for b in late.read(table, Segment(table.id, 0), 10) for r in b.rows]) == 4
        assert snapshot.warnings and "snapshot of its own" in snapshot.warnings[0]
        with pytest.raises(TerminalError, match="no longer exists on the source"):
            list(readers[0].read(gone, Segment(gone.id, 0), 10))
        for reader in [*readers, late]:
            reader.close()
    finally:
        snapshot.close()
        conn.close()


def test_snapshot_without_reload_privilege_warns(mysql_server: MariaDBServer, mysql_url: str) -> None:
    db = database_of(mysql_url)
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE w (id int PRIMARY KEY)")
        cur.execute("CREATE USER IF NOT EXISTS 'reader_only'@'%' IDENTIFIED BY 'pw-reader'")
        cur.execute(f"GRANT SELECT ON {quote(db)}.* TO 'reader_only'@'%'")
    try:
        config = config_of(mysql_server.url(db, user="reader_only", password="pw-reader"))
        snapshot = MySQLSnapshot(config, 1)
        assert snapshot.position is None
        assert len(snapshot.warnings) == 1 and "GRANT RELOAD ON *.*" in snapshot.warnings[0]
        reader = snapshot.reader()
        assert reader.estimate_rows(ENGINE.open_introspector(config).table(TableId(db, "w"))) == 0
        reader.close()
        snapshot.close()
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP USER 'reader_only'@'%'")
        conn.close()


def test_held_snapshot_is_joined_by_token_until_released(mysql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """hold=True: writes wait while workers join (from any process: ``join`` takes only the config
    and the token); after ``release()`` they go on and a late joiner sees them."""
    from conveyor.endpoints.mysql import snapshot as mysql_snapshot

    config = config_of(mysql_url)
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE h (id int PRIMARY KEY)")
        cur.execute("INSERT INTO h VALUES (1), (2)")
    table = ENGINE.open_introspector(config).table(TableId(config.database, "h"))
    whole = Segment(table.id, 0)

    def ids(reader: Any) -> list[int]:
        return [r[0] for b in reader.read(table, whole, 10) for r in b.rows]

    snapshot = ENGINE.open_snapshot(config, 2, hold=True)
    inserted = threading.Event()

    def write() -> None:
        with mysql_connect(mysql_url) as writer, writer.cursor() as cur:
            cur.execute("INSERT INTO h VALUES (3)")
        inserted.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        token = snapshot.token()
        joined = [ENGINE.join_snapshot(config, pickle.loads(pickle.dumps(token))) for _ in range(2)]
        assert not inserted.wait(0.5), "a write committed while the snapshot was held"
        snapshot.release()
        assert inserted.wait(10)
        late = ENGINE.join_snapshot(config, token)
        assert [ids(r) for r in [*joined, snapshot.reader()]] == [[1, 2]] * 3
        assert ids(late) == [1, 2, 3]
        assert isinstance(snapshot, MySQLSnapshot)
        assert snapshot.warnings == [] and snapshot.position
        for reader in [*joined, late]:
            reader.close()
    finally:
        thread.join()
        snapshot.close()

    # the hold is bounded: past HOLD_TIMEOUT the lock goes and release() says the task must stop
    monkeypatch.setattr(mysql_snapshot, "HOLD_TIMEOUT", 0.3)
    held = ENGINE.open_snapshot(config, 1, hold=True)
    try:
        time.sleep(0.6)
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 5")
            cur.execute("INSERT INTO h VALUES (4)")  # the lock is gone
        with pytest.raises(TerminalError, match="FLUSH TABLES WITH READ LOCK was released after"):
            held.release()
    finally:
        held.close()
        conn.close()


# --------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(unrelated_ca(tmp_path_factory.mktemp("ca") / "other-ca.pem"))


SECRET = "Pa55-w0rd-not-for-logs"


def test_login_errors_name_the_fix_and_never_the_password(
    mysql_server: MariaDBServer, mysql_url: str, other_ca: str
) -> None:
    db = database_of(mysql_url)
    cases = {
        "access denied for user 'conveyor'": mysql_server.url(db, password=SECRET),
        f"cannot reach MySQL server 127.0.0.1:{(port := free_port())}": (
            f"mysql://conveyor:{SECRET}@127.0.0.1:{port}/{db}"
        ),
        "database 'no_such_db' does not exist": mysql_server.url("no_such_db"),
        "TLS with MySQL server": mysql_server.url(db, **{"ssl-mode": "VERIFY_CA", "ssl-ca": other_ca}),
        "GRANT SELECT ON": mysql_server.url(db, user="limited"),
    }
    for expected, url in cases.items():
        with pytest.raises(UserActionError) as caught:
            ENGINE.open_introspector(parse_endpoint(url, "source"))
        text = str(caught.value)
        assert expected in text and "\n" not in text, text
        assert SECRET not in text and "secret" not in text, text
    tls = mysql_server.url(db, **{"ssl-mode": "VERIFY_CA", "ssl-ca": other_ca})
    with pytest.raises(UserActionError, match="ssl-mode=VERIFY_CA and ssl-ca="):
        ENGINE.open_applier(parse_endpoint(tls, "target"), db)
    # the right CA: a verified TLS session
    for mode in ("PREFERRED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"):
        good = mysql_server.url(db, **{"ssl-mode": mode, "ssl-ca": str(mysql_server.ca_file)})
        intro: Any = ENGINE.open_introspector(parse_endpoint(good, "source"))
        with intro.conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1], mode
        intro.close()


def test_classify() -> None:
    assert classify(ValueError("not a driver error")) is None
    assert isinstance(classify(pymysql.err.OperationalError(2013, "Lost connection")), TransientError)
    assert isinstance(classify(pymysql.err.OperationalError(1213, "Deadlock found")), TransientError)
    assert isinstance(classify(pymysql.err.OperationalError(1205, "Lock wait timeout")), TransientError)
    dropped = classify(pymysql.err.ProgrammingError(1146, "Table 'shop.orders' doesn't exist"))
    assert isinstance(dropped, TerminalError) and "shop.orders" in str(dropped)
    denied = classify(
        pymysql.err.OperationalError(1142, "SELECT command denied to user 'app'@'10.0.0.1' for table `shop`.`t`")
    )
    assert isinstance(denied, UserActionError) and "GRANT SELECT ON `shop`.`t` TO 'app'@'10.0.0.1'" in str(denied)


# --------------------------------------------------------------------------- type tables
def test_logical_to_native() -> None:
    def native(logical: L, **kw: Any) -> str:
        return types.to_native(ColumnType(logical, engine="postgresql", **kw))

    assert native(L.INTEGER, bits=64, unsigned=True) == "bigint unsigned"
    assert native(L.DECIMAL, precision=20, scale=0) == "decimal(20,0)"
    assert native(L.DECIMAL) == "longtext CHARACTER SET ascii COLLATE ascii_bin"  # every digit of numeric
    assert native(L.DECIMAL, precision=100, scale=40).startswith("varchar(103)")
    assert native(L.VARCHAR, length=20000) == "mediumtext"
    assert native(L.BIT, length=8, extra=(("varying", "1"),)).startswith("varchar(8)")
    assert native(L.TIMESTAMPTZ, precision=3) == "datetime(3)"
    assert native(L.ENUM, values=("a'b", "c\\d")) == "enum('a\\'b','c\\\\d')"
    assert native(L.BOOLEAN) == "tinyint(1)" and native(L.ARRAY) == "json" and native(L.UUID) == "char(36)"
    mysql_type = ColumnType(L.INTEGER, bits=32, unsigned=True, native="int(10) unsigned", engine="mysql")
    assert types.to_native(mysql_type) == "int(10) unsigned"  # homogeneous: the source's own type
    wide = types.fit_row(["int", "varchar(16000)", "varchar(16000)", "varchar(100)"], [True, False, False, False])
    assert wide == ["int", "text", "varchar(16000)", "varchar(100)"]


def test_encoders_reject_rather_than_change() -> None:
    pg = ColumnType(L.FLOAT, bits=64, engine="postgresql")
    enc = types.encoder(pg, "double")
    assert enc is not None and enc(1.5) == 1.5
    for bad in (float("nan"), float("inf"), -0.0):
        with pytest.raises(RowRejected):
            enc(bad)
    dec = types.encoder(ColumnType(L.DECIMAL, precision=5, scale=2, engine="postgresql"), "decimal(5,2)")
    assert dec is not None and dec(Decimal("1.500")) == Decimal("1.50")
    for bad_dec in (Decimal("NaN"), Decimal("1000.00"), Decimal("1.001")):
        with pytest.raises(RowRejected):
            dec(bad_dec)
    small = types.encoder(ColumnType(L.INTEGER, bits=64, engine="sqlite"), "tinyint unsigned")
    assert small is not None and small(255) == 255 and small(True) == 1
    for bad_int in (256, -1, "abc", 1.5):
        with pytest.raises(RowRejected):
            small(bad_int)
    text = types.encoder(ColumnType(L.DYNAMIC, engine="sqlite"), "longtext")
    assert text is not None and text(3.25) == "3.25"
    with pytest.raises(RowRejected):
        text(b"\x00")
    tz = types.encoder(ColumnType(L.TIMESTAMPTZ, precision=6, engine="postgresql"), "datetime(6)")
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert tz is not None and tz(aware) == dt.datetime(2024, 1, 1, 10)
    bit = types.encoder(ColumnType(L.BIT, length=4, engine="postgresql"), "bit(4)")
    assert bit is not None and bit("1010") == b"\x0a"
    tm = types.encoder(ColumnType(L.TIME, precision=6, engine="postgresql"), "time(6)")
    assert tm is not None and tm(dt.time(1, 2, 3)) == dt.time(1, 2, 3)
    with pytest.raises(RowRejected, match="839:00:00 is outside MySQL TIME's range"):  # MySQL's spelling
        tm(dt.timedelta(hours=839))
    assert tm("24:00:00") == dt.timedelta(days=1)  # PostgreSQL's end of day, which MySQL's TIME holds
    stamp = types.encoder(ColumnType(L.TIMESTAMPTZ, precision=6, engine="mysql"), "timestamp(6)")
    assert stamp is not None and stamp("0000-00-00 00:00:00.000000") == "0000-00-00 00:00:00.000000"
    for not_zero in ("2024-01-01", "10000-01-01", "0044-03-15 BC"):  # text that is a date is not passed on
        with pytest.raises(RowRejected):
            stamp(not_zero)
    assert types.encoder(ColumnType(L.TEXT, engine="postgresql"), "longtext") is None  # cheap path
    assert types.encoder(ColumnType(L.INTEGER, bits=32, engine="postgresql"), "bigint") is None
