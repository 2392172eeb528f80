"""Canonical text and row hashes in each engine's SQL, so checksums run inside the databases.

Every expression gives exactly ``canonical.text`` of the value (NULL stays NULL); where an engine cannot
(JSON between different engines, every SQLite value) the column is fetched and finished in Python
(``Column.finish``), and that side then hashes its rows in Python instead. Statements always go out with
a parameter sequence, so a literal ``%`` is written ``%%`` (see ``postgres.connect.quote``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    #: a JSON value compared as PostgreSQL's ``jsonb`` (``TableSide.jsonb_mismatches``): the SQL of the
    #: ``jsonb`` value on a PostgreSQL side, of the text sent to it elsewhere
    jsonb: str | None = None
    #: the text never holds ``,``, is never empty nor ``~``: its row token is ``<text>,`` (``canonical.row_text``)
    delimited: bool = False
    #: the engine types the SQL's text as UTF-8 already (MariaDB/MySQL: utf8mb4, utf8mb3): its token takes
    #: the engine's byte length with no conversion (``TableSide.mark_utf8``)
    utf8: bool = False
    #: SQL of ``sql``'s text that is cheaper as an argument of the row text's ``CONCAT`` (None: ``sql``):
    #: MariaDB/MySQL print a number or a date there as ``CAST(... AS CHAR)`` does, without the CAST (~10%
    #: of a checksum query on a table of numbers and dates)
    concat: str | None = None


#: kinds whose text every engine builds with a function of a fixed alphabet (digits, ``-.:e`` and the like)
_DELIMITED = frozenset({Kind.BOOL, Kind.FLOAT64, Kind.FLOAT32, Kind.DATE, Kind.TIME, Kind.TIMESTAMP, Kind.TIMESTAMPTZ})
#: kinds whose text is a cast of the value: delimited when the column is of these types (not a text, not
#: a masked or clipped expression)
_DELIMITED_TYPED = {Kind.INT: frozenset({L.INTEGER, L.YEAR}), Kind.DECIMAL: frozenset({L.DECIMAL, L.INTEGER})}


class Dialect:
    """An engine's SQL for canonical texts, row texts and 60-bit row hashes."""

    param = "%s"
    #: a quoted identifier (a column itself, no expression over it)
    identifier = re.compile(r'"(?:[^"]|"")*"')

    def column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        out = self._column(quoted, t, kind, native_json)
        typed = kind in _DELIMITED_TYPED and t.logical in _DELIMITED_TYPED[kind] and self.identifier.fullmatch(quoted)
        return replace(out, delimited=True) if out.finish is None and (kind in _DELIMITED or typed) else out

    def _column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        raise NotImplementedError

    def token(self, expr: str, delimited: bool = False, utf8: bool = False) -> str:
        """``<length>:<text>`` (the length in UTF-8 bytes) or ``-`` for NULL; ``<text>,`` or ``~,`` where
        ``delimited`` (``canonical.row_text``); ``utf8``: the text is UTF-8 already (``Column.utf8``)."""
        raise NotImplementedError

    #: names ``charset`` gives to character sets whose texts are UTF-8 bytes
    utf8_charsets: frozenset[str] = frozenset()

    def charset(self, expr: str) -> str | None:
        """SQL of the name of the character set of ``expr``'s text, where an engine's texts have one of
        their own (None: they are in the database's encoding)."""
        return None

    def concat(self, parts: Sequence[str]) -> str:
        raise NotImplementedError

    def token_once(self, expr: str) -> str:
        """``token`` of an expensive expression, evaluated once."""
        return self.token(expr)

    def hash60(self, expr: str) -> str:
        raise NotImplementedError

    def for_session(self, conn: Any) -> Dialect:
        """This dialect for the database of a connection of it (PostgreSQL: per database encoding)."""
        return self

    def range_bucket(self, column: str, lo: int, hi: int, width: int) -> str:
        """``(column - lo) DIV width`` of the rows with ``lo <= column < hi``."""
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

    # value rules (``run.Validation.comparer``): what the task did to a value, done to the other side's
    def text_prefix(self, expr: str, size: int) -> str:
        """The first ``size`` UTF-8 bytes of a text, cut on a character boundary (``transform.lobs.clip``)."""
        raise NotImplementedError

    def binary_prefix(self, expr: str, size: int) -> str:
        raise NotImplementedError

    def sha256_hex(self, expr: str, t: ColumnType) -> str:
        """SHA-256 of a text's UTF-8 bytes, upper-case hex (``transform.masking``'s hash mask), the text
        as the task reads a column of type ``t``."""
        raise NotImplementedError

    def digits_masked(self, expr: str, character: str) -> str:
        """Every digit of a text replaced by ``character`` (``transform.masking``'s digits mask)."""
        raise NotImplementedError


def _whole_seconds(t: ColumnType) -> bool:
    """A timestamp column of whole seconds, whose text has no fraction."""
    return t.logical in (L.TIMESTAMP, L.TIMESTAMPTZ) and t.precision == 0


