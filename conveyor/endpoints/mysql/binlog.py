"""The MySQL / MariaDB replication protocol: a connection that streams binlog events as a replica does.

``BinlogStream`` logs in with Conveyor's usual connection (TLS and credentials from ``MySQLConfig``),
announces what a replica announces (binlog checksums, a heartbeat period, MariaDB's GTID capability),
registers with a server id of its own (``COM_REGISTER_SLAVE``) and asks for the binlog from a file
and offset (``COM_BINLOG_DUMP``). From then on the connection only receives: events are read
straight from its socket in large chunks, each checked against its CRC32 when the server writes
them, and handed out as ``Event``s with the raw body for the caller to decode.

The server sends a heartbeat after ``heartbeat`` seconds without events, so ``silence_timeout``
seconds without a byte mean the connection is dead even when TCP has not noticed: ``TransientError``.

Event layouts follow MySQL's ``libbinlogevents`` and MariaDB's ``log_event.h``; the numbers are the
servers' own.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any, cast

import pymysql

from conveyor.endpoints.config import MySQLConfig
from conveyor.endpoints.mysql.connect import connect, is_mariadb
from conveyor.errors import TransientError

#: seconds without any byte from the server after which the connection counts as dead
SILENCE_TIMEOUT = 30.0
#: the server sends a heartbeat after this many seconds without events (a third of the silence window)
HEARTBEAT = SILENCE_TIMEOUT / 3
#: bytes asked of the socket at once
CHUNK = 1 << 20

COM_BINLOG_DUMP = 0x12
COM_REGISTER_SLAVE = 0x15
#: MariaDB: this replica understands GTID events (MARIA_SLAVE_CAPABILITY_GTID)
MARIADB_CAPABILITY_GTID = 4
#: COM_BINLOG_DUMP flags: none, so the server waits for new events at the end of the binlog
_DUMP_FLAGS = 0

# event types
UNKNOWN = 0
QUERY = 2
STOP = 3
ROTATE = 4
FORMAT_DESCRIPTION = 15
XID = 16
TABLE_MAP = 19
WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1 = 23, 24, 25
INCIDENT = 26
HEARTBEAT_EVENT = 27
WRITE_ROWS, UPDATE_ROWS, DELETE_ROWS = 30, 31, 32
MYSQL_GTID, MYSQL_ANONYMOUS_GTID = 33, 34
#: XA PREPARE: the transaction's changes are logged, its XA COMMIT / ROLLBACK comes later
XA_PREPARE = 38
#: MySQL: JSON partial updates (binlog_row_value_options), whole transactions compressed with zstd
PARTIAL_UPDATE_ROWS, TRANSACTION_PAYLOAD = 39, 40
HEARTBEAT_V2 = 41
MARIADB_GTID = 162
MARIADB_GTID_LIST = 163
QUERY_COMPRESSED = 165
WRITE_ROWS_COMPRESSED_V1, UPDATE_ROWS_COMPRESSED_V1, DELETE_ROWS_COMPRESSED_V1 = 166, 167, 168
WRITE_ROWS_COMPRESSED, UPDATE_ROWS_COMPRESSED, DELETE_ROWS_COMPRESSED = 169, 170, 171

#: rows event type -> (operation letter, rows carry two images, compressed, version 2 post-header)
ROWS_EVENTS: dict[int, tuple[str, bool, bool, bool]] = {
    WRITE_ROWS_V1: ("i", False, False, False),
    UPDATE_ROWS_V1: ("u", True, False, False),
    DELETE_ROWS_V1: ("d", False, False, False),
    WRITE_ROWS: ("i", False, False, True),
    UPDATE_ROWS: ("u", True, False, True),
    DELETE_ROWS: ("d", False, False, True),
    WRITE_ROWS_COMPRESSED_V1: ("i", False, True, False),
    UPDATE_ROWS_COMPRESSED_V1: ("u", True, True, False),
    DELETE_ROWS_COMPRESSED_V1: ("d", False, True, False),
    WRITE_ROWS_COMPRESSED: ("i", False, True, True),
    UPDATE_ROWS_COMPRESSED: ("u", True, True, True),
    DELETE_ROWS_COMPRESSED: ("d", False, True, True),
}

HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server id, event size, end position, flags
HEADER_SIZE = HEADER.size
_U32 = struct.Struct("<I").unpack_from
#: the event is made up by the server for this connection (the first ROTATE), not read from a file
ARTIFICIAL = 0x20
#: MariaDB GTID event flag: a statement of its own (DDL), with no BEGIN / COMMIT around it
GTID_STANDALONE = 1


class BinlogError(Exception):
    """An error packet from the server while streaming (``code``, ``message``)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(code, message)


