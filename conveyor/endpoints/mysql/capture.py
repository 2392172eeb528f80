"""MySQL / MariaDB change data capture from the row-based binlog.

How a runner uses it::

    capture = MySQLCapture(config, task_name, tables)
    warnings = capture.check()                       # UserActionError naming the fix
    snapshot, start = capture.handoff(workers, hold) # full-load-and-cdc (or start = capture.begin())
    for event in capture.stream(start):              # later runs: the position stored in the target
        ...apply a Transaction and store event.commit_position in the same target commit...

The snapshot and the stream meet exactly: ``MySQLSnapshot`` notes the binlog position while
``FLUSH TABLES WITH READ LOCK`` holds every commit back, and each reader's consistent snapshot
begins under the same lock, so a transaction is either in the snapshot or after the position.

The stream is a replica connection (``binlog.BinlogStream``) with a server id derived from the task
name; row events are decoded by code generated per table layout (``rowevents``) into the values the
snapshot reader gives for the same rows. TABLE_MAP events carry column types but no names, so the
columns are those of the tables the capture was opened with (as the runner described them before the
handoff, i.e. as of the stream's start), followed through each DDL statement on a selected table, with
``SchemaChanged`` before the rows written under the new definition. The catalog only knows a table as it
is now, possibly several statements later, so an ALTER TABLE's column clauses (``ddl.column_changes``)
are applied to the definition before it: rows written between two statements decode by the definition
they were written under however far the stream lags. Where the catalog agrees with the result it is
taken instead (it spells types as the server does). CREATE TABLE, and a statement that cannot be applied
exactly (CONVERT TO CHARACTER SET, partitioning, a generated column, a type without a logical
equivalent), are read from the catalog as it is now.

Every position the stream hands out carries the selected tables' definitions valid at it (``history``;
the target stores each distinct set once, the position its digest), so a restart from a position the
target stored decodes by them, not by the catalog, however the tables changed since (an ALTER the stream
had not reached, or one made while the task was stopped). Only a stream from a position without them (a
user's start position) takes the catalog's, as does one that read a definition from the catalog while
the table changed again later in the binlog: it decodes the rows in between with a later definition;
where the layout differs (column count, types) it stops with ``NeedsResync`` rather than guess; where it
does not (a renamed column) the rows carry the later names.

Gaps are loud: a start position in a purged binlog file or an INCIDENT event (the source lost changes)
raise ``NeedsResync``; a statement-logged change to a selected table (a session whose binlog_format is
not ROW) suspends that table (``STATEMENT_LOGGED``).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import total_ordering
from typing import Any

import pymysql

from conveyor.convert.schema_change import DropColumn, RenameColumn, apply_change, shape
from conveyor.endpoints.config import MySQLConfig
from conveyor.endpoints.mysql import binlog as bl
from conveyor.endpoints.mysql.binlog import BinlogError, BinlogStream, ConnectionLost, Event, lenenc
from conveyor.endpoints.mysql.connect import connect, is_mariadb, quote
from conveyor.endpoints.mysql.ddl import (
    Add,
    Clause,
    Definition,
    Drop,
    PrimaryKey,
    Redefine,
    SetDefault,
    Unfollowable,
    column_changes,
    parse_ddl,
    partition_rows,
    table_name,
    tokens,
)
from conveyor.endpoints.mysql.errors import account_of, classify, error_code, message
from conveyor.endpoints.mysql.history import History, TableSchema, history_from_json, history_json
from conveyor.endpoints.mysql.introspect import _GENERATED, MySQLIntrospector
from conveyor.endpoints.mysql.rowevents import (
    BINARY_LOGICALS,
    LayoutMismatch,
    RowsDecoder,
    TableMap,
    Target,
    Unsupported,
    parse_table_map,
)
from conveyor.endpoints.mysql.snapshot import MySQLSnapshot
from conveyor.endpoints.sql.changes import shared_part
from conveyor.errors import ConveyorError, NeedsResync, TerminalError, TransientError, UserActionError
from conveyor.model.changes import (
    CREATED,
    STATEMENT_LOGGED,
    Change,
    Idle,
    Op,
    SchemaChanged,
    Transaction,
    change_from_fields,
)
from conveyor.model.findings import Finding, enforce
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.types import LogicalType as L

#: the events a transaction group begins with
GTID_EVENTS = frozenset({bl.MARIADB_GTID, bl.MYSQL_GTID, bl.MYSQL_ANONYMOUS_GTID})
#: distinct TABLE_MAP events kept parsed (a table has one per schema version and table id)
TABLE_MAP_CACHE = 1024
#: seconds without anything to yield after which ``stream()`` yields ``Idle``
IDLE_SECONDS = 1.0
#: seconds a catalog query (position, clock, introspection) may wait for the server: a hung server or
#: network becomes a TransientError the runner retries, instead of a task that waits forever
CATALOG_TIMEOUT = 30.0
#: replica server ids of tasks: this base plus a hash of the task name (unlikely to meet a real replica's)
SERVER_ID_BASE = 0x50000000
#: MySQL character set -> Python codec (MySQL's latin1 is Windows-1252)
CODECS: dict[str, str | None] = {
    "binary": None,
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "utf8": "utf-8",
    "ascii": "ascii",
    "latin1": "cp1252",
    "latin2": "iso8859-2",
    "latin5": "iso8859-9",
    "latin7": "iso8859-13",
    "greek": "iso8859-7",
    "hebrew": "iso8859-8",
    "cp1250": "cp1250",
    "cp1251": "cp1251",
    "cp1256": "cp1256",
    "cp1257": "cp1257",
    "cp850": "cp850",
    "cp852": "cp852",
    "cp866": "cp866",
    "koi8r": "koi8-r",
    "koi8u": "koi8-u",
    "ucs2": "utf-16-be",
    "utf16": "utf-16-be",
    "utf16le": "utf-16-le",
    "utf32": "utf-32-be",
    "sjis": "shift_jis",
    "cp932": "cp932",
    "ujis": "euc-jp",
    "eucjpms": "euc-jp",
    "gbk": "gbk",
    "gb2312": "gb2312",
    "gb18030": "gb18030",
    "big5": "big5",
    "euckr": "euc-kr",
    "tis620": "tis-620",
    "macroman": "mac-roman",
}
#: logical types whose values have a character set (MariaDB's JSON is a longtext)
TEXT_LOGICALS = frozenset({L.CHAR, L.VARCHAR, L.TEXT, L.ENUM, L.SET, L.JSON})
COLUMNS_SQL = (
    "SELECT COLUMN_NAME, CHARACTER_SET_NAME, EXTRA FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
)
#: a table's default character set (its database's where the table is gone)
CHARSET_SQL = (
    "SELECT COALESCE((SELECT c.CHARACTER_SET_NAME FROM information_schema.TABLES t JOIN information_schema.COLLATIONS "
    "c ON c.COLLATION_NAME = t.TABLE_COLLATION WHERE t.TABLE_SCHEMA = %s AND t.TABLE_NAME = %s), (SELECT "
    "DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s))"
)
SERVER_SQL = "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, @@GLOBAL.server_id"
#: MariaDB's system-versioned tables among the task's schemas (MySQL has none: no rows)
VERSIONED_SQL = (
    "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'SYSTEM VERSIONED' "
    "AND TABLE_SCHEMA IN %s"
)
EXPIRY_SQL = "SELECT @@GLOBAL.binlog_expire_logs_seconds"
#: MySQL: JSON partial updates log only the changed part of a value
ROW_VALUE_SQL = "SELECT @@GLOBAL.binlog_row_value_options"
COMPRESSION_SQL = "SELECT @@GLOBAL.binlog_transaction_compression"

#: MySQL events this capture cannot read -> the setting that keeps them out of the binlog
UNREADABLE_SETTINGS = {
    bl.TRANSACTION_PAYLOAD: "binlog_transaction_compression = OFF",
    bl.PARTIAL_UPDATE_ROWS: "binlog_row_value_options = ''",
}
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_MARIADB_GTID = struct.Struct("<QIB").unpack_from
_GTID_ENTRY = struct.Struct("<IIQ").unpack_from
_INSERT, _UPDATE, _DELETE = Op.INSERT, Op.UPDATE, Op.DELETE
_OPS = {"i": _INSERT, "u": _UPDATE, "d": _DELETE}


# --------------------------------------------------------------------------- positions
@total_ordering
@dataclass(eq=False, slots=True)
class BinlogPosition:
    """A place in the source's binlog: file and offset, and the GTID state there where the server
    has GTIDs (MariaDB ``domain-server-seq`` per domain; MySQL's executed GTID set). Ordered and
    equal by file and offset: the GTID is what the same place is called, not another place.

    Never changed once made (it is hashed), but not frozen: one is made per rows event, and a frozen
    dataclass's ``__init__`` cost four times as much."""

    file: str
    pos: int
    gtid: str = ""
    #: the selected tables' definitions valid here (``history``), for a restart from this place; empty: the catalog's
    tables: History = field(default=History(), repr=False)

    @property
    def key(self) -> tuple[int, str, int]:
        stem, _, number = self.file.rpartition(".")
        return (int(number), stem, self.pos) if number.isdigit() else (-1, self.file, self.pos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BinlogPosition) and self.key == other.key

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, BinlogPosition):
            return NotImplemented
        return self.key < other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.file, "pos": self.pos}
        if self.gtid:
            data["gtid"] = self.gtid
        if self.tables:  # stored once per distinct set of definitions, not with every commit
            data["tables"] = shared_part(self.tables.digest, self.tables.tables)
        return data