def _json_finish(value: Any) -> str | None:
    return None if value is None else json_text(value)


class PostgresDialect(Dialect):
    def __init__(self, utf8: bool = False) -> None:
        #: the database's encoding is UTF8: a text's bytes are its UTF-8 already (``hash60``)
        self.utf8 = utf8

    def for_session(self, conn: Any) -> Dialect:
        return PostgresDialect(conn.info.parameter_status("server_encoding") == "UTF8")

    def _column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
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
                if _whole_seconds(t) and self.identifier.fullmatch(c):
                    # the ISO text (the session's DateStyle) of whole seconds has no fraction: about 8% of a
                    # checksum query cheaper than to_char
                    return Column(f"({value})::text || '.000000'")
                return Column(f"to_char({value}, 'YYYY-MM-DD HH24:MI:SS.US')")
            case Kind.JSON:
                doc = f"to_jsonb({c})" if t.logical is L.ARRAY else f"({c})::jsonb"
                return Column(f"{doc}::text") if native_json else Column(f"{doc}::text", _json_finish, jsonb=doc)
            case Kind.UUID:
                return Column(f"lower(({c})::text)")
        return Column(f"({select_expression(t, c)})::text")

    def token(self, expr: str, delimited: bool = False, utf8: bool = False) -> str:
        if delimited:
            return f"COALESCE(({expr}) || ',', '~,')"
        # octet_length: the UTF-8 byte length in a UTF8 database, read from the value's header (length
        # counts characters); in another encoding the lengths are of other bytes than UTF-8's
        return f"COALESCE(octet_length({expr})::text || ':' || {expr}, '-')"

    def token_once(self, expr: str) -> str:
        return f"(SELECT {self.token('t.v')} FROM (SELECT {expr} AS v) t)"

    error = (psycopg.Error,)

    def native_hash(self, quoted: Sequence[str]) -> str | None:
        # PostgreSQL 14+: each column's extended hash function, which agrees with the type's equality
        # (1.0 = 1.00, jsonb by value, timestamptz by instant) and stays the same across major versions
        # (hash partitions depend on it); about 4x cheaper than SHA-256 of a row's text
        return f"hash_record_extended(ROW({', '.join(quoted)}), 0)"

    def concat(self, parts: Sequence[str]) -> str:
        return " || ".join(parts) if parts else "''"

    def hash60(self, expr: str) -> str:
        # textsend: the text's bytes as they are (a UTF8 database), ~5% of the hash cheaper than convert_to
        utf8 = f"textsend({expr})" if self.utf8 else f"convert_to({expr}, 'UTF8')"
        # the first 8 bytes as a bigint, shifted to their first 60 bits (cheaper than cutting 15 hex digits)
        first8 = f"('x' || encode(substring(sha256({utf8}) from 1 for 8), 'hex'))::bit(64)::bigint"
        return f"(({first8} >> 4) & {(1 << 60) - 1})"

    def range_bucket(self, column: str, lo: int, hi: int, width: int) -> str:
        if lo >= -(2**63) and hi - lo < 2**63:
            # bigint arithmetic: the difference fits; about 5% of a checksum query cheaper than numeric div()
            return f"({column}::bigint - {int(lo)}) / {int(width)}"
        return f"div({column}::numeric - {int(lo)}, {int(width)})"

    def text_prefix(self, expr: str, size: int) -> str:
        n = int(size)
        b = f"convert_to({expr}, 'UTF8')"
        # the cut: before the first byte of the character the byte after the limit belongs to
        cut = " ".join(f"WHEN get_byte({b}, {n - k}) & 192 <> 128 THEN {n - k}" for k in range(3))
        return (
            f"CASE WHEN octet_length({expr}) <= {n} THEN ({expr})::text "
            f"ELSE convert_from(substring({b} from 1 for CASE {cut} ELSE {n - 3} END), 'UTF8') END"
        )

    def binary_prefix(self, expr: str, size: int) -> str:
        return f"substring({expr} from 1 for {int(size)})"

    def sha256_hex(self, expr: str, t: ColumnType) -> str:
        if t.logical is L.CHAR and t.length:  # the task reads character(n) padded; its text cast is not
            expr = f"rpad(({expr})::text, {int(t.length)})"
        return f"upper(encode(sha256(convert_to({expr}, 'UTF8')), 'hex'))"

    def digits_masked(self, expr: str, character: str) -> str:
        return f"translate({expr}, '0123456789', repeat(chr({ord(character)}), 10))"


