"""PostgreSQL change data capture: pre-flight checks, the publication, the slot and the stream.

How a runner uses it::

    capture = PostgresCapture(config, task_name, tables)
    warnings = capture.check()                 # UserActionError naming the fix
    with capture.create_slot() as slot:        # creates the publication first, then the slot
        ...full load, every reader inside slot.snapshot (SET TRANSACTION SNAPSHOT)...
    for event in capture.stream(slot.lsn):     # later runs: the position stored in the target
        ...apply a Transaction and store event.commit_position in the same target commit...
        capture.ack(event.commit_position)     # only after that commit

The snapshot and the stream meet exactly at the slot's consistent point: a transaction that
committed before it is in the snapshot, one that committed after it is streamed.

Gaps are loud. A slot that is missing or invalidated, a publication that vanished, or a start
position behind what the slot already confirmed raise ``NeedsResync`` (a ``TerminalError`` whose
message starts with ``NEEDS_RESYNC:``): the changes in between are gone from the source, and only a
new full load makes the target whole again.

Names: the slot and the publication are both ``conveyor_<task>`` (lower-case letters, digits and
``_``, at most 63 bytes, with a hash of the task name when it had to be changed to fit). Slot names
are unique per server, publications per database.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from conveyor.endpoints.config import PostgresConfig
from conveyor.endpoints.postgres.connect import connect, run
from conveyor.endpoints.postgres.errors import classify, first_line
from conveyor.endpoints.postgres.introspect import PostgresIntrospector
from conveyor.endpoints.postgres.pgoutput import (
    LogicalMessage,
    PgOutputDecoder,
    RelationChanged,
    format_lsn,
    parse_lsn,
)
from conveyor.endpoints.postgres.replication import SILENCE_TIMEOUT, CreatedSlot, ReplicationConnection
from conveyor.endpoints.postgres.snapshot import PostgresSnapshotReader, join
from conveyor.errors import ConveyorError, NeedsResync, TerminalError, TransientError, UserActionError
from conveyor.model.changes import Idle, SchemaChanged, Transaction
from conveyor.model.findings import Finding, enforce
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.types import ColumnType

NAME_PREFIX = "conveyor_"
MAX_NAME_BYTES = 63
#: seconds without anything to yield after which ``stream()`` yields ``Idle``
IDLE_SECONDS = 1.0
#: seconds to wait for the slot of a run that just died to become free
SLOT_RELEASE_WAIT = 15.0
#: seconds a catalog query (slot checks, clock, lag) may wait for the server before it is a TransientError
CATALOG_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class SlotStatus:
    name: str
    plugin: str | None
    database: str | None
    active_pid: int | None
    confirmed_flush: int | None
    restart_lsn: int | None
    #: ``reserved``, ``extended``, ``unreserved`` or ``lost`` (PostgreSQL 13+)
    wal_status: str | None
    #: why the slot was invalidated (PostgreSQL 17+)
    invalidation_reason: str | None


def capture_name(task: str) -> str:
    """The slot and publication name of a task: ``conveyor_<task>``, sanitised, at most 63 bytes."""
    base = re.sub(r"[^a-z0-9_]+", "_", task.lower()).strip("_")
    if base == task and len(NAME_PREFIX) + len(base) <= MAX_NAME_BYTES:
        return NAME_PREFIX + base
    digest = hashlib.sha256(task.encode()).hexdigest()[:8]  # keeps two tasks that sanitise alike apart
    room = MAX_NAME_BYTES - len(NAME_PREFIX) - len(digest) - 1
    trimmed = base[:room].rstrip("_")
    return f"{NAME_PREFIX}{trimmed}_{digest}" if trimmed else NAME_PREFIX + digest


def position_to_json(lsn: int) -> dict[str, Any]:
    return {"lsn": format_lsn(lsn)}


def position_from_json(data: dict[str, Any]) -> int:
    return parse_lsn(str(data["lsn"]))


def renames_by_number(
    before: dict[str, int] | None, old: Sequence[str], new: Sequence[str], now: dict[str, int]
) -> tuple[tuple[str, str], ...] | None:
    """The columns renamed between a table's column lists ``old`` and ``new``, by the catalog's column
    numbers then (``before``) and now (``now``): a rename keeps its number, an added column takes a new one,
    so a column gone while another came of its type (a drop and an add) is not taken for a rename. None
    where the numbers are not known: ``before`` unknown (None), or the catalog no longer shows ``new`` (it
    has moved on since, and a number now may belong to a later change)."""
    gone, fresh = [n for n in old if n not in new], [n for n in new if n not in old]
    if not gone or not fresh:
        return ()
    if before is None or set(now) != set(new) or any(n not in before for n in gone):
        return None
    was = {before[n]: n for n in gone}
    highest = max(before.values())
    renamed = []
    for name in fresh:
        number = now.get(name)
        if number is None or (number not in was and number <= highest):
            return None
        if number in was:
            renamed.append((was[number], name))
    return tuple(renamed)


def parse_position(text: str) -> int:
    """A user's start position: an LSN as PostgreSQL prints it (``16/B374D848``)."""
    try:
        return parse_lsn(text.strip())
    except ValueError:
        raise UserActionError(
            f"CdcStartPosition {text!r} is not a PostgreSQL LSN; write it as PostgreSQL prints one, e.g. 16/B374D848 "
            "(SELECT pg_current_wal_lsn())"
        ) from None


