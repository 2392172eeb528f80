"""Values written in a table mapping (filter values, range boundaries, expression results) and
change-data-type conversions, to and from canonical values (``model.types.CANONICAL_PYTHON``).

DMS writes those values as strings ("2019-01-08", "100"); a column's type says what they mean.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from conveyor.model.types import ColumnType, LogicalType

L = LogicalType
_TEXT = {L.CHAR, L.VARCHAR, L.TEXT, L.ENUM, L.SET, L.JSON, L.INET, L.CIDR, L.MACADDR, L.INTERVAL, L.BIT}
_BYTES = {L.BINARY, L.VARBINARY, L.BLOB}
_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def text(value: Any) -> str:
    """A canonical value as text, the way SQL engines print it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.isoformat(" ")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def to_canonical(value: Any, ctype: ColumnType) -> Any:
    """``value`` (a string from the mapping, or another type's canonical value) as a canonical value
    of ``ctype``; ValueError says why it cannot be one."""
    if value is None:
        return None
    lg = ctype.logical
    if lg in _TEXT or (lg is L.DYNAMIC and isinstance(value, str)):
        return text(value)
    if lg in (L.INTEGER, L.YEAR):
        return _integer(value)
    if lg in (L.DECIMAL, L.MONEY):
        try:
            return value if isinstance(value, Decimal) else Decimal(text(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    if lg is L.FLOAT:
        return float(value) if isinstance(value, int | float | Decimal) else float(text(value))
    if lg is L.BOOLEAN:
        return _boolean(value)
    if lg is L.DATE:
        if isinstance(value, datetime):
            return value.date()
        return value if isinstance(value, date) else date.fromisoformat(text(value).strip()[:10])
    if lg is L.TIME:
        return value if isinstance(value, time) else time.fromisoformat(text(value).strip())
    if lg in (L.TIMESTAMP, L.TIMESTAMPTZ):
        at = value if isinstance(value, datetime) else _datetime(value)
        if lg is L.TIMESTAMPTZ:
            return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo is not None else at
    if lg is L.UUID:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(text(value).strip())
    if lg in _BYTES:
        return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else text(value).encode()
    if lg is L.DYNAMIC:
        return value
    raise ValueError(f"values of type {ctype.describe()} cannot be written in a table mapping")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        number = Decimal(text(value).strip()) if not isinstance(value, float | Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an integer") from None
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not an integer")
    return int(number)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return value != 0
    word = text(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _datetime(value: Any) -> datetime:
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(text(value).strip())


def sqlite_value(value: Any) -> Any:
    """A canonical value as SQLite holds it (expressions are evaluated by SQLite)."""
    if value is None or isinstance(value, int | float | str | bytes):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return text(value)
