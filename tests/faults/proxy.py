"""A TCP fault proxy for tests: forwards bytes to an upstream server and misbehaves on demand.

``FaultProxy(host, port)`` listens on 127.0.0.1 and copies bytes both ways between every client and
its own upstream connection (TLS and replication protocols pass through as opaque bytes). Faults are
switched at run time from any thread: ``reset()``, ``blackhole()``, ``latency()``, ``refuse()``.

The forwarding runs in a child process (this file run as a script), one selector loop over every
socket, driven by JSON lines on its stdin. A thread would share the test's GIL, and some clients hold
the GIL while they block (libpq's connect through ``psycopg.pq.PGconn.connect``): they would wait for
a proxy that cannot run. Each call returns once the child has put the fault in force. The child ends
when its stdin closes, so it does not outlive the test process. Chunks wait in per-direction queues
until they are due (``latency``) and a side is not read while its queue is full, so a slow reader
slows the writer down as TCP would.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from servers import HOST, free_port

_CHUNK = 65536
_HIGH_WATER = 4 << 20  # stop reading a side while this many of its bytes wait to be sent
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a TCP RST
_STOP_TIMEOUT = 10.0


def abort(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST instead of the FIN handshake."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    sock.close()


class FaultProxy:
    """Forwards TCP connections from ``host:port`` to ``upstream_host:upstream_port``, with faults.

    Faults (thread-safe, in force when the call returns):
    - ``reset()``: abort every open connection with a TCP RST on both sides; new ones still work.
    - ``blackhole(True)``: read and drop every byte both ways; new connections are accepted and hang.
      ``blackhole(False)`` aborts (RST) the connections that lost bytes, since their streams have gaps.
    - ``latency(s)``: deliver every chunk ``s`` seconds after it arrived, per direction, in order.
    - ``refuse(True)``: close the listening socket, so new connections get ECONNREFUSED; open ones
      are kept. The port is below the ephemeral range, so ``refuse(False)`` can bind it again.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = HOST
        self._lock = threading.Lock()
        helpers = str(Path(__file__).resolve().parent.parent)  # tests/: servers.py
        path = os.pathsep.join(p for p in (helpers, os.environ.get("PYTHONPATH")) if p)
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", upstream_host, str(upstream_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        try:
            self.port: int = self._reply()["port"]
        except BaseException:
            self.close()
            raise

    @property
    def connections(self) -> int:
        """Client connections currently open through the proxy."""
        return int(self._request("status")["connections"])

    def url(self, url: str) -> str:
        """``url`` (a database URL that points at the upstream) pointed at this proxy instead."""
        parts = urlsplit(url)
        userinfo = "".join(parts.netloc.rpartition("@")[:2])
        return urlunsplit(parts._replace(netloc=f"{userinfo}{self.host}:{self.port}"))

    def reset(self) -> None:
        """Abort every open connection with a TCP RST on both sides."""
        self._request("reset")

    def blackhole(self, on: bool) -> None:
        """Drop all bytes both ways while on; on switching off, abort the connections that lost bytes."""
        self._request("blackhole", on=bool(on))

    def latency(self, seconds: float) -> None:
        """Delay each chunk by ``seconds`` (chunks that arrive from now on)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._request("latency", seconds=float(seconds))

    def refuse(self, on: bool) -> None:
        """Refuse new connections (ECONNREFUSED) while on; open connections are not touched."""
        self._request("refuse", on=bool(on))

    def close(self) -> None:
        """Abort every connection and stop the proxy process (idempotent)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the child's signal to stop
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.host}:{getattr(self, 'port', '?')} -> {self.upstream[0]}:{self.upstream[1]})"

    def _request(self, op: str, **args: Any) -> dict[str, Any]:
        with self._lock:
            if self._proc is None:
                raise RuntimeError(f"{self!r} is closed")
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
                self._proc.stdin.flush()
            except OSError:
                pass  # the child is gone: _reply says how
            return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait(_STOP_TIMEOUT)
            raise RuntimeError(f"the proxy process exited with code {code} (its traceback is on stderr)")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self!r}: {reply['error']}")
        return reply


# ------------------------------------------------------------------ the proxy process