def position_from_json(data: dict[str, Any]) -> BinlogPosition:
    tables = data.get("tables") or ()
    if isinstance(tables, dict):  # ``shared_part``; a position stored by an earlier version has the list itself
        tables = tables["value"]
    return BinlogPosition(str(data["file"]), int(data["pos"]), str(data.get("gtid") or ""), History(tuple(tables)))


_POSITION = re.compile(r"^\s*([^:\s/\\]+):(\d+)\s*$")


def parse_position(text: str) -> BinlogPosition:
    """A user's start position: ``binlog-file:offset`` as SHOW MASTER STATUS prints them."""
    match = _POSITION.match(text)
    if not match or int(match.group(2)) < 4:
        raise UserActionError(
            f"CdcStartPosition {text!r} is not a MySQL binlog position; write it as file:offset, e.g. "
            "mysql-bin.000003:4567 (SHOW MASTER STATUS shows the current one)"
        )
    return BinlogPosition(match.group(1), int(match.group(2)))


def server_id_for(task: str) -> int:
    """The replica server id of a task's stream: stable, so a stale stream of the same task is
    replaced by the server when a new one connects."""
    return SERVER_ID_BASE + zlib.crc32(task.encode()) % 0x10000000


# --------------------------------------------------------------------------- GTID states
def _mariadb_state(text: str) -> dict[int, str]:
    state = {}
    for part in text.replace(" ", "").split(","):
        if part.count("-") == 2:
            state[int(part.split("-")[0])] = part
    return state


def _mariadb_text(state: dict[int, str]) -> str:
    return ",".join(state[d] for d in sorted(state))


def _mysql_set(text: str) -> dict[str, list[list[int]]]:
    """MySQL's GTID set text (``uuid:1-5:7,uuid2:1-3``) as uuid -> sorted [start, end] intervals."""
    out: dict[str, list[list[int]]] = {}
    for part in re.sub(r"\s+", "", text).split(","):
        if ":" not in part:
            continue
        sid, *ranges = part.split(":")
        for r in ranges:
            start, _, end = r.partition("-")
            out.setdefault(sid.lower(), []).append([int(start), int(end or start)])
    return out


def _mysql_add(gtids: dict[str, list[list[int]]], sid: str, gno: int) -> None:
    intervals = gtids.setdefault(sid, [])
    for interval in intervals:
        if interval[0] <= gno <= interval[1]:
            return
        if gno == interval[1] + 1:
            interval[1] = gno
            return
    intervals.append([gno, gno])
    intervals.sort()


def _mysql_text(gtids: dict[str, list[list[int]]]) -> str:
    return ",".join(sid + "".join(f":{a}" if a == b else f":{a}-{b}" for a, b in gtids[sid]) for sid in sorted(gtids))


class GtidState:
    """The GTID state as the stream moves: MariaDB's per-domain positions or MySQL's executed set."""

    def __init__(self, text: str) -> None:
        self.mariadb = _mariadb_state(text) if text and ":" not in text else {}
        self.mysql = _mysql_set(text) if ":" in text else {}

    def add_mariadb(self, domain: int, gtid: str) -> None:
        self.mariadb[domain] = gtid

    def add_mysql(self, sid: str, gno: int) -> None:
        _mysql_add(self.mysql, sid, gno)

    def text(self) -> str:
        return _mysql_text(self.mysql) if self.mysql else _mariadb_text(self.mariadb)


# --------------------------------------------------------------------------- statements
_DML = {"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD"}


def _statement_tables(sql: str, database: str, selected: set[TableId]) -> list[TableId]:
    """Selected tables a statement names (for statement-logged DML)."""
    toks = tokens(sql)
    if not toks or toks[0].upper() not in _DML:
        return []
    found = []
    for i, token in enumerate(toks):
        if token == "." or (i > 0 and toks[i - 1] == "."):
            continue
        table, _ = table_name(toks, i, database)
        if table in selected and table not in found:
            found.append(table)
    return found


def describe_change(
    old: Sequence[Column], new: Sequence[Column], renamed: Sequence[tuple[str, str]] | None = None
) -> str:
    """What changed between two definitions of a table, for people; ``renamed``: the statement's renames
    where it names them (``SchemaChanged.renamed``), else a lone drop and add of one type reads as one."""
    before = {c.name: c for c in old}
    after = {c.name: c for c in new}
    dropped = [c for c in old if c.name not in after]
    added = [c for c in new if c.name not in before]
    parts = []
    if renamed is None and len(dropped) == len(added) == 1 and shape(dropped[0].type) == shape(added[0].type):
        renamed = [(dropped[0].name, added[0].name)]
    for old_name, new_name in renamed or ():
        if old_name in before and new_name in after:
            parts.append(f"renamed {old_name} to {new_name}")
            dropped = [c for c in dropped if c.name != old_name]
            added = [c for c in added if c.name != new_name]
            before[new_name] = before[old_name]
    parts += [f"added {c.name} ({c.type.native or c.type.describe()})" for c in added]
    parts += [f"dropped {c.name}" for c in dropped]
    for c in new:
        was = before.get(c.name)
        if was is not None and (shape(was.type) != shape(c.type) or was.nullable != c.nullable):
            parts.append(f"changed {c.name} from {was.type.native} to {c.type.native}")
    return ", ".join(parts) or "no column changed"


# --------------------------------------------------------------------------- per-table state
@dataclass(slots=True)
class _Mapped:
    """A TABLE_MAP's table_id, resolved: the table and the decoder for its layout (None: not selected)."""

    table_id: int
    table: TableId
    schema: TableSchema | None
    decoder: RowsDecoder | None
    #: the table's column names (the rows' order), when it is selected
    names: tuple[str, ...]


