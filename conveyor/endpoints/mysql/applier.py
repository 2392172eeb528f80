"""Writing MySQL / MariaDB tables: LOAD DATA LOCAL INFILE from memory, one transaction per segment.

LOAD DATA was measured against multi-row INSERTs (PyMySQL's ``executemany``) on 100k rows of an
11-column mixed table (MariaDB 10.11, 2 shared cores): 45-70k rows/s against 12-27k rows/s, the
client spending 8 µs a row instead of 30 µs. With LOCAL the server cannot stop reading the client's file, so it
turns errors into warnings and clips or skips the row; Conveyor therefore fails a batch on any
warning, with the first warning's text, and the skeleton rolls back and reloads row by row, where
the row that warns is rejected. Nothing is clipped silently.

Tables are created InnoDB, utf8mb4 with the binary collation (keys distinct by case stay distinct,
as in PostgreSQL and SQLite).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pymysql

from conveyor.endpoints.base import Encoder
from conveyor.endpoints.mysql import types
from conveyor.endpoints.mysql.connect import is_mariadb, quote, quote_literal
from conveyor.endpoints.mysql.errors import error_code
from conveyor.endpoints.mysql.protocol import LOCAL_NAME, tsv_payload
from conveyor.endpoints.sql.applier import SEGMENTS_TABLE, SqlApplier, first_line, shutdown_socket, written_bytes
from conveyor.errors import TerminalError
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.types import ColumnType

#: errors about a row's values: out of range, bad value, too long, duplicate key, NULL into NOT
#: NULL, bad date, invalid JSON, failed CHECK, missing parent row, ...
DATA_ERRORS = frozenset(
    {1048, 1062, 1261, 1262, 1263, 1264, 1265, 1292, 1300, 1366, 1367, 1406, 1411, 1416, 1452, 1690, 3140, 3819, 4025}
)
#: a foreign key name taken by another table (names are per database in InnoDB)
DUPLICATE_CONSTRAINT = frozenset({1005, 1022, 1826})
TABLE_OPTIONS = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
#: statements with at most this many parameters are one row's (checked against ``max_allowed_packet``
#: one by one; bulk statements are sized to fit, ``ChangeApplier._write_net``)
ROW_PARAMS = 256
#: bytes of a statement's SQL besides its values (column lists, joins; the separators between values are
#: counted with them), kept free below ``max_allowed_packet``
STATEMENT_MARGIN = 64 << 10
#: first versions with ``RENAME COLUMN``; older servers rename with CHANGE and the whole definition
RENAME_COLUMN_SINCE = {True: (10, 5), False: (8, 0)}  # keyed by is MariaDB
CHANGE_COLUMN_SQL = "ALTER TABLE {table} CHANGE COLUMN {column} {definition}"
#: first versions with table value constructors, and how each writes a row of one. Measured on 20k net
#: updates (MariaDB 10.11): 0.4-0.55 s of server CPU against 0.7-0.8 s as a UNION ALL of one-row SELECTs.
VALUES_SINCE = {True: (10, 3, 3), False: (8, 0, 19)}  # keyed by is MariaDB
VALUES_ROW = {True: "({})", False: "ROW({})"}


class StatementTooBig(pymysql.err.DataError):
    """A row that would not fit in one statement below the server's ``max_allowed_packet``: the server
    would drop the connection, and the retry meet it again. Refused before it is sent, as a value the
    target rejects."""


class LoadWarning(pymysql.err.DataError):
    """LOAD DATA reported a warning (a value clipped, a row skipped): the batch is not taken."""

    def __str__(self) -> str:
        code, text = (*self.args, 0, "")[:2]
        return f"{text} (MySQL {code})" if code else str(text)


class MySQLApplier(SqlApplier):
    engine = types.ENGINE
    param = "%s"
    alter_constraints = True
    index_names_per_schema = False  # index names are per table
    max_identifier_length = 64
    text_type = "LONGTEXT"
    bigint_type = "BIGINT"
    timestamp_type = "DATETIME(6)"  # TIMESTAMP may auto-update, and ends in 2038
    null_safe_equals = "<=>"
    row_locator = None  # UPDATE/DELETE take LIMIT 1

    def interrupt(self) -> None:
        sock = self.conn._sock
        if sock is not None:
            shutdown_socket(sock)

    # one MODIFY sets type and nullability together, so it carries the whole definition
    alter_type_sql = "ALTER TABLE {table} MODIFY COLUMN {definition}"
    drop_not_null_sql = alter_type_sql
    column_indexes_sql = (
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "AND COLUMN_NAME = %s AND INDEX_NAME <> 'PRIMARY'"
    )
    drop_index_sql = "ALTER TABLE {table} DROP INDEX {index}"

    def __init__(self, connection: Any, control_schema: str) -> None:
        super().__init__(connection, control_schema)
        self.mariadb = is_mariadb(connection)
        # MariaDB before 11 reports itself as "5.5.5-10.11.6-MariaDB" to old clients
        info = str(connection.get_server_info()).removeprefix("5.5.5-")
        version = tuple(int(n) for n in re.findall(r"\d+", info)[:3])
        if version < RENAME_COLUMN_SINCE[self.mariadb]:
            self.rename_column_sql = CHANGE_COLUMN_SQL
        #: one row of a table value constructor (``update_rows_sql``); None: the server has none
        self.values_row: str | None = VALUES_ROW[self.mariadb] if version >= VALUES_SINCE[self.mariadb] else None
        self._statements: dict[tuple[Any, ...], tuple[str, list[int]]] = {}
        with connection.cursor() as cur:
            cur.execute("SELECT @@max_allowed_packet")
            self.max_packet = int(cur.fetchone()[0])
        # the statement's SQL around the values is below STATEMENT_MARGIN bytes (half of a tiny packet)
        self.statement_bytes: int = max(self.max_packet - STATEMENT_MARGIN, self.max_packet // 2)
        if self.mariadb:  # MariaDB 10.3+ has sequences (signed BIGINT, one short of each bound); MySQL none
            self.no_cycle = "NOCYCLE"
            self.sequence_range = (-(2**63) + 1, 2**63 - 2)

    # ----------------------------------------------------------------- hooks
    def quote(self, name: str) -> str:
        return quote(name)

    def map_type(self, column_type: ColumnType) -> str:
        return types.to_native(column_type, self.mariadb)

    def encoder(self, column_type: ColumnType, native: str) -> Encoder | None:
        return types.encoder(column_type, native)

    def logical_type(self, native: str) -> ColumnType | None:
        return types.to_logical(native)

    def control_ddl(self) -> list[str]:
        return [ddl + TABLE_OPTIONS for ddl in super().control_ddl()]

    def update_rows_sql(self, table: str, key: Sequence[str], columns: Sequence[str], rows: int) -> str | None:
        """A multi-table UPDATE joining the rows as a derived table (PyMySQL's ``executemany`` would send
        one UPDATE a row). Its first, empty, SELECT reads the table itself: the derived columns' types
        then merge the target columns' with the literals', so a key compares under the column's own
        collation (and its index serves the join), and each value is assigned as a one-row UPDATE
        assigns it. With CLIENT.FOUND_ROWS the count is the rows matched; keys are distinct, one each."""
        names = [*columns, *key]
        sets = ", ".join(f"t.{quote(c)} = u.{quote(c)}" for c in columns)
        match = " AND ".join(f"t.{quote(k)} = u.{quote(k)}" for k in key)
        params = self.params(len(names))
        if self.values_row is None:
            values = " UNION ALL ".join([f"SELECT {params}"] * rows)
        else:
            values = "VALUES " + ", ".join([self.values_row.format(params)] * rows)
        return (
            f"UPDATE {table} AS t JOIN (SELECT {self.column_list(names)} FROM {table} WHERE FALSE "
            f"UNION ALL {values}) AS u ON {match} SET {sets}"
        )

    def column_sql(self, table: Table, index: int, native: str) -> str:
        column = table.columns[index]
        sql = f"{quote(column.name)} {native}"
        pk = table.primary_key
        if column.identity and pk and pk.columns[0] == column.name:
            sql += " AUTO_INCREMENT"  # MySQL wants it on the first column of a key
        # explicit NULL: a MySQL 5.7 TIMESTAMP column is otherwise NOT NULL DEFAULT CURRENT_TIMESTAMP
        return sql + (" NOT NULL" if not column.nullable else " NULL")

    def create_table_sql(self, table: Table, natives: Sequence[str]) -> str:
        keys = set(table.primary_key.columns) if table.primary_key else set()
        fitted = types.fit_row(list(natives), [c.name in keys for c in table.columns])
        return super().create_table_sql(table, fitted) + TABLE_OPTIONS

    def reset_identity_sql(self, table: Table, column: Column) -> list[str]:
        # InnoDB takes a value below the loaded maximum as the maximum + 1
        if column.identity_last is None:
            return []
        return [f"ALTER TABLE {self.qualified(table.id)} AUTO_INCREMENT = {int(column.identity_last) + 1}"]

    def set_sequence_sql(self, target: TableId, last_value: int) -> str:
        return f"SELECT SETVAL({self.qualified(target)}, {int(last_value)})"

    def column_comment_clause(self, comment: str | None) -> str:
        return f" COMMENT {quote_literal(comment)}" if comment else ""

    def comment_sql(self, table: Table) -> list[str]:
        if not table.comment:
            return []
        return [f"ALTER TABLE {self.qualified(table.id)} COMMENT = {quote_literal(table.comment)}"]

    def column_native(self, table: Table, name: str, natives: dict[str, str]) -> str:
        """As in CREATE TABLE, a varchar that would overflow InnoDB's row limit becomes TEXT; only this
        column changes (the others are passed as keys, which ``fit_row`` leaves alone)."""
        others = [natives[c] for c in table.column_names if c != name]
        in_key = name in (table.primary_key.columns if table.primary_key else ())
        return types.fit_row([*others, self.map_type(table.column(name).type)], [True] * len(others) + [in_key])[-1]

    def table_exists(self, table_id: TableId) -> bool:
        row = self.execute(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (table_id.schema, table_id.name),
        ).fetchone()
        return row is not None

    def upsert_control_sql(self) -> str:
        return (
            f"INSERT INTO {self.control(SEGMENTS_TABLE)} (task_name, table_name, segment, rows_loaded, "
            f"rows_rejected, lease, finished_at) VALUES ({self.params(7)}) ON DUPLICATE KEY UPDATE "
            "rows_loaded = VALUES(rows_loaded), rows_rejected = VALUES(rows_rejected), lease = VALUES(lease), "
            "finished_at = VALUES(finished_at)"
        )

    def bound_idle_session(self, seconds: int) -> None:
        # the server's default wait_timeout is 8 hours
        self.execute(f"SET SESSION wait_timeout = {int(seconds)}")
        self.idle_timeout = seconds

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if params and len(params) <= ROW_PARAMS:
            self._fits(sql, params)
        return super().execute(sql, params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        for row in params:
            self._fits(sql, row)
        return super().executemany(sql, params)

    def _fits(self, sql: str, params: Sequence[Any]) -> None:
        """Raise ``StatementTooBig`` for a one-row statement the server would refuse for its size (the
        upper bound first, the statement as written only when that bound is over the limit)."""
        if written_bytes(params) + len(sql) <= self.statement_bytes:
            return
        with self.conn.cursor() as cur:
            size = len(cur.mogrify(sql, params).encode(self.conn.encoding, "surrogateescape"))
        if size >= self.max_packet:
            raise StatementTooBig(
                0,
                f"the row takes {size:,} bytes as a statement, over the target's max_allowed_packet "
                f"({self.max_packet:,}): raise it on the target (SET GLOBAL max_allowed_packet = {1 << 30}; "
                "and in its configuration file)",
            )

    def is_data_error(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.DataError | pymysql.err.IntegrityError | UnicodeEncodeError):
            return True
        return isinstance(exc, pymysql.err.MySQLError) and error_code(exc) in DATA_ERRORS

    def is_already_exists(self, exc: BaseException) -> bool:
        return error_code(exc) in (1061, 1826) or super().is_already_exists(exc)

    # ----------------------------------------------------------------- loading
    def bulk_insert(
        self, table: Table, columns: Sequence[str], natives: Sequence[str], batch: RowBatch, rows: list[Row]
    ) -> None:
        if batch.raw is not None:
            raise TerminalError(f"{table.id}: MySQL cannot load another engine's raw rows")
        if not rows:
            return
        sql, hex_columns = self._load_statement(table, tuple(columns), tuple(natives))
        loaded, warnings = self.conn.load_local(sql, tsv_payload(rows, hex_columns))
        if warnings:
            raise self._first_warning(warnings)
        if loaded != len(rows):
            raise LoadWarning(0, f"the server loaded {loaded} of {len(rows)} rows")

    def _load_statement(
        self, table: Table, columns: tuple[str, ...], natives: tuple[str, ...]
    ) -> tuple[str, list[int]]:
        key = (table.id, columns, natives)
        cached = self._statements.get(key)
        if cached is not None:
            return cached
        if len(natives) != len(columns):  # called without the plan's types: derive them
            natives = tuple(self.map_type(table.column(c).type) for c in columns)
        targets, assignments, hex_columns = [], [], []
        for i, (name, native) in enumerate(zip(columns, natives, strict=True)):
            if types.is_binary_native(native):
                variable = f"@v{i}"  # loaded from hex, so no byte is reinterpreted as text
                targets.append(variable)
                assignments.append(f"{quote(name)} = UNHEX({variable})")
                hex_columns.append(i)
            else:
                targets.append(quote(name))
        sql = (
            f"LOAD DATA LOCAL INFILE '{LOCAL_NAME}' INTO TABLE {self.qualified(table.id)} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
            f"({', '.join(targets)})" + (f" SET {', '.join(assignments)}" if assignments else "")
        )
        self._statements[key] = (sql, hex_columns)
        return sql, hex_columns

    def _first_warning(self, count: int) -> LoadWarning:
        rows = self.execute("SHOW WARNINGS LIMIT 1").fetchall()
        if not rows:
            return LoadWarning(0, f"the load reported {count} warnings")
        _level, code, text = rows[0]
        return LoadWarning(int(code), str(text))

    # ----------------------------------------------------------------- constraints
    def add_foreign_keys(self, table: Table) -> list[str]:
        """Foreign key names are per database in InnoDB: a name another table holds gets this
        table's name in front."""
        warnings: list[str] = []
        for fk in table.foreign_keys:
            name = fk.name[: self.max_identifier_length]
            prefixed = (name if name.startswith(table.id.name) else f"{table.id.name}_{name}")[
                : self.max_identifier_length
            ]
            if self._has_constraint(table, (name, prefixed)):
                continue
            for candidate in dict.fromkeys((name, prefixed)):
                sql = (
                    f"ALTER TABLE {self.qualified(table.id)} ADD CONSTRAINT {quote(candidate)} "
                    f"{self.foreign_key_sql(fk)}"
                )
                try:
                    self.execute(sql)
                    self.commit()
                    break
                except pymysql.err.MySQLError as exc:
                    self.rollback()
                    if error_code(exc) in DUPLICATE_CONSTRAINT and candidate != prefixed:
                        continue
                    warnings.append(f"{table.id}: foreign key {fk.name} not created: {first_line(exc)}")
                    break
        return warnings

    def _has_constraint(self, table: Table, names: tuple[str, ...]) -> bool:
        row = self.execute(
            "SELECT 1 FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "AND CONSTRAINT_TYPE = 'FOREIGN KEY' AND CONSTRAINT_NAME IN (%s, %s)",
            (table.id.schema, table.id.name, names[0], names[-1]),
        ).fetchone()
        self.commit()
        return row is not None
