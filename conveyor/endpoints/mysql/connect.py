"""Opening MySQL / MariaDB connections with the session Conveyor relies on, and errors a user can act on.

Every connection reads and writes TIMESTAMP values in UTC (``time_zone = '+00:00'``), so they are
the same instants whatever the server's or the client's time zone. Target connections are strict:
a value that does not fit a column is an error, never silently clipped.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
from typing import Any, Literal

import pymysql
from pymysql.constants import CLIENT

from conveyor.endpoints.config import MySQLConfig
from conveyor.endpoints.mysql.protocol import MySQLConnection
from conveyor.errors import TransientError, UserActionError

Role = Literal["source", "target"]

#: session variables of every connection. PyMySQL itself sends ``SET NAMES utf8mb4`` at login.
#: The long net timeouts keep a streamed read alive while the target is slow to take the rows.
SESSION: dict[str, str] = {"time_zone": "'+00:00'", "net_read_timeout": "3600", "net_write_timeout": "3600"}
#: per role. Sources: a plain sql_mode (no ANSI_QUOTES, no PAD_CHAR_TO_FULL_LENGTH) and a long
#: wait_timeout, since readers opened inside the snapshot may wait long for their first segment.
#: Targets: strict, explicit zeros kept in AUTO_INCREMENT columns, and no per-row foreign-key or
#: secondary-unique checks (the data comes from a consistent source; keys are built after the load).
ROLE_SESSION: dict[Role, dict[str, str]] = {
    "source": {"sql_mode": "'NO_ENGINE_SUBSTITUTION'", "wait_timeout": "86400"},
    "target": {
        "sql_mode": "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'",
        "foreign_key_checks": "0",
        "unique_checks": "0",
    },
}

#: what each role needs granted, for messages naming the GRANT to run
GRANTS: dict[Role, str] = {"source": "SELECT", "target": "ALL PRIVILEGES"}

#: server error number at login -> message; fields: where, user, account, database, grant, mode
CONNECT_ERRORS: dict[int, str] = {
    1045: "access denied for user {user!r} at {where} (wrong password, or the user may not log in from this "
    "host); check the endpoint's user and password",
    1044: "user {account} has no privileges on database {database!r} at {where}; "
    "run: GRANT {grant} ON {qdatabase}.* TO {account}",
    1049: "database {database!r} does not exist at {where}; create it (CREATE DATABASE {qdatabase}) or fix the "
    "endpoint's database",
    1129: "{where} blocks this host after too many failed connections; ask the DBA to run FLUSH HOSTS",
    1251: "{where} wants an authentication method PyMySQL does not offer for user {user!r}; "
    "use mysql_native_password or caching_sha2_password for this user",
    2026: "{where} does not offer TLS but ssl-mode={mode} requires it; enable TLS on the server or change ssl-mode",
    3159: "{where} accepts only TLS connections; set ssl-mode=REQUIRED (or VERIFY_CA / VERIFY_IDENTITY)",
}
#: worth retrying: too many connections, server shutting down
TRANSIENT_AT_LOGIN = {1040, 1053, 1203}

_ACCOUNT = re.compile(r"user ('[^']*'@'[^']*')")


def quote(name: str) -> str:
    """A MySQL identifier in backticks, a backtick inside doubled.

    PyMySQL escapes values but has no identifier quoting, so this is MySQL's documented rule, and the
    only place Conveyor quotes a MySQL identifier.
    """
    return "`" + name.replace("`", "``") + "`"


def quote_literal(value: str) -> str:
    """A string literal for DDL, where values cannot be bound (ENUM members): PyMySQL's escaping."""
    return "'" + pymysql.converters.escape_string(value) + "'"


def is_mariadb(conn: Any) -> bool:
    return "mariadb" in str(conn.get_server_info()).lower()


#: PREFERRED: whether a server offers TLS, learnt from the first connection to it, so later ones
#: share one context (PyMySQL's PREFERRED builds a context and loads the system CAs each time: 50 ms)
_OFFERS_TLS: dict[tuple[str, int], bool] = {}


def tls_options(config: MySQLConfig) -> dict[str, Any]:
    """``ssl_mode`` as the mysql client means it, as PyMySQL arguments.

    PREFERRED: TLS when the server offers it, unverified. REQUIRED: TLS, not verified. VERIFY_CA:
    the certificate must be signed by ``ssl_ca`` (or a system CA). VERIFY_IDENTITY: and issued for
    the host connected to.
    """
    mode = config.ssl_mode
    if mode == "DISABLED":
        return {"ssl_disabled": True}
    if mode == "PREFERRED":
        offers = _OFFERS_TLS.get((config.host, config.port))
        if offers is None:
            return {}  # PyMySQL's own PREFERRED, this once
        return {"ssl": _context("REQUIRED", None)} if offers else {"ssl_disabled": True}
    if config.ssl_ca and not os.path.isfile(config.ssl_ca):
        raise UserActionError(f"ssl-ca file {config.ssl_ca!r} does not exist; fix ssl-ca (ssl-mode={mode})")
    try:
        return {"ssl": _context(mode, config.ssl_ca)}
    except (ssl.SSLError, OSError) as exc:
        raise UserActionError(
            f"ssl-ca file {config.ssl_ca!r} is not a PEM CA certificate ({exc}); fix ssl-ca (ssl-mode={mode})"
        ) from None