class ConnectionLost(Exception):
    """The stream's connection broke (closed by the server, reset, or a TLS failure)."""


@dataclass(slots=True)
class Event:
    """One binlog event: its header fields and its bytes (``data``, without the checksum);
    the body starts at ``HEADER_SIZE``. Not frozen: one is made per event, and a frozen
    dataclass's ``__init__`` costs four times as much; nothing changes one once made."""

    timestamp: int
    type: int
    server_id: int
    end: int  # the event's end offset in its binlog file (0 for artificial events)
    flags: int
    data: bytes


def lenenc(d: bytes, p: int) -> tuple[int, int]:
    """A length-encoded integer at ``p``: (value, position after it)."""
    first = d[p]
    if first < 0xFB:
        return first, p + 1
    if first == 0xFC:
        return d[p + 1] | d[p + 2] << 8, p + 3
    if first == 0xFD:
        return d[p + 1] | d[p + 2] << 8 | d[p + 3] << 16, p + 4
    return int.from_bytes(d[p + 1 : p + 9], "little"), p + 9


def mariadb_uncompress(d: bytes, p: int, end: int) -> bytes:
    """A MariaDB compressed block (``log_bin_compress``): a header byte (high bit set, the low 3 bits
    the size of the big-endian uncompressed length that follows), then a zlib stream."""
    head = d[p]
    size = head & 0x07
    if not head & 0x80 or not 1 <= size <= 4 or head & 0x70:
        raise ValueError(f"unknown compression header 0x{head:02x}")
    length = int.from_bytes(d[p + 1 : p + 1 + size], "big")
    out = zlib.decompress(d[p + 1 + size : end])
    if len(out) != length:
        raise ValueError(f"uncompressed {len(out)} bytes, the header says {length}")
    return out


def register(conn: Any, server_id: int) -> None:
    """``COM_REGISTER_SLAVE``: the server lists the connection as a replica (SHOW SLAVE HOSTS); it
    needs the REPLICATION SLAVE privilege, so it also checks that before anything is streamed."""
    host = b"conveyor"
    payload = struct.pack("<IB", server_id, len(host)) + host + b"\x00\x00" + struct.pack("<HII", 0, 0, 0)
    conn._execute_command(COM_REGISTER_SLAVE, payload)
    packet = conn._read_packet()  # raises the server's error (PyMySQL's exception)
    if not packet.is_ok_packet():
        raise pymysql.err.OperationalError(2027, "malformed answer to COM_REGISTER_SLAVE")