@dataclass(eq=False)
class _Pipe:
    """One direction of a connection: bytes read from ``src`` wait in ``chunks`` to be sent to ``dst``."""

    src: socket.socket
    dst: socket.socket
    chunks: deque[tuple[float, bytes]] = field(default_factory=deque)  # (due time, bytes); b"": pass the FIN on
    queued: int = 0
    eof: bool = False  # src sent its FIN
    done: bool = False  # the FIN went on to dst
    blocked: bool = False  # dst's send buffer is full


@dataclass(eq=False)
class _Conn:
    client: socket.socket
    upstream: socket.socket
    up: _Pipe  # client -> upstream
    down: _Pipe  # upstream -> client
    connected: bool = False  # upstream connect() has completed
    lossy: bool = False  # bytes were dropped by the blackhole: the streams are no longer whole


class _Proxy:
    """The forwarding state and its handlers; all of it runs on the child's one thread."""

    def __init__(self, selector: selectors.BaseSelector, upstream: tuple[str, int]) -> None:
        self.selector = selector
        self.upstream = upstream
        self.host = HOST
        self.port = free_port()
        self.latency = 0.0
        self.blackhole = False
        self.conns: dict[socket.socket, _Conn] = {}  # both sockets of each connection
        self._listener: socket.socket | None = None
        for attempt in range(20):
            try:
                self.listen(retries=1)
                break
            except OSError as exc:  # another process took the free port first
                if exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise
                self.port = free_port()

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "reset":
            for conn in self.open_connections():
                self.abort(conn)
        elif op == "blackhole":
            self.blackhole = bool(request["on"])
            if not self.blackhole:
                for conn in self.open_connections():
                    if conn.lossy:
                        self.abort(conn)
        elif op == "latency":
            self.latency = float(request["seconds"])
        elif op == "refuse":
            if request["on"]:
                self.unlisten()
            else:
                self.listen()
        elif op != "status":
            raise ValueError(f"unknown command {op!r}")
        return {"connections": len(self.open_connections())}

    def timeout(self) -> float | None:
        """Seconds until the next queued chunk is due (None: nothing waits for time)."""
        due = [p.chunks[0][0] for c in self.open_connections() for p in (c.up, c.down) if p.chunks and not p.blocked]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def event(self, sock: socket.socket, mask: int) -> None:
        if sock is self._listener:
            self._accept()
        elif (conn := self.conns.get(sock)) is not None:
            if mask & selectors.EVENT_WRITE:
                if sock is conn.upstream and not conn.connected:
                    self._connected(conn)
                else:
                    pipe = conn.up if sock is conn.upstream else conn.down
                    pipe.blocked = False
                    self._flush(conn, pipe)
            if mask & selectors.EVENT_READ and self.alive(conn):
                self._read(conn, conn.up if sock is conn.client else conn.down)
            if self.alive(conn):
                self._update(conn)

    def open_connections(self) -> list[_Conn]:
        return list({id(c): c for c in self.conns.values()}.values())

    def alive(self, conn: _Conn) -> bool:
        return conn.client in self.conns

    # --------------------------------------------------------------- listening

    def listen(self, retries: int = 50) -> None:
        if self._listener is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for attempt in range(retries):  # in case the port lingers for a moment after refuse(True)
                try:
                    sock.bind((self.host, self.port))
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE or attempt == retries - 1:
                        raise
                    time.sleep(0.02)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        self.selector.register(sock, selectors.EVENT_READ)

    def unlisten(self) -> None:
        if self._listener is not None:
            self.selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:  # the client gave up before accept()
                    continue
                raise
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream, up=_Pipe(client, upstream), down=_Pipe(upstream, client))
            self.conns[client] = self.conns[upstream] = conn
            self.selector.register(client, selectors.EVENT_READ)
            err = upstream.connect_ex(self.upstream)
            if err not in (0, errno.EINPROGRESS):
                self.abort(conn)  # the upstream is down: the client sees a reset
                continue
            self.selector.register(upstream, selectors.EVENT_WRITE)

    def _connected(self, conn: _Conn) -> None:
        if conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            self.abort(conn)
            return
        conn.connected = True
        self._flush(conn, conn.up)

    # ------------------------------------------------------------ moving bytes

    def _read(self, conn: _Conn, pipe: _Pipe) -> None:
        try:
            data = pipe.src.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the peer reset: pass the reset on
            self.abort(conn)
            return
        if self.blackhole:
            conn.lossy = True
            pipe.eof = pipe.eof or not data
            return
        if not data:
            pipe.eof = True
        pipe.chunks.append((time.monotonic() + self.latency, data))
        pipe.queued += len(data)
        self._flush(conn, pipe)

    def flush_due(self) -> None:
        now = time.monotonic()
        for conn in self.open_connections():
            for pipe in (conn.up, conn.down):
                if pipe.chunks and not pipe.blocked and pipe.chunks[0][0] <= now and self.alive(conn):
                    self._flush(conn, pipe)
                    if self.alive(conn):
                        self._update(conn)

    def _flush(self, conn: _Conn, pipe: _Pipe) -> None:
        """Send the due chunks of ``pipe``; drop them instead while the blackhole is on."""
        if not conn.connected:
            return
        now = time.monotonic()
        while pipe.chunks and pipe.chunks[0][0] <= now:
            due, data = pipe.chunks[0]
            if self.blackhole:
                pipe.chunks.popleft()
                pipe.queued -= len(data)
                conn.lossy = True
                continue
            if not data:
                pipe.chunks.popleft()
                with contextlib.suppress(OSError):
                    pipe.dst.shutdown(socket.SHUT_WR)
                pipe.done = True
                if conn.up.done and conn.down.done:
                    self._finish(conn)
                return
            try:
                sent = pipe.dst.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.abort(conn)
                return
            pipe.queued -= sent
            if sent < len(data):
                pipe.chunks[0] = (due, data[sent:])
                pipe.blocked = True
                return
            pipe.chunks.popleft()

    def _update(self, conn: _Conn) -> None:
        """Register each socket for the events its two pipes are waiting for."""
        up_mask = self._mask(conn.down, conn.up) if conn.connected else selectors.EVENT_WRITE
        for sock, mask in ((conn.client, self._mask(conn.up, conn.down)), (conn.upstream, up_mask)):
            try:
                registered = self.selector.get_key(sock).events
            except KeyError:
                registered = 0
            if mask == registered:
                continue
            if not mask:
                self.selector.unregister(sock)
            elif registered:
                self.selector.modify(sock, mask)
            else:
                self.selector.register(sock, mask)

    @staticmethod
    def _mask(reading: _Pipe, writing: _Pipe) -> int:
        """Events for the socket that is ``reading.src`` and ``writing.dst``."""
        mask = 0
        if not reading.eof and reading.queued < _HIGH_WATER:
            mask |= selectors.EVENT_READ
        if writing.blocked:
            mask |= selectors.EVENT_WRITE
        return mask

    # ---------------------------------------------------------------- closing

    def _drop(self, conn: _Conn) -> None:
        for sock in (conn.client, conn.upstream):
            if self.conns.pop(sock, None) is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(sock)

    def abort(self, conn: _Conn) -> None:
        if self.alive(conn):
            self._drop(conn)
            abort(conn.client)
            abort(conn.upstream)

    def _finish(self, conn: _Conn) -> None:
        """Both sides sent their FIN and it was passed on: an orderly close."""
        if self.alive(conn):
            self._drop(conn)
            conn.client.close()
            conn.upstream.close()


