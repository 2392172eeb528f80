"""SQLite declared types <-> LogicalType, and value conversions.

SQLite stores values dynamically; the declared type only gives a column an *affinity*. Declared
types are kept meaningful (``DECIMAL(12,2)``, ``DATETIME``) so other tools read them, but a type
whose values are digit strings would be mangled by NUMERIC affinity (``'0101'`` -> 101), so those
are declared with a name containing TEXT (``DECIMAL_TEXT``, ``BIT_TEXT``, ``JSON_TEXT``), which
gives TEXT affinity and keeps every digit.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from conveyor.endpoints.base import Encoder
from conveyor.errors import RowRejected
from conveyor.model.types import ColumnType, duration_text
from conveyor.model.types import LogicalType as L

ENGINE = "sqlite"
MAX_EXACT_REAL_DIGITS = 15

#: declared type name (upper case, without parameters) -> logical type
NATIVE_TO_LOGICAL: dict[str, L] = {
    "BOOLEAN": L.BOOLEAN,
    "BOOL": L.BOOLEAN,
    "TINYINT": L.INTEGER,
    "SMALLINT": L.INTEGER,
    "MEDIUMINT": L.INTEGER,
    "INT": L.INTEGER,
    "INTEGER": L.INTEGER,
    "BIGINT": L.INTEGER,
    "INT2": L.INTEGER,
    "INT8": L.INTEGER,
    "UNSIGNED BIG INT": L.INTEGER,
    "DECIMAL": L.DECIMAL,
    "NUMERIC": L.DECIMAL,
    "DECIMAL_TEXT": L.DECIMAL,
    "REAL": L.FLOAT,
    "DOUBLE": L.FLOAT,
    "DOUBLE PRECISION": L.FLOAT,
    "FLOAT": L.FLOAT,
    "CHAR": L.CHAR,
    "CHARACTER": L.CHAR,
    "NCHAR": L.CHAR,
    "NATIVE CHARACTER": L.CHAR,
    "VARCHAR": L.VARCHAR,
    "NVARCHAR": L.VARCHAR,
    "VARYING CHARACTER": L.VARCHAR,
    "TEXT": L.TEXT,
    "CLOB": L.TEXT,
    "BLOB": L.BLOB,
    "DATE": L.DATE,
    "TIME": L.TIME,
    "DATETIME": L.TIMESTAMP,
    "TIMESTAMP": L.TIMESTAMP,
    "TIMESTAMPTZ": L.TIMESTAMPTZ,
    "TIMESTAMP WITH TIME ZONE": L.TIMESTAMPTZ,
    "INTERVAL": L.INTERVAL,
    "YEAR": L.YEAR,
    "BIT_TEXT": L.BIT,
    "JSON": L.JSON,
    "JSON_TEXT": L.JSON,
    "UUID": L.UUID,
    "INET": L.INET,
    "CIDR": L.CIDR,
    "MACADDR": L.MACADDR,
}
_INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "INT2": 16, "MEDIUMINT": 24}

#: logical type -> declared type for tables Conveyor creates
LOGICAL_TO_NATIVE: dict[L, str] = {
    L.BOOLEAN: "BOOLEAN",
    L.INTEGER: "INTEGER",
    L.DECIMAL: "DECIMAL",
    L.FLOAT: "REAL",
    L.CHAR: "CHAR",
    L.VARCHAR: "VARCHAR",
    L.TEXT: "TEXT",
    L.BINARY: "BLOB",
    L.VARBINARY: "BLOB",
    L.BLOB: "BLOB",
    L.DATE: "DATE",
    L.TIME: "TIME",
    L.TIMESTAMP: "DATETIME",
    L.TIMESTAMPTZ: "TIMESTAMPTZ",
    L.INTERVAL: "INTERVAL",
    L.YEAR: "YEAR",
    L.BIT: "BIT_TEXT",
    L.ENUM: "TEXT",
    L.SET: "TEXT",
    L.JSON: "JSON_TEXT",
    L.UUID: "UUID",
    L.INET: "INET",
    L.CIDR: "CIDR",
    L.MACADDR: "MACADDR",
    L.MONEY: "DECIMAL_TEXT",
    L.ARRAY: "JSON_TEXT",
    L.DYNAMIC: "",
}

_DECLARED = re.compile(r"^\s*([A-Za-z_][A-Za-z_ ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")


def to_logical(declared: str) -> ColumnType:
    """A declared column type -> ColumnType, falling back on SQLite's affinity rules."""
    match = _DECLARED.match(declared or "")
    name = (match.group(1) if match else declared).upper().strip()
    p1 = int(match.group(2)) if match and match.group(2) else None
    p2 = int(match.group(3)) if match and match.group(3) else None
    logical = NATIVE_TO_LOGICAL.get(name)
    if logical is None:
        logical = _affinity(name)
    kw: dict[str, Any] = {}
    if logical is L.INTEGER:
        kw["bits"] = _INT_BITS.get(name, 64)
        kw["unsigned"] = name == "UNSIGNED BIG INT"
    elif logical is L.DECIMAL:
        kw["precision"], kw["scale"] = p1, (p2 if p2 is not None else (0 if p1 is not None else None))
    elif logical in (L.CHAR, L.VARCHAR):
        kw["length"] = p1
    elif logical is L.FLOAT:
        kw["bits"] = 64
    elif logical is L.BIT:
        kw["length"] = p1
    return ColumnType(logical, native=declared, engine=ENGINE, **kw)


