"""The logical replication connection, spoken through libpq (``psycopg.pq``).

psycopg has no replication API, so this opens a raw ``pq.PGconn`` with ``replication=database``,
sends replication commands (``CREATE_REPLICATION_SLOT``, ``START_REPLICATION``) with the simple
query protocol and then reads the COPY BOTH stream: XLogData (``w``) messages go to the caller,
primary keepalives (``k``) are answered here.

What the server is told it may discard is only ever what the caller confirmed (``send_feedback``);
periodic status updates repeat that value, never more. They go out at least every
``FEEDBACK_INTERVAL`` seconds, even while idle, so the server's ``wal_sender_timeout`` never fires,
and they ask the server to answer: a stream from which nothing arrives for ``silence_timeout``
seconds is dead (``TransientError``), and TCP keepalives plus ``tcp_user_timeout`` catch a peer that
vanished without a word, so a dead connection is noticed within a minute.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import struct
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from conveyor.endpoints.config import PostgresConfig
from conveyor.endpoints.postgres.connect import connect_error, connection_params, redact
from conveyor.endpoints.postgres.pgoutput import format_lsn, parse_lsn
from conveyor.errors import TransientError, UserActionError

#: the walsender session's settings: values print as on every other Conveyor connection (see
#: connect.SESSION), and money prints all its digits the same way whatever the server's locale
SESSION_OPTIONS: dict[str, str] = {
    "DateStyle": "ISO",
    "TimeZone": "UTC",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "statement_timeout": "0",
}
#: libpq TCP settings: a peer that vanished is noticed in ~25 s while idle, 30 s while sending
TCP_KEEPALIVE: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
#: seconds between status updates to the server (its wal_sender_timeout is 60 s by default)
FEEDBACK_INTERVAL = 10.0
#: seconds without any message from the server (which answers every status update) = dead stream
SILENCE_TIMEOUT = 45.0
#: seconds a graceful stop waits for the server to end the stream
STOP_TIMEOUT = 5.0

#: microseconds between 1970-01-01 and 2000-01-01 (the protocol's epoch)
_PG_EPOCH_US = 946_684_800_000_000
_XLOG_HEADER = struct.Struct(">QQq")  # wal_start, wal_end, send time
_KEEPALIVE = struct.Struct(">Qq?")  # wal_end, send time, reply requested
_STATUS = struct.Struct(">cQQQqB")  # 'r', written, flushed, applied, client time, reply requested
_W, _K = ord("w"), ord("k")

REPLICATION_ERRORS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"no pg_hba\.conf entry for replication connection"),
        "PostgreSQL at {where} does not accept replication connections from user {user} (pg_hba.conf); ask the DBA "
        "to add a line like 'host replication {user} <this host's address>/32 scram-sha-256' and reload",
    ),
    (
        re.compile(r"superuser or replication role|REPLICATION attribute|permission denied to start WAL sender"),
        "user {user} may not open a replication connection; run ALTER ROLE {ident} REPLICATION "
        "(on Amazon RDS / Aurora: GRANT rds_replication TO {ident})",
    ),
    (
        re.compile(r"exceeds max_wal_senders|number of requested standby connections"),
        "PostgreSQL at {where} has no free WAL sender; stop an unused replication client or raise max_wal_senders "
        "(needs a restart)",
    ),
]


class XLogData(NamedTuple):
    """One message of the stream: a pgoutput payload and where it sits in the WAL."""

    wal_start: int
    wal_end: int
    payload: bytes


#: an XLogData from a tuple of its fields: what its constructor does, without that Python-level ``__new__``
#: (one per message)
_xlog_data: Callable[[tuple[int, int, bytes]], XLogData] = partial(tuple.__new__, XLogData)


class CreatedSlot:
    """A new replication slot: its consistent point and, when exported, the snapshot that shows the
    database exactly as of that point (``SET TRANSACTION SNAPSHOT``).

    The snapshot lives only while the connection that created the slot stays open and runs no other
    command: until ``release()`` (or the end of a ``with`` block). Every reader must have imported it
    before then; an importing transaction keeps it afterwards."""

    def __init__(self, name: str, lsn: int, snapshot: str | None, connection: ReplicationConnection) -> None:
        self.name = name
        self.lsn = lsn
        self.snapshot = snapshot
        self._connection = connection
        self.close_connection = False  # release() closes the connection too (it was opened for this slot)

    @property
    def held(self) -> bool:
        """The exported snapshot can still be imported."""
        return self.snapshot is not None and self._connection.held is self

    def release(self) -> None:
        if self.close_connection:
            self._connection.close()
        else:
            self._connection.release_snapshot()

    def __enter__(self) -> CreatedSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"CreatedSlot({self.name!r}, {format_lsn(self.lsn)}, snapshot={self.snapshot!r})"


def conninfo(config: PostgresConfig) -> str:
    """A libpq conninfo for a logical replication connection (``replication=database``)."""
    params = {
        **connection_params(config),
        "client_encoding": "UTF8",
        "replication": "database",
        "options": " ".join(f"-c {name}={value}" for name, value in SESSION_OPTIONS.items()),
        **TCP_KEEPALIVE,
    }
    return make_conninfo(**params)


def replication_connect_error(config: PostgresConfig, message: str) -> UserActionError:
    """Like ``connect.connect_error``, plus what only replication connections meet."""
    fields = {
        "where": f"{config.host}:{config.port}",
        "user": config.user,
        "ident": quote_ident(config.user),
    }
    for pattern, text in REPLICATION_ERRORS:
        if pattern.search(message):
            return UserActionError(redact(text.format(**fields), config))
    return connect_error(config, psycopg.OperationalError(message))


def quote_ident(name: str) -> str:
    """An identifier for the replication command grammar (and SQL)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _now_pg() -> int:
    return time.time_ns() // 1000 - _PG_EPOCH_US