class SlotSnapshot:
    """The ``Snapshot`` a new slot exported: the full load of a full-load-and-cdc task reads inside it,
    so it meets the stream exactly at the slot's consistent point. It lives while the slot's replication
    connection stays open and idle: until ``close()``, which the runner calls after the full load."""

    def __init__(self, config: PostgresConfig, slot: CreatedSlot) -> None:
        self.config = config
        self.slot = slot
        self.warnings: list[str] = []

    def reader(self) -> PostgresSnapshotReader:
        return join(self.config, self.slot.snapshot)

    def token(self) -> str | None:
        return self.slot.snapshot

    def release(self) -> None:
        pass

    def close(self) -> None:
        self.slot.release()


# --------------------------------------------------------------------------- SQL
SERVER_SQL = """
SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int,
       current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int,
       (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int,
       r.rolsuper,
       r.rolsuper OR r.rolreplication OR EXISTS (
           SELECT 1 FROM pg_catalog.pg_roles g
           WHERE g.rolname = 'rds_replication' AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')),
       EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s),
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),
       current_user, pg_catalog.current_database(), pg_catalog.current_setting('server_version_num')::int
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""

TABLE_SQL = """
SELECT c.oid, pg_catalog.pg_has_role(c.relowner, 'USAGE'), pg_catalog.pg_get_userbyid(c.relowner)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""

#: the table, or the leaf partitions of a partitioned table, whose updates and deletes cannot be captured
IDENTITY_SQL = """
SELECT n.nspname, c.relname, c.relreplident
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND (c.oid = %s::oid OR c.oid IN (SELECT relid FROM pg_catalog.pg_partition_tree(%s::oid::regclass) WHERE isleaf))
  AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
ORDER BY 1, 2
"""


def _publication_sql(version: int) -> str:
    # row filters and column lists (PostgreSQL 15+) would drop changes silently
    filtered = (
        "EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r WHERE r.prpubid = p.oid "
        "AND (r.prqual IS NOT NULL OR r.prattrs IS NOT NULL))"
        if version >= 150000
        else "false"
    )
    return f"""
SELECT p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate, {filtered},
       ARRAY(SELECT pt.schemaname || '.' || pt.tablename FROM pg_catalog.pg_publication_tables pt
             WHERE pt.pubname = p.pubname ORDER BY 1)
FROM pg_catalog.pg_publication p WHERE p.pubname = %s
"""


#: columns a table lost: PostgreSQL keeps each dropped column's attnum, renamed, with attisdropped
DROPPED_SQL = """
SELECT count(*) FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND a.attisdropped
"""

#: every current column's number (``attnum``: a rename keeps it, a new column never reuses one) of tables
#: given as parallel arrays of schema and table names; generated columns left out, as relation messages
#: and the planned tables leave them out
COLUMN_NUMBERS_SQL = """
SELECT n.nspname, c.relname, a.attname, a.attnum FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS t(s, r) ON n.nspname = t.s AND c.relname = t.r
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
"""

ADVANCE_SQL = """
SELECT pg_catalog.pg_replication_slot_advance(slot_name, %s::pg_lsn) FROM pg_catalog.pg_replication_slots
WHERE slot_name = %s AND confirmed_flush_lsn < %s::pg_lsn
"""


def _slot_sql(version: int) -> str:
    wal_status = "wal_status" if version >= 130000 else "NULL::text"
    reason = "invalidation_reason" if version >= 170000 else "NULL::text"
    return (
        "SELECT slot_name::text, plugin::text, database::text, active_pid, confirmed_flush_lsn::text, "
        f"restart_lsn::text, {wal_status}, {reason} FROM pg_catalog.pg_replication_slots WHERE slot_name = %s"
    )


def _lsn(text: str | None) -> int | None:
    return parse_lsn(text) if text else None


