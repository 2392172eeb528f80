"""Smoke tests for the throwaway database servers (tests/servers.py, tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pymysql
import pytest
from servers import MariaDBServer, PostgresServer, unique_db_name


def _accepting(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------- PostgreSQL


def _scalar(conn: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_pg_settings(pg_server: PostgresServer) -> None:
    with pg_server.connect() as conn:
        settings = {
            name: _scalar(conn, f"SHOW {name}")
            for name in (
                "wal_level",
                "max_replication_slots",
                "max_wal_senders",
                "fsync",
                "ssl",
                "synchronous_commit",
                "full_page_writes",
                "server_version_num",
            )
        }
        row = conn.execute("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user")
        assert row.fetchone() == (True, True)
    assert settings["wal_level"] == "logical"
    assert settings["max_replication_slots"] == "20"
    assert settings["max_wal_senders"] == "20"
    assert settings["fsync"] == settings["synchronous_commit"] == settings["full_page_writes"] == "off"
    assert settings["ssl"] == "on"
    assert int(str(settings["server_version_num"])) >= 150000


def test_pg_url_is_a_fresh_database(pg_url: str) -> None:
    assert pg_url.startswith("postgresql://conveyor:secret@127.0.0.1:")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (pg_url.rsplit("/", 1)[1],)
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_pg_tls_verify_full(pg_server: PostgresServer, host: str) -> None:
    with psycopg.connect(
        host=host,
        port=pg_server.port,
        user="conveyor",
        password="secret",
        dbname="postgres",
        sslmode="verify-full",
        sslrootcert=str(pg_server.ca_file),
    ) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)
    url = pg_server.url(sslmode="verify-full", sslrootcert=str(pg_server.ca_file))
    with psycopg.connect(url) as conn:
        assert conn.pgconn.ssl_in_use


def test_pg_wrong_password_fails(pg_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_server.connect(password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_server.url(password="wrong"))


def test_pg_limited_user_lacks_privileges(pg_server: PostgresServer, pg_url: str) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with pg_server.connect(database, user="limited", password="secret") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE should_not_exist")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.nope (id int)")


def test_pg_restart_and_crash_keep_data(pg_server: PostgresServer, pg_url: str) -> None:
    port = pg_server.port
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")

    pg_server.stop()
    assert not pg_server.is_running()
    assert not _accepting(port)
    pg_server.start()
    assert pg_server.port == port
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT id FROM t").fetchall() == [(1,)]
        # synchronous_commit is off server-wide: a kill -9 may lose the last ~0.5s of
        # commits, so make this one durable explicitly.
        conn.execute("SET synchronous_commit = on")
        conn.execute("INSERT INTO t VALUES (2)")

    pg_server.kill9()
    assert not pg_server.is_running()
    assert not _accepting(port)
    pg_server.start()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (2,)]


# ------------------------------------------------------------------------- MariaDB


def _mysql_vars(server: MariaDBServer, *names: str) -> dict[str, object]:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT " + ", ".join(f"@@{name}" for name in names))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return dict(zip(names, row, strict=True))


def test_mysql_settings(mysql_server: MariaDBServer) -> None:
    assert _mysql_vars(
        mysql_server,
        "binlog_format",
        "binlog_row_image",
        "log_bin",
        "server_id",
        "local_infile",
        "max_allowed_packet",
        "character_set_server",
        "collation_server",
        "have_ssl",
        "innodb_buffer_pool_size",
        "skip_name_resolve",
        "innodb_flush_log_at_trx_commit",
        "sync_binlog",
    ) == {
        "binlog_format": "ROW",
        "binlog_row_image": "FULL",
        "log_bin": 1,
        "server_id": 1,
        "local_infile": 1,
        "max_allowed_packet": 256 * 1024 * 1024,
        "character_set_server": "utf8mb4",
        "collation_server": "utf8mb4_bin",
        "have_ssl": "YES",
        "innodb_buffer_pool_size": 256 * 1024 * 1024,
        "skip_name_resolve": 1,
        "innodb_flush_log_at_trx_commit": 2,
        "sync_binlog": 0,
    }


def test_mysql_url_is_a_fresh_database(mysql_server: MariaDBServer, mysql_url: str) -> None:
    assert mysql_url.startswith("mysql://conveyor:secret@127.0.0.1:")
    database = mysql_url.rsplit("/", 1)[1]
    conn = mysql_server.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == (database,)
            cur.execute("SHOW TABLES")
            assert cur.fetchall() == ()
            cur.execute("CREATE TABLE t (id int PRIMARY KEY)")
    finally:
        conn.close()


def _ssl_cipher(server: MariaDBServer, ssl_arg: object) -> str:
    conn = server.connect(ssl=ssl_arg)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return str(row[1])


def test_mysql_tls(mysql_server: MariaDBServer) -> None:
    assert _ssl_cipher(mysql_server, {"ca": str(mysql_server.ca_file)})
    # Also passes Python's strict X.509 checks (the default from Python 3.13 on).
    ctx = ssl.create_default_context(cafile=str(mysql_server.ca_file))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    assert _ssl_cipher(mysql_server, ctx)


def test_mysql_wrong_password_fails(mysql_server: MariaDBServer) -> None:
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        mysql_server.connect(password="wrong")
    assert excinfo.value.args[0] == 1045


def test_mysql_limited_user_lacks_privileges(mysql_server: MariaDBServer, mysql_url: str) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        mysql_server.connect(database, user="limited", password="secret")
    assert excinfo.value.args[0] == 1044  # access denied to database
    conn = mysql_server.connect(user="limited", password="secret")
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as denied:
            cur.execute("CREATE DATABASE should_not_exist")
        assert denied.value.args[0] == 1044
    finally:
        conn.close()


def test_mysql_restart_and_crash_keep_data(mysql_server: MariaDBServer, mysql_url: str) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    port = mysql_server.port

    def ids() -> list[int]:
        conn = mysql_server.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM t ORDER BY id")
                return [row[0] for row in cur.fetchall()]
        finally:
            conn.close()

    conn = mysql_server.connect(database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (1)")
    conn.close()

    mysql_server.stop()
    assert not mysql_server.is_running()
    assert not _accepting(port)
    mysql_server.start()
    assert ids() == [1]

    conn = mysql_server.connect(database)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (2)")
    conn.close()
    mysql_server.kill9()
    assert not _accepting(port)
    mysql_server.start()
    assert mysql_server.port == port
    assert ids() == [1, 2]


# ------------------------------------------------------------------------- general


def test_sqlite_url(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_url == f"sqlite:///{tmp_path}/db.sqlite"


def test_unique_db_name() -> None:
    names = {unique_db_name("test_x[Param-With/Odd.Chars]" + "y" * 100) for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert len(name) <= 63
        assert name.startswith("t_test_x_param_with_odd_chars_yyy")
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")


def test_destroy_leaves_nothing_behind() -> None:
    server = PostgresServer.launch()
    supervisor = server._proc.pid if server._proc else 0
    postmaster = server._server_pid()
    assert postmaster and _pid_alive(postmaster)
    server.destroy()
    assert not server.root.exists()
    assert not _pid_alive(supervisor)
    assert not _pid_alive(postmaster)
    assert not _accepting(server.port)
    server.destroy()  # idempotent


_ORPHAN_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from servers import MariaDBServer, PostgresServer
pg, my = PostgresServer.launch(), MariaDBServer.launch()
print(pg.root, pg.port, my.root, my.port, flush=True)
time.sleep(600)
"""


def test_servers_of_a_killed_test_process_are_cleaned_up() -> None:
    """If the test process dies without cleaning up, its servers go away by themselves."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pg_root, pg_port, my_root, my_port = proc.stdout.readline().split()
        assert _accepting(int(pg_port)) and _accepting(int(my_port))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not (Path(pg_root).exists() or Path(my_root).exists()):
            break
        time.sleep(0.1)
    assert not Path(pg_root).exists()
    assert not Path(my_root).exists()
    assert not _accepting(int(pg_port))
    assert not _accepting(int(my_port))