class BinlogStream:
    """One replica connection streaming from ``file``:``pos``; one thread at a time."""

    def __init__(
        self,
        config: MySQLConfig,
        server_id: int,
        file: str,
        pos: int,
        *,
        silence_timeout: float = SILENCE_TIMEOUT,
    ) -> None:
        self.config = config
        self.silence_timeout = silence_timeout
        self.conn: Any = cast(Any, connect(config, "source"))  # PyMySQL internals are used below
        try:
            self.mariadb = is_mariadb(self.conn)
            self.checksum = self._announce(min(HEARTBEAT, silence_timeout / 3))
            register(self.conn, server_id)
            payload = struct.pack("<IHI", pos, _DUMP_FLAGS, server_id) + file.encode()
            self.conn._execute_command(COM_BINLOG_DUMP, payload)
        except BaseException:
            self.close()
            raise
        self.sock: socket.socket = self.conn._sock
        self._buf = bytearray()
        self._start = 0
        self.last_received = time.monotonic()

    def _announce(self, heartbeat: float) -> bool:
        """Tell the server what this replica understands; True when events carry a CRC32."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.binlog_checksum")
            row = cur.fetchone()
            checksum = str(row[0]).upper() == "CRC32" if row else False
            # a replica that does not announce the checksum it expects is refused (MySQL) or sent none
            cur.execute("SET @master_binlog_checksum = @@GLOBAL.binlog_checksum")
            cur.execute("SET @master_heartbeat_period = %s", (int(heartbeat * 1e9),))
            if self.mariadb:
                cur.execute("SET @mariadb_slave_capability = %s", (MARIADB_CAPABILITY_GTID,))
        return checksum

    # ------------------------------------------------------------------ reading
    def _fill(self, timeout: float) -> bool:
        """Read what the socket has (waiting at most ``timeout``); False when nothing came."""
        buf = self._buf
        if self._start > CHUNK:
            del buf[: self._start]
            self._start = 0
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(CHUNK)
        except TimeoutError:
            return False
        except OSError as exc:  # ssl.SSLError is an OSError
            raise ConnectionLost(str(exc) or type(exc).__name__) from None
        if not chunk:
            raise ConnectionLost("the server closed the connection")
        buf += chunk
        self.last_received = time.monotonic()
        return True

    def _packet(self) -> bytes | None:
        """The next whole packet's payload from the buffer (an event over 16 MiB comes in several
        packets: joined), or None while part of it is still to come."""
        buf, p, size = self._buf, self._start, len(self._buf)
        spans = []
        while True:
            if size - p < 4:
                return None
            n = buf[p] | buf[p + 1] << 8 | buf[p + 2] << 16
            if size - p - 4 < n:
                return None
            spans.append((p + 4, p + 4 + n))
            p += 4 + n
            if n < 0xFFFFFF:
                break
        self._start = p
        with memoryview(buf) as view:
            if len(spans) == 1:
                return bytes(view[spans[0][0] : spans[0][1]])
            return b"".join(view[a:b] for a, b in spans)

    def read(self, timeout: float) -> Event | None:
        """The next event, or None when none came within ``timeout`` seconds.

        Raises ``BinlogError`` for the server's error packet, ``ConnectionLost`` when the connection
        broke or an event came damaged (its CRC32 or size is wrong), ``TransientError`` when the server
        stayed silent (no event, no heartbeat) for ``silence_timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._next_event()
            if event is not None:
                return event
            now = time.monotonic()
            if now - self.last_received > self.silence_timeout:
                raise TransientError(
                    f"the binlog connection to {self.config.host}:{self.config.port} has been silent for "
                    f"{now - self.last_received:.0f} s (no event, no heartbeat); reconnecting"
                )
            wait = min(deadline, self.last_received + self.silence_timeout) - now
            if not self._fill(wait) and time.monotonic() >= deadline:
                return None

    def read_many(self, timeout: float) -> list[Event]:
        """``read``, then every further event already received, in order ([] when none came within
        ``timeout``): one call per socket read rather than per event. An error raised for a later
        event drops the ones before it, which were not handed out, so their position was not passed."""
        event = self.read(timeout)
        if event is None:
            return []
        events = [event]
        while (event := self._next_event()) is not None:
            events.append(event)
        return events

    def _next_event(self) -> Event | None:
        """The next event in the buffer, or None while part of it is still to come. An event in one
        packet (nearly all) is cut straight out of the buffer, its checksum computed over that copy."""
        buf, p = self._buf, self._start
        n = buf[p] | buf[p + 1] << 8 | buf[p + 2] << 16 if len(buf) - p > 4 else 0
        end = p + 4 + n
        if not 1 + HEADER_SIZE <= n < 0xFFFFFF or end > len(buf) or buf[p + 4] != 0:
            # an error or end packet, an event in several packets, or one still coming
            packet = self._packet()
            return None if packet is None else self._event(packet)
        timestamp, kind, server_id, size, position, flags = HEADER.unpack_from(buf, p + 5)
        if size != n - 1:
            raise ConnectionLost(f"a binlog event of type {kind} has {n - 1} bytes, its header says {size}")
        self._start = end
        # bytes of a bytearray slice: quicker than through a memoryview for events this small
        if not self.checksum:
            return Event(timestamp, kind, server_id, position, flags, bytes(buf[p + 5 : end]))
        data = bytes(buf[p + 5 : end - 4])
        if zlib.crc32(data) != _U32(buf, end - 4)[0]:
            raise ConnectionLost(f"the binlog event of type {kind} ending at {position} fails its CRC32 checksum")
        return Event(timestamp, kind, server_id, position, flags, data)

    def _event(self, packet: bytes) -> Event:
        first = packet[0] if packet else 0xFF
        if first == 0xFF:
            code = int.from_bytes(packet[1:3], "little") if len(packet) >= 3 else 0
            text = packet[9:] if packet[3:4] == b"#" else packet[3:]
            raise BinlogError(code, text.decode("utf-8", "replace"))
        if first == 0xFE and len(packet) < 9:
            raise ConnectionLost("the server ended the binlog stream")
        data = packet[1:]
        timestamp, kind, server_id, size, end, flags = HEADER.unpack_from(data)
        if size != len(data):
            raise ConnectionLost(f"a binlog event of type {kind} has {len(data)} bytes, its header says {size}")
        if self.checksum:
            body, crc = data[:-4], int.from_bytes(data[-4:], "little")
            if zlib.crc32(body) != crc:
                raise ConnectionLost(f"the binlog event of type {kind} ending at {end} fails its CRC32 checksum")
            data = body
        return Event(timestamp, kind, server_id, end, flags, data)

    def close(self) -> None:
        """Drop the connection (a streaming connection takes no more commands, not even COM_QUIT)."""
        with contextlib.suppress(Exception):
            self.conn._force_close()