# --------------------------------------------------------------------------- the role
class PostgresCapture:
    """The Capture role of PostgreSQL for one task and its selected tables.

    ``tables`` as the introspector describes them: their columns are what the stream is compared
    with (a table that changed shows up as ``RelationChanged``). One thread at a time; ``ack`` may
    come from the thread consuming ``stream()``, between two events."""

    def __init__(
        self,
        config: PostgresConfig,
        task: str,
        tables: Sequence[Table] = (),
        *,
        idle_seconds: float = IDLE_SECONDS,
        silence_timeout: float = SILENCE_TIMEOUT,
        catalog_timeout: float = CATALOG_TIMEOUT,
    ) -> None:
        self.config = config
        self.task = task
        self.tables = list(tables)
        self.slot = self.publication = capture_name(task)
        self.idle_seconds = idle_seconds
        #: transactions with more changes, or bytes of them, come in parts (``Transaction.partial``); None: whole
        self.part_changes: int | None = None
        self.part_bytes: int | None = None
        self.text_tables: frozenset[TableId] = frozenset()
        self.silence_timeout = silence_timeout
        self.catalog_timeout = catalog_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._introspector: PostgresIntrospector | None = None
        self._version = 0
        self._acked = 0
        self._repl: ReplicationConnection | None = None
        #: each table's column numbers by name, as the catalog had them with the definition last known
        self._numbers: dict[TableId, dict[str, int]] = {}

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The ordinary connection for catalog queries (opened on first use, reopened when broken); a
        query the server does not answer within ``catalog_timeout`` is a ``TransientError``."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.config, deadline=self.catalog_timeout)
            self._introspector = PostgresIntrospector(self._conn, self.config)
            self._version = self._conn.info.server_version
        return self._conn

    def _ident(self, name: str) -> str:
        return sql.Identifier(name).as_string(self.conn)

    def _table_sql(self, table: TableId) -> str:
        return f"{self._ident(table.schema)}.{self._ident(table.name)}"

    # ------------------------------------------------------------------ pre-flight
    def check(self) -> list[str]:
        """Everything change data capture needs, before anything is created; the first problem
        raises ``UserActionError`` naming the fix. Returns warnings."""
        return enforce(self.preflight())

    def preflight(self, tables: bool = True) -> list[Finding]:
        """Every pre-flight finding at once, in ``check()``'s order (``tables=False``: the server's
        settings and the user's role only)."""
        row = run(self.conn, SERVER_SQL, (self.slot,)).fetchone()
        if row is None:
            raise UserActionError(f"cannot read the role of the current user on {self.where}")
        (wal_level, max_slots, max_senders, used_slots, used_senders, superuser, replication, slot_exists) = row[:8]
        can_create, user, database, version = row[8:]
        found: list[Finding] = []
        if version < 120000:
            found.append(
                Finding(
                    "postgres-check-dbversion",
                    f"PostgreSQL at {self.where} is version {version}; change data capture needs 12+",
                )
            )
            return found  # the catalog queries below need 12+
        if wal_level != "logical":
            found.append(
                Finding(
                    "postgres-check-wallevel",
                    f"wal_level is {wal_level} on {self.where}; change data capture needs wal_level = logical: run "
                    "ALTER SYSTEM SET wal_level = logical and restart PostgreSQL (Amazon RDS / Aurora: set "
                    "rds.logical_replication = 1 in the parameter group and reboot)",
                )
            )
        if not replication:
            ident = self._ident(user)
            found.append(
                Finding(
                    "postgres-check-replication-privileges",
                    f"user {user} lacks the REPLICATION attribute change data capture needs; run ALTER ROLE {ident} "
                    f"REPLICATION (Amazon RDS / Aurora: GRANT rds_replication TO {ident})",
                )
            )
        if not slot_exists and used_slots >= max_slots:
            found.append(
                Finding(
                    "postgres-check-replication-slots-count",
                    f"no free replication slot on {self.where}: all {max_slots} (max_replication_slots) are in use; "
                    "drop unused ones (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
                    "...) or raise max_replication_slots (needs a restart)"
                    if max_slots
                    else f"max_replication_slots is 0 on {self.where}; change data capture needs a replication slot: "
                    "set max_replication_slots = 10 in postgresql.conf and restart PostgreSQL",
                )
            )
        if used_senders >= max_senders:
            found.append(
                Finding(
                    "postgres-check-maxwalsenders",
                    f"no free WAL sender on {self.where}: all {max_senders} (max_wal_senders) are in use (see "
                    "pg_stat_replication); stop an unused replication client or raise max_wal_senders (needs a "
                    "restart)"
                    if max_senders
                    else f"max_wal_senders is 0 on {self.where}; change data capture streams through a WAL sender: "
                    "set max_wal_senders = 10 in postgresql.conf and restart PostgreSQL",
                )
            )
        if tables:
            found += self._table_findings(superuser, can_create, user, database)
        if version >= 130000:
            row = run(self.conn, "SELECT current_setting('max_slot_wal_keep_size')").fetchone()
            if row is not None and row[0] == "-1":
                found.append(
                    Finding(
                        "postgres-check-maxslot-wal-keep-size",
                        f"max_slot_wal_keep_size is unlimited on {self.where}: while the task is stopped, the server "
                        "keeps all WAL from the slot's position on; watch its disk (a limit would turn a long stop "
                        "into a resync)",
                        warning=True,
                    )
                )
        return found

    def _table_findings(self, superuser: bool, can_create: bool, user: str, database: str) -> list[Finding]:
        if not self.tables:
            return [
                Finding(
                    "all-check-source-selection-rules",
                    "no tables are selected for change data capture; check the table mappings",
                )
            ]
        fixes: list[str] = []
        not_owned: list[str] = []
        for table in self.tables:
            found = run(self.conn, TABLE_SQL, (table.id.schema, table.id.name)).fetchone()
            if found is None:
                raise UserActionError(f"table {table.id} does not exist in {self.config.display()}")
            oid, owned, owner = found
            if not owned:
                not_owned.append(f"{table.id} (owner {owner})")
            for schema, name, identity in run(self.conn, IDENTITY_SQL, (oid, oid)).fetchall():
                what = "REPLICA IDENTITY NOTHING" if identity == "n" else "no primary key"
                fixes.append(
                    f"{schema}.{name} ({what}): ALTER TABLE {self._table_sql(TableId(schema, name))} "
                    "REPLICA IDENTITY FULL"
                )
        findings = []
        if fixes:
            findings.append(
                Finding(
                    "postgres-check-pk",
                    "change data capture needs a primary key or REPLICA IDENTITY FULL on every table, or the source "
                    "cannot log which row an UPDATE or DELETE changed (and refuses them once the table is "
                    f"published); add a primary key or run: {'; '.join(fixes)}",
                )
            )
        publication = self._publication()
        if publication is None:
            if not superuser and (not_owned or not can_create):
                reasons = []
                if not_owned:
                    reasons.append(f"it does not own {', '.join(not_owned)}")
                if not can_create:
                    reasons.append(f"it lacks CREATE on database {database}")
                findings.append(
                    Finding(
                        "postgres-check-publication",
                        f"user {user} cannot create publication {self.publication} ({'; '.join(reasons)}); ask the "
                        f"table owner or a superuser to run {self._create_publication_sql()}, which Conveyor then uses",
                    )
                )
        else:
            try:
                self._check_publication(publication)
            except UserActionError as exc:
                findings.append(Finding("postgres-check-publication", str(exc)))
        return findings

    def _publication(self) -> tuple[bool, bool, list[str]] | None:
        """(publishes every action, has row filters or column lists, its tables) or None."""
        row = run(self.conn, _publication_sql(self._server_version()), (self.publication,)).fetchone()
        return None if row is None else (bool(row[0]), bool(row[1]), list(row[2]))

    def _check_publication(self, publication: tuple[bool, bool, list[str]]) -> None:
        all_actions, filtered, tables = publication
        wanted = {str(t.id) for t in self.tables}
        have = set(tables)
        if have != wanted:
            parts = []
            if wanted - have:
                parts.append(f"it lacks {', '.join(sorted(wanted - have))}")
            if have - wanted:
                parts.append(f"it also has {', '.join(sorted(have - wanted))}")
            raise UserActionError(
                f"publication {self.publication} exists with other tables than the task selects ({'; '.join(parts)}); "
                f"run ALTER PUBLICATION {self._ident(self.publication)} SET TABLE {self._table_list()} (tables it "
                "lacks need a full load too), or drop it with conveyor cleanup"
            )
        if not all_actions:
            raise UserActionError(
                f"publication {self.publication} does not publish every kind of change; run ALTER PUBLICATION "
                f"{self._ident(self.publication)} SET (publish = 'insert, update, delete, truncate')"
            )
        if filtered:
            raise UserActionError(
                f"publication {self.publication} has row filters or column lists, which would drop changes; run "
                f"ALTER PUBLICATION {self._ident(self.publication)} SET TABLE {self._table_list()}"
            )

    def _table_list(self) -> str:
        return ", ".join(self._table_sql(t.id) for t in self.tables)

    def _create_publication_sql(self) -> str:
        options = " WITH (publish_via_partition_root = true)" if self._server_version() >= 130000 else ""
        return f"CREATE PUBLICATION {self._ident(self.publication)} FOR TABLE {self._table_list()}{options}"

    def _server_version(self) -> int:
        _ = self.conn
        return self._version

    # ------------------------------------------------------------------ publication and slot
    def ensure_publication(self) -> bool:
        """Create the task's publication for the selected tables; True when it was created. An
        existing one with the same tables is used as it is (idempotent); one with other tables is
        a ``UserActionError``. Partitioned tables publish under their own name (PostgreSQL 13+)."""
        existing = self._publication()
        if existing is not None:
            self._check_publication(existing)
            return False
        try:
            run(self.conn, self._create_publication_sql())
        except psycopg.errors.DuplicateObject:
            existing = self._publication()  # created concurrently
            if existing is None:
                raise
            self._check_publication(existing)
            return False
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UserActionError(
                f"user {self.config.user} cannot create publication {self.publication} ({first_line(exc)}); ask the "
                f"table owner or a superuser to run {self._create_publication_sql()}, which Conveyor then uses"
            ) from None
        return True

    def slot_status(self) -> SlotStatus | None:
        conn = self.conn
        row = run(conn, _slot_sql(self._version), (self.slot,)).fetchone()
        if row is None:
            return None
        name, plugin, database, pid, confirmed, restart, wal_status, reason = row
        return SlotStatus(name, plugin, database, pid, _lsn(confirmed), _lsn(restart), wal_status, reason)

    def create_slot(self, *, export_snapshot: bool = True, replace: bool = False) -> CreatedSlot:
        """Create the publication (if needed), then the slot, on a replication connection of its own.

        The returned ``CreatedSlot`` holds that connection, and with it the exported snapshot
        (``.snapshot``) as of the slot's consistent point (``.lsn``), until ``release()`` or the end
        of its ``with`` block: every full-load reader must have joined the snapshot by then.
        An existing slot is an error unless ``replace`` (a new full load starts over with a new slot)."""
        self.ensure_publication()
        status = self.slot_status()
        if status is not None:
            if not replace:
                raise UserActionError(
                    f"replication slot {self.slot} already exists on {self.where} (an earlier run of task "
                    f"{self.task}?); resume the task, or drop the slot with conveyor cleanup to start over"
                )
            self._drop_slot(status, wait=SLOT_RELEASE_WAIT)
        repl = ReplicationConnection(self.config, silence_timeout=self.silence_timeout)
        try:
            created = repl.create_slot(self.slot, export_snapshot=export_snapshot)
        except psycopg.Error as exc:
            repl.close()
            raise self._slot_error(exc) from None
        except BaseException:
            repl.close()
            raise
        created.close_connection = True
        if not export_snapshot:
            created.release()
        return created

    def _slot_error(self, exc: psycopg.Error) -> ConveyorError:
        message = first_line(exc)
        if isinstance(exc, psycopg.errors.DuplicateObject):
            return UserActionError(f"replication slot {self.slot} already exists on {self.where}: {message}")
        if exc.sqlstate == "53400" or "replication slots are in use" in message:
            return UserActionError(
                f"no free replication slot on {self.where} ({message}); drop unused slots or raise "
                "max_replication_slots"
            )
        if "wal_level" in message:
            return UserActionError(f"{message} on {self.where}; set wal_level = logical and restart PostgreSQL")
        return classify(exc) or TerminalError(f"cannot create replication slot {self.slot}: {message}")

    def _drop_slot(self, status: SlotStatus, wait: float = 0.0) -> None:
        """``wait``: seconds to let a dead client's walsender notice and release the slot first (a run
        killed moments ago still shows as its user)."""
        deadline = time.monotonic() + wait
        while status.active_pid is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            status = self.slot_status() or status
        if status.active_pid is not None:
            raise UserActionError(
                f"replication slot {self.slot} is in use by process {status.active_pid} (is task {self.task} "
                "running?); stop it first"
            )
        run(self.conn, "SELECT pg_catalog.pg_drop_replication_slot(%s)", (self.slot,))

    def drop(self) -> list[str]:
        """Drop the task's slot and publication (``conveyor cleanup``); returns what was dropped."""
        dropped = []
        status = self.slot_status()
        if status is not None:
            self._drop_slot(status)
            dropped.append(f"replication slot {self.slot}")
        if self._publication() is not None:
            statement = f"DROP PUBLICATION IF EXISTS {self._ident(self.publication)}"
            try:
                run(self.conn, statement)
            except psycopg.errors.InsufficientPrivilege as exc:
                done = f"dropped {dropped[0]}; " if dropped else ""
                raise UserActionError(
                    f"{done}user {self.config.user} cannot drop publication {self.publication} ({first_line(exc)}); "
                    f"ask its owner to run {statement}"
                ) from None
            dropped.append(f"publication {self.publication}")
        return dropped

    # ------------------------------------------------------------------ the Capture role
    def handoff(self, workers: int, hold: bool) -> tuple[SlotSnapshot, int]:
        """A new slot (replacing one an unfinished earlier full load left) and its exported snapshot."""
        slot = self.create_slot(export_snapshot=True, replace=True)
        return SlotSnapshot(self.config, slot), slot.lsn

    def begin(self, start: int | None = None) -> int:
        """Capture from the slot's position, creating the slot (and the publication before it) when there is
        none yet; from ``start`` (the user's start position) where the slot still holds what follows it."""
        status = self.slot_status()
        if status is not None and status.confirmed_flush is not None:
            if self._publication() is None:
                raise UserActionError(
                    f"replication slot {self.slot} exists on {self.where} but publication {self.publication} does "
                    "not: the slot decodes each change with the publications that existed when it was written, so "
                    "create the publication first (CREATE PUBLICATION ... FOR TABLE the selected tables), then the "
                    "slot; or drop the slot (conveyor cleanup) and let the task create both"
                )
            if start is not None and start < status.confirmed_flush:
                raise UserActionError(
                    f"cdc_start_position {format_lsn(start)} is before replication slot {self.slot}'s confirmed "
                    f"position {format_lsn(status.confirmed_flush)}: the source no longer keeps the changes in "
                    "between; give a position at or after it, or leave cdc_start_position out"
                )
            return status.confirmed_flush if start is None else start
        had_publication = start is not None and self._publication() is not None
        slot = self.create_slot(export_snapshot=False)
        if start is None or start >= slot.lsn:
            return slot.lsn if start is None else start
        status = self.slot_status()
        if status is not None:
            self._drop_slot(status, wait=SLOT_RELEASE_WAIT)
        if not had_publication:
            self.drop()  # the publication created for the slot; one the user made stays
        raise UserActionError(
            f"cdc_start_position {format_lsn(start)} is before replication slot {self.slot} existed: a new slot "
            f"decodes from the source's current WAL position ({format_lsn(slot.lsn)}) on. To start at an earlier "
            f"position, create publication {self.publication} (FOR TABLE the selected tables) and then the slot "
            f"(SELECT pg_create_logical_replication_slot('{self.slot}', 'pgoutput')) before the changes to capture "
            "are written; or leave cdc_start_position out"
        )

    def parse_position(self, text: str) -> int:
        return parse_position(text)

    def position_at(self, at: datetime) -> int:
        raise UserActionError(
            "a PostgreSQL source cannot start change data capture at a time: logical decoding starts at its "
            "replication slot; leave cdc_start_time out (cdc starts now) or give cdc_start_position"
        )

    def position_json(self, position: int) -> dict[str, Any]:
        return position_to_json(position)

    def position_from_json(self, data: dict[str, Any]) -> int:
        return position_from_json(data)

    def clock(self) -> tuple[datetime, int]:
        row = run(self.conn, "SELECT pg_catalog.clock_timestamp(), pg_catalog.pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return row[0], parse_lsn(row[1])

    def lag_bytes(self, position: int) -> int | None:
        """While streaming, from the server's last keepalive (no query: a hung source must not hang
        the caller, whose stream notices the silence); otherwise from the server."""
        repl = self._repl
        if repl is not None:
            return max(0, repl.server_wal_end - position) if repl.server_wal_end else None
        row = run(self.conn, "SELECT pg_catalog.pg_current_wal_lsn()::text").fetchone()
        return max(0, parse_lsn(row[0]) - position) if row else None

    def dropped_columns(self, table: TableId) -> int:
        """How many columns ``table`` has ever lost (``DroppedColumns``); a rename leaves no trace."""
        row = run(self.conn, DROPPED_SQL, (table.schema, table.name)).fetchone()
        return int(row[0]) if row else 0

    def _schema_changed(self, event: RelationChanged) -> SchemaChanged:
        """A relation message's columns as ``Column``s; nullability and defaults (which the message does
        not carry) from the catalog where the column still exists, else nullable without a default."""
        assert self._introspector is not None
        try:
            current = {c.name: c for c in self._introspector.table(event.table).columns}
        except UserActionError:
            current = {}
        columns = tuple(
            replace(current[c.name], type=c.type) if c.name in current else Column(c.name, c.type)
            for c in event.relation.columns
        )
        names = [c.name for c in columns]
        now = self._column_numbers([event.table]).get(event.table, {})
        renamed = renames_by_number(self._numbers.pop(event.old_table, None), [n for n, _ in event.old], names, now)
        if set(now) == set(names):  # the catalog still shows what the stream reached
            self._numbers[event.table] = now
        description = event.describe(renamed)
        return SchemaChanged(event.table, event.old_table, columns, event.position, description, renamed=renamed)

    def _column_numbers(self, tables: Sequence[TableId]) -> dict[TableId, dict[str, int]]:
        found: dict[TableId, dict[str, int]] = {}
        params = ([t.schema for t in tables], [t.name for t in tables])
        for schema, table, column, number in run(self.conn, COLUMN_NUMBERS_SQL, params).fetchall():
            found.setdefault(TableId(schema, table), {})[column] = number
        return found

    # ------------------------------------------------------------------ streaming
    def verify_slot(self, start_lsn: int | None) -> SlotStatus:
        """The slot can deliver every change after ``start_lsn``, or ``NeedsResync`` says what is lost."""
        status = self.slot_status()
        since = f"since {format_lsn(start_lsn)}" if start_lsn else "since the last checkpoint"
        if status is None:
            raise NeedsResync(
                f"replication slot {self.slot} does not exist on {self.where} (dropped?); the changes {since} are lost"
            )
        if status.plugin != "pgoutput" or status.database != self.config.database:
            raise UserActionError(
                f"replication slot {self.slot} belongs to database {status.database} with plugin {status.plugin}, not "
                f"to this task; drop it or rename the task"
            )
        if status.wal_status == "lost" or status.invalidation_reason:
            reason = status.invalidation_reason or "wal_status = lost"
            raise NeedsResync(
                f"replication slot {self.slot} was invalidated ({reason}): the server removed WAL it still needed "
                f"(max_slot_wal_keep_size?); the changes {since} are lost"
            )
        if start_lsn is not None and status.confirmed_flush is not None and start_lsn < status.confirmed_flush:
            raise NeedsResync(
                f"the task resumes at {format_lsn(start_lsn)} but replication slot {self.slot} already confirmed "
                f"{format_lsn(status.confirmed_flush)}; the source discarded the changes in between (the target lost "
                "commits, or was restored from a backup)"
            )
        if start_lsn is not None:
            row = run(self.conn, "SELECT pg_catalog.pg_current_wal_lsn()::text").fetchone()
            current = parse_lsn(row[0]) if row else 0
            if start_lsn > current:
                raise NeedsResync(
                    f"the task resumes at {format_lsn(start_lsn)}, past the end of the source's WAL "
                    f"({format_lsn(current)}): the source was restored from a backup or is another server"
                )
        if status.active_pid is not None:
            raise TransientError(
                f"replication slot {self.slot} is in use by process {status.active_pid} (another run of task "
                f"{self.task}?)"
            )
        return status

    def _verify_publication(self) -> None:
        publication = self._publication()
        if publication is None:
            raise NeedsResync(
                f"publication {self.publication} does not exist on {self.where} (dropped?); changes made without it "
                "cannot be decoded"
            )
        missing = {str(t.id) for t in self.tables} - set(publication[2])
        if missing:
            raise NeedsResync(
                f"publication {self.publication} no longer holds {', '.join(sorted(missing))} (dropped and "
                "re-created?); its changes since then were not captured"
            )

    def _resolve_type(self, oid: int, typmod: int) -> ColumnType:
        _ = self.conn
        assert self._introspector is not None
        return self._introspector.column_type(oid, typmod)

    def _money_scale(self) -> int:
        row = run(self.conn, "SELECT pg_catalog.scale('1'::money::numeric)").fetchone()
        return int(row[0]) if row else 2

    def decoder(self) -> PgOutputDecoder:
        """A decoder that reads values as the snapshot reader does, knowing the tables' columns."""
        expected = {t.id: tuple((c.name, c.type.native) for c in t.columns) for t in self.tables}
        return PgOutputDecoder(
            self._resolve_type,
            money_scale=self._money_scale(),
            expected=expected,
            part_changes=self.part_changes,
            part_bytes=self.part_bytes,
            text_tables=self.text_tables,
        )

    def stream(self, start_lsn: int | None = None) -> Iterator[Transaction | SchemaChanged | Idle]:
        """Whole transactions committed after ``start_lsn`` (default: the slot's confirmed position),
        in commit order; ``SchemaChanged`` before the transaction holding a schema change; ``Idle``
        after ``idle_seconds`` with nothing to yield (also while a big transaction is still arriving),
        and at once when the server has nothing more ready after a whole transaction (caught up).
        Transactions without changes to the selected tables are not yielded (``Idle`` moves past them).

        Connection trouble raises ``TransientError`` (stream again from the stored position), a lost
        slot ``NeedsResync``."""
        status = self.verify_slot(start_lsn)
        self._verify_publication()
        numbers = self._column_numbers([t.id for t in self.tables])
        self._numbers = {t.id: numbers[t.id] for t in self.tables if set(numbers.get(t.id, ())) == set(t.column_names)}
        start = start_lsn if start_lsn is not None else (status.confirmed_flush or 0)
        decoder = self.decoder()
        feed = decoder.feed
        repl = ReplicationConnection(self.config, silence_timeout=self.silence_timeout)
        try:
            try:
                repl.start(self.slot, start, [self.publication])
            except psycopg.Error as exc:
                raise self._stream_error(exc) from None
            self._repl = repl
            delivered = start
            parted = False  # parts of the current transaction were yielded: its end must be too
            caught_up = True  # no whole transaction was yielded since the last Idle
            last_yield = time.monotonic()
            while True:
                if self._acked > repl.confirmed:
                    repl.send_feedback(self._acked)
                now = time.monotonic()
                if now - last_yield >= self.idle_seconds:
                    # the keepalive's position is past every commit sent before it, but mid-transaction
                    # only the last commit is known to be whole
                    yield Idle(delivered if decoder.in_transaction else max(delivered, repl.server_wal_end))
                    last_yield = now = time.monotonic()
                    caught_up = True
                try:
                    # after a transaction, only what is already there: none means caught up (Idle at once)
                    messages = repl.read_many(0.0 if not caught_up else self.idle_seconds - (now - last_yield))
                except psycopg.Error as exc:
                    raise self._stream_error(exc) from None
                if not messages and not caught_up:
                    caught_up = True
                    yield Idle(delivered if decoder.in_transaction else max(delivered, repl.server_wal_end))
                    last_yield = time.monotonic()
                    continue
                for message in messages:
                    event: Transaction | RelationChanged | SchemaChanged | LogicalMessage | None
                    event = feed(message.payload, message.wal_start)
                    if event is None:
                        continue  # a change inside a transaction: the common case
                    if isinstance(event, LogicalMessage):
                        continue  # not requested
                    if isinstance(event, RelationChanged):
                        event = self._schema_changed(event)
                    elif isinstance(event, Transaction):
                        if event.partial:
                            parted = True
                        else:
                            delivered = event.commit_position
                            if not event.changes and not parted:
                                event = None  # touched no selected table (PostgreSQL < 15 sends those)
                            else:
                                caught_up = False
                            parted = False
                    if event is not None:
                        yield event
                        last_yield = time.monotonic()
        finally:
            self._repl = None
            if self._acked > repl.confirmed and repl.streaming:
                with contextlib.suppress(Exception):
                    repl.send_feedback(self._acked)
            repl.close()

    def _stream_error(self, exc: psycopg.Error) -> ConveyorError:
        message = first_line(exc)
        state = exc.sqlstate or ""
        if state == "55000" and ("can no longer get changes" in message or "invalidated" in message):
            return NeedsResync(f"replication slot {self.slot} was invalidated: {message}")
        if state == "42704" and "replication slot" in message:
            return NeedsResync(f"replication slot {self.slot} does not exist on {self.where}: {message}")
        if state == "42704" and "publication" in message:
            return NeedsResync(f"publication {self.publication} is gone: {message}; changes made without it are lost")
        if state == "55006":
            return TransientError(f"replication slot {self.slot} is in use: {message}")
        # the connection broke (server restart, terminated walsender): is the slot still there?
        try:
            status = self.slot_status()
        except psycopg.Error:
            return TransientError(f"the replication connection to {self.where} broke: {message}")
        if status is None:
            return NeedsResync(f"replication slot {self.slot} was dropped while streaming ({message})")
        if status.wal_status == "lost" or status.invalidation_reason:
            return NeedsResync(f"replication slot {self.slot} was invalidated while streaming ({message})")
        return classify(exc) or TransientError(f"the replication stream from {self.where} failed: {message}")

    def ack(self, lsn: int) -> None:
        """The target has stored everything up to ``lsn`` (a ``commit_position`` or ``Idle.position``):
        the source may discard it. Never lowers what was acknowledged. While streaming, it reaches the
        server with the next status update (within ``idle_seconds``, and before the stream closes);
        otherwise the slot is advanced at once."""
        if lsn <= self._acked:
            return
        self._acked = lsn
        if self._repl is None:
            try:
                run(self.conn, ADVANCE_SQL, (format_lsn(lsn), self.slot, format_lsn(lsn)))
            except psycopg.Error as exc:
                raise self._stream_error(exc) from None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def drop(config: PostgresConfig, task: str) -> list[str]:
    """Drop a task's slot and publication (``conveyor cleanup``); returns what was dropped."""
    capture = PostgresCapture(config, task)
    try:
        return capture.drop()
    finally:
        capture.close()
