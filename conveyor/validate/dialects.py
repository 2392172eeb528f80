"""Canonical text and row hashes in each engine's SQL, so checksums run inside the databases.

Every expression gives exactly ``canonical.text`` of the value (NULL stays NULL); where an engine cannot
(JSON between different engines, every SQLite value) the column is fetched and finished in Python
(``Column.finish``), and that side then hashes its rows in Python instead. Statements always go out with
a parameter sequence, so a literal ``%`` is written ``%%`` (see ``postgres.connect.quote``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql

from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L
from conveyor.validate.canonical import Kind, float_digits, json_text, text


@dataclass(frozen=True)
class Column:
    """One compared column on one side: the SQL selecting it and, when Python finishes the canonical
    text, the function doing so."""

    sql: str
    finish: Callable[[Any], str | None] | None = None
    #: where Python finishes the text: SQL of another text, for checksums only, that two engines compute
    #: alike for equal values (JSON in MariaDB's ``JSON_NORMALIZE`` form), so no side streams its rows
    checksum: str | None = None


class Dialect:
    """An engine's SQL for canonical texts, row texts and 60-bit row hashes."""

    param = "%s"

    def column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        raise NotImplementedError

    def token(self, expr: str) -> str:
        """``<length>:<text>`` or ``-`` for NULL (``canonical.row_text``)."""
        raise NotImplementedError

    def concat(self, parts: Sequence[str]) -> str:
        raise NotImplementedError

    def token_once(self, expr: str) -> str:
        """``token`` of an expensive expression, evaluated once."""
        return self.token(expr)

    def hash60(self, expr: str) -> str:
        raise NotImplementedError

    def int_div(self, a: str, b: str) -> str:
        raise NotImplementedError

    #: the driver's database error (a probe of ``native_hash`` may raise it)
    error: tuple[type[Exception], ...] = ()

    def native_hash(self, quoted: Sequence[str]) -> str | None:
        """A 64-bit hash of a row computed by the engine from its own values, for checksums between two
        databases of this engine with the same column types (None: the engine has none)."""
        return None

    def sum_text(self, expr: str) -> str:
        """SUM of 60-bit hashes, exact (no float), in a form the driver returns as a number or text."""
        return f"SUM({expr})"


def _json_finish(value: Any) -> str | None:
    return None if value is None else json_text(value)


#: JSON nesting the PostgreSQL expression normalises; deeper documents never match (rows are then compared)
JSON_DEPTH = 4


def _pg_json(doc: str, depth: int = JSON_DEPTH) -> str:
    """A jsonb value as MariaDB's ``JSON_NORMALIZE`` writes it: keys in byte order, no spaces, numbers as
    ``<d>.<digits>E<exponent>`` (exact, trailing zeros dropped); strings as PostgreSQL escapes them."""
    if depth == 0:
        return f"(chr(1) || ({doc})::text)"
    e, a = f"e{depth}", f"a{depth}"
    obj = (
        f"'{{' || COALESCE((SELECT string_agg(to_jsonb({e}.k)::text || ':' || {_pg_json(f'{e}.v', depth - 1)}, ',' "
        f"ORDER BY {e}.k COLLATE \"C\") FROM jsonb_each({doc}) AS {e}(k, v)), '') || '}}'"
    )
    arr = (
        f"'[' || COALESCE((SELECT string_agg({_pg_json(f'{a}.v', depth - 1)}, ',' ORDER BY {a}.n) "
        f"FROM jsonb_array_elements({doc}) WITH ORDINALITY AS {a}(v, n)), '') || ']'"
    )
    return (
        f"CASE jsonb_typeof({doc}) WHEN 'object' THEN {obj} WHEN 'array' THEN {arr} "
        f"WHEN 'number' THEN {_pg_json_number(f'({doc})::numeric')} ELSE ({doc})::text END"
    )


