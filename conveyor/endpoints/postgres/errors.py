"""psycopg errors classified by what happens next (see ``conveyor.errors``)."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from conveyor.errors import ConveyorError, TerminalError, TransientError, UserActionError

#: SQLSTATEs (or their two-character classes) worth a retry on a fresh connection
TRANSIENT_SQLSTATES: dict[str, str] = {
    "08": "the connection was lost",
    "40001": "serialization failure",
    "40P01": "deadlock",
    "53200": "the server ran out of memory",
    "53300": "too many connections",
    "55P03": "a lock was not available",
    "57014": "the statement was cancelled",
    "57P01": "the server is shutting down",
    "57P02": "the server crashed",
    "57P03": "the server is starting up",
    "25P03": "the session was idle in a transaction too long",
}
#: SQLSTATEs the user has to fix, with the fix
USER_SQLSTATES: dict[str, str] = {
    "53100": "the server's disk is full; free space on it",
    "25006": "the server is read-only (a standby?); use the primary",
    "42704": "create it (or the extension that provides it) before the load",
}

_PRIVILEGE = re.compile(r'permission denied for (?:table|relation) "?([^"\s]+)"?')
_RELATION = re.compile(r'relation "([^"]+)" does not exist')


def classify(exc: BaseException) -> ConveyorError | None:
    """psycopg's exception -> retry, fail or tell the user; None when it is not psycopg's."""
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    message = first_line(exc)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return UserActionError(privilege_message(exc, message))
    if isinstance(exc, psycopg.errors.UndefinedTable):
        m = _RELATION.search(message)
        name = m.group(1) if m else "?"
        return TerminalError(f"table {name} no longer exists; it was dropped during the load")
    if state in USER_SQLSTATES:
        return UserActionError(f"{message}; {USER_SQLSTATES[state]}")
    reason = TRANSIENT_SQLSTATES.get(state) or TRANSIENT_SQLSTATES.get(state[:2])
    if reason is not None:
        return TransientError(f"{reason}: {message}")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not state:
        return TransientError(f"the connection was lost: {message}")  # closed socket, server gone
    return None


def privilege_message(exc: psycopg.Error, message: str, action: str = "SELECT") -> str:
    user = _user(exc)
    m = _PRIVILEGE.search(message)
    if m is None:
        return f"{message} (user {user}); grant the missing privilege to {user}"
    table = m.group(1)
    return f"user {user} may not access table {table}: run GRANT {action} ON {table} TO {_ident(user)}"


def _user(exc: psycopg.Error) -> str:
    pgconn = getattr(exc, "pgconn", None)
    user = getattr(pgconn, "user", None) if pgconn is not None else None
    return user.decode() if isinstance(user, bytes) else "the task's user"


def _ident(name: str) -> str:
    return sql.Identifier(name).as_string() if name != "the task's user" else name


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