# --------------------------------------------------------------------------- the role
class MySQLCapture:
    """The Capture role of MySQL / MariaDB for one task and its selected tables; one thread at a time."""

    def __init__(
        self,
        config: MySQLConfig,
        task: str,
        tables: Sequence[Table] = (),
        *,
        idle_seconds: float = IDLE_SECONDS,
        silence_timeout: float = bl.SILENCE_TIMEOUT,
        catalog_timeout: float = CATALOG_TIMEOUT,
    ) -> None:
        self.config = config
        self.task = task
        self.tables = list(tables)
        self.idle_seconds = idle_seconds
        #: transactions with more changes come in parts (``Transaction.partial``); None: whole
        self.part_changes: int | None = None
        self.part_bytes: int | None = None
        self.text_tables: frozenset[TableId] = frozenset()  # values are always Python values here
        self.silence_timeout = silence_timeout
        self.catalog_timeout = catalog_timeout
        self.server_id = server_id_for(task)
        self.acked: BinlogPosition | None = None
        self._conn: Any = None
        self._introspector: MySQLIntrospector | None = None

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def conn(self) -> Any:
        """The ordinary connection for catalog queries (opened on first use, reopened when broken)."""
        if self._conn is None or not self._conn.open:
            self._conn = connect(self.config, "source", self.catalog_timeout)
            self._introspector = MySQLIntrospector(self._conn, self.config)
        return self._conn

    @property
    def introspector(self) -> MySQLIntrospector:
        _ = self.conn
        assert self._introspector is not None
        return self._introspector

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A catalog query; once more on a new connection when the old one broke (a server restart),
        not when the server did not answer in time (a hang is not over by reconnecting)."""
        started = time.monotonic()
        try:
            return self._run(sql, params)
        except pymysql.err.OperationalError as exc:
            if error_code(exc) not in (2006, 2013):
                raise
            self.close()
            if time.monotonic() - started >= self.catalog_timeout:
                raise TransientError(
                    f"{self.where} did not answer a catalog query within {self.catalog_timeout:.0f} s (a hung server "
                    "or network)"
                ) from None
            return self._run(sql, params)

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = self.conn
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            rows = list(cur.fetchall())
        conn.commit()  # no snapshot kept open: the next catalog query sees the latest definitions
        return rows

    def _account(self) -> str:
        user, _, host = str(self._query("SELECT CURRENT_USER()")[0][0]).rpartition("@")
        return f"'{user}'@'{host}'"

    # ------------------------------------------------------------------ pre-flight
    def check(self) -> list[str]:
        """Everything change data capture needs; the first problem raises ``UserActionError`` naming
        the fix. Returns warnings."""
        return enforce(self.preflight())

    def preflight(self, tables: bool = True) -> list[Finding]:
        """Every pre-flight finding at once, in ``check()``'s order (``tables=False``: the server's
        settings and the user's privileges only). Keys: AWS DMS's, ``mariadb-`` on MariaDB."""
        row = self._query(SERVER_SQL)[0]
        log_bin, binlog_format, row_image, server_id = int(row[0] or 0), str(row[1]), str(row[2]), int(row[3] or 0)
        mariadb = is_mariadb(self.conn)
        flavor = "mariadb" if mariadb else "mysql"
        found: list[Finding] = []
        if not log_bin:
            found.append(
                Finding(
                    f"{flavor}-check-binlog-enabled",
                    f"binary logging is off on {self.where}; change data capture reads the binlog: start the server "
                    "with log_bin (in my.cnf [mysqld]: log_bin = mysql-bin, server_id = 1, binlog_format = ROW, "
                    "binlog_row_image = FULL) and restart it (Amazon RDS: enable automated backups)",
                )
            )
        if binlog_format.upper() != "ROW":
            found.append(
                Finding(
                    f"{flavor}-check-binlog-format",
                    f"binlog_format is {binlog_format} on {self.where}; change data capture needs row events: run SET "
                    "GLOBAL binlog_format = 'ROW' and set binlog_format = ROW in my.cnf (RDS: the parameter group); "
                    "sessions already open keep their format until they reconnect",
                )
            )
        if row_image.upper() != "FULL":
            found.append(
                Finding(
                    f"{flavor}-check-binlog-image",
                    f"binlog_row_image is {row_image} on {self.where}; change data capture needs whole rows: run SET "
                    "GLOBAL binlog_row_image = 'FULL' and set binlog_row_image = FULL in my.cnf (RDS: the parameter "
                    "group)",
                )
            )
        if server_id == 0:
            found.append(
                Finding(
                    f"{flavor}-check-server-id",
                    f"server_id is 0 on {self.where}, so it cannot serve replicas; run SET GLOBAL server_id = 1 and "
                    "set server_id in my.cnf",
                )
            )
        if not mariadb:
            found += self._mysql_option_findings()
        missing = self._missing_grants(mariadb, log_bin=bool(log_bin))
        if missing:
            account = missing[0][0]
            found.append(
                Finding(
                    f"{flavor}-check-replication-privileges",
                    f"user {account} may not read the binlog on {self.where} ({missing[0][1]}); run: "
                    + "; ".join(f"GRANT {grant} ON *.* TO {account}" for _, _, grant in missing),
                )
            )
        if tables:
            found += self._table_findings(flavor)
        found += self._expiry_findings(flavor)
        return found

    def _table_findings(self, flavor: str) -> list[Finding]:
        if not self.tables:
            return [
                Finding(
                    "all-check-source-selection-rules",
                    "no tables are selected for change data capture; check the table mappings",
                )
            ]
        found = []
        versioned = {
            TableId(str(schema), str(name))
            for schema, name in self._query(VERSIONED_SQL, (sorted({t.id.schema for t in self.tables}) or [""],))
        }
        for table in self.tables:
            if table.id in versioned:
                found.append(
                    Finding(
                        "mariadb-check-system-versioned-tables",
                        f"{table.id} is system-versioned: its binlog rows carry hidden row_start / row_end columns, "
                        "and a DELETE is logged as an UPDATE of the history, which change data capture cannot follow; "
                        f"leave it out of the task, or run ALTER TABLE {quote(table.id.name)} DROP SYSTEM VERSIONING",
                    )
                )
                continue
            try:
                current = self.introspector.table(table.id)
            except UserActionError as exc:  # gone, or no SELECT privilege
                found.append(Finding(f"{flavor}-check-select-privileges", str(exc)))
                continue
            try:
                self._schema(current)
            except UserActionError as exc:
                found.append(Finding("unsupported-data-types-in-source", str(exc)))
            binary_json = [c.name for c in current.columns if flavor == "mysql" and c.type.native.lower() == "json"]
            if binary_json:
                found.append(
                    Finding(
                        "unsupported-data-types-in-source",
                        f"{table.id} has JSON columns ({', '.join(binary_json)}), which MySQL logs in its binary JSON "
                        "form that change data capture cannot decode yet; leave the table out of change data capture",
                    )
                )
        return found

    def _mysql_option_findings(self) -> list[Finding]:
        """MySQL 8 can log JSON updates partially and compress whole transactions: neither is readable here."""
        found = []
        with contextlib.suppress(pymysql.err.MySQLError):
            options = str(self._query(ROW_VALUE_SQL)[0][0] or "")
            if "PARTIAL_JSON" in options.upper():
                found.append(
                    Finding(
                        "mysql-check-binlog-row-value-options",
                        f"binlog_row_value_options is {options} on {self.where}: JSON updates are logged partially; "
                        "run SET GLOBAL binlog_row_value_options = ''",
                    )
                )
        with contextlib.suppress(pymysql.err.MySQLError):
            if int(self._query(COMPRESSION_SQL)[0][0] or 0):
                found.append(
                    Finding(
                        "mysql-check-binlog-compression",
                        f"binlog_transaction_compression is ON on {self.where}; change data capture reads "
                        "uncompressed events: run SET GLOBAL binlog_transaction_compression = OFF",
                    )
                )
        return found

    def _missing_grants(self, mariadb: bool, log_bin: bool) -> list[tuple[str, str, str]]:
        """(account, the server's refusal, the privilege) for each privilege the stream lacks: reading the
        binlog position (REPLICATION CLIENT, MariaDB's BINLOG MONITOR) and REPLICATION SLAVE, checked by
        registering as a replica as the stream will."""
        missing = []
        try:
            self.binlog_end(gtid=False)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) not in (1227, 1044, 1045, 1142):
                raise
            grant = "BINLOG MONITOR" if mariadb else "REPLICATION CLIENT"
            missing.append((account_of(exc) or self._account(), message(exc), grant))
        except UserActionError:
            if log_bin:
                raise
        conn = connect(self.config, "source", self.catalog_timeout)
        try:
            bl.register(conn, self.server_id)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) not in (1227, 1044, 1045, 1142):
                raise
            missing.append((account_of(exc) or self._account(), message(exc), "REPLICATION SLAVE"))
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return missing

    def _expiry_findings(self, flavor: str) -> list[Finding]:
        try:
            seconds = int(self._query(EXPIRY_SQL)[0][0] or 0)
        except pymysql.err.MySQLError:
            return []
        if 0 < seconds < 86400:
            return [
                Finding(
                    f"{flavor}-check-binlog-retention-time",
                    f"{self.where} purges binlogs after {seconds / 3600:.1f} h (binlog_expire_logs_seconds): a task "
                    "stopped for longer needs a new full load",
                    warning=True,
                )
            ]
        return []

    # ------------------------------------------------------------------ positions
    def binlog_end(self, gtid: bool = True) -> BinlogPosition:
        """The end of the binlog now, with the GTID state there (``gtid``): MySQL prints its executed set
        beside the position, MariaDB's ``BINLOG_GTID_POS()`` gives the state at a file and offset, which
        it finds by reading the binlog file up to it (a big file: a fraction of a second), so callers
        that only compare places leave it out."""
        try:
            rows = self._query("SHOW MASTER STATUS")
        except pymysql.err.MySQLError as exc:
            if error_code(exc) != 1064:
                raise
            rows = self._query("SHOW BINARY LOG STATUS")  # MySQL 8.4 renamed it
        if not rows:
            raise UserActionError(f"binary logging is off on {self.where}; change data capture reads the binlog")
        file, pos = str(rows[0][0]), int(rows[0][1])
        if not gtid:
            state = ""
        elif is_mariadb(self.conn):
            state = self._query("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))[0][0]
        else:
            state = rows[0][4] if len(rows[0]) > 4 else ""
        return BinlogPosition(file, pos, str(state or "").replace("\n", ""))

    def position_at(self, at: datetime) -> BinlogPosition:
        """The first transaction boundary in the binlog written at or after ``at`` (DMS CdcStartTime;
        second resolution, the binlog's own clock): the last file created before ``at``, scanned to the
        first transaction that began at or after it; the end of the binlog when none did."""
        try:
            files = self.binlog_files()
            end = self.binlog_end()  # the answer when no transaction began since: with its GTID state
            since = at.timestamp()
            server_id = self.server_id + 2  # not the stream's: the server drops a replica that registers twice
            start = files[0][0]
            for name, _ in files:
                if self._file_created(server_id, name) <= since:
                    start = name
            names = [name for name, _ in files]
            for name in names[names.index(start) :]:
                found = self._first_transaction_since(server_id, name, since, end)
                if found is not None:
                    if is_mariadb(self.conn):
                        gtid = self._query("SELECT BINLOG_GTID_POS(%s, %s)", (name, found))[0][0]
                        return BinlogPosition(name, found, str(gtid or ""))
                    return BinlogPosition(name, found)
            return end
        except pymysql.err.MySQLError as exc:
            raise self._error(exc) from None

    def _file_created(self, server_id: int, name: str) -> float:
        """A binlog file's creation time: its FORMAT_DESCRIPTION event's timestamp."""
        stream = BinlogStream(self.config, server_id, name, 4, silence_timeout=self.silence_timeout)
        try:
            while True:
                event = stream.read(self.silence_timeout)
                if event is not None and event.type == bl.FORMAT_DESCRIPTION:
                    return float(event.timestamp)
        finally:
            stream.close()

    def _first_transaction_since(self, server_id: int, name: str, since: float, end: BinlogPosition) -> int | None:
        """The offset in ``name`` where the first transaction at or after ``since`` begins, or None.
        Every transaction group starts with a GTID event (MariaDB 10+, MySQL 5.7+ with anonymous ones)."""
        stream = BinlogStream(self.config, server_id, name, 4, silence_timeout=self.silence_timeout)
        try:
            boundary = 4  # where the next event begins
            while True:
                event = stream.read(1.0)
                if event is None or (event.type == bl.ROTATE and not event.flags & bl.ARTIFICIAL):
                    return None  # the end of this file (a rotation, or the end of the binlog)
                if event.flags & bl.ARTIFICIAL or event.end == 0:
                    continue
                if event.type in GTID_EVENTS and event.timestamp >= since:
                    return boundary
                boundary = event.end
                if name == end.file and boundary >= end.pos:
                    return None
        finally:
            stream.close()

    def handoff(self, workers: int, hold: bool) -> tuple[MySQLSnapshot, BinlogPosition]:
        """A snapshot taken under FLUSH TABLES WITH READ LOCK and the binlog position noted under it."""
        snapshot = MySQLSnapshot(self.config, workers, hold)
        if snapshot.position is None:
            snapshot.close()
            self.binlog_end(gtid=False)  # raises when the position is what cannot be read
            account = self._account()
            raise UserActionError(
                f"user {account} may not take FLUSH TABLES WITH READ LOCK on {self.where}, so the full load would "
                f"not meet the change stream at an exact point; run: GRANT RELOAD ON *.* TO {account}"
            )
        position = snapshot.position
        tables = history_json({t.id: self._schema(t) for t in self.tables})
        return snapshot, BinlogPosition(position["file"], int(position["pos"]), position.get("gtid", ""), tables)

    def begin(self, start: BinlogPosition | None = None) -> BinlogPosition:
        if start is None:
            return self.binlog_end()
        files = [name for name, _ in self.binlog_files()]
        if start.file not in files:
            raise UserActionError(
                f"cdc_start_position {start.file}:{start.pos} names a binary log the server does not have (it keeps "
                f"{files[0] if files else 'none'} to {files[-1] if files else 'none'}); give a position in one of them "
                "(SHOW BINARY LOGS), or leave cdc_start_position out"
            )
        return start

    def parse_position(self, text: str) -> BinlogPosition:
        return parse_position(text)

    def position_json(self, position: BinlogPosition) -> dict[str, Any]:
        return position.to_json()

    def position_from_json(self, data: dict[str, Any]) -> BinlogPosition:
        return position_from_json(data)

    def definitions_at(self, position: BinlogPosition) -> dict[TableId, Table]:
        """``PositionDefinitions``: the tables as the stream decodes rows at ``position`` (none for a
        position without definitions, e.g. a user's start position)."""
        return {table_id: schema.table for table_id, schema in history_from_json(position.tables.tables).items()}

    def clock(self) -> tuple[datetime, BinlogPosition]:
        """The server's UTC clock, then the binlog end: a commit stamped before the clock is before the end."""
        now = self._query("SELECT UTC_TIMESTAMP(6)")[0][0]
        return now.replace(tzinfo=UTC), self.binlog_end(gtid=False)

    def binlog_files(self) -> list[tuple[str, int]]:
        """SHOW BINARY LOGS: (file, size) from the oldest the server still has."""
        return [(str(r[0]), int(r[1])) for r in self._query("SHOW BINARY LOGS")]

    def lag_bytes(self, position: BinlogPosition) -> int | None:
        files = self.binlog_files()
        names = [f for f, _ in files]
        if position.file not in names:
            return None
        at = names.index(position.file)
        return max(0, files[at][1] - position.pos) + sum(size for _, size in files[at + 1 :])

    def ack(self, position: BinlogPosition) -> None:
        """Nothing to confirm on a MySQL server (the target stores positions); kept for ``acked``."""
        if self.acked is None or position > self.acked:
            self.acked = position

    def drop(self) -> list[str]:
        return []  # a replica connection leaves nothing behind on the source

    # ------------------------------------------------------------------ schemas
    def _load(self, table_id: TableId) -> TableSchema:
        """The table's definition now."""
        return self._schema(self.introspector.table(table_id))

    def _schema(self, table: Table) -> TableSchema:
        """How the binlog holds ``table``'s rows: its columns in order, with generated and system
        columns (in the binlog, not in the table's rows) where the catalog has them, each with its
        character set's codec. Columns the catalog no longer has (``table`` was described before a
        schema change) keep the codec of their type's usual character set."""
        table_id = table.id
        catalog = self._query(COLUMNS_SQL, (table_id.schema, table_id.name))
        charsets = {name: str(charset or "binary").lower() for name, charset, _ in catalog}
        names = [c.name for c in table.columns]
        extra = [name for name, _, kind in catalog if name not in names and _GENERATED.search(kind or "")]
        order = [name for name, _, _ in catalog if name not in extra]
        by_name = {c.name: c for c in table.columns}
        targets: list[Target | None] = []
        for name in [name for name, _, _ in catalog] if order == names else names:
            column = by_name.get(name)
            if column is None:
                targets.append(None)
                continue
            binary = column.type.logical in BINARY_LOGICALS
            charset = charsets.get(name, "binary" if binary else "utf8mb4")
            if charset not in CODECS:
                raise UserActionError(
                    f"column {name} of {table_id} has character set {charset}, which change data capture cannot "
                    f"decode; convert it (ALTER TABLE {quote(table_id.schema)}.{quote(table_id.name)} MODIFY ... "
                    "CHARACTER SET utf8mb4) or leave the table out"
                )
            targets.append(Target(name, column.type, CODECS[charset]))
        return TableSchema(table, tuple(targets), 0)

    # ------------------------------------------------------------------ streaming
    def verify_start(self, start: BinlogPosition) -> None:
        """The server still has the binlog from ``start`` on, or ``NeedsResync`` says what is lost."""
        files = self.binlog_files()
        names = [f for f, _ in files]
        if start.file not in names:
            oldest = names[0] if names else "none"
            if files and start < BinlogPosition(oldest, 4):
                raise NeedsResync(
                    f"binlog file {start.file} is no longer on {self.where} (purged; the oldest is {oldest}): the "
                    f"changes since {start} are lost"
                )
            newest = names[-1] if names else "none"
            raise NeedsResync(
                f"binlog file {start.file} is not on {self.where} (its binlogs are {oldest} .. {newest}): the "
                "source was restored from a backup or is another server"
            )
        size = files[names.index(start.file)][1]
        if start.pos > size:
            raise NeedsResync(
                f"the task resumes at {start}, past the end of binlog file {start.file} ({size} bytes) on "
                f"{self.where}: the source was restored from a backup or is another server"
            )
        if start.gtid and is_mariadb(self.conn):
            # the same file name and offset, other transactions before them: the binlog was written anew
            # (RESET MASTER) since the task read there, so what it held after is not what the task missed
            there = self._query("SELECT BINLOG_GTID_POS(%s, %s)", (start.file, start.pos))[0][0]
            if there is None or set(str(there).split(",")) != set(start.gtid.split(",")):
                raise NeedsResync(
                    f"binlog file {start.file} on {self.where} is not the one the task read: at {start.pos} its "
                    f"GTID state is {there or 'no event boundary'}, where the task stored {start.gtid} (the binlog "
                    "was reset, or the source restored from a backup): the changes since are lost"
                )

    def stream(self, start: BinlogPosition) -> Iterator[Transaction | SchemaChanged | Idle]:
        """Whole transactions committed after ``start`` on the selected tables, in commit order;
        ``SchemaChanged`` where a DDL statement changed a selected table; ``Idle`` after
        ``idle_seconds`` with nothing to yield, and at once when the server has sent nothing more after
        a whole transaction (caught up). See the module docstring for what raises."""
        try:
            self.verify_start(start)
            # the definitions stored with the position are those its rows need, whatever the catalog says now
            stored = history_from_json(start.tables.tables)
            schemas = {t.id: stored.get(t.id) or self._schema(t) for t in self.tables}
            server_id = self.server_id
            if server_id == int(self._query("SELECT @@GLOBAL.server_id")[0][0]):
                server_id += 1
            stream = BinlogStream(self.config, server_id, start.file, start.pos, silence_timeout=self.silence_timeout)
        except pymysql.err.MySQLError as exc:
            raise self._error(exc) from None
        try:
            yield from _Reader(self, stream, start, schemas).run()
        except BinlogError as exc:
            raise self._binlog_error(exc, start) from None
        except ConnectionLost as exc:
            raise TransientError(f"the binlog connection to {self.where} broke ({exc}); reconnecting") from None
        except pymysql.err.MySQLError as exc:
            raise self._error(exc) from None
        finally:
            stream.close()

    def _error(self, exc: pymysql.err.MySQLError) -> ConveyorError:
        code = error_code(exc)
        if code in (1227, 1044, 1045) and "REPLICATION" in message(exc).upper():
            return UserActionError(
                f"{message(exc)} on {self.where}; run: GRANT REPLICATION SLAVE ON *.* TO '{self.config.user}'@'%'"
            )
        return classify(exc) or TerminalError(f"MySQL change data capture on {self.where}: {message(exc)}")

    def _binlog_error(self, exc: BinlogError, start: BinlogPosition) -> ConveyorError:
        text = exc.message.lower()
        if "same server_uuid/server_id" in text:  # MariaDB and MySQL say so
            # the server let the newer of two readers that register as this task's replica id read on
            return TerminalError(
                f"another run of task {self.task!r} started reading the binlog on {self.where}, as the same replica "
                "(server_id), so this run stops; run one copy of a task at a time"
            )
        if exc.code == 1236:
            if "could not find first log file" in text or "purged" in text or "not find" in text:
                return NeedsResync(
                    f"the server no longer has binlog file {start.file} ({exc.message}): the changes since {start} "
                    "are lost"
                )
            return TerminalError(f"the server cannot stream its binlog from {start} ({exc.message})")
        return self._error(pymysql.err.OperationalError(exc.code, exc.message))

    def refresh(self, table_id: TableId) -> TableSchema | None:
        """The table's definition after a DDL statement; None when it no longer exists."""
        try:
            return self._load(table_id)
        except UserActionError:
            return None

    def follow(self, schema: TableSchema, changes: Sequence[Clause], table_id: TableId) -> TableSchema:
        """``schema`` after an ALTER TABLE's column changes, as ``table_id``: the definition right
        after the statement, whatever the catalog holds by now. ``Unfollowable`` when a change does
        not apply exactly (a column the definition does not name, e.g. a generated one)."""
        targets = list(schema.targets)
        columns = {c.name: c for c in schema.table.columns}
        table = schema.table.renamed(table_id)
        charset = schema.charset

        def at(name: str) -> int:
            for i, target in enumerate(targets):
                if target is not None and target.name.lower() == name.lower():
                    return i
            raise Unfollowable(f"{table_id} has no column {name} in the captured definition")

        def free(name: str, was: str = "") -> None:
            """MySQL's column names are case-insensitive: a new name must not be another column's."""
            if name.lower() != was.lower() and any(t is not None and t.name.lower() == name.lower() for t in targets):
                raise Unfollowable(f"{table_id} already has a column {name}")

        def put(definition: Definition, default: int) -> None:
            """The column at its place (FIRST, AFTER a column, else ``default``), decoded by its clause's
            character set or the table's default, as the server does."""
            nonlocal charset
            column = definition.column
            codec = None
            if column.type.logical in TEXT_LOGICALS:
                charset = charset or self._default_charset(table_id)
                name = definition.charset or charset
                codec = CODECS.get(name)
                if codec is None:
                    raise Unfollowable(f"column {column.name} has character set {name or 'unknown'}")
            where = 0 if definition.first else at(definition.after) + 1 if definition.after else default
            targets.insert(where, Target(column.name, column.type, codec))
            key = table.primary_key.columns if table.primary_key else ()
            columns[column.name] = replace(column, nullable=False) if column.name in key else column

        for change in changes:
            match change:
                case Add(definition, if_not_exists):
                    if if_not_exists and definition.column.name.lower() in map(str.lower, columns):
                        continue
                    free(definition.column.name)
                    put(definition, len(targets))
                    if definition.primary:
                        table = replace(table, primary_key=Key("PRIMARY", (definition.column.name,)))
                case Drop(name, if_exists):
                    if if_exists and name.lower() not in map(str.lower, columns):
                        continue
                    gone = targets.pop(at(name))
                    assert gone is not None
                    table = apply_change(table, DropColumn(gone.name))
                    del columns[gone.name]
                case Redefine(old, definition, if_exists):
                    if if_exists and old.lower() not in map(str.lower, columns):
                        continue
                    i = at(old)
                    was = targets.pop(i)
                    assert was is not None
                    free(definition.column.name, was.name)
                    table = apply_change(table, RenameColumn(was.name, definition.column.name))
                    del columns[was.name]
                    put(definition, i)
                    if definition.primary:
                        table = replace(table, primary_key=Key("PRIMARY", (definition.column.name,)))
                case RenameColumn(old, new):
                    i = at(old)
                    was = targets[i]
                    assert was is not None
                    free(new, was.name)
                    targets[i] = replace(was, name=new)
                    table = apply_change(table, RenameColumn(was.name, new))
                    columns[new] = replace(columns.pop(was.name), name=new)
                case SetDefault(name, default):
                    target = targets[at(name)]
                    assert target is not None
                    columns[target.name] = replace(columns[target.name], default=default)
                case PrimaryKey(names):
                    found = [targets[at(name)] for name in names]
                    key = tuple(t.name for t in found if t is not None)
                    columns.update({name: replace(columns[name], nullable=False) for name in key})
                    table = replace(table, primary_key=Key("PRIMARY", key) if key else None)
        table = replace(table, columns=tuple(columns[t.name] for t in targets if t is not None))
        return TableSchema(table, tuple(targets), schema.version, charset, schema.unfollowed)

    def _default_charset(self, table_id: TableId) -> str:
        """Read as late as a text column needs it: changing it takes a statement read from the catalog."""
        return str(self._query(CHARSET_SQL, (table_id.schema, table_id.name, table_id.schema))[0][0] or "")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class _Reader:
    """One ``stream()``'s state: the position, the open transaction, the table layouts."""

    def __init__(
        self, capture: MySQLCapture, stream: BinlogStream, start: BinlogPosition, schemas: dict[TableId, TableSchema]
    ) -> None:
        self.capture = capture
        self.stream = stream
        self.schemas = schemas
        self.selected = set(schemas)
        #: where the task's tables are (the source URL's database): a table created elsewhere on the server
        #: (a target database beside it, say) is no table the task could select
        self.databases = {table.schema for table in self.selected}
        self.file = start.file
        self.pos = start.pos
        self.gtid = GtidState(start.gtid)
        #: the definitions of ``schemas`` as every position from here carries them (changed by DDL only)
        self.history = history_json(schemas)
        #: the last place between transactions (what Idle reports)
        self.boundary = replace(start, tables=self.history)
        self.maps: dict[int, _Mapped] = {}
        self.versions = itertools.count(1)
        self.decoders: dict[tuple[TableId, int, bytes], RowsDecoder] = {}
        #: TABLE_MAP event bodies already resolved (the id size is fixed per server; emptied when a
        #: definition changes): every transaction maps its tables again, with the same bytes
        self.table_maps: dict[bytes, _Mapped] = {}
        self.id_size = 6
        # the open transaction
        self.in_group = False  # a GTID event or BEGIN opened a group not yet committed
        self.began = False  # a BEGIN (or MariaDB's transactional GTID event) is open
        self.group_gtid = ""
        self.group_domain = -1
        self.group_mysql: tuple[str, int] | None = None
        self.pending: list[Change] = []
        #: bytes of the row images in ``pending`` (as logged, uncompressed)
        self.pending_bytes = 0
        #: parts of the current transaction were handed out (``Transaction.partial``)
        self.parted = False

    def run(self) -> Iterator[Transaction | SchemaChanged | Idle]:
        capture, stream = self.capture, self.stream
        idle = capture.idle_seconds
        caught_up = True  # no whole transaction was yielded since the last Idle
        last_yield = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last_yield >= idle:
                yield Idle(self.boundary)
                last_yield = now = time.monotonic()
                caught_up = True
            # after a transaction, only what is already there: none means caught up (Idle at once)
            events = stream.read_many(0.0 if not caught_up else idle - (now - last_yield))
            if not events and not caught_up:
                caught_up = True
                yield Idle(self.boundary)
                last_yield = time.monotonic()
                continue
            for event in events:
                for out in self.feed(event):
                    yield out
                    last_yield = time.monotonic()
                    if isinstance(out, Transaction) and not out.partial:
                        caught_up = False

    def position(self) -> BinlogPosition:
        return BinlogPosition(self.file, self.pos, self.gtid.text(), self.history)

    def feed(self, event: Event) -> list[Transaction | SchemaChanged]:
        """One event; returns what it completes."""
        kind = event.type
        start = self.pos
        if event.end > start and not event.flags & bl.ARTIFICIAL:
            self.pos = event.end
        if kind in bl.ROWS_EVENTS:
            refused = self._rows(event, start)
            return self._part(event) if refused is None else [refused, *self._part(event)]
        if kind == bl.TABLE_MAP:
            self._table_map(event)
            return []
        if kind == bl.XID:
            return self._commit(event, _U64(event.data, bl.HEADER_SIZE)[0])
        if kind in (bl.QUERY, bl.QUERY_COMPRESSED):
            return self._query(event)
        if kind == bl.MARIADB_GTID:
            seq, domain, flags = _MARIADB_GTID(event.data, bl.HEADER_SIZE)
            self.group_gtid = f"{domain}-{event.server_id}-{seq}"
            self.group_domain = domain
            self.in_group = True
            self.began = not flags & bl.GTID_STANDALONE
            return []
        if kind == bl.MYSQL_GTID:
            p = bl.HEADER_SIZE + 1
            sid = event.data[p : p + 16].hex()
            sid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}"
            gno = _U64(event.data, p + 16)[0]
            self.group_gtid = f"{sid}:{gno}"
            self.group_mysql = (sid, gno)
            self.in_group = True
            return []
        if kind == bl.MARIADB_GTID_LIST:
            self._gtid_list(event)
        elif kind == bl.ROTATE:
            self.file = event.data[bl.HEADER_SIZE + 8 :].decode()
            self.pos = _U64(event.data, bl.HEADER_SIZE)[0]
            self.maps.clear()
        elif kind == bl.FORMAT_DESCRIPTION:
            self._format(event)
        elif kind in (bl.TRANSACTION_PAYLOAD, bl.PARTIAL_UPDATE_ROWS):
            setting = UNREADABLE_SETTINGS[kind]
            raise NeedsResync(
                f"the binlog at {self.file}:{start} holds changes in a form this capture cannot read; run SET GLOBAL "
                f"{setting} (and in my.cnf) and reload the tables"
            )
        elif kind == bl.XA_PREPARE:
            if self.pending or self.parted:
                # after a part was handed out, pending may be empty: the part named no table here
                changed = self.pending[0].table if self.pending else "a selected table"
                raise TerminalError(
                    f"an XA transaction changed {changed} (prepared at {self.file}:{start}); change data "
                    "capture of XA transactions is not supported: leave the table out or avoid XA on it"
                )
            self._end_group()
        elif kind == bl.INCIDENT:
            raise NeedsResync(
                f"the binlog holds an INCIDENT event at {self.file}:{start}: the source may have lost changes "
                "(e.g. a failed statement on a non-transactional table); only a new full load makes the target whole"
            )
        if not self.in_group:
            self.boundary = self.position()
        return []

    # ------------------------------------------------------------------ events
    def _format(self, event: Event) -> None:
        data = event.data
        header_len = data[bl.HEADER_SIZE + 56]
        lengths = data[bl.HEADER_SIZE + 57 :]
        if header_len != bl.HEADER_SIZE:
            raise TerminalError(f"binlog events with a {header_len}-byte header are not supported")
        if len(lengths) >= bl.TABLE_MAP:
            self.id_size = 4 if lengths[bl.TABLE_MAP - 1] == 6 else 6

    def _gtid_list(self, event: Event) -> None:
        p = bl.HEADER_SIZE
        count = _U32(event.data, p)[0] & 0x0FFFFFFF
        state = GtidState("")
        for i in range(count):
            domain, server, seq = _GTID_ENTRY(event.data, p + 4 + 16 * i)
            state.add_mariadb(domain, f"{domain}-{server}-{seq}")
        self.gtid = state

    def _table_map(self, event: Event) -> None:
        body = event.data[bl.HEADER_SIZE :]
        mapped = self.table_maps.get(body)
        if mapped is None:
            mapped = self._resolve(parse_table_map(event.data, bl.HEADER_SIZE, self.id_size))
            if len(self.table_maps) >= TABLE_MAP_CACHE:
                self.table_maps.clear()
            self.table_maps[body] = mapped
        self.maps[mapped.table_id] = mapped

    def _resolve(self, table_map: TableMap) -> _Mapped:
        table = TableId(table_map.schema, table_map.name)
        schema = self.schemas.get(table)
        decoder = None
        if schema is not None:
            key = (table, schema.version, table_map.key)
            decoder = self.decoders.get(key)
            if decoder is None:
                try:
                    decoder = RowsDecoder(table_map, schema.targets, str(table))
                except Unsupported as exc:
                    raise TerminalError(f"{exc}; leave table {table} out of the task's change data capture") from None
                except LayoutMismatch as exc:
                    if schema.unfollowed:
                        raise NeedsResync(
                            f"{exc} (at {self.file}:{self.pos}): the capture could not follow {schema.unfollowed}, so "
                            "it read the table's definition from the catalog, and the table changed again later in "
                            "the binlog; reload the table"
                        ) from None
                    raise NeedsResync(
                        f"{exc} (at {self.file}:{self.pos}): the table's definition changed after this position, and "
                        "the task restarted from before the change; reload the table"
                    ) from None
                self.decoders[key] = decoder
        names = schema.table.column_names if schema is not None else ()
        return _Mapped(table_map.table_id, table, schema, decoder, names)

    def _rows(self, event: Event, start: int) -> SchemaChanged | None:
        """The event's row changes, pending until the commit; a table whose rows came without every column
        (a session's binlog_row_image not FULL) instead: its suspension (``SchemaChanged.suspends``)."""
        op_code, update, compressed, v2 = bl.ROWS_EVENTS[event.type]
        data = event.data
        p = bl.HEADER_SIZE
        table_id = int.from_bytes(data[p : p + self.id_size], "little")
        p += self.id_size + 2
        if v2:
            p += _U16(data, p)[0]
        mapped = self.maps.get(table_id)
        if mapped is None:
            raise TerminalError(f"a rows event at {self.file}:{start} names table id {table_id} without a TABLE_MAP")
        if mapped.decoder is None or mapped.schema is None:
            return None
        width, p = lenenc(data, p)
        full = (1 << width) - 1
        nbytes = (width + 7) // 8
        present = int.from_bytes(data[p : p + nbytes], "little")
        p += nbytes
        if update:
            present &= int.from_bytes(data[p : p + nbytes], "little")
            p += nbytes
        if present != full:
            why = (
                f"rows at {self.file}:{start} were logged without every column (a session's binlog_row_image is not "
                "FULL), so their changes cannot be applied; SET GLOBAL binlog_row_image = 'FULL' and reload the table"
            )
            columns = mapped.schema.table.columns
            return SchemaChanged(mapped.table, mapped.table, columns, self.position(), why, suspends=True)
        if compressed:
            data, p = self._uncompress(data, p), 0
        try:
            rows = mapped.decoder.rows(data, p, len(data))
        except (ValueError, IndexError, struct.error) as exc:
            raise TerminalError(f"cannot decode the rows of {mapped.table} at {self.file}:{start}: {exc}") from None
        self.pending_bytes += len(data) - p
        names = mapped.names
        table = mapped.table
        position = BinlogPosition(self.file, start)
        op = _OPS[op_code]
        append = self.pending.append
        if update:
            for i in range(0, len(rows), 2):
                append(change_from_fields((op, table, names, rows[i], rows[i + 1], position)))
        elif op is _INSERT:
            for row in rows:
                append(change_from_fields((op, table, names, None, row, position)))
        else:
            for row in rows:
                append(change_from_fields((op, table, names, row, None, position)))
        if not self.in_group:
            self.in_group = True  # rows without BEGIN: a user's start position inside a transaction
        return None

    def _uncompress(self, data: bytes, p: int) -> bytes:
        try:
            return bl.mariadb_uncompress(data, p, len(data))
        except (ValueError, zlib.error) as exc:
            raise TerminalError(f"cannot uncompress the binlog event before {self.file}:{self.pos}: {exc}") from None

    def _query(self, event: Event) -> list[Transaction | SchemaChanged]:
        data = event.data
        p = bl.HEADER_SIZE
        db_len = data[p + 8]
        status_len = _U16(data, p + 11)[0]
        p += 13 + status_len
        database = data[p : p + db_len].decode("utf-8", "surrogateescape")
        p += db_len + 1
        raw = self._uncompress(data, p) if event.type == bl.QUERY_COMPRESSED else data[p:]
        sql = raw.decode("utf-8", "surrogateescape")
        word = sql.lstrip()[:11].upper()
        if word.startswith("BEGIN"):
            self.in_group = self.began = True
            return []
        if word.startswith("COMMIT"):
            return self._commit(event, None)
        if word.startswith("ROLLBACK") and not word.startswith("ROLLBACK TO"):
            if self.parted:
                raise TerminalError(
                    f"a transaction whose first parts were already applied ends with ROLLBACK at {self.file}:"
                    f"{self.pos} (it changed non-transactional tables too); its changes cannot be taken back"
                )
            self._end_group()
            self.boundary = self.position()
            return []
        if self.began:  # a statement inside a transaction (SAVEPOINT, statement-logged DML ...)
            return self._statement(sql, database)
        out = self._statement(sql, database)
        self._group_done()
        out += self._ddl(sql, database, event)
        self._end_group()
        self.boundary = self.position()
        return out

    def _statement(self, sql: str, database: str) -> list[Transaction | SchemaChanged]:
        """A statement-logged change to selected tables: their rows are not in the binlog, so each table is
        suspended (``STATEMENT_LOGGED``) before anything after it is applied, never silently behind."""
        why = (
            f"{STATEMENT_LOGGED} at {self.file}:{self.pos} (a session's binlog_format is not ROW), so the "
            "binlog does not hold its rows; SET GLOBAL binlog_format = 'ROW' and reload the table"
        )
        position = self.position()
        return [
            SchemaChanged(table, table, self.schemas[table].table.columns, position, why, sql, suspends=True)
            for table in _statement_tables(sql, database, self.selected)
            if table in self.schemas
        ]

    def _group_done(self) -> None:
        """The group's GTID joins the state (at its commit, or after a standalone statement)."""
        if self.group_domain >= 0:
            self.gtid.add_mariadb(self.group_domain, self.group_gtid)
        elif self.group_mysql is not None:
            self.gtid.add_mysql(*self.group_mysql)

    def _commit(self, event: Event, xid: int | None) -> list[Transaction | SchemaChanged]:
        self._group_done()
        position = self.position()
        pending, size = self.pending, self.pending_bytes
        txid: int | str | None = self.group_gtid or xid
        parted = self.parted
        self._end_group()
        self.boundary = position
        if not pending and not parted:
            return []
        return [Transaction(txid, position, datetime.fromtimestamp(event.timestamp, UTC), pending, size=size)]

    def _part(self, event: Event) -> list[Transaction | SchemaChanged]:
        """The changes so far of a transaction that grew past ``part_changes`` or ``part_bytes``, handed
        out early."""
        changes_limit, bytes_limit = self.capture.part_changes, self.capture.part_bytes
        if (changes_limit is None or len(self.pending) < changes_limit) and (
            bytes_limit is None or self.pending_bytes < bytes_limit
        ):
            return []
        txid: int | str | None = self.group_gtid or None
        ts = datetime.fromtimestamp(event.timestamp, UTC)
        changes, size = self.pending, self.pending_bytes
        self.pending, self.pending_bytes = [], 0
        self.parted = True
        return [Transaction(txid, None, ts, changes, partial=True, size=size)]

    def _end_group(self) -> None:
        self.parted = False
        self.in_group = self.began = False
        self.group_gtid = ""
        self.group_domain = -1
        self.group_mysql = None
        self.pending = []
        self.pending_bytes = 0

    def _ddl(self, sql: str, database: str, event: Event) -> list[Transaction | SchemaChanged]:
        """A standalone statement: the schema changes and truncations of selected tables it makes."""
        ddl = parse_ddl(sql, database)
        if ddl is None:
            return []
        position = self.position()
        commit_ts = datetime.fromtimestamp(event.timestamp, UTC)
        out: list[Transaction | SchemaChanged] = []
        changed = False
        for old, new in ddl.tables:
            schema = self.schemas.get(old)
            if schema is None and not (ddl.kind == "create" and old in self.selected):
                if ddl.kind == "create" and old.schema in self.databases:  # the runner names it if selected
                    out.append(SchemaChanged(old, old, (), position, CREATED, sql))
                continue
            if ddl.kind == "truncate" and schema is not None:
                names = schema.table.column_names
                change = Change(Op.TRUNCATE, old, names, None, None, position)
                out.append(Transaction(self.group_gtid or None, position, commit_ts, [change]))
                continue
            if ddl.kind == "alter" and (partitions := partition_rows(sql, database)) is not None:
                clause, others = partitions
                lost = f"{clause} changed rows the binlog does not list; reload the table"
                for table in (old, *others):
                    if table in self.schemas:
                        columns = self.schemas[table].table.columns
                        out.append(SchemaChanged(table, table, columns, position, lost, sql, suspends=True))
                continue
            before = schema.table.columns if schema is not None else ()
            self.schemas.pop(old, None)
            changed = True
            fresh = None if ddl.kind == "drop" else self._after(schema, sql, new)
            if fresh is None:
                gone = "dropped the table on the source; reload it, or leave it out of the task"
                out.append(SchemaChanged(old, old, (), position, gone, sql, suspends=True))
                continue
            fresh.version = next(self.versions)
            self.schemas[new] = fresh
            if new != old:
                description = f"renamed to {new}"
            elif schema is not None and (rekeyed := _key_changed(sql, schema.table)) is not None:
                out.append(SchemaChanged(new, old, fresh.table.columns, position, rekeyed, sql, suspends=True))
                continue
            elif [_column_key(c) for c in fresh.table.columns] == [_column_key(c) for c in before]:
                continue
            else:
                description = describe_change(before, fresh.table.columns, _renamed(sql))
            out.append(SchemaChanged(new, old, fresh.table.columns, position, description, sql, _renamed(sql)))
        if changed:  # the positions from here on carry the new definitions
            self.history = history_json(self.schemas)
            self.table_maps.clear()
            position = self.position()
            out = [replace(e, position=position) if isinstance(e, SchemaChanged) else e for e in out]
        return out

    def _after(self, schema: TableSchema | None, sql: str, table: TableId) -> TableSchema | None:
        """The table's definition right after ``sql`` (None: it is gone): the one before with the
        statement applied, where it applies exactly. The catalog's (the table now) where the two
        agree, as it spells types and defaults as the server does; also where the statement does not
        apply, noting it in ``unfollowed``, as the table may have changed again since."""
        fresh = self.capture.refresh(table)
        try:
            if schema is None:
                raise Unfollowable("a new table is read from the catalog")
            derived = self.capture.follow(schema, column_changes(sql), table)
        except Unfollowable as exc:
            if fresh is not None:
                fresh.unfollowed = f"{sql!r} ({exc})"
            return fresh
        if fresh is None or _layout(fresh) != _layout(derived):
            return derived
        fresh.charset, fresh.unfollowed = derived.charset, derived.unfollowed
        return fresh


def _key_changed(sql: str, table: Table) -> str | None:
    """Why an ALTER TABLE that replaces or drops the primary key cannot be followed (None: it keeps it): the
    target finds the rows of updates and deletes by the key it was loaded with."""
    try:
        clauses = column_changes(sql)
    except Unfollowable:
        return None
    before = table.primary_key.columns if table.primary_key is not None else ()
    after = before
    for clause in clauses:
        if isinstance(clause, PrimaryKey):
            after = clause.columns
    if after == before:
        return None
    return (
        f"the primary key changed from ({', '.join(before)}) to ({', '.join(after)}): the target finds rows by the "
        "one it was loaded with; reload the table"
    )


def _renamed(sql: str) -> tuple[tuple[str, str], ...] | None:
    """The columns an ALTER TABLE renames (CHANGE, RENAME COLUMN), as (old, new) written in it; None when
    its clauses are not known exactly. Any other column it takes away is dropped, never renamed."""
    try:
        clauses = column_changes(sql)
    except Unfollowable:
        return None
    renamed = []
    for clause in clauses:
        if isinstance(clause, RenameColumn):
            renamed.append((clause.old, clause.new))
        elif isinstance(clause, Redefine) and clause.old != clause.definition.column.name:
            renamed.append((clause.old, clause.definition.column.name))
    return tuple(renamed)


def _column_key(column: Column) -> tuple[Any, ...]:
    """A column without how its type and default are spelled: the catalog prints ``bigint(20)``
    where a statement said ``bigint``."""
    return column.name, shape(column.type), column.nullable, column.default is None, column.identity


def _layout(schema: TableSchema) -> tuple[Any, ...]:
    """What a definition says about rows and columns (``_column_key``), with each column's character set."""
    return (
        tuple((t.name, shape(t.type), t.codec) if t is not None else None for t in schema.targets),
        tuple(_column_key(c) for c in schema.table.columns),
    )