def _serve(upstream_host: str, upstream_port: int) -> int:
    """The child's main loop: forward until stdin closes; one JSON reply line per command line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the test process's to handle; it closes us
    selector = selectors.DefaultSelector()
    control = sys.stdin.fileno()
    out = sys.stdout.buffer

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    try:
        proxy = _Proxy(selector, (upstream_host, upstream_port))
    except OSError as exc:
        reply({"error": f"cannot listen: {exc}"})
        return 1
    reply({"port": proxy.port})
    selector.register(control, selectors.EVENT_READ)
    pending = b""
    try:
        while True:
            for key, mask in selector.select(proxy.timeout()):
                if key.fileobj == control:
                    data = os.read(control, 65536)
                    if not data:
                        return 0  # close(), or the test process died
                    pending += data
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        try:
                            reply(proxy.command(json.loads(line)))
                        except Exception as exc:
                            traceback.print_exc()
                            reply({"error": f"{type(exc).__name__}: {exc}"})
                else:
                    proxy.event(cast(socket.socket, key.fileobj), mask)
            proxy.flush_due()
    finally:
        for conn in proxy.open_connections():
            proxy.abort(conn)
        proxy.unlisten()
        selector.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "--serve":
        sys.exit(f"usage: {sys.argv[0]} --serve UPSTREAM_HOST UPSTREAM_PORT  (FaultProxy starts it)")
    sys.exit(_serve(sys.argv[2], int(sys.argv[3])))
