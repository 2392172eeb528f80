"""The TCP fault proxy: faithful forwarding, then each fault, against an echo server and the real
PostgreSQL and MariaDB servers (TLS and a replication stream included)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pymysql
import pytest
from oracle import mysql_connect
from proxy import FaultProxy
from psycopg.conninfo import make_conninfo
from servers import HOST, MariaDBServer, PostgresServer

from conveyor.endpoints.config import PostgresConfig, parse_endpoint
from conveyor.endpoints.postgres.replication import ReplicationConnection
from conveyor.errors import TransientError


class EchoServer:
    """Echoes every connection until the client's FIN, then closes; notes the resets it sees."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.resets = 0
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except ConnectionResetError:
                self.resets += 1

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._accepter.join()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(HOST, echo.port) as p:
        yield p


def dial(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        got += chunk
    return got


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ------------------------------------------------------------------------- echo server


def test_forwards_many_connections_both_ways_then_closes_cleanly(echo: EchoServer) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    proxy = FaultProxy(HOST, echo.port)
    payload = os.urandom(3 << 20)  # several MiB: the proxy's queues fill up and drain again

    def client(i: int) -> bytes:
        with dial(proxy) as sock:
            return roundtrip(sock, payload if i == 0 else f"hello {i}".encode() * 100)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client, range(40)))
    assert results[0] == payload
    assert all(r == f"hello {i}".encode() * 100 for i, r in enumerate(results) if i)

    with dial(proxy) as sock:  # a half-close travels through: the echo ends and closes
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(100):
            got += chunk
        assert got == b"last words"
    wait_until(lambda: proxy.connections == 0)

    open_sock = dial(proxy)
    wait_until(lambda: proxy.connections == 1)
    proxy.close()
    proxy.close()  # idempotent
    with pytest.raises(ConnectionResetError):  # close() aborts what is still open
        roundtrip(open_sock, b"x")
    open_sock.close()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.reset()
    # nothing of the proxy's is left (other tests' threads in this worker may still be ending)
    wait_until(lambda: threading.active_count() <= threads and len(os.listdir("/proc/self/fd")) <= fds)


def test_reset_aborts_both_sides_and_new_connections_work(proxy: FaultProxy, echo: EchoServer) -> None:
    socks = [dial(proxy) for _ in range(3)]
    for sock in socks:
        assert roundtrip(sock, b"ping") == b"ping"
    assert proxy.connections == 3
    proxy.reset()
    assert proxy.connections == 0
    for sock in socks:
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):
            roundtrip(sock, b"ping")
        assert time.monotonic() - started < 1
        sock.close()
    wait_until(lambda: echo.resets == 3)  # the upstream saw a reset too
    with dial(proxy) as sock:
        assert roundtrip(sock, b"again") == b"again"


def test_blackhole_keeps_connections_open_but_silent(proxy: FaultProxy) -> None:
    old = dial(proxy, timeout=0.3)
    assert roundtrip(old, b"before") == b"before"
    proxy.blackhole(True)
    with pytest.raises(TimeoutError):
        roundtrip(old, b"lost")
    new = dial(proxy, timeout=0.3)  # accepted, then hangs
    with pytest.raises(TimeoutError):
        roundtrip(new, b"lost too")
    assert proxy.connections == 2
    proxy.blackhole(False)
    # both lost bytes, so the streams have gaps: they are aborted rather than resumed
    for sock in (old, new):
        with pytest.raises(ConnectionResetError):
            roundtrip(sock, b"after")
        sock.close()
    with dial(proxy) as sock:
        assert roundtrip(sock, b"healed") == b"healed"


def test_latency_delays_each_direction_in_order_without_serialising(proxy: FaultProxy) -> None:
    with dial(proxy) as sock:
        roundtrip(sock, b"warm")
        proxy.latency(0.2)
        started = time.monotonic()
        assert roundtrip(sock, b"slow") == b"slow"
        assert 0.4 <= time.monotonic() - started < 1.5  # 0.2 s each way
        started = time.monotonic()
        for i in range(5):  # pipelined chunks are each delayed, not queued behind each other's delay
            sock.sendall(f"<{i}>".encode())
            time.sleep(0.05)
        got = b""
        while len(got) < 15:
            got += sock.recv(100)
        assert got == b"<0><1><2><3><4>"
        assert time.monotonic() - started < 1.2
        proxy.latency(0)
        started = time.monotonic()
        roundtrip(sock, b"fast")
        assert time.monotonic() - started < 0.2


