"""PostgreSQL types <-> LogicalType, and how values cross the boundary, as data tables.

Reading (PostgreSQL source, another engine's target): values must arrive canonical (see
``model.types.CANONICAL_PYTHON``) without per-value Python work, so the server casts the few types
psycopg would load differently (``SELECT_CASTS``) and psycopg's C loaders do the rest. Values Python
cannot hold stay PostgreSQL's text, the same through the full load and the stream: dates and
timestamps ``infinity``, BC or past year 9999 (``0044-03-15 BC``; a timestamptz in UTC, ``+00``), and
time ``24:00:00``. A target that keeps text (SQLite) stores that text; one that parses dates rejects the
row, naming it. ``xml`` is its output form, which leaves out a version 1.0 declaration.

Writing (another engine's source): rows go through binary COPY when psycopg's binary dumper for every
target column accepts the canonical values (``BINARY_COPY``), else through text COPY, where the
server parses each value. Encoders only run where a value could be silently changed or refused late:
psycopg's binary integer dumpers wrap out-of-range values, numeric rounds extra decimals, and
PostgreSQL cannot store NUL characters.

Choices: JSON becomes ``jsonb`` (queryable and indexable; key order and duplicate keys are not kept,
which the oracle accepts because it compares JSON semantically); a homogeneous copy keeps every
native type, including ``json``. ``timetz`` is LogicalType.TIME with an aware ``datetime.time``.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import re
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from psycopg import DataError, pq
from psycopg.adapt import Dumper, Loader

from conveyor.endpoints.base import Encoder
from conveyor.errors import RowRejected
from conveyor.model.schema import Table
from conveyor.model.types import ColumnType, duration_text
from conveyor.model.types import LogicalType as L

ENGINE = "postgresql"
#: OIDs below this are PostgreSQL's own types (same on every server); above are user and extension types
FIRST_USER_OID = 16384
MAX_NUMERIC_PRECISION = 1000
MAX_CHAR_LENGTH = 10485760
MAX_TIME_PRECISION = 6
#: engines whose columns may hold values of any type, whatever the declared type (encoders check types)
DYNAMIC_ENGINES = frozenset({"sqlite"})

# --------------------------------------------------------------------------- native -> logical
#: pg_catalog type name (``pg_type.typname``) -> logical type
NATIVE_TO_LOGICAL: dict[str, L] = {
    "bool": L.BOOLEAN,
    "int2": L.INTEGER,
    "int4": L.INTEGER,
    "int8": L.INTEGER,
    "oid": L.INTEGER,
    "numeric": L.DECIMAL,
    "float4": L.FLOAT,
    "float8": L.FLOAT,
    "bpchar": L.CHAR,
    "char": L.CHAR,  # the one-byte "char"
    "varchar": L.VARCHAR,
    "name": L.VARCHAR,
    "text": L.TEXT,
    "xml": L.TEXT,
    "citext": L.TEXT,  # extension type, matched by name outside pg_catalog too
    "bytea": L.BLOB,
    "date": L.DATE,
    "time": L.TIME,
    "timetz": L.TIME,
    "timestamp": L.TIMESTAMP,
    "timestamptz": L.TIMESTAMPTZ,
    "interval": L.INTERVAL,
    "json": L.JSON,
    "jsonb": L.JSON,
    "uuid": L.UUID,
    "inet": L.INET,
    "cidr": L.CIDR,
    "macaddr": L.MACADDR,
    "macaddr8": L.MACADDR,
    "money": L.MONEY,
    "bit": L.BIT,
    "varbit": L.BIT,
}
#: extension types recognised by name wherever they are installed
EXTENSION_TYPES = frozenset({"citext"})

#: fixed parameters per type name
FIXED_PARAMS: dict[str, dict[str, Any]] = {
    "int2": {"bits": 16},
    "int4": {"bits": 32},
    "int8": {"bits": 64},
    "oid": {"bits": 32, "unsigned": True},
    "float4": {"bits": 32},
    "float8": {"bits": 64},
    "char": {"length": 1},
    "name": {"length": 63},
    "money": {"precision": 19, "scale": 2},
}


def _numeric_typmod(typmod: int) -> dict[str, Any]:
    if typmod < 0:
        return {}  # unconstrained
    tm = typmod - 4
    scale = ((tm & 0x7FF) ^ 1024) - 1024  # PostgreSQL 15 allows negative scales
    return {"precision": (tm >> 16) & 0xFFFF, "scale": scale}


def _length_typmod(typmod: int) -> dict[str, Any]:
    return {"length": typmod - 4} if typmod >= 4 else {}


def _bits_typmod(typmod: int) -> dict[str, Any]:
    return {"length": typmod} if typmod >= 0 else {}


def _precision_typmod(typmod: int) -> dict[str, Any]:
    return {"precision": typmod} if typmod >= 0 else {}


def _interval_typmod(typmod: int) -> dict[str, Any]:
    precision = typmod & 0xFFFF if typmod >= 0 else 0xFFFF
    return {"precision": precision} if precision != 0xFFFF else {}


#: type name -> parameters decoded from ``pg_attribute.atttypmod``
TYPMOD: dict[str, Callable[[int], dict[str, Any]]] = {
    "numeric": _numeric_typmod,
    "bpchar": _length_typmod,
    "varchar": _length_typmod,
    "bit": _bits_typmod,
    "varbit": _bits_typmod,
    "time": _precision_typmod,
    "timetz": _precision_typmod,
    "timestamp": _precision_typmod,
    "timestamptz": _precision_typmod,
    "interval": _interval_typmod,
}


@dataclass(frozen=True, slots=True)
class PgType:
    """One row of ``pg_type`` as introspection needs it."""

    oid: int
    schema: str
    name: str
    typtype: str  # b base, d domain, e enum, c composite, r range, m multirange, p pseudo
    category: str  # A = array
    elem: int
    base: int  # domain's base type
    base_typmod: int
    labels: tuple[str, ...] = ()


def to_logical(t: PgType, typmod: int, native: str, resolve: Callable[[int, int], ColumnType]) -> ColumnType:
    """A column type from its ``pg_type`` row; ``resolve`` describes another type (domain bases, array
    elements). ``native`` is ``format_type()``: what a PostgreSQL target creates."""
    user = t.oid >= FIRST_USER_OID
    extra: list[tuple[str, str]] = [("typname", t.name), ("typtype", t.typtype)]
    if user:
        extra.append(("user_type", "1"))
    if t.typtype == "d":
        base = resolve(t.base, t.base_typmod if t.base_typmod >= 0 else typmod)
        domain = (("domain", f"{t.schema}.{t.name}"), ("user_type", "1"))
        return replace(base, native=native, extra=(*base.extra, *domain))
    if t.category == "A" and t.elem:
        element = resolve(t.elem, typmod)
        return ColumnType(L.ARRAY, element=element, native=native, engine=ENGINE, extra=tuple(extra))
    if t.typtype == "e":
        extra += [("type_schema", t.schema), ("type_name", t.name)]
        return ColumnType(L.ENUM, values=t.labels, native=native, engine=ENGINE, extra=tuple(extra))
    builtin = t.schema == "pg_catalog" or t.name in EXTENSION_TYPES
    logical = NATIVE_TO_LOGICAL.get(t.name) if builtin and t.typtype == "b" else None
    if logical is None:
        return ColumnType(L.DYNAMIC, native=native, engine=ENGINE, extra=tuple(extra))
    params: dict[str, Any] = dict(FIXED_PARAMS.get(t.name, {}))
    if t.name in TYPMOD:
        params.update(TYPMOD[t.name](typmod))
    if t.name == "varbit":
        extra.append(("varying", "1"))
    if t.name == "timetz":
        extra.append(("note", "time with time zone: values are aware datetime.time"))
    return ColumnType(logical, native=native, engine=ENGINE, extra=tuple(extra), **params)


def extra_value(t: ColumnType, key: str) -> str | None:
    for k, v in t.extra:
        if k == key:
            return v
    return None


# --------------------------------------------------------------------------- logical -> native
#: logical type -> PostgreSQL type for tables Conveyor creates (parameters added by ``to_native``)
LOGICAL_TO_NATIVE: dict[L, str] = {
    L.BOOLEAN: "boolean",
    L.INTEGER: "bigint",  # refined by INTEGER_TYPES
    L.DECIMAL: "numeric",
    L.FLOAT: "double precision",
    L.CHAR: "character",
    L.VARCHAR: "character varying",
    L.TEXT: "text",
    L.BINARY: "bytea",
    L.VARBINARY: "bytea",
    L.BLOB: "bytea",
    L.DATE: "date",
    L.TIME: "time",
    L.TIMESTAMP: "timestamp",
    L.TIMESTAMPTZ: "timestamp with time zone",
    L.INTERVAL: "interval",
    L.YEAR: "smallint",
    L.BIT: "bit",
    L.ENUM: "text",  # the values stay in the ColumnType; a CHECK comes with schema conversion
    L.SET: "text",
    L.JSON: "jsonb",
    L.UUID: "uuid",
    L.INET: "inet",
    L.CIDR: "cidr",
    L.MACADDR: "macaddr",
    L.MONEY: "numeric(19,2)",  # money's text depends on lc_monetary; numeric is exact everywhere
    L.ARRAY: "text[]",  # refined from the element
    L.DYNAMIC: "text",
}
#: smallest PostgreSQL integer type holding a range: (native, min, max)
INTEGER_TYPES: list[tuple[str, int, int]] = [
    ("smallint", -(2**15), 2**15 - 1),
    ("integer", -(2**31), 2**31 - 1),
    ("bigint", -(2**63), 2**63 - 1),
]
FLOAT_TYPES: dict[int, str] = {32: "real", 64: "double precision"}


def to_native(t: ColumnType) -> str:
    """The PostgreSQL type for a logical type; a PostgreSQL source keeps its own type."""
    if t.engine == ENGINE and t.native:
        return t.native
    lg = t.logical
    if lg is L.INTEGER:
        lo, hi = t.integer_range()
        for native, tmin, tmax in INTEGER_TYPES:
            if tmin <= lo and hi <= tmax:
                return native
        return f"numeric({len(str(hi))},0)"
    if lg is L.DECIMAL:
        if t.precision is not None and 0 < t.precision <= MAX_NUMERIC_PRECISION:
            return f"numeric({t.precision},{t.scale or 0})"
        return "numeric"
    if lg is L.FLOAT:
        return FLOAT_TYPES.get(t.bits or 64, "double precision")
    if lg in (L.CHAR, L.VARCHAR):
        if t.length is not None and 0 < t.length <= MAX_CHAR_LENGTH:
            return f"{LOGICAL_TO_NATIVE[lg]}({t.length})"
        return "text"
    if lg in (L.TIME, L.TIMESTAMP, L.TIMESTAMPTZ) and t.precision is not None:
        base = LOGICAL_TO_NATIVE[lg]
        p = min(max(t.precision, 0), MAX_TIME_PRECISION)
        return base.replace("timestamp", f"timestamp({p})") if "timestamp" in base else f"{base}({p})"
    if lg is L.BIT:
        varying = extra_value(t, "varying") == "1"
        base = "bit varying" if varying or t.length is None else "bit"
        return f"{base}({t.length})" if t.length else base
    if lg is L.ARRAY:
        return f"{to_native(t.element)}[]" if t.element is not None else LOGICAL_TO_NATIVE[lg]
    return LOGICAL_TO_NATIVE[lg]


# --------------------------------------------------------------------------- reading (source)
#: type name -> SQL that makes a column load canonical (``{}`` is the quoted column)
SELECT_CASTS: dict[str, str] = {
    "json": "{}::text",  # the text as stored: key order and duplicate keys kept
    "jsonb": "{}::text",
    "money": "{}::numeric",
    "interval": "{}::text",  # IntervalStyle postgres, see connect.SESSION
    "bit": "{}::text",
    "varbit": "{}::text",
    "inet": "abbrev({})",  # inet's own output (no /32 on host addresses); ::text would add it
    "cidr": "{}::text",
    "macaddr": "{}::text",
    "macaddr8": "{}::text",
    # xml's output, as COPY and logical replication give it: ::text would keep a version 1.0 declaration
    # (``<?xml version="1.0" encoding="UTF-8"?>``) that the output leaves out
    "xml": "textin(xml_out({}))",
    "char": "{}::text",
    "oid": "{}::int8",
    "citext": "{}::text",  # an extension type: the binary cursor has no loader for its oid
}
#: array element type name -> array cast (no per-element function: arrays of inet keep the /32)
ARRAY_CASTS: dict[str, str] = {
    "json": "text[]",
    "jsonb": "text[]",
    "money": "numeric[]",
    "interval": "text[]",
    "bit": "text[]",
    "varbit": "text[]",
    "inet": "text[]",
    "cidr": "text[]",
    "macaddr": "text[]",
    "macaddr8": "text[]",
    "xml": "text[]",
    "char": "text[]",
    "oid": "int8[]",
}


def select_expression(t: ColumnType, column: str) -> str:
    """How to select a column so psycopg loads its canonical value (``column`` is already quoted)."""
    typname = extra_value(t, "typname") or ""
    if t.logical is L.ARRAY:
        element = t.element
        etype = extra_value(element, "typname") if element is not None else None
        if element is None or etype is None:
            return f"{column}::text[]"
        if etype in ARRAY_CASTS:
            return f"{column}::{ARRAY_CASTS[etype]}"
        if element.logical in (L.ENUM, L.DYNAMIC) or extra_value(element, "domain"):
            # psycopg knows no loader for user types' arrays (a domain's array keeps the domain's oid)
            base = f"pg_catalog.{etype}" if element.logical not in (L.ENUM, L.DYNAMIC) else "text"
            return f"{column}::{base}[]"
        return column
    if typname in SELECT_CASTS:
        return SELECT_CASTS[typname].format(column)
    if t.logical in (L.ENUM, L.DYNAMIC):
        return f"{column}::text"
    return column


_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


_PG_EPOCH_DAYS = 10957  # 2000-01-01, in days since 1970-01-01
_DAY_MICROS = 86_400_000_000


def out_of_range_text(typname: str, data: bytes) -> str:
    """The PostgreSQL spelling of a binary date/time value Python cannot hold (``0044-03-15 BC``,
    ``10000-01-01 00:00:00+00``, ``infinity``, ``24:00:00``). It travels as that text: a target that
    keeps text (SQLite) keeps it as PostgreSQL wrote it, one that parses dates rejects the row by name
    rather than the whole read failing."""
    if typname == "date":
        days = int.from_bytes(data[:4], "big", signed=True)
        if days in (_INT32_MAX, -_INT32_MAX - 1):
            return "infinity" if days > 0 else "-infinity"
        return far_date_text(typname, days * _DAY_MICROS)
    micros = int.from_bytes(data[:8], "big", signed=True)
    if micros in (_INT64_MAX, -_INT64_MAX - 1):
        return "infinity" if micros > 0 else "-infinity"
    if typname in ("time", "timetz"):
        return "24:00:00"
    return far_date_text(typname, micros)


def far_date_text(typname: str, micros: int) -> str:
    """A date, timestamp or timestamptz (in UTC) ``micros`` from 2000-01-01, as PostgreSQL spells it in
    ISO style, whatever its year (Python's dates stop at 1..9999)."""
    days, rest = divmod(micros, _DAY_MICROS)
    year, month, day = _civil_from_days(days + _PG_EPOCH_DAYS)
    text = f"{year if year > 0 else 1 - year:04d}-{month:02d}-{day:02d}"
    if typname != "date":
        seconds, fraction = divmod(rest, 1_000_000)
        text += f" {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        text += f".{fraction:06d}".rstrip("0") if fraction else ""
        text += "+00" if typname == "timestamptz" else ""
    return text if year > 0 else text + " BC"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian date ``days`` after 1970-01-01; year 0 is 1 BC."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


def fallback_loader(typname: str, inner: Callable[[Any], Any]) -> type:
    """A binary loader that wraps psycopg's C loader and turns out-of-range values into text.

    Used only to re-decode a batch that failed: the fast path keeps psycopg's C loaders.
    """

    class OutOfRangeLoader(Loader):
        format = pq.Format.BINARY

        def load(self, data: Any) -> Any:
            try:
                return inner(data)
            except DataError:
                return out_of_range_text(typname, bytes(data))

    return OutOfRangeLoader


# --------------------------------------------------------------------------- writing (target)
class JsonbTextBinaryDumper(Dumper):
    """Canonical JSON text -> jsonb's binary form (a version byte and the text), for binary COPY.

    psycopg's own jsonb dumper would encode the str as a JSON string literal."""

    format = pq.Format.BINARY
    oid = 3802  # jsonb

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()


#: base type name -> (type whose binary dumper COPY uses, logical types whose canonical values it takes)
_STR = frozenset({L.CHAR, L.VARCHAR, L.TEXT, L.ENUM, L.SET, L.JSON, L.INTERVAL, L.BIT, L.INET, L.CIDR, L.MACADDR})
_INTS = frozenset({L.INTEGER, L.YEAR, L.BOOLEAN})
BINARY_COPY: dict[str, tuple[str, frozenset[L]]] = {
    "bool": ("bool", frozenset({L.BOOLEAN})),
    "int2": ("int2", _INTS),
    "int4": ("int4", _INTS),
    "int8": ("int8", _INTS),
    "numeric": ("numeric", frozenset({L.DECIMAL, L.MONEY, L.INTEGER, L.YEAR, L.FLOAT})),
    "float4": ("float4", frozenset({L.FLOAT, L.INTEGER})),
    "float8": ("float8", frozenset({L.FLOAT, L.INTEGER})),
    "text": ("text", _STR | {L.DYNAMIC}),
    "varchar": ("text", _STR | {L.DYNAMIC}),
    "bpchar": ("text", _STR | {L.DYNAMIC}),  # bpchar's binary form is its text
    "bytea": ("bytea", frozenset({L.BINARY, L.VARBINARY, L.BLOB})),
    "date": ("date", frozenset({L.DATE})),
    "time": ("time", frozenset({L.TIME})),
    "timestamp": ("timestamp", frozenset({L.TIMESTAMP})),
    "timestamptz": ("timestamptz", frozenset({L.TIMESTAMPTZ})),
    "uuid": ("uuid", frozenset({L.UUID})),
    "json": ("text", frozenset({L.JSON})),  # json's binary form is its text
    "jsonb": ("jsonb", frozenset({L.JSON})),  # JsonbTextBinaryDumper
}
#: array element type names psycopg dumps in binary from lists of canonical values
BINARY_ARRAY_ELEMENTS = frozenset(
    {"bool", "int2", "int4", "int8", "numeric", "float4", "float8", "text", "varchar", "bytea", "date", "time"}
    | {"timestamp", "timestamptz", "uuid"}
)


@dataclass(frozen=True, slots=True)
class TargetColumn:
    """A target column's type as the catalog says (the table may predate the task)."""

    name: str
    oid: int
    typname: str  # of the base type for domains
    typtype: str
    elem_typname: str | None


def binary_dumper_oids(targets: list[TargetColumn], sources: list[ColumnType]) -> list[int | str] | None:
    """The types to give binary COPY's ``set_types``, or None when a column needs text COPY."""
    types: list[int | str] = []
    for target, source in zip(targets, sources, strict=True):
        if target.typtype == "e":
            if source.logical not in _STR:
                return None
            types.append("text")  # an enum's binary form is its label
            continue
        if target.elem_typname is not None:
            if source.logical is not L.ARRAY or target.elem_typname not in BINARY_ARRAY_ELEMENTS:
                return None
            types.append(target.oid)
            continue
        entry = BINARY_COPY.get(target.typname)
        if entry is None or source.logical not in entry[1]:
            return None
        types.append(entry[0])
    return types


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(v: Any) -> str:
    return {str: "text", bytes: "binary value", float: "number", int: "integer", Decimal: "number"}.get(
        type(v), type(v).__name__
    )


#: encoder -> a check over a whole column of a batch (the values that are not None) that, when true,
#: proves the encoder would return every value unchanged; it runs at C speed (map, set, min, max), so
#: clean batches skip the per-value Python calls. Weak keys: integer encoders are made per column.
BATCH_CHECKS: weakref.WeakKeyDictionary[Encoder, Callable[[list[Any]], bool]] = weakref.WeakKeyDictionary()
_TZINFO = operator.attrgetter("tzinfo")


def _only(present: list[Any], *classes: type) -> bool:
    return set(map(type, present)) <= set(classes)


def _clean_text(present: list[Any]) -> bool:
    return _only(present, str) and not any(map(operator.contains, present, itertools.repeat("\x00")))


def present_values(rows: list[Any], index: int) -> list[Any]:
    """The values of one column of a batch that are not None (C-speed iterators only)."""
    return list(filter(functools.partial(operator.is_not, None), map(operator.itemgetter(index), rows)))


def _zero_date(v: Any) -> None:
    if isinstance(v, str) and v.startswith("0000-00-00"):
        raise RowRejected(f"MySQL zero date {v!r} has no PostgreSQL equivalent")


def _enc_text(v: Any) -> Any:
    if v.__class__ is str:
        if "\x00" in v:
            raise RowRejected("text contains a NUL byte, which PostgreSQL cannot store")
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        raise RowRejected("a binary value cannot be stored in a text column")
    raise RowRejected(f"{_kind(v)} {_show(v)} is not text")


def _enc_dynamic_text(v: Any) -> Any:
    """DYNAMIC (SQLite's untyped columns) -> text: numbers keep their SQLite spelling."""
    if v.__class__ is int or v.__class__ is Decimal:
        return str(v)
    if v.__class__ is float:
        return repr(v)
    return _enc_text(v)


def _enc_integer(lo: int, hi: int, native: str) -> Encoder:
    def encode(v: Any) -> Any:
        if v.__class__ is not int:
            if v.__class__ is bool:
                return int(v)
            whole = isinstance(v, float) and v.is_integer()
            whole = whole or (isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value())
            if not whole:
                raise RowRejected(f"{_kind(v)} {_show(v)} is not an integer")
            v = int(v)
        if not lo <= v <= hi:
            raise RowRejected(f"integer {v} is outside the range of PostgreSQL {native}")
        return v

    def ints_in_range(present: list[Any]) -> bool:
        return _only(present, int) and (not present or (lo <= min(present) and max(present) <= hi))

    BATCH_CHECKS[encode] = ints_in_range
    return encode


def _enc_numeric(precision: int | None, scale: int | None) -> Encoder:
    def encode(v: Any) -> Any:
        if v.__class__ is float:
            v = Decimal(repr(v)) if math.isfinite(v) else Decimal(str(v))
        elif v.__class__ is int:
            v = Decimal(v)
        elif v.__class__ is not Decimal:
            raise RowRejected(f"{_kind(v)} {_show(v)} is not a number")
        if scale is not None and v.is_finite():
            _, digits, exponent = v.as_tuple()
            excess = -int(exponent) - scale
            if excess > 0 and any(digits[-excess:]):
                raise RowRejected(f"{v} has more than {scale} decimals; numeric({precision},{scale}) would round it")
        return v

    return encode


def _enc_float(single: bool) -> Encoder:
    limit = 3.4028234663852886e38

    def encode(v: Any) -> Any:
        if v.__class__ is not float:
            if v.__class__ is int or v.__class__ is Decimal:
                v = float(v)
            else:
                raise RowRejected(f"{_kind(v)} {_show(v)} is not a number")
        if single and math.isfinite(v) and abs(v) > limit:
            raise RowRejected(f"{v!r} is outside the range of PostgreSQL real")
        return v

    return encode


def _enc_bool(v: Any) -> Any:
    if v.__class__ is bool:
        return v
    if v.__class__ is int and v in (0, 1):
        return bool(v)
    raise RowRejected(f"{_kind(v)} {_show(v)} is not a boolean")


def _enc_bytes(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | memoryview):
        return v
    raise RowRejected(f"{_kind(v)} {_show(v)} is not a binary value")


def _enc_date(v: Any) -> Any:
    if v.__class__ is date:
        return v
    _zero_date(v)
    raise RowRejected(f"{_kind(v)} {_show(v)} is not a date")


def _enc_timestamp(v: Any) -> Any:
    if v.__class__ is datetime:
        if v.tzinfo is None:
            return v
        raise RowRejected(f"{v.isoformat()} has a time zone; the column is timestamp without time zone")
    _zero_date(v)
    raise RowRejected(f"{_kind(v)} {_show(v)} is not a timestamp")


def _enc_timestamptz(v: Any) -> Any:
    if v.__class__ is datetime:
        if v.tzinfo is not None:
            return v
        raise RowRejected(f"{v.isoformat()} has no time zone; the column is timestamp with time zone")
    _zero_date(v)
    raise RowRejected(f"{_kind(v)} {_show(v)} is not a timestamp")


_DAY = timedelta(days=1)


def _enc_time(v: Any) -> Any:
    if v.__class__ is time:
        return v
    if isinstance(v, timedelta):  # MySQL TIME is a duration: -838:59:59 .. 838:59:59
        if timedelta(0) <= v < _DAY:
            return (datetime.min + v).time()
        # 24:00:00 is PostgreSQL's too, but Python's time (how it is written) stops before it
        raise RowRejected(f"MySQL TIME {duration_text(v)} is outside 00:00:00..23:59:59.999999")
    raise RowRejected(f"{_kind(v)} {_show(v)} is not a time")


def _enc_uuid(v: Any) -> Any:
    if v.__class__ is uuid.UUID:
        return v
    if isinstance(v, bytes) and len(v) == 16:
        return uuid.UUID(bytes=v)
    raise RowRejected(f"{_kind(v)} {_show(v)} is not a UUID")


def _enc_str(v: Any) -> Any:
    """Types that travel as their text (inet, bit, interval, ...): the server parses and checks them."""
    if v.__class__ is str:
        return _enc_text(v)
    if isinstance(v, timedelta):
        return v
    raise RowRejected(f"{_kind(v)} {_show(v)} is not text")


#: SQL spellings -> pg_type names
SQL_NAMES: dict[str, str] = {
    "smallint": "int2",
    "integer": "int4",
    "int": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "character": "bpchar",
    "char": "bpchar",
    "character varying": "varchar",
    "decimal": "numeric",
    "bit varying": "varbit",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}


def parse_native(native: str) -> tuple[str, list[int], bool]:
    """``numeric(10,2)`` -> ("numeric", [10, 2], False); ``time(3) with time zone`` -> ("timetz", [3], False)."""
    s = native.strip().lower()
    is_array = s.endswith("]")
    s = _ARRAY_SUFFIX.sub("", s).strip()
    m = _ARGS.search(s)
    args = [int(a) for a in m.group(1).split(",") if a.strip().lstrip("-").isdigit()] if m else []
    name = " ".join(_ARGS.sub(" ", s).split())
    return SQL_NAMES.get(name, name), args, is_array


_ARRAY_SUFFIX = re.compile(r"(\[\d*\])+$")
_ARGS = re.compile(r"\(([^)]*)\)")


def encoder(t: ColumnType, native: str) -> Encoder | None:
    """Canonical value -> the value psycopg writes; None where the value already suits (cheap rows)."""
    typname, args, is_array = parse_native(native)
    dynamic = t.engine in DYNAMIC_ENGINES
    lg = t.logical
    if is_array:
        return None
    if typname in ("text", "varchar", "bpchar", "json", "jsonb", "xml", "citext"):
        return _enc_dynamic_text if lg is L.DYNAMIC else _enc_text
    if typname in ("int2", "int4", "int8"):
        bits = {"int2": 16, "int4": 32, "int8": 64}[typname]
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if not dynamic and lg in (L.INTEGER, L.YEAR):
            slo, shi = t.integer_range() if lg is L.INTEGER else (0, 9999)
            if lo <= slo and shi <= hi:
                return None
        return _enc_integer(lo, hi, native)
    if typname == "numeric":
        precision = args[0] if args else None
        scale = args[1] if len(args) > 1 else (0 if args else None)
        if not dynamic and lg in (L.DECIMAL, L.MONEY) and (precision is None or (t.scale or 0) <= (scale or 0)):
            return None
        if not dynamic and lg is L.INTEGER:
            lo, hi = t.integer_range()
            if precision is None or precision - (scale or 0) >= len(str(max(-lo, hi))):
                return None  # psycopg's numeric dumper takes ints, and every value fits
        return _enc_numeric(precision, scale)
    if typname in ("float4", "float8"):
        if not dynamic and lg is L.FLOAT and (typname == "float8" or (t.bits or 64) <= 32):
            return None
        return _enc_float(typname == "float4")
    if typname == "bool":
        return _enc_bool if dynamic or lg is not L.BOOLEAN else None
    if typname == "bytea":
        return _enc_bytes if dynamic or lg not in (L.BINARY, L.VARBINARY, L.BLOB) else None
    if typname == "uuid":
        return _enc_uuid if dynamic or lg is not L.UUID else None
    return _TEMPORAL.get(typname, _enc_str if dynamic else None)


#: always checked: sources hand over strings for values they cannot represent (MySQL zero dates)
_TEMPORAL: dict[str, Encoder] = {
    "date": _enc_date,
    "timestamp": _enc_timestamp,
    "timestamptz": _enc_timestamptz,
    "time": _enc_time,
}


BATCH_CHECKS.update(
    {
        _enc_text: _clean_text,
        _enc_dynamic_text: _clean_text,
        _enc_str: _clean_text,
        _enc_bool: lambda present: _only(present, bool),
        _enc_bytes: lambda present: _only(present, bytes),
        _enc_uuid: lambda present: _only(present, uuid.UUID),
        _enc_date: lambda present: _only(present, date),
        _enc_time: lambda present: _only(present, time),
        _enc_timestamp: lambda present: _only(present, datetime) and not any(map(_TZINFO, present)),
        _enc_timestamptz: lambda present: _only(present, datetime) and all(map(_TZINFO, present)),
    }
)


def copy_format(table: Table) -> str:
    """COPY format for a PostgreSQL-to-PostgreSQL pass-through: binary unless a value's binary form
    names a type by OID that differs between servers (arrays of user types, composites)."""
    for column in table.columns:
        t = column.type
        if t.logical is L.ARRAY and t.element is not None and extra_value(t.element, "user_type"):
            return "text"
        if extra_value(t, "typtype") == "c":
            return "text"
    return "binary"
