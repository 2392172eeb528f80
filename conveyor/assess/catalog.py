"""Which assessments apply to which engine and migration type: data, one entry per key.

Keys are AWS DMS's individual-assessment keys where DMS has one (MySQL-family keys start with
``mariadb-`` on a MariaDB server, as in DMS); ``conveyor`` marks checks DMS has no key for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    EVERY = "every task"
    CDC = "cdc and full-load-and-cdc"
    FULL_LOAD = "full-load and full-load-and-cdc"

    def applies(self, migration_type: str) -> bool:
        if self is Scope.CDC:
            return migration_type != "full-load"
        if self is Scope.FULL_LOAD:
            return migration_type != "cdc"
        return True


@dataclass(frozen=True, slots=True)
class Spec:
    key: str
    #: what passing means, as a statement
    title: str
    #: the general fix (a finding's message names the exact statement)
    fix: str
    scope: Scope
    #: a failure stops ``conveyor run`` (a warning never does)
    blocking: bool
    #: Conveyor's own key: DMS has no individual assessment for this
    conveyor: bool = False
    #: looks at the selected tables (skipped when none is selected; not run before ``conveyor run``)
    per_table: bool = False


SELECTION = Spec(
    "all-check-source-selection-rules",
    "at least one source table matches the selection rules",
    "correct the selection rules' schema-name and table-name (% matches any text, _ one character)",
    Scope.EVERY,
    blocking=True,
)
UNSUPPORTED_TYPES = Spec(
    "unsupported-data-types-in-source",
    "every selected column has a type Conveyor reads and converts",
    "leave the column or table out (table mappings), or change the column's type on the source",
    Scope.EVERY,
    blocking=True,
    per_table=True,
)
NO_KEY = Spec(
    "table-with-no-primary-key-or-unique-constraint",
    "every selected table has a primary key or a unique key on NOT NULL columns",
    "add a primary key: without one, each UPDATE and DELETE on the target matches the whole old row",
    Scope.CDC,
    blocking=False,
    per_table=True,
)
LOB_NO_KEY = Spec(
    "table-with-lob-but-without-primary-key-or-unique-constraint",
    "no selected table has large-object columns (text, blob, json) without a primary or unique key",
    "add a primary key: without one, changes are applied by matching every column, large objects included",
    Scope.CDC,
    blocking=False,
    per_table=True,
)
TARGET_KEY = Spec(
    "target-table-has-unique-key-or-primary-key-for-cdc",
    "every target table that already exists and keeps its rows has a primary key or a unique key",
    "add a primary key to the target table, or let the task create it (TargetTablePrepMode DROP_AND_CREATE)",
    Scope.CDC,
    blocking=False,
    per_table=True,
)
COMMON = (SELECTION, UNSUPPORTED_TYPES, NO_KEY, LOB_NO_KEY, TARGET_KEY)

POSTGRES_SOURCE = (
    Spec(
        "postgres-check-dbversion",
        "PostgreSQL is version 12 or later",
        "upgrade the source to PostgreSQL 12 or later",
        Scope.CDC,
        blocking=True,
    ),
    Spec(
        "postgres-check-wallevel",
        "wal_level is logical",
        "ALTER SYSTEM SET wal_level = logical and restart (RDS / Aurora: rds.logical_replication = 1)",
        Scope.CDC,
        blocking=True,
    ),
    Spec(
        "postgres-check-replication-privileges",
        "the source user has the REPLICATION attribute",
        "ALTER ROLE <user> REPLICATION (RDS / Aurora: GRANT rds_replication TO <user>)",
        Scope.CDC,
        blocking=True,
        conveyor=True,
    ),
    Spec(
        "postgres-check-replication-slots-count",
        "a replication slot is free for the task (max_replication_slots)",
        "drop unused replication slots or raise max_replication_slots and restart",
        Scope.CDC,
        blocking=True,
    ),
    Spec(
        "postgres-check-maxwalsenders",
        "a WAL sender is free for the task's stream (max_wal_senders)",
        "stop unused replication clients or raise max_wal_senders and restart",
        Scope.CDC,
        blocking=True,
    ),
    Spec(
        "postgres-check-select-object-privileges",
        "the source user may read every selected table",
        "GRANT USAGE ON SCHEMA <schema> TO <user>; GRANT SELECT ON <table> TO <user>",
        Scope.EVERY,
        blocking=True,
        per_table=True,
    ),
    Spec(
        "postgres-check-pk",
        "every selected table has a primary key or REPLICA IDENTITY FULL",
        "add a primary key, or ALTER TABLE <table> REPLICA IDENTITY FULL",
        Scope.CDC,
        blocking=True,
        per_table=True,
    ),
    Spec(
        "postgres-check-publication",
        "the task's publication exists with exactly the selected tables, or the user can create it",
        "let the table owner create the publication, or fix it with ALTER PUBLICATION (the message names it)",
        Scope.CDC,
        blocking=True,
        per_table=True,
        conveyor=True,
    ),
    Spec(
        "postgres-check-maxslot-wal-keep-size",
        "max_slot_wal_keep_size limits the WAL a stopped task's slot keeps",
        "watch the source's disk while a task is stopped, or set max_slot_wal_keep_size",
        Scope.CDC,
        blocking=False,
    ),
    Spec(
        "postgres-check-preparedtxn",
        "no prepared transaction is open on the source",
        "COMMIT PREPARED or ROLLBACK PREPARED the transactions in pg_prepared_xacts",
        Scope.CDC,
        blocking=False,
    ),
    Spec(
        "postgres-check-longrunningtxn",
        "no transaction on the source has been open for more than 10 minutes",
        "end the long transactions (pg_stat_activity) before the task starts",
        Scope.CDC,
        blocking=False,
    ),
    Spec(
        "postgres-check-for-logical-decoding-work-mem",
        "logical_decoding_work_mem is at least its 64 MB default",
        "ALTER SYSTEM SET logical_decoding_work_mem = '64MB' (or more for large transactions); SELECT pg_reload_conf()",
        Scope.CDC,
        blocking=False,
    ),
    Spec(
        "postgres-check-walsenderstimeout",
        "wal_sender_timeout is 0 (off) or at least 10 seconds",
        "ALTER SYSTEM SET wal_sender_timeout = '60s'; SELECT pg_reload_conf()",
        Scope.CDC,
        blocking=False,
    ),
)


def mysql_source(flavor: str) -> tuple[Spec, ...]:
    """The MySQL-family source assessments under ``flavor``'s keys (``mysql`` or ``mariadb``)."""
    specs = [
        Spec(
            f"{flavor}-check-binlog-enabled",
            "binary logging is on (log_bin)",
            "start the server with log_bin = mysql-bin (my.cnf [mysqld]; RDS: enable automated backups)",
            Scope.CDC,
            blocking=True,
            conveyor=True,
        ),
        Spec(
            f"{flavor}-check-binlog-format",
            "binlog_format is ROW",
            "SET GLOBAL binlog_format = 'ROW' and binlog_format = ROW in my.cnf (RDS: the parameter group)",
            Scope.CDC,
            blocking=True,
        ),
        Spec(
            f"{flavor}-check-binlog-image",
            "binlog_row_image is FULL",
            "SET GLOBAL binlog_row_image = 'FULL' and binlog_row_image = FULL in my.cnf",
            Scope.CDC,
            blocking=True,
        ),
        Spec(
            f"{flavor}-check-server-id",
            "server_id is 1 or greater",
            "SET GLOBAL server_id = 1 and server_id in my.cnf",
            Scope.CDC,
            blocking=True,
        ),
    ]
    if flavor == "mariadb":
        specs.append(
            Spec(
                "mariadb-check-system-versioned-tables",
                "no selected table is system-versioned",
                "leave it out of the task, or ALTER TABLE <table> DROP SYSTEM VERSIONING",
                Scope.CDC,
                blocking=True,
                conveyor=True,
            )
        )
    if flavor == "mysql":
        specs += [
            Spec(
                "mysql-check-binlog-row-value-options",
                "binlog_row_value_options does not log JSON updates partially",
                "SET GLOBAL binlog_row_value_options = ''",
                Scope.CDC,
                blocking=True,
                conveyor=True,
            ),
            Spec(
                "mysql-check-binlog-compression",
                "binlog_transaction_compression is OFF",
                "SET GLOBAL binlog_transaction_compression = OFF",
                Scope.CDC,
                blocking=True,
            ),
        ]
    client = "BINLOG MONITOR" if flavor == "mariadb" else "REPLICATION CLIENT"
    specs += [
        Spec(
            f"{flavor}-check-replication-privileges",
            f"the source user has {client} and REPLICATION SLAVE",
            f"GRANT {client}, REPLICATION SLAVE ON *.* TO <user>",
            Scope.CDC,
            blocking=True,
        ),
        Spec(
            f"{flavor}-check-select-privileges",
            "the source user may read every selected table",
            "GRANT SELECT ON <database>.* TO <user>",
            Scope.EVERY,
            blocking=True,
            per_table=True,
        ),
        Spec(
            f"{flavor}-check-binlog-retention-time",
            "binlogs are kept for at least 24 hours",
            "SET GLOBAL binlog_expire_logs_seconds = 604800 (and in my.cnf)",
            Scope.CDC,
            blocking=False,
        ),
        Spec(
            f"{flavor}-check-expire-logs-days",
            "the server purges old binlogs automatically",
            "SET GLOBAL binlog_expire_logs_seconds = 604800 (and in my.cnf), so binlogs cannot fill the disk",
            Scope.CDC,
            blocking=False,
        ),
        Spec(
            f"{flavor}-check-table-storage-engine",
            "every selected table uses InnoDB",
            "ALTER TABLE <table> ENGINE = InnoDB: other engines are not transactional, so the snapshot of a "
            "table that is written during the load is not consistent",
            Scope.EVERY,
            blocking=False,
            per_table=True,
        ),
    ]
    return tuple(specs)