def test_refuse_closes_the_door_but_not_open_connections(proxy: FaultProxy) -> None:
    with dial(proxy) as kept:
        proxy.refuse(True)
        with pytest.raises(ConnectionRefusedError):
            dial(proxy)
        assert roundtrip(kept, b"still here") == b"still here"
        proxy.refuse(False)
        with dial(proxy) as sock:
            assert roundtrip(sock, b"open again") == b"open again"


def test_a_dead_upstream_resets_the_client() -> None:
    with socket.create_server((HOST, 0)) as gone:
        port = gone.getsockname()[1]
    # the reset reaches the client at its first read, or, on a loaded machine, while connect() returns
    with FaultProxy(HOST, port) as proxy, pytest.raises(ConnectionResetError), dial(proxy) as sock:
        roundtrip(sock, b"anyone?")


# ------------------------------------------------------------------------------ PostgreSQL


def test_postgres_through_the_proxy(pg_server: PostgresServer, pg_url: str) -> None:
    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        url = proxy.url(pg_url)
        tls = make_conninfo(url, sslmode="verify-full", sslrootcert=str(pg_server.ca_file))
        with psycopg.connect(tls, autocommit=True) as conn:  # TLS passes through as opaque bytes
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
            proxy.latency(0.2)
            started = time.monotonic()
            conn.execute("SELECT 1")
            assert time.monotonic() - started >= 0.2
            proxy.latency(0)
            proxy.reset()
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
            assert time.monotonic() - started < 2

        conn = psycopg.connect(url, autocommit=True)
        proxy.blackhole(True)
        with ThreadPoolExecutor(1) as pool:
            hung = pool.submit(conn.execute, "SELECT 1")
            with pytest.raises(TimeoutError):  # the client-side timeout is all that can notice
                hung.result(timeout=0.5)
            proxy.reset()  # let the stuck query fail so the thread ends
            with pytest.raises(psycopg.OperationalError):
                hung.result(timeout=5)
        conn.close()
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(url, connect_timeout=2)  # libpq's minimum
        proxy.blackhole(False)

        proxy.refuse(True)
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(url)
        proxy.refuse(False)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_replication_stream_through_the_proxy_goes_silent_in_a_blackhole(
    pg_server: PostgresServer, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t")
    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        cfg = parse_endpoint(proxy.url(pg_url), "endpoint")
        assert isinstance(cfg, PostgresConfig)
        cfg = PostgresConfig.model_validate(
            {**cfg.model_dump(), "sslmode": "verify-full", "sslrootcert": str(pg_server.ca_file)}
        )
        repl = ReplicationConnection(cfg, silence_timeout=1.0)
        try:
            assert repl.pgconn.ssl_in_use
            slot = repl.create_slot("proxied", temporary=True, export_snapshot=False)
            repl.start("proxied", slot.lsn, ["p"])
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("INSERT INTO t VALUES (1)")
            assert repl.read(timeout=5) is not None
            proxy.blackhole(True)
            started = time.monotonic()
            with pytest.raises(TransientError, match="silent"):
                while repl.read(timeout=5) is not None:
                    pass
            assert time.monotonic() - started < 3
        finally:
            proxy.reset()
            with contextlib.suppress(Exception):
                repl.close()


# --------------------------------------------------------------------------------- MariaDB


def test_mariadb_through_the_proxy(mysql_server: MariaDBServer, mysql_url: str) -> None:
    with FaultProxy(mysql_server.host, mysql_server.port) as proxy:
        url = proxy.url(mysql_url)
        conn = mysql_connect(url, ssl={"ca": str(mysql_server.ca_file)}, read_timeout=0.5)
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1]  # TLS passes through
            cur.execute("SELECT 1 + 1")
            assert cur.fetchone() == (2,)
            proxy.latency(0.2)
            started = time.monotonic()
            cur.execute("SELECT 1")
            assert time.monotonic() - started >= 0.2
            proxy.latency(0)
            proxy.blackhole(True)
            started = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError) as caught:  # read_timeout: the client gives up
                cur.execute("SELECT 1")
            assert caught.value.args[0] == 2013 and time.monotonic() - started < 2
        conn.close()
        proxy.blackhole(False)

        conn = mysql_connect(url)
        proxy.reset()
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError), conn.cursor() as cur:
            cur.execute("SELECT 1")
        assert time.monotonic() - started < 2
        conn.close()

        proxy.refuse(True)
        with pytest.raises(pymysql.err.OperationalError) as refused:
            mysql_connect(url)
        assert refused.value.args[0] == 2003
        proxy.refuse(False)
        conn = mysql_connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT 2")
            assert cur.fetchone() == (2,)
        conn.close()
