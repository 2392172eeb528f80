"""Assessments that only ``conveyor assess`` runs: one catalog query per check, as data.

The captures' ``preflight()`` owns what change data capture refuses to start without; these are
the rest of DMS's server checks that apply to Conveyor: warnings, and the MySQL target's
``local_infile`` that the full load writes with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.endpoints.config import MySQLConfig, PostgresConfig, SQLiteConfig
from conveyor.model.findings import Finding

Rows = Sequence[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Probe:
    key: str
    sql: str
    #: (the query's rows, the server's host:port) -> what is wrong, or None
    verdict: Callable[[Rows, str], str | None]
    warning: bool = True


def _prepared(rows: Rows, where: str) -> str | None:
    count, example = rows[0]
    if not count:
        return None
    return (
        f"{count} prepared transaction(s) are open on {where} (e.g. {example!r}): creating the task's replication "
        "slot waits until they end; COMMIT PREPARED or ROLLBACK PREPARED them (pg_prepared_xacts)"
    )


def _long_running(rows: Rows, where: str) -> str | None:
    count, minutes = rows[0]
    if not count:
        return None
    return (
        f"{count} transaction(s) on {where} have been open for more than 10 minutes (the oldest {minutes} min): "
        "creating the task's replication slot waits until they end; see pg_stat_activity"
    )


def _sender_timeout(rows: Rows, where: str) -> str | None:
    millis = int(rows[0][0])
    if millis == 0 or millis >= 10000:
        return None
    return (
        f"wal_sender_timeout is {millis} ms on {where}: the server drops the task's stream after that much silence "
        "while a large transaction is applied; ALTER SYSTEM SET wal_sender_timeout = '60s'; SELECT pg_reload_conf()"
    )


def _decoding_memory(rows: Rows, where: str) -> str | None:
    kilobytes = int(rows[0][0]) if rows else 65536  # no such setting before PostgreSQL 13: nothing to tune
    if kilobytes >= 65536:
        return None
    return (
        f"logical_decoding_work_mem is {kilobytes} kB on {where}: the server spills each larger transaction to disk "
        "while decoding it for the task; ALTER SYSTEM SET logical_decoding_work_mem = '64MB'; SELECT pg_reload_conf()"
    )


def _target_create(rows: Rows, where: str) -> str | None:
    database, user, on_database, schemas = rows[0]
    if on_database or schemas:
        return None
    return (
        f"{user} may not create tables in database {database} on {where} (no CREATE on the database or on any "
        f'schema): GRANT CREATE ON DATABASE "{database}" TO "{user}", or GRANT USAGE, CREATE ON SCHEMA <schema> '
        f'TO "{user}"'
    )


def _never_purged(rows: Rows, where: str) -> str | None:
    values = {str(name).lower(): float(value or 0) for name, value in rows}
    if any(values.values()):
        return None
    return (
        f"{where} never purges binlogs (binlog_expire_logs_seconds and expire_logs_days are 0): they grow until the "
        "disk is full; SET GLOBAL binlog_expire_logs_seconds = 604800 and set it in my.cnf"
    )


def _local_infile(rows: Rows, where: str) -> str | None:
    if int(rows[0][0] or 0):
        return None
    return (
        f"local_infile is OFF on {where}; the full load writes with LOAD DATA LOCAL INFILE: run SET GLOBAL "
        "local_infile = 1 and set local_infile = 1 in my.cnf (RDS: the parameter group)"
    )


POSTGRES_SOURCE = (
    Probe(
        "postgres-check-preparedtxn",
        "SELECT count(*), min(gid) FROM pg_catalog.pg_prepared_xacts",
        _prepared,
    ),
    Probe(
        "postgres-check-longrunningtxn",
        "SELECT count(*), max(extract(epoch FROM now() - xact_start))::int / 60 FROM pg_catalog.pg_stat_activity "
        "WHERE xact_start < now() - interval '10 minutes' AND pid <> pg_catalog.pg_backend_pid()",
        _long_running,
    ),
    Probe(
        "postgres-check-for-logical-decoding-work-mem",
        "SELECT setting::int FROM pg_catalog.pg_settings WHERE name = 'logical_decoding_work_mem'",
        _decoding_memory,
    ),
    Probe(
        "postgres-check-walsenderstimeout",
        "SELECT setting::int FROM pg_catalog.pg_settings WHERE name = 'wal_sender_timeout'",
        _sender_timeout,
    ),
)


POSTGRES_TARGET = (
    Probe(
        "postgres-check-target-privileges",
        "SELECT current_database(), current_user, "
        "pg_catalog.has_database_privilege(current_database(), 'CREATE') OR r.rolsuper, "
        "(SELECT count(*) FROM pg_catalog.pg_namespace n WHERE pg_catalog.has_schema_privilege(n.oid, 'CREATE')"
        " AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%') "
        "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
        _target_create,
        False,
    ),
)


def mysql_source(flavor: str) -> tuple[Probe, ...]:
    return (
        Probe(
            f"{flavor}-check-expire-logs-days",
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('binlog_expire_logs_seconds', 'expire_logs_days')",
            _never_purged,
        ),
    )


def mysql_target(flavor: str) -> tuple[Probe, ...]:
    return (Probe(f"{flavor}-check-target-localinfile-set", "SELECT @@GLOBAL.local_infile", _local_infile, False),)


class Server:
    """One connection to an endpoint for the probes; ``flavor`` names its key family."""

    def __init__(self, config: PostgresConfig | MySQLConfig | SQLiteConfig, role: str) -> None:
        self.config = config
        self.role = role
        self._conn: Any = None
        self.flavor: str = config.engine
        if isinstance(config, PostgresConfig):
            from conveyor.endpoints.postgres.connect import connect as pg_connect

            self._conn = pg_connect(config)
        elif isinstance(config, MySQLConfig):
            from conveyor.endpoints.mysql.connect import connect as my_connect
            from conveyor.endpoints.mysql.connect import is_mariadb

            self._conn = my_connect(config, "source" if role == "source" else "target")
            self.flavor = "mariadb" if is_mariadb(self._conn) else "mysql"

    @property
    def where(self) -> str:
        return f"{getattr(self.config, 'host', '')}:{getattr(self.config, 'port', '')}"

    def probes(self) -> tuple[Probe, ...]:
        if self.role == "source":
            if self.flavor == "postgresql":
                return POSTGRES_SOURCE
            return mysql_source(self.flavor) if self.flavor in ("mysql", "mariadb") else ()
        if self.flavor == "postgresql":
            return POSTGRES_TARGET
        return mysql_target(self.flavor) if self.flavor in ("mysql", "mariadb") else ()

    def findings(self, keys: set[str]) -> list[Finding]:
        """The probes whose keys are in ``keys`` (those that apply to the task), run."""
        found = []
        for probe in self.probes():
            if probe.key not in keys:
                continue
            problem = probe.verdict(self._rows(probe.sql), self.where)
            if problem is not None:
                found.append(Finding(probe.key, problem, probe.warning))
        return found

    def _rows(self, sql: str) -> Rows:
        if isinstance(self.config, PostgresConfig):
            return list(self._conn.execute(sql).fetchall())
        with self._conn.cursor() as cur:
            cur.execute(sql)
            rows = list(cur.fetchall())
        self._conn.commit()
        return rows

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
