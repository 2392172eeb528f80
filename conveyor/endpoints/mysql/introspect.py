"""Tables of a MySQL / MariaDB database, from information_schema.

MySQL has no level between database and table, so a TableId's schema is the database, and the
introspector sees the one database the endpoint names. ``Table.extra`` records what is not copied
(generated columns, prefix / functional / full-text / spatial indexes) and types without a
logical equivalent, so the plan can report them.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pymysql

from conveyor.endpoints.config import MySQLConfig
from conveyor.endpoints.mysql.connect import is_mariadb, quote, quote_literal
from conveyor.endpoints.mysql.errors import account_of, error_code, grant_hint
from conveyor.endpoints.mysql.types import ENGINE, to_logical
from conveyor.errors import UserActionError
from conveyor.model.schema import (
    Check,
    Column,
    ForeignKey,
    GeneratedColumn,
    Index,
    Key,
    Routine,
    SchemaObjects,
    SequenceDef,
    Table,
    TableId,
    View,
)
from conveyor.model.types import LogicalType

#: table types holding rows to copy (MariaDB's system-versioned tables are base tables with history)
TABLE_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")
CONTROL_TABLES = "conveyor\\_%"  # LIKE pattern: Conveyor's own control tables on a MySQL target

TABLES_SQL = (
    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN (%s, %s) "
    "AND TABLE_NAME NOT LIKE %s ORDER BY TABLE_NAME"
)
TABLE_SQL = (
    "SELECT TABLE_ROWS, ENGINE, TABLE_COMMENT, AUTO_INCREMENT FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
)
COLUMNS_SQL = (
    "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, COLUMN_COMMENT, GENERATION_EXPRESSION "
    "FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
)
#: MariaDB only (MySQL's CHECK_CONSTRAINTS has no TABLE_NAME, and MySQL's JSON is a type of its own)
CHECKS_SQL = (
    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s"
)
#: every CHECK of a table: MariaDB names the table in CHECK_CONSTRAINTS, MySQL through TABLE_CONSTRAINTS
MARIADB_CHECKS_SQL = (
    "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s ORDER BY CONSTRAINT_NAME"
)
MYSQL_CHECKS_SQL = (
    "SELECT c.CONSTRAINT_NAME, c.CHECK_CLAUSE FROM information_schema.TABLE_CONSTRAINTS t "
    "JOIN information_schema.CHECK_CONSTRAINTS c ON c.CONSTRAINT_SCHEMA = t.CONSTRAINT_SCHEMA "
    "AND c.CONSTRAINT_NAME = t.CONSTRAINT_NAME WHERE t.TABLE_SCHEMA = %s AND t.TABLE_NAME = %s "
    "AND t.CONSTRAINT_TYPE = 'CHECK' ORDER BY c.CONSTRAINT_NAME"
)
VIEWS_SQL = (
    "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME"
)
#: MariaDB 10.3+ sequences; each is read as a one-row table
SEQUENCES_SQL = (
    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'SEQUENCE' "
    "ORDER BY TABLE_NAME"
)
SEQUENCE_SQL = (
    "SELECT start_value, increment, minimum_value, maximum_value, cycle_option, next_not_cached_value FROM {}"
)
ROUTINES_SQL = (
    "SELECT ROUTINE_NAME, LOWER(ROUTINE_TYPE), ROUTINE_DEFINITION FROM information_schema.ROUTINES "
    "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
)
TRIGGERS_SQL = (
    "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT "
    "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s ORDER BY TRIGGER_NAME"
)
INDEXES_SQL = (
    "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE FROM information_schema.STATISTICS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX"
)
FOREIGN_KEYS_SQL = (
    "SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, "
    "k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE FROM information_schema.KEY_COLUMN_USAGE k "
    "JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA "
    "AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME "
    "WHERE k.TABLE_SCHEMA = %s AND k.TABLE_NAME = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL "
    "ORDER BY k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
)
#: how often a table is described while DDL statements keep changing it
DESCRIBE_ATTEMPTS = 5
_GENERATED = re.compile(r"\b(VIRTUAL|STORED|PERSISTENT) GENERATED\b|\bROW (START|END)\b", re.IGNORECASE)
_JSON_CHECK = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.IGNORECASE)


class MySQLIntrospector:
    def __init__(self, conn: Any, config: MySQLConfig) -> None:
        self.conn = conn
        self.config = config
        self.mariadb = is_mariadb(conn)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            rows: list[tuple[Any, ...]] = list(cur.fetchall())
        return rows

    def schemas(self) -> list[str]:
        return [self.config.database]

    def table_ids(self, schema: str) -> list[TableId]:
        rows = self._rows(TABLES_SQL, (schema, *TABLE_TYPES, CONTROL_TABLES))
        self.conn.commit()
        return [TableId(schema, r[0]) for r in rows]

    def table(self, table_id: TableId) -> Table:
        """The table as it is now. information_schema reads are not one snapshot: a DDL statement
        that changes the table while it is described (a change stream refreshes it right after
        one) makes the description start over, until the columns stay put."""
        key = (table_id.schema, table_id.name)
        for _ in range(DESCRIBE_ATTEMPTS - 1):
            columns_info = self._rows(COLUMNS_SQL, key)
            try:
                table = self._describe(table_id, columns_info)
            except pymysql.err.MySQLError as exc:
                if error_code(exc) not in (1054, 1146):  # unknown column, no such table: renamed or dropped
                    raise
                continue
            if self._rows(COLUMNS_SQL, key) == columns_info:
                return table
        return self._describe(table_id, self._rows(COLUMNS_SQL, key))

    def _describe(self, table_id: TableId, columns_info: list[tuple[Any, ...]]) -> Table:
        key = (table_id.schema, table_id.name)
        info = self._rows(TABLE_SQL, key)
        if not info or not columns_info:
            account = self._account()
            raise UserActionError(
                f"table {table_id} does not exist on {self.config.display()}, or user {account} has no "
                f"privilege on it; check the name, or run: GRANT SELECT ON {_qualified(table_id)} TO {account}"
            )
        json_columns = self._json_columns(table_id)
        columns, generated, unsupported, computed = [], [], [], []
        for name, column_type, nullable, default, extra, comment, expression in columns_info:
            if _GENERATED.search(extra or ""):
                generated.append(name)
                if expression:  # not MariaDB's system-versioning ROW START / END
                    stored = re.search(r"STORED|PERSISTENT", extra or "", re.IGNORECASE) is not None
                    ctype = to_logical(column_type, json_check=name in json_columns)
                    computed.append(GeneratedColumn(name, ctype, expression, stored, nullable == "YES"))
                continue
            ctype = to_logical(column_type, json_check=name in json_columns)
            if ctype.logical is LogicalType.DYNAMIC:
                unsupported.append(f"{name} ({column_type})")
            if self.mariadb and default == "NULL":
                default = None  # MariaDB prints "no default" as NULL; a text 'NULL' default is quoted
            elif not self.mariadb and default is not None and "DEFAULT_GENERATED" not in (extra or "").upper():
                default = quote_literal(default)  # MySQL prints a literal default bare: make it SQL, as MariaDB's
            columns.append(
                Column(
                    name,
                    ctype,
                    nullable=nullable == "YES",
                    default=default,
                    identity="auto_increment" in (extra or "").lower(),
                    comment=comment or None,
                    identity_last=_last_value(info[0][3]) if "auto_increment" in (extra or "").lower() else None,
                )
            )
        self._check_select(table_id, [c.name for c in columns])
        primary, uniques, indexes, skipped = self._indexes(table_id)
        extra_info = {"engine": str(info[0][1] or "")}
        if generated:
            extra_info["generated_columns"] = ", ".join(generated)
        if skipped:
            extra_info["skipped_indexes"] = ", ".join(skipped)
        if unsupported:
            extra_info["unsupported_columns"] = ", ".join(unsupported)
        self.conn.commit()
        return Table(
            table_id,
            tuple(columns),
            primary_key=primary,
            unique_keys=tuple(uniques),
            indexes=tuple(indexes),
            foreign_keys=tuple(self._foreign_keys(table_id)),
            estimated_rows=int(info[0][0] or 0),
            extra=extra_info,
            checks=tuple(self._checks(table_id, json_columns)),
            generated_columns=tuple(computed),
            comment=str(info[0][2] or "") or None,
            dialect=ENGINE,
        )

    def _json_columns(self, table_id: TableId) -> set[str]:
        if not self.mariadb:
            return set()
        try:
            rows = self._rows(CHECKS_SQL, (table_id.schema, table_id.name))
        except pymysql.err.MySQLError:  # MariaDB before 10.2.22 has no CHECK_CONSTRAINTS
            return set()
        found = set()
        for (clause,) in rows:
            match = _JSON_CHECK.fullmatch(str(clause).strip())
            if match:
                found.add(match.group(1).replace("``", "`"))
        return found

    def _checks(self, table_id: TableId, json_columns: set[str]) -> list[Check]:
        """CHECK constraints, less MariaDB's own ``json_valid`` checks on JSON columns."""
        try:
            rows = self._rows(
                MARIADB_CHECKS_SQL if self.mariadb else MYSQL_CHECKS_SQL, (table_id.schema, table_id.name)
            )
        except pymysql.err.MySQLError:  # servers before CHECK_CONSTRAINTS (MySQL 8.0.16, MariaDB 10.2.22)
            return []
        checks = []
        for name, clause in rows:
            match = _JSON_CHECK.fullmatch(str(clause).strip())
            if match and match.group(1).replace("``", "`") in json_columns:
                continue
            checks.append(Check(name, str(clause)))
        return checks

    def objects(self, schema: str) -> SchemaObjects:
        views = tuple(View(TableId(schema, n), str(d)) for n, d in self._rows(VIEWS_SQL, (schema,)))
        routines = [Routine(TableId(schema, n), k, str(d or "")) for n, k, d in self._rows(ROUTINES_SQL, (schema,))]
        for name, table, timing, event, statement in self._rows(TRIGGERS_SQL, (schema,)):
            source = f"CREATE TRIGGER {quote(name)} {timing} {event} ON {quote(table)} FOR EACH ROW {statement}"
            routines.append(Routine(TableId(schema, name), "trigger", source, TableId(schema, table)))
        sequences = tuple(self._sequences(schema)) if self.mariadb else ()
        self.conn.commit()
        return SchemaObjects(ENGINE, views, sequences, routines=tuple(routines))

    def _sequences(self, schema: str) -> list[SequenceDef]:
        """MariaDB's sequences. A session's cache is not visible to another, so the last value is taken
        as the one before ``next_not_cached_value``: a target goes on after every value any session may
        have handed out (the cached ones it did not hand out become a gap)."""
        out = []
        for (name,) in self._rows(SEQUENCES_SQL, (schema,)):
            seq_id = TableId(schema, name)
            row = self._rows(SEQUENCE_SQL.format(_qualified(seq_id)), ())
            if not row:
                continue
            start, increment, low, high, cycle, next_free = (int(v) for v in row[0])
            last = None if next_free == start else next_free - increment
            out.append(SequenceDef(seq_id, start, increment, low, high, bool(cycle), last))
        return out

    def _check_select(self, table_id: TableId, columns: list[str]) -> None:
        """information_schema shows tables a user holds any privilege on; reading needs SELECT."""
        if not columns:
            return
        names = ", ".join(quote(c) for c in columns)
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"SELECT {names} FROM {_qualified(table_id)} LIMIT 0")
                cur.fetchall()
        except pymysql.err.MySQLError as exc:
            if exc.args and exc.args[0] in (1142, 1143):
                raise UserActionError(
                    f"user {account_of(exc) or self._account()} may not read {table_id}; "
                    f"run: {grant_hint(exc) or f'GRANT SELECT ON {_qualified(table_id)} TO {self._account()}'}"
                ) from None
            raise

    def _indexes(self, table_id: TableId) -> tuple[Key | None, list[Key], list[Index], list[str]]:
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for row in self._rows(INDEXES_SQL, (table_id.schema, table_id.name)):
            groups.setdefault(row[0], []).append(row)
        primary, uniques, indexes, skipped = None, [], [], []
        for name, parts in groups.items():
            unique = int(parts[0][1]) == 0
            kind = str(parts[0][4] or "").upper()
            cols = tuple(p[2] for p in parts)
            if name == "PRIMARY":
                primary = Key("PRIMARY", cols)
                continue
            if kind in ("FULLTEXT", "SPATIAL", "VECTOR") or any(c is None for c in cols):
                skipped.append(f"{name} ({kind.lower() or 'functional'})")
                continue
            if any(p[3] is not None for p in parts):
                skipped.append(f"{name} (column prefix)")
                continue
            if unique:
                uniques.append(Key(name, cols))
            else:
                indexes.append(Index(name, cols))
        return primary, uniques, indexes, skipped

    def _foreign_keys(self, table_id: TableId) -> list[ForeignKey]:
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for row in self._rows(FOREIGN_KEYS_SQL, (table_id.schema, table_id.name)):
            groups.setdefault(row[0], []).append(row)
        return [
            ForeignKey(
                name,
                tuple(p[1] for p in parts),
                TableId(parts[0][2], parts[0][3]),
                tuple(p[4] for p in parts),
                on_delete=parts[0][6],
                on_update=parts[0][5],
            )
            for name, parts in groups.items()
        ]

    def _account(self) -> str:
        try:
            rows = self._rows("SELECT CURRENT_USER()", ())
            user, _, host = str(rows[0][0]).rpartition("@")
            return f"'{user}'@'{host}'"
        except pymysql.err.MySQLError:
            return f"'{self.config.user}'@'%'"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _last_value(next_value: Any) -> int | None:
    """AUTO_INCREMENT (the next value; 1 in a table never inserted into) -> the last value handed out."""
    return int(next_value) - 1 if next_value is not None and int(next_value) > 1 else None


def _qualified(table_id: TableId) -> str:
    return f"{quote(table_id.schema)}.{quote(table_id.name)}"