def _affinity(name: str) -> L:
    if not name:
        return L.DYNAMIC
    if "INT" in name:
        return L.INTEGER
    if any(s in name for s in ("CHAR", "CLOB", "TEXT")):
        return L.TEXT
    if "BLOB" in name:
        return L.BLOB
    if any(s in name for s in ("REAL", "FLOA", "DOUB")):
        return L.FLOAT
    return L.DYNAMIC


def to_native(t: ColumnType) -> str:
    if t.engine == ENGINE and t.native:
        return t.native
    if t.logical is L.INTEGER and t.unsigned and (t.bits or 64) >= 64:
        return "DECIMAL_TEXT(20,0)"  # above SQLite's signed 64-bit range
    if t.logical is L.DECIMAL:
        if t.precision is not None and t.precision <= MAX_EXACT_REAL_DIGITS:
            return f"DECIMAL({t.precision},{t.scale or 0})"
        return f"DECIMAL_TEXT({t.precision},{t.scale or 0})" if t.precision is not None else "DECIMAL_TEXT"
    base = LOGICAL_TO_NATIVE[t.logical]
    if t.logical in (L.CHAR, L.VARCHAR, L.BIT) and t.length:
        return f"{base}({t.length})"
    return base


# --------------------------------------------------------------------------- decoding (source)
def _decimal(v: Any) -> Any:
    if isinstance(v, float):
        return Decimal(repr(v)) if math.isfinite(v) else Decimal(str(v))
    if isinstance(v, int | str):
        try:
            return Decimal(v)
        except InvalidOperation:
            return v
    return v


def _parsed(parse: Any) -> Any:
    def decode(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return parse(v)
            except ValueError:
                return v
        return v

    return decode


def _timestamptz(v: str) -> datetime:
    d = datetime.fromisoformat(v)
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).astimezone(UTC)


def _timestamp(v: str) -> datetime:
    d = datetime.fromisoformat(v)
    if d.tzinfo is not None:
        raise ValueError("has a time zone")
    return d


def _uuid(v: Any) -> Any:
    if isinstance(v, bytes) and len(v) == 16:
        return uuid.UUID(bytes=v)
    if isinstance(v, str):
        try:
            return uuid.UUID(v)
        except ValueError:
            return v
    return v


def _boolean(v: Any) -> Any:
    return bool(v) if isinstance(v, int) and v in (0, 1) else v


def _float(v: Any) -> Any:
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def decoder(t: ColumnType) -> Any:
    """SQLite value -> canonical value; values that do not fit the declared type pass unchanged,
    so the target (or its encoder) rejects them by name instead of Conveyor guessing."""
    lg = t.logical
    if lg is L.BOOLEAN:
        return _boolean
    if lg is L.DECIMAL or lg is L.MONEY:
        return _decimal
    if lg is L.FLOAT:
        return _float
    if lg is L.DATE:
        return _parsed(date.fromisoformat)
    if lg is L.TIME:
        return _parsed(time.fromisoformat)
    if lg is L.TIMESTAMP:
        return _parsed(_timestamp)
    if lg is L.TIMESTAMPTZ:
        return _parsed(_timestamptz)
    if lg is L.UUID:
        return _uuid
    return None


# --------------------------------------------------------------------------- encoding (target)
def _enc_float(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            raise RowRejected("NaN cannot be stored in SQLite (it would become NULL)")
        if v == 0.0 and math.copysign(1.0, v) < 0:
            raise RowRejected("-0.0 cannot be stored in SQLite (it would become 0.0)")
    return v


def _enc_decimal(v: Any) -> Any:
    return str(v) if isinstance(v, Decimal) else v


def _enc_int(v: Any) -> Any:
    if isinstance(v, int) and not -(2**63) <= v < 2**63:
        raise RowRejected(f"integer {v} is outside SQLite's 64-bit range")
    return v


def _enc_any(v: Any) -> Any:
    """Non-SQLite Python values (dates, UUIDs, lists, Decimals) as the text SQLite keeps."""
    if isinstance(v, timedelta):  # a MySQL TIME outside 00:00..24:00 (canonical TIME is datetime.time)
        raise RowRejected(f"TIME value {duration_text(v)} is outside 00:00:00..23:59:59.999999")
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return _decimal_text(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, list | dict):
        return json.dumps(v, default=str, ensure_ascii=False)
    if isinstance(v, float):
        return _enc_float(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return _enc_int(v)
    return v


def _decimal_text(v: Decimal | int) -> str:
    """An exact number as DECIMAL_TEXT keeps it: positional notation always (``str`` writes ``0E-20`` for a
    zero of numeric(40,20), ``1E-30`` for a small one, next to ``0.10000000000000000000``)."""
    return format(v, "f") if isinstance(v, Decimal) else str(v)


def encoder(t: ColumnType, native: str) -> Encoder | None:
    upper = native.upper()
    if "DECIMAL_TEXT" in upper:
        return lambda v: _decimal_text(v) if isinstance(v, Decimal | int) else _enc_any(v)
    lg = t.logical
    if lg is L.INTEGER or lg is L.YEAR:
        return _enc_int
    if lg is L.FLOAT:
        return _enc_float
    if lg is L.DECIMAL or lg is L.MONEY:
        return _enc_decimal
    if lg in (L.BOOLEAN, L.TEXT, L.VARCHAR, L.CHAR, L.BLOB, L.BINARY, L.VARBINARY, L.ENUM, L.SET):
        return None
    return _enc_any
