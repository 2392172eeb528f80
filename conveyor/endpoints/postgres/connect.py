"""Opening PostgreSQL connections with the session Conveyor relies on, and errors a user can act on.

Every connection gets the same session settings, so values print and parse the same way on both
sides of a PostgreSQL-to-PostgreSQL copy (text COPY depends on them) and timestamptz values arrive
in UTC.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.abc import Params, Query, QueryNoTemplate

from conveyor.endpoints.config import PostgresConfig
from conveyor.endpoints.sql.applier import shutdown_socket
from conveyor.endpoints.watchdog import Watchdog
from conveyor.errors import TransientError, UserActionError

APPLICATION_NAME = "conveyor"

#: session settings of every Conveyor connection
SESSION: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "client_encoding": "UTF8",
    "bytea_output": "hex",
    # a load's statements and its snapshot transaction legitimately run (or idle) for hours
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    # a commit is on disk before it returns: change processing tells the source it may discard its log
    # right after a target commit, so a commit a target crash could still lose would be lost for good
    "synchronous_commit": "on",
    # the server's side of a TCP connection whose client vanished (a network partition: no FIN, no RST)
    # ends within about a minute of silence, instead of the system's two hours: its backend, idle in a
    # transaction, would hold that transaction's row locks (the task's lease row) against the client's
    # next run all that time. Ignored on Unix-domain sockets.
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}

#: libpq / server message -> what the user reads; fields: where, host, user, database, sslmode, sslrootcert, timeout
CONNECT_ERRORS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"password authentication failed"),
        "password authentication failed for user {user} at {where}; check the user name and password",
    ),
    (
        re.compile(r"no password supplied"),
        "PostgreSQL at {where} wants a password for user {user}; set the endpoint's password (e.g. ${{PGPASSWORD}})",
    ),
    (
        re.compile(r'database ".*" does not exist'),
        "database {database} does not exist on {where}; create it or fix the database name",
    ),
    (re.compile(r'role ".*" does not exist'), "role {user} does not exist on {where}; check the user name"),
    (re.compile(r"Connection refused"), "cannot reach PostgreSQL at {where}: connection refused; check host and port"),
    (
        re.compile(r"timeout expired|timed out"),
        "cannot reach PostgreSQL at {where}: no answer within {timeout} s; check host, port and firewalls",
    ),
    (
        re.compile(r"failed to resolve host|could not translate host name|Name or service not known"),
        "cannot resolve host {host}; check the endpoint's host name",
    ),
    (
        re.compile(r"root certificate file .* does not exist"),
        "sslrootcert file {sslrootcert} does not exist; fix sslrootcert or choose another sslmode than {sslmode}",
    ),
    (
        re.compile(r"certificate verify failed"),
        "the TLS certificate of {where} could not be verified with sslrootcert {sslrootcert} (sslmode={sslmode}); "
        "set sslrootcert to the CA that signed the server's certificate",
    ),
    (
        re.compile(r"does not match host name"),
        "the TLS certificate of {where} is not for host {host} (sslmode={sslmode}); connect with the host name in "
        "the certificate or use sslmode=verify-ca",
    ),
    (
        re.compile(r"server does not support SSL"),
        "PostgreSQL at {where} does not offer TLS but sslmode={sslmode} requires it; enable ssl on the server "
        "or change sslmode",
    ),
    (
        re.compile(r"no pg_hba\.conf entry"),
        "PostgreSQL at {where} does not let user {user} connect from this host (pg_hba.conf); ask the DBA to allow "
        "it (with sslmode={sslmode})",
    ),
    (
        re.compile(r"too many connections|remaining connection slots"),
        "PostgreSQL at {where} has no free connection slots; lower MaxFullLoadSubTasks or raise max_connections",
    ),
]


def connection_params(config: PostgresConfig) -> dict[str, Any]:
    """libpq connection parameters of an endpoint (shared by normal and replication connections)."""
    params: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "user": config.user,
        "dbname": config.database,
        "sslmode": config.sslmode,
        "connect_timeout": config.connect_timeout,
        "application_name": APPLICATION_NAME,
        "client_encoding": SESSION["client_encoding"],
    }
    if config.password is not None:
        params["password"] = config.password.get_secret_value()
    if config.sslrootcert:
        params["sslrootcert"] = config.sslrootcert
    return params


class DeadlineConnection(psycopg.Connection[Any]):
    """A connection whose statements fail with ``TransientError`` when the server does not answer within
    ``deadline`` seconds: a hung server or a black-holed network, which TCP may never notice (a peer
    that still acknowledges bytes). A watchdog shuts the socket down under the blocked call and the
    connection is closed; open a new one."""

    deadline: float
    where: str
    watchdog: Watchdog | None = None

    def execute(
        self, query: Query, params: Params | None = None, *, prepare: bool | None = None, binary: bool = False
    ) -> psycopg.Cursor[Any]:
        assert self.watchdog is not None
        with self.watchdog.guard():
            try:
                # Conveyor passes no templates (they take no parameters)
                return super().execute(cast(QueryNoTemplate, query), params, prepare=prepare, binary=binary)
            except psycopg.Error:
                if not self.watchdog.fired:
                    raise
        self.close()
        raise TransientError(
            f"PostgreSQL at {self.where} did not answer a query within {self.deadline:.0f} s (a hung server or network)"
        )

    def close(self) -> None:
        super().close()
        if self.watchdog is not None:
            self.watchdog.close()


def connect(
    config: PostgresConfig, *, autocommit: bool = True, deadline: float | None = None
) -> psycopg.Connection[Any]:
    """A connection with Conveyor's session settings; failures raise ``UserActionError``. ``deadline``:
    seconds a statement may wait for the server (``DeadlineConnection``); None: no limit."""
    kwargs = connection_params(config)
    try:
        if deadline is None:
            conn = psycopg.connect(autocommit=True, **kwargs)
        else:
            conn = guarded = DeadlineConnection.connect(autocommit=True, **kwargs)
            guarded.deadline, guarded.where = deadline, f"{config.host}:{config.port}"
            guarded.watchdog = Watchdog(deadline, lambda: shutdown_socket(guarded.pgconn.socket))
    except psycopg.OperationalError as exc:
        raise connect_error(config, exc) from None
    # One round trip, values bound; works through poolers that refuse the ``options`` startup parameter.
    settings = [(name, value) for name, value in SESSION.items() if name != "client_encoding"]
    conn.execute(
        "SELECT " + ", ".join(["set_config(%s, %s, false)"] * len(settings)),
        [v for pair in settings for v in pair],
    )
    conn.autocommit = autocommit
    return conn


def connect_error(config: PostgresConfig, exc: BaseException) -> UserActionError:
    """One line naming the endpoint and the fix; never the password."""
    text = str(exc)
    fields = {
        "where": f"{config.host}:{config.port}",
        "host": config.host,
        "user": config.user,
        "database": config.database,
        "sslmode": config.sslmode,
        "sslrootcert": config.sslrootcert or "(not set)",
        "timeout": config.connect_timeout,
    }
    for pattern, message in CONNECT_ERRORS:
        if pattern.search(text):
            return UserActionError(redact(message.format(**fields), config))
    detail = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return UserActionError(redact(f"cannot connect to PostgreSQL at {fields['where']}: {detail}", config))


def redact(text: str, config: PostgresConfig) -> str:
    if config.password is not None:
        secret = config.password.get_secret_value()
        if secret:
            text = text.replace(secret, "***")
    return text


def quote(conn: psycopg.Connection[Any] | None, name: str) -> str:
    """An identifier quoted by psycopg, with ``%`` doubled (``conn`` None: without a connection, as
    for a UTF-8 client encoding, which every Conveyor connection has; safe from any thread).

    Conveyor always passes a parameter sequence (possibly empty) when it runs SQL, so psycopg parses
    every statement for placeholders and turns ``%%`` back into ``%``; an identifier holding ``%``
    therefore cannot be mistaken for a placeholder.
    """
    return sql.Identifier(name).as_string(conn).replace("%", "%%")


def literal(conn: psycopg.Connection[Any], value: Any) -> str:
    """A literal quoted by psycopg (for statements that take no parameters, e.g. DDL), ``%`` doubled."""
    return sql.Literal(value).as_string(conn).replace("%", "%%")


def run(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
    """Execute with parameters always passed, see ``quote``."""
    return conn.execute(query, params)


def copy(
    cursor: psycopg.Cursor[Any], statement: str, params: Sequence[Any] = ()
) -> contextlib.AbstractContextManager[psycopg.Copy]:
    """``cursor.copy()``: psycopg merges COPY's parameters (client side) only when there are some, so
    without any, the ``%%`` of ``quote`` is undone here."""
    if params:
        return cursor.copy(statement, params)
    return cursor.copy(statement.replace("%%", "%"))