class MySQLDialect(Dialect):
    error = (pymysql.MySQLError,)
    identifier = re.compile(r"`(?:[^`]|``)*`")

    def _column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        c = quoted
        match kind:
            case Kind.BOOL:
                return Column(f"CASE WHEN {c} <> 0 THEN '1' WHEN {c} = 0 THEN '0' END")
            case Kind.INT:
                plain = t.logical in (L.INTEGER, L.YEAR) and self.identifier.fullmatch(c)
                return Column(f"CAST({c} AS CHAR)", concat=c if plain else None)
            case Kind.DECIMAL:
                s = f"CAST({c} AS CHAR)"
                trim = "TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {}))"
                if t.logical is L.DECIMAL and t.scale is not None and self.identifier.fullmatch(c):
                    # a DECIMAL column's text has exactly ``scale`` decimals: no test for a point (~20% of
                    # a row's text)
                    return Column(trim.format(s), concat=trim.format(c)) if t.scale > 0 else Column(s, concat=c)
                return Column(f"IF(LOCATE('.', {s}) > 0, {trim.format(s)}, {s})")
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
                if _whole_seconds(t) and self.identifier.fullmatch(c):
                    # no fraction: cheaper than DATE_FORMAT
                    return Column(f"CONCAT(CAST({c} AS CHAR), '.000000')", concat=f"CONCAT({c}, '.000000')")
                return Column(f"DATE_FORMAT({c}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')")
            case Kind.JSON:
                # MariaDB 10.7+ has JSON_NORMALIZE (against MariaDB); against PostgreSQL the texts go there
                # (MariaDB's JSON is a text: sent as it is)
                return Column(f"CAST({c} AS CHAR)", _json_finish, f"JSON_NORMALIZE({c})", jsonb=c)
            case Kind.UUID:
                return Column(f"LOWER(CAST({c} AS CHAR))")
        if t.logical is L.BIT and t.native.lower().startswith("bit"):
            return Column(f"LPAD(BIN({c}), {int(t.length or 1)}, '0')")
        if t.logical in (L.VARCHAR, L.TEXT):  # already a text: the token converts it to utf8mb4
            return Column(c)
        return Column(f"CAST({c} AS CHAR)")

    def token(self, expr: str, delimited: bool = False, utf8: bool = False) -> str:
        if delimited:
            return f"COALESCE(CONCAT({expr}, ','), '~,')"
        value = expr if utf8 else f"CONVERT({expr} USING utf8mb4)"
        return f"COALESCE(CONCAT(LENGTH({value}), ':', {value}), '-')"

    utf8_charsets = frozenset({"utf8mb4", "utf8mb3", "utf8"})

    def charset(self, expr: str) -> str | None:
        return f"CHARSET({expr})"

    def concat(self, parts: Sequence[str]) -> str:
        return f"CONCAT({', '.join(parts)})" if parts else "''"

    def hash60(self, expr: str) -> str:
        # SHA2: MariaDB's MD5 costs about 4x more per row (a quarter of a checksum query); the text is
        # utf8mb4 (``token``)
        return f"CAST(CONV(LEFT(SHA2({expr}, 256), 15), 16, 10) AS UNSIGNED)"

    def range_bucket(self, column: str, lo: int, hi: int, width: int) -> str:
        return f"({column} - {int(lo)}) DIV {int(width)}"

    def text_prefix(self, expr: str, size: int) -> str:
        n = int(size)
        b = f"CAST(CONVERT({expr} USING utf8mb4) AS BINARY)"
        # the cut: before the first byte of the character the byte after the limit belongs to
        cut = " ".join(f"WHEN ASCII(SUBSTRING({b}, {n + 1 - k}, 1)) & 192 <> 128 THEN {n - k}" for k in range(3))
        return (
            f"IF(OCTET_LENGTH(CONVERT({expr} USING utf8mb4)) <= {n}, CONVERT({expr} USING utf8mb4), "
            f"CONVERT(LEFT({b}, CASE {cut} ELSE {n - 3} END) USING utf8mb4))"
        )

    def binary_prefix(self, expr: str, size: int) -> str:
        return f"LEFT({expr}, {int(size)})"

    def sha256_hex(self, expr: str, t: ColumnType) -> str:
        return f"UPPER(SHA2(CONVERT({expr} USING utf8mb4), 256))"

    def digits_masked(self, expr: str, character: str) -> str:
        out = expr
        for digit in "0123456789":
            out = f"REPLACE({out}, '{digit}', CHAR({ord(character)} USING utf8mb4))"
        return out


class SQLiteDialect(Dialect):
    """SQLite has no SHA-256 and keeps values in any type: every value is read and finished in Python
    (the database is a local file, so this costs no network)."""

    param = "?"

    def _column(self, quoted: str, t: ColumnType, kind: Kind, native_json: bool) -> Column:
        from conveyor.endpoints.sqlite.types import decoder

        decode = decoder(t)

        def finish(value: Any) -> str | None:
            if value is not None and decode is not None:
                value = decode(value)
            return text(kind, value)

        return Column(quoted, finish)

    def range_bucket(self, column: str, lo: int, hi: int, width: int) -> str:
        return f"(({column} - {int(lo)}) / {int(width)})"


DIALECTS: dict[str, Dialect] = {"postgresql": PostgresDialect(), "mysql": MySQLDialect(), "sqlite": SQLiteDialect()}