@functools.lru_cache(maxsize=16)
def _context(mode: str, ca_file: str | None) -> ssl.SSLContext:
    """One context per mode and CA, shared by every connection (contexts are thread-safe)."""
    if mode == "REQUIRED" and ca_file is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # nothing to verify: no CAs to load
    else:
        ctx = ssl.create_default_context(cafile=ca_file)
    # Like PyMySQL: the certificates MySQL generates for itself fail Python's strict X.509 checks.
    ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    ctx.check_hostname = mode == "VERIFY_IDENTITY"
    ctx.verify_mode = ssl.CERT_NONE if mode == "REQUIRED" else ssl.CERT_REQUIRED
    return ctx


def session_sql(role: Role) -> str:
    settings = {**SESSION, **ROLE_SESSION[role]}
    return "SET " + ", ".join(f"SESSION {k} = {v}" for k, v in settings.items())


def connect(config: MySQLConfig, role: Role, timeout: float | None = None) -> MySQLConnection:
    """A connection with Conveyor's session, autocommit off; raises ``UserActionError`` naming the fix.
    ``timeout``: seconds a read or write may wait for the server before the connection is given up."""
    kwargs = tls_options(config)
    password = config.password.get_secret_value() if config.password else ""
    try:
        conn = MySQLConnection(
            host=config.host,
            port=config.port,
            user=config.user,
            password=password,
            database=config.database,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=config.connect_timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            # the lease check counts rows an UPDATE matched, not rows it changed
            client_flag=CLIENT.FOUND_ROWS,
            local_infile=role == "target",
            **kwargs,
        )
    except pymysql.err.MySQLError as exc:
        if config.ssl_mode == "PREFERRED" and _OFFERS_TLS.pop((config.host, config.port), None) is not None:
            return connect(config, role, timeout)  # the server changed its mind about TLS: learn again
        raise login_error(exc, config, role) from None
    if config.ssl_mode == "PREFERRED":
        _OFFERS_TLS[(config.host, config.port)] = bool(getattr(conn, "server_capabilities", 0) & CLIENT.SSL)
    try:
        with conn.cursor() as cur:
            cur.execute(session_sql(role))
    except pymysql.err.MySQLError as exc:
        conn.close()
        raise UserActionError(f"{config.display()}: cannot set up the session: {_message(exc)}") from None
    return conn


def login_error(exc: pymysql.err.MySQLError, config: MySQLConfig, role: Role) -> UserActionError | TransientError:
    """A login failure as one line naming the thing to fix; never contains the password."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = _message(exc)
    where = f"MySQL server {config.host}:{config.port}"
    original = getattr(exc, "original_exception", None)
    if isinstance(original, ssl.SSLError):
        reason = getattr(original, "verify_message", None) or getattr(original, "reason", None) or str(original)
        hint = ""
        if "mismatch" in str(original) or "hostname" in str(original).lower():
            hint = " (VERIFY_IDENTITY needs the host name the certificate was issued for; or use VERIFY_CA)"
        return UserActionError(
            f"TLS with {where} failed: {reason}{hint}; check ssl-mode={config.ssl_mode} and "
            f"ssl-ca={config.ssl_ca or '(system CAs)'}"
        )
    if code in TRANSIENT_AT_LOGIN:
        return TransientError(f"{where}: {message}")
    template = CONNECT_ERRORS.get(code)
    if template is not None:
        account = _ACCOUNT.search(message)
        return UserActionError(
            template.format(
                where=where,
                user=config.user,
                account=account.group(1) if account else f"'{config.user}'@'%'",
                database=config.database,
                qdatabase=quote(config.database),
                grant=GRANTS[role],
                mode=config.ssl_mode,
            )
        )
    if code in (2003, 2005, 2013):
        reason = str(original) if original is not None else message
        return UserActionError(
            f"cannot reach {where} ({reason}); check the host and port, and that the server is running "
            "and accepts TCP connections"
        )
    return UserActionError(f"cannot log in to {where} as {config.user!r}: {message}")


def _message(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    text = str(args[1]) if len(args) >= 2 else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