def _pg_json_number(n: str) -> str:
    """``JSON_NORMALIZE``'s number: 12.50 -> 1.25E1, 0.001 -> 1.0E-3, 0 -> 0.0E0."""
    exponent = (
        "CASE WHEN q.a >= 1 THEN length(split_part(q.t, '.', 1)) - 1 "
        "ELSE length(ltrim(split_part(q.t, '.', 2), '0')) - length(split_part(q.t, '.', 2)) - 1 END"
    )
    return (
        "(SELECT CASE WHEN q.a = 0 THEN '0.0E0' ELSE q.sg || left(q.d, 1) || '.' || "
        f"COALESCE(NULLIF(substr(q.d, 2), ''), '0') || 'E' || ({exponent})::text END "
        "FROM (SELECT r.a, r.sg, r.t, rtrim(ltrim(replace(r.t, '.', ''), '0'), '0') AS d FROM "
        f"(SELECT abs({n}) AS a, CASE WHEN {n} < 0 THEN '-' ELSE '' END AS sg, trim_scale(abs({n}))::text AS t) r) q)"
    )


class PostgresDialect(Dialect):
    def column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        from conveyor.endpoints.postgres.types import select_expression

        c = quoted
        match kind:
            case Kind.BOOL:
                if t.logical is L.BOOLEAN:
                    return Column(f"CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END")
                return Column(f"CASE WHEN {c} <> 0 THEN '1' WHEN {c} = 0 THEN '0' END")
            case Kind.INT:
                return Column(f"({c})::text")
            case Kind.DECIMAL:
                return Column(f"trim_scale(({c})::numeric)::text")
            case Kind.FLOAT64 | Kind.FLOAT32:
                x = f"({c})::float8"
                e = f"floor(log(abs({x})))"
                mantissa = f"round({x} * 10::float8 ^ ({float_digits(kind) - 1} - {e}))::bigint::text"
                return Column(
                    f"CASE WHEN {x} = 0 THEN '0' WHEN {x} = 'NaN'::float8 THEN 'NaN' "
                    f"WHEN {x} = 'Infinity'::float8 THEN 'Infinity' WHEN {x} = '-Infinity'::float8 THEN '-Infinity' "
                    f"ELSE {mantissa} || 'e' || {e}::bigint::text END"
                )
            case Kind.CHAR:
                return Column(f"rtrim(({c})::text, ' ')")
            case Kind.BINARY:
                return Column(f"encode({c}, 'hex')" if t.logical in (L.BINARY, L.VARBINARY, L.BLOB) else f"({c})::text")
            case Kind.DATE:
                return Column(f"to_char({c}, 'YYYY-MM-DD')")
            case Kind.TIME:
                return Column(f"to_char(({c})::time::interval, 'HH24:MI:SS.US')")
            case Kind.TIMESTAMP | Kind.TIMESTAMPTZ:
                value = f"({c} AT TIME ZONE 'UTC')" if t.logical is L.TIMESTAMPTZ else c
                return Column(f"to_char({value}, 'YYYY-MM-DD HH24:MI:SS.US')")
            case Kind.JSON:
                doc = f"to_jsonb({c})" if t.logical is L.ARRAY else f"({c})::jsonb"
                return Column(f"{doc}::text") if native_json else Column(f"{doc}::text", _json_finish, _pg_json(doc))
            case Kind.UUID:
                return Column(f"lower(({c})::text)")
        return Column(f"({select_expression(t, c)})::text")

    def token(self, expr: str) -> str:
        return f"COALESCE(length({expr})::text || ':' || {expr}, '-')"

    def token_once(self, expr: str) -> str:
        return f"(SELECT {self.token('t.v')} FROM (SELECT {expr} AS v) t)"

    error = (psycopg.Error,)

    def native_hash(self, quoted: Sequence[str]) -> str | None:
        # PostgreSQL 14+: each column's extended hash function, which agrees with the type's equality
        # (1.0 = 1.00, jsonb by value, timestamptz by instant) and stays the same across major versions
        # (hash partitions depend on it); about 4x cheaper than MD5 of a row's text
        return f"hash_record_extended(ROW({', '.join(quoted)}), 0)"

    def concat(self, parts: Sequence[str]) -> str:
        return " || ".join(parts) if parts else "''"

    def hash60(self, expr: str) -> str:
        return f"('x' || substr(md5({expr}), 1, 15))::bit(60)::bigint"

    def int_div(self, a: str, b: str) -> str:
        return f"div({a}, {b})"