def mysql_target(flavor: str) -> tuple[Spec, ...]:
    return (
        Spec(
            f"{flavor}-check-target-localinfile-set",
            "the target allows LOAD DATA LOCAL INFILE (local_infile = 1), which the full load writes with",
            "SET GLOBAL local_infile = 1 and local_infile = 1 in my.cnf (RDS: the parameter group)",
            Scope.FULL_LOAD,
            blocking=True,
        ),
    )


POSTGRES_TARGET = (
    Spec(
        "postgres-check-target-privileges",
        "the target user may create the task's tables (CREATE on the database, or on a schema)",
        "GRANT CREATE ON DATABASE <database> TO <user>, or GRANT USAGE, CREATE ON SCHEMA <schema> TO <user>",
        Scope.EVERY,
        blocking=True,
    ),
)


def source_specs(flavor: str) -> tuple[Spec, ...]:
    """``flavor``: ``postgresql``, ``mysql``, ``mariadb`` or ``sqlite``."""
    if flavor == "postgresql":
        return POSTGRES_SOURCE
    if flavor in ("mysql", "mariadb"):
        return mysql_source(flavor)
    return ()


def target_specs(flavor: str) -> tuple[Spec, ...]:
    if flavor == "postgresql":
        return POSTGRES_TARGET
    return mysql_target(flavor) if flavor in ("mysql", "mariadb") else ()


def every_spec() -> list[Spec]:
    """Every assessment Conveyor knows, each key once (docs and their test)."""
    specs = [*COMMON, *POSTGRES_SOURCE, *POSTGRES_TARGET]
    for flavor in ("mysql", "mariadb"):
        specs += [*mysql_source(flavor), *mysql_target(flavor)]
    return specs