class ReplicationConnection:
    """One replication connection; used from one thread.

    Idle, it runs replication commands (``create_slot``); after ``start()`` it streams until
    ``close()``. ``confirmed`` is the LSN the caller acknowledged, the only one reported."""

    def __init__(self, config: PostgresConfig, *, silence_timeout: float = SILENCE_TIMEOUT) -> None:
        self.config = config
        self.silence_timeout = silence_timeout
        #: status updates ask for an answer at least three times per silence window
        self.feedback_interval = min(FEEDBACK_INTERVAL, silence_timeout / 3)
        try:
            pgconn = pq.PGconn.connect(conninfo(config).encode())
        except psycopg.OperationalError as exc:  # out of memory, bad conninfo
            raise replication_connect_error(config, str(exc)) from None
        if pgconn.status != pq.ConnStatus.OK:
            message = pgconn.get_error_message()
            pgconn.finish()
            raise replication_connect_error(config, message)
        self.pgconn = pgconn
        self.server_version: int = pgconn.server_version
        self.held: CreatedSlot | None = None
        self.streaming = False
        #: the server ended the stream after messages ``read_many`` returned
        self._ended = False
        self.confirmed = 0
        #: the server's position as of its last keepalive (what it has sent so far)
        self.server_wal_end = 0
        self.last_received = time.monotonic()
        self._last_feedback = 0.0
        self._selector = selectors.DefaultSelector()
        self._selector.register(pgconn.socket, selectors.EVENT_READ)
        if self.server_version >= 140000:
            try:
                self.execute("SET idle_session_timeout = 0")  # the snapshot may be held idle for hours
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ commands
    def execute(self, command: str) -> pq.abc.PGresult:
        """A replication command or SQL (a ``replication=database`` walsender runs both); waits
        interruptibly and cancels the command when interrupted."""
        if self.streaming:
            raise psycopg.ProgrammingError("the connection is streaming; close() it first")
        self.held = None  # any command ends an exported snapshot
        pgconn = self.pgconn
        pgconn.send_query(command.encode())
        result = self._result(pgconn)
        while pgconn.get_result() is not None:
            pass
        if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise psycopg.errors.error_from_result(result, encoding="utf-8")
        return result

    def _result(self, pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
        try:
            while pgconn.flush():
                self._selector.select(1.0)
            while pgconn.is_busy():
                if self._selector.select(1.0):
                    pgconn.consume_input()
        except BaseException:
            with contextlib.suppress(Exception):
                pgconn.get_cancel().cancel()
            raise
        result = pgconn.get_result()
        if result is None:
            raise psycopg.OperationalError(f"no result from the server: {pgconn.get_error_message()}")
        return result

    def identify_system(self) -> tuple[str, int, int, str | None]:
        """(system id, timeline, current WAL flush position, database)."""
        r = self.execute("IDENTIFY_SYSTEM")
        values = [r.get_value(0, i) for i in range(4)]
        sysid, timeline, xlogpos, dbname = (v.decode() if v is not None else None for v in values)
        return str(sysid), int(timeline or 0), parse_lsn(xlogpos or "0/0"), dbname

    def create_slot(self, name: str, *, temporary: bool = False, export_snapshot: bool = True) -> CreatedSlot:
        """``CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput``, exporting a snapshot.

        Blocks until every transaction running when it started has ended (the slot needs that to
        be consistent), so a long open transaction on the source delays it."""
        if self.server_version >= 150000:
            options = "(SNAPSHOT 'export')" if export_snapshot else "(SNAPSHOT 'nothing')"
        else:
            options = "EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"
        kind = " TEMPORARY" if temporary else ""
        r = self.execute(f"CREATE_REPLICATION_SLOT {quote_ident(name)}{kind} LOGICAL pgoutput {options}")
        point, snapshot = r.get_value(0, 1), r.get_value(0, 2)
        created = CreatedSlot(
            name, parse_lsn(point.decode() if point else "0/0"), snapshot.decode() if snapshot else None, self
        )
        if created.snapshot is not None:
            self.held = created
        return created

    def release_snapshot(self) -> None:
        """End the exported snapshot (a command on the connection ends it)."""
        if self.held is not None and not self.streaming:
            self.execute("SELECT 1")

    # ------------------------------------------------------------------ streaming
    def start(
        self,
        slot: str,
        start_lsn: int,
        publications: Sequence[str],
        *,
        proto_version: int = 1,
        messages: bool = False,
    ) -> None:
        """``START_REPLICATION SLOT slot LOGICAL start_lsn (pgoutput options)``: the COPY BOTH stream.

        Protocol version 1 (every PostgreSQL from 10): transactions arrive whole, at their commit;
        the server spills big ones to disk (``logical_decoding_work_mem``)."""
        names = ",".join(quote_ident(p) for p in publications)
        options = [f"proto_version '{int(proto_version)}'", f"publication_names {quote_literal(names)}"]
        if self.server_version >= 140000:
            options.append(f"messages '{'true' if messages else 'false'}'")
        if proto_version >= 2:
            options.append("streaming 'off'")
        command = f"START_REPLICATION SLOT {quote_ident(slot)} LOGICAL {format_lsn(start_lsn)} ({', '.join(options)})"
        self.held = None
        pgconn = self.pgconn
        pgconn.send_query(command.encode())
        result = self._result(pgconn)
        if result.status != pq.ExecStatus.COPY_BOTH:
            while pgconn.get_result() is not None:
                pass
            raise psycopg.errors.error_from_result(result, encoding="utf-8")
        self.streaming = True
        self.last_received = time.monotonic()
        self._last_feedback = 0.0  # the first read reports at once

    def read(self, timeout: float) -> XLogData | None:
        """The next XLogData, or None when nothing came for ``timeout`` seconds.

        Raises ``TransientError`` when the server stayed silent for ``silence_timeout`` seconds, the
        server's error when it ended the stream, ``psycopg.OperationalError`` when the connection broke."""
        if self._ended:
            self._end_of_stream()
        pgconn = self.pgconn
        monotonic = time.monotonic
        deadline = monotonic() + timeout
        polled = False
        while True:
            nbytes, data = pgconn.get_copy_data(1)
            now = monotonic()
            if now - self._last_feedback >= self.feedback_interval:
                self.send_feedback(reply_requested=True)
            if nbytes > 0:
                self.last_received = now
                kind = data[0]
                if kind == _W:
                    start, end, _ = _XLOG_HEADER.unpack_from(data, 1)
                    return XLogData(start, end, bytes(data[25:]))
                if kind == _K:
                    self._keepalive(data)
                    continue
                raise psycopg.OperationalError(f"unexpected replication message {chr(kind)!r}")
            if nbytes < 0:
                self._end_of_stream()
            if not polled:
                # read what the socket already holds (one recv) before paying for a wait
                pgconn.consume_input()
                polled = True
                continue
            polled = False
            if now - self.last_received > self.silence_timeout:
                self.streaming = False  # dead: close() must not wait for it to end the stream
                raise TransientError(
                    f"the replication connection to {self.config.host}:{self.config.port} has been silent for "
                    f"{now - self.last_received:.0f} s; reconnecting"
                )
            wait = min(
                deadline, self._last_feedback + self.feedback_interval, self.last_received + self.silence_timeout
            )
            if self._selector.select(max(wait - now, 0.0)):
                pgconn.consume_input()
            elif time.monotonic() >= deadline:
                return None

    def read_many(self, timeout: float, limit: int = 500) -> list[XLogData]:
        """``read(timeout)``, then up to ``limit`` - 1 more XLogData messages the connection already
        holds or the socket has ready: the per-message bookkeeping (clock, feedback) once per batch.
        Empty when nothing came.

        libpq reads one TLS record per ``consume_input``, and the walsender flushes each message as it
        goes: over TLS a record is often one message, so the socket is read on here until it is empty."""
        first = self.read(timeout)
        if first is None:
            return []
        batch = [first]
        pgconn = self.pgconn
        get_copy_data = pgconn.get_copy_data
        unpack = _XLOG_HEADER.unpack_from
        polled = False
        while len(batch) < limit:
            nbytes, data = get_copy_data(1)
            if nbytes <= 0:
                if nbytes < 0:
                    self._ended = True  # raised by the next read(), after this batch is delivered
                    break
                if polled:
                    break  # the socket had nothing more
                try:
                    pgconn.consume_input()
                except psycopg.OperationalError:
                    break  # the next read() meets it, after this batch is delivered
                polled = True
                continue
            polled = False
            kind = data[0]
            if kind == _W:
                start, end, _ = unpack(data, 1)
                batch.append(_xlog_data((start, end, bytes(data[25:]))))
            elif kind == _K:
                self._keepalive(data)
            else:
                raise psycopg.OperationalError(f"unexpected replication message {chr(kind)!r}")
        return batch

    def _keepalive(self, data: Any) -> None:
        end, _, reply = _KEEPALIVE.unpack_from(data, 1)
        if end > self.server_wal_end:
            self.server_wal_end = end
        if reply:
            self.send_feedback()

    def _end_of_stream(self) -> None:
        self.streaming = False
        result = self.pgconn.get_result()
        while self.pgconn.get_result() is not None:
            pass
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding="utf-8")
        raise psycopg.OperationalError("the server ended the replication stream")

    def send_feedback(self, flush_lsn: int | None = None, *, reply_requested: bool = False) -> None:
        """A Standby Status Update: written = flushed = applied = ``confirmed``, which ``flush_lsn``
        raises (never lowers: the server would move the slot back). 0 (nothing confirmed yet) is
        ignored by the server."""
        if flush_lsn is not None and flush_lsn > self.confirmed:
            self.confirmed = flush_lsn
        lsn = self.confirmed
        self.pgconn.put_copy_data(_STATUS.pack(b"r", lsn, lsn, lsn, _now_pg(), 1 if reply_requested else 0))
        self.pgconn.flush()
        self._last_feedback = time.monotonic()

    def stop(self) -> None:
        """Report ``confirmed`` a last time and end the stream cleanly, so the server has processed the
        report before the connection goes (CopyDone is answered after the messages before it)."""
        if not self.streaming:
            return
        pgconn = self.pgconn
        self.send_feedback()
        pgconn.put_copy_end()
        pgconn.flush()
        deadline = time.monotonic() + STOP_TIMEOUT
        while True:
            nbytes, _ = pgconn.get_copy_data(1)
            if nbytes < 0:
                break
            if nbytes == 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise psycopg.OperationalError("the server did not end the replication stream")
                if self._selector.select(remaining):
                    pgconn.consume_input()
        self.streaming = False
        while pgconn.is_busy():
            if self._selector.select(max(deadline - time.monotonic(), 0.0)):
                pgconn.consume_input()
            elif time.monotonic() > deadline:
                raise psycopg.OperationalError("the server did not end the replication stream")
        while pgconn.get_result() is not None:
            pass

    def close(self) -> None:
        """Stop streaming (reporting ``confirmed``) and close; the exported snapshot, if any, ends."""
        self.held = None
        if self.pgconn.status == pq.ConnStatus.OK and self.streaming:
            with contextlib.suppress(Exception):
                self.stop()
        self.streaming = False
        with contextlib.suppress(Exception):
            self._selector.close()
        self.pgconn.finish()

    @property
    def closed(self) -> bool:
        return self.pgconn.status != pq.ConnStatus.OK

    def __enter__(self) -> ReplicationConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
