"""The canonical text of a value, per kind of column, and the row hash built from it.

Both sides of a comparison turn every value into the same text for the same logical value (the
engines compute it in SQL, see ``dialects``; SQLite and JSON values are finished here in Python), so a
row hashes alike on every engine. The kind of a column comes from its source type (the plan's intent);
each side computes that kind's text from its own column type. ``docs/validation.md`` lists the forms.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from conveyor.model.types import ColumnType, duration_text
from conveyor.model.types import LogicalType as L

#: significant digits floats are compared at (IEEE double: DBL_DIG; single: FLT_DIG)
FLOAT64_DIGITS = 15
FLOAT32_DIGITS = 6


class Kind(StrEnum):
    BOOL = "bool"
    INT = "int"
    DECIMAL = "decimal"
    FLOAT64 = "float64"
    FLOAT32 = "float32"
    CHAR = "char"  # trailing spaces are padding, not data
    TEXT = "text"
    BINARY = "binary"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    JSON = "json"
    UUID = "uuid"


_KINDS: dict[L, Kind] = {
    L.BOOLEAN: Kind.BOOL,
    L.INTEGER: Kind.INT,
    L.YEAR: Kind.INT,
    L.DECIMAL: Kind.DECIMAL,
    L.MONEY: Kind.DECIMAL,
    L.CHAR: Kind.CHAR,
    L.BINARY: Kind.BINARY,
    L.VARBINARY: Kind.BINARY,
    L.BLOB: Kind.BINARY,
    L.DATE: Kind.DATE,
    L.TIME: Kind.TIME,
    L.TIMESTAMP: Kind.TIMESTAMP,
    L.TIMESTAMPTZ: Kind.TIMESTAMPTZ,
    L.JSON: Kind.JSON,
    L.ARRAY: Kind.JSON,
    L.UUID: Kind.UUID,
}


def column_kind(source: ColumnType, target: ColumnType) -> Kind:
    """How a source column and its target column are compared (the source's type is the intent)."""
    if source.logical is L.FLOAT:
        return Kind.FLOAT32 if 32 in (source.bits, target.bits) else Kind.FLOAT64
    return _KINDS.get(source.logical, Kind.TEXT)


def float_digits(kind: Kind) -> int:
    return FLOAT32_DIGITS if kind is Kind.FLOAT32 else FLOAT64_DIGITS


# --------------------------------------------------------------------------- values -> text
def text(kind: Kind, value: Any) -> str | None:
    """The canonical text of a canonical Python value (or of a SQLite value its decoder let pass)."""
    if value is None:
        return None
    match kind:
        case Kind.BOOL:
            return "1" if value else "0"
        case Kind.INT:
            return str(int(value))
        case Kind.DECIMAL:
            return decimal_text(value)
        case Kind.FLOAT64 | Kind.FLOAT32:
            return float_text(float(value), float_digits(kind))
        case Kind.CHAR:
            return str(value).rstrip(" ")
        case Kind.BINARY:
            return bytes(value).hex() if isinstance(value, bytes | bytearray | memoryview) else str(value)
        case Kind.DATE:
            return value.isoformat() if isinstance(value, date) else str(value)
        case Kind.TIME:
            return time_text(value)
        case Kind.TIMESTAMP | Kind.TIMESTAMPTZ:
            return timestamp_text(value) if isinstance(value, datetime) else str(value)
        case Kind.JSON:
            return json_text(value)
        case Kind.UUID:
            return str(value).lower() if isinstance(value, uuid.UUID | str) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def decimal_text(value: Any) -> str:
    """Exact decimal without trailing zeros: ``12.50`` and ``12.5`` are ``12.5``; ``100.00`` is ``100``."""
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return str(value)
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "Infinity" if d > 0 else "-Infinity"
    out = format(d.normalize(), "f")
    return "0" if out in ("-0", "0") else out


def float_text(x: float, digits: int) -> str:
    """``digits`` significant digits as ``<integer mantissa>e<exponent>``, by the same IEEE arithmetic
    the engines run (``dialects``): e = floor(log10|x|), mantissa = round-half-even(x * 10^(digits-1-e))."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    e = math.floor(math.log10(abs(x)))
    return f"{round(x * 10.0 ** (digits - 1 - e))}e{e}"


def time_text(value: Any) -> str:
    if isinstance(value, time):
        return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    if isinstance(value, timedelta):  # MySQL TIME outside one day
        return duration_text(value, fraction=True)
    return str(value)


def timestamp_text(value: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff``; an aware value in UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def json_text(value: Any) -> str:
    """JSON by meaning: keys sorted, no insignificant space, numbers as exact decimals (``1.0`` = ``1``)."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_float=Decimal, parse_int=Decimal)
        except ValueError:
            return value  # not JSON: compared as text
    return _json(value)


def _json(doc: Any) -> str:
    if isinstance(doc, dict):
        items = sorted((str(k), v) for k, v in doc.items())
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _json(v) for k, v in items) + "}"
    if isinstance(doc, list | tuple):
        return "[" + ",".join(_json(v) for v in doc) + "]"
    if isinstance(doc, bool) or doc is None:
        return json.dumps(doc)
    if isinstance(doc, int | float | Decimal):
        return decimal_text(doc)
    if isinstance(doc, str):
        return json.dumps(doc, ensure_ascii=False)
    return json.dumps(str(doc), ensure_ascii=False)


# --------------------------------------------------------------------------- rows -> hash
def row_text(texts: Sequence[str | None], delimited: Sequence[bool] = ()) -> str:
    """Each value as ``<length>:<text>`` (the length in UTF-8 bytes: the engines read it from their
    values' headers, where counting characters scans the text), NULL as ``-``; a value of a ``delimited``
    column (its text never holds ``,``, is never empty nor ``~``: numbers, dates, times) as ``<text>,``,
    NULL as ``~,``. Read from the left, the columns' flags known, every token ends in one place only, so
    NULL differs from '' and no two rows join into the same text; the engines build the same string in SQL
    (the delimited form without the length is cheaper for them)."""
    flags = delimited or (False,) * len(texts)
    return "".join(
        ("~," if t is None else f"{t},") if d else ("-" if t is None else f"{len(t.encode())}:{t}")
        for t, d in zip(texts, flags, strict=True)
    )


def hash60(row: str) -> int:
    """The first 60 bits of the SHA-256 of the UTF-8 text: positive in every engine's 64-bit integers, so
    a chunk's checksum is an exact SUM that does not depend on row order (SHA-256: MariaDB computes it
    about 4x faster than MD5)."""
    return int(hashlib.sha256(row.encode("utf-8")).hexdigest()[:15], 16)