class MySQLDialect(Dialect):
    error = (pymysql.MySQLError,)

    def column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        c = quoted
        match kind:
            case Kind.BOOL:
                return Column(f"CASE WHEN {c} <> 0 THEN '1' WHEN {c} = 0 THEN '0' END")
            case Kind.INT:
                return Column(f"CAST({c} AS CHAR)")
            case Kind.DECIMAL:
                s = f"CAST({c} AS CHAR)"
                return Column(f"IF(LOCATE('.', {s}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})), {s})")
            case Kind.FLOAT64 | Kind.FLOAT32:
                e = f"FLOOR(LOG10(ABS({c})))"
                mantissa = f"CAST(ROUND({c} * POW(10, {float_digits(kind) - 1} - {e})) AS SIGNED)"
                return Column(f"CASE WHEN {c} = 0 THEN '0' ELSE CONCAT({mantissa}, 'e', {e}) END")
            case Kind.CHAR:
                return Column(f"TRIM(TRAILING ' ' FROM {c})")
            case Kind.BINARY:
                return Column(f"LOWER(HEX({c}))")
            case Kind.DATE:
                return Column(f"DATE_FORMAT({c}, '%%Y-%%m-%%d')")
            case Kind.TIME:
                return Column(f"TIME_FORMAT({c}, '%%H:%%i:%%s.%%f')")
            case Kind.TIMESTAMP | Kind.TIMESTAMPTZ:
                # the session's time zone is UTC (``mysql.connect.SESSION``): TIMESTAMP columns read in UTC
                return Column(f"DATE_FORMAT({c}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')")
            case Kind.JSON:
                return Column(f"CAST({c} AS CHAR)", _json_finish, f"JSON_NORMALIZE({c})")  # MariaDB 10.7+
            case Kind.UUID:
                return Column(f"LOWER(CAST({c} AS CHAR))")
        if t.logical is L.BIT and t.native.lower().startswith("bit"):
            return Column(f"LPAD(BIN({c}), {int(t.length or 1)}, '0')")
        return Column(f"CAST({c} AS CHAR)")

    def token(self, expr: str) -> str:
        value = f"CONVERT({expr} USING utf8mb4)"
        return f"COALESCE(CONCAT(CHAR_LENGTH({value}), ':', {value}), '-')"

    def concat(self, parts: Sequence[str]) -> str:
        return f"CONCAT({', '.join(parts)})" if parts else "''"

    def hash60(self, expr: str) -> str:
        return f"CAST(CONV(SUBSTRING(MD5({expr}), 1, 15), 16, 10) AS UNSIGNED)"

    def int_div(self, a: str, b: str) -> str:
        return f"({a}) DIV ({b})"


class SQLiteDialect(Dialect):
    """SQLite has no MD5 and keeps values in any type: every value is read and finished in Python
    (the database is a local file, so this costs no network)."""

    param = "?"

    def column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        from conveyor.endpoints.sqlite.types import decoder

        decode = decoder(t)

        def finish(value: Any) -> str | None:
            if value is not None and decode is not None:
                value = decode(value)
            return text(kind, value)

        return Column(quoted, finish)

    def int_div(self, a: str, b: str) -> str:
        return f"(({a}) / ({b}))"


DIALECTS: dict[str, Dialect] = {"postgresql": PostgresDialect(), "mysql": MySQLDialect(), "sqlite": SQLiteDialect()}
