"""MySQL / MariaDB errors, classified by what happens next (see ``conveyor.errors``)."""

from __future__ import annotations

import re
from typing import Any

import pymysql

from conveyor.errors import ConveyorError, TerminalError, TransientError, UserActionError

#: error number -> what happened, for errors a retry may get past
TRANSIENT: dict[int, str] = {
    1040: "too many connections",
    1053: "the server is shutting down",
    1158: "network read error",
    1159: "network read timeout",
    1160: "network write error",
    1161: "network write timeout",
    1205: "lock wait timeout",
    1213: "deadlock",
    1317: "the query was interrupted",
    1927: "the connection was killed",
    2003: "cannot connect",
    2006: "the server has gone away",
    2013: "lost the connection to the server",
    2055: "lost the connection to the server",
    4031: "the server closed an idle connection",
}
#: privilege errors: the user must grant something
PRIVILEGE = frozenset({1044, 1045, 1142, 1143, 1227, 1370})
UNKNOWN_TABLE = 1146

_ACCOUNT = re.compile(r"user ('[^']*'@'[^']*')")
_COMMAND_DENIED = re.compile(r"^(\w+) command denied to user ('[^']*'@'[^']*') for table (.+)$", re.IGNORECASE)
_NEED_PRIVILEGE = re.compile(r"you need \(at least one of\) the (.+?) privilege", re.IGNORECASE)
_DATABASE_DENIED = re.compile(r"to database '([^']*)'", re.IGNORECASE)
_TABLE = re.compile(r"Table '([^']+)' doesn't exist", re.IGNORECASE)


def error_code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def message(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    text = str(args[1]) if len(args) >= 2 else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def account_of(exc: BaseException) -> str | None:
    match = _ACCOUNT.search(message(exc))
    return match.group(1) if match else None


def grant_hint(exc: BaseException) -> str | None:
    """The GRANT statement that fixes a privilege error, when the message says enough."""
    text = message(exc)
    denied = _COMMAND_DENIED.match(text)
    if denied:
        command, account, table = denied.groups()
        if table.startswith("'") and table.endswith("'"):
            table = "`" + table[1:-1].replace("`", "``") + "`"
        return f"GRANT {command.upper()} ON {table} TO {account}"
    need = _NEED_PRIVILEGE.search(text)
    if need:
        return f"GRANT {need.group(1)} ON *.* TO the endpoint's user"
    database = _DATABASE_DENIED.search(text)
    account = account_of(exc)
    if database and account:
        return f"GRANT SELECT ON `{database.group(1).replace('`', '``')}`.* TO {account}"
    return None


def dropped_table(exc: BaseException) -> str | None:
    """The table named by an unknown-table error."""
    if error_code(exc) != UNKNOWN_TABLE:
        return None
    match = _TABLE.search(message(exc))
    return match.group(1) if match else "a table"


def classify(exc: BaseException) -> ConveyorError | None:
    """PyMySQL exception -> Conveyor's classification; None for anything else."""
    if not isinstance(exc, pymysql.err.MySQLError):
        return None
    code = error_code(exc)
    text = message(exc)
    if code in TRANSIENT:
        return TransientError(f"MySQL: {TRANSIENT[code]} ({text})")
    if code == UNKNOWN_TABLE:
        return TerminalError(f"table {dropped_table(exc)} no longer exists; it was dropped during the load")
    if code == 1045:
        return UserActionError(f"MySQL: {text}; check the endpoint's user and password")
    if code in PRIVILEGE:
        hint = grant_hint(exc)
        return UserActionError(f"MySQL: {text}" + (f"; run: {hint}" if hint else "; grant the missing privilege"))
    if isinstance(exc, pymysql.err.InterfaceError):  # the connection was closed under us
        return TransientError(f"MySQL: the connection is closed ({text})")
    return None
