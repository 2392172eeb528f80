"""LogicalType: the hub of the type system.

Every engine maps its native types to a ``ColumnType`` (a LogicalType plus its parameters) and
back; no engine knows another engine's types. Values travel between engines in one canonical
Python representation per logical type (see ``CANONICAL_PYTHON``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum


class LogicalType(StrEnum):
    BOOLEAN = "boolean"
    INTEGER = "integer"  # bits (8, 16, 24, 32, 64) and unsigned
    DECIMAL = "decimal"  # precision/scale; both None = unconstrained
    FLOAT = "float"  # bits 32 or 64
    CHAR = "char"  # fixed length
    VARCHAR = "varchar"  # length limit in characters
    TEXT = "text"
    BINARY = "binary"  # fixed length bytes
    VARBINARY = "varbinary"  # length limit in bytes
    BLOB = "blob"
    DATE = "date"
    TIME = "time"  # precision = fractional second digits
    TIMESTAMP = "timestamp"  # without time zone
    TIMESTAMPTZ = "timestamptz"  # an instant; canonical value is an aware datetime in UTC
    INTERVAL = "interval"
    YEAR = "year"
    BIT = "bit"  # length in bits
    ENUM = "enum"  # values
    SET = "set"  # values
    JSON = "json"
    UUID = "uuid"
    INET = "inet"
    CIDR = "cidr"
    MACADDR = "macaddr"
    MONEY = "money"
    ARRAY = "array"  # element
    DYNAMIC = "dynamic"  # SQLite column without a declared type: any value


#: Large objects (DMS's LOBs: its CLOB, NCLOB and BLOB types), which the LOB settings govern. Every engine
#: maps its LOB types here: PostgreSQL text, citext, xml (TEXT), bytea (BLOB), json, jsonb (JSON); MySQL /
#: MariaDB's TEXT and BLOB families (TEXT, BLOB) and JSON; SQLite's TEXT / CLOB (TEXT) and BLOB.
LOB_TYPES = frozenset({LogicalType.TEXT, LogicalType.BLOB, LogicalType.JSON})

#: The Python type each logical type's values have on their way between engines.
CANONICAL_PYTHON: dict[LogicalType, str] = {
    LogicalType.BOOLEAN: "bool",
    LogicalType.INTEGER: "int",
    LogicalType.DECIMAL: "decimal.Decimal (NaN and ±Infinity where the source has them)",
    LogicalType.FLOAT: "float",
    LogicalType.CHAR: "str",
    LogicalType.VARCHAR: "str",
    LogicalType.TEXT: "str",
    LogicalType.BINARY: "bytes",
    LogicalType.VARBINARY: "bytes",
    LogicalType.BLOB: "bytes",
    LogicalType.DATE: "datetime.date",
    LogicalType.TIME: "datetime.time",
    LogicalType.TIMESTAMP: "datetime.datetime (naive)",
    LogicalType.TIMESTAMPTZ: "datetime.datetime (aware, UTC)",
    LogicalType.INTERVAL: "str (PostgreSQL interval text)",
    LogicalType.YEAR: "int",
    LogicalType.BIT: "str of '0'/'1' digits",
    LogicalType.ENUM: "str",
    LogicalType.SET: "str (comma-separated members)",
    LogicalType.JSON: "str (the JSON text)",
    LogicalType.UUID: "uuid.UUID",
    LogicalType.INET: "str",
    LogicalType.CIDR: "str",
    LogicalType.MACADDR: "str",
    LogicalType.MONEY: "decimal.Decimal",
    LogicalType.ARRAY: "list of the element's canonical values",
    LogicalType.DYNAMIC: "int, float, str or bytes",
}


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A logical type with its parameters, plus the source's own spelling.

    ``native`` and ``engine`` let a homogeneous migration keep the exact source type.
    """

    logical: LogicalType
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    bits: int | None = None
    unsigned: bool = False
    values: tuple[str, ...] = ()
    element: ColumnType | None = None
    native: str = ""
    engine: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())

    def describe(self) -> str:
        """Short human form, e.g. ``decimal(12,2)`` or ``integer(64, unsigned)``."""
        parts: list[str] = []
        if self.length is not None:
            parts.append(str(self.length))
        if self.precision is not None:
            parts.append(str(self.precision))
            if self.scale is not None:
                parts.append(str(self.scale))
        if self.bits is not None:
            parts.append(f"{self.bits} bits")
        if self.unsigned:
            parts.append("unsigned")
        if self.element is not None:
            parts.append(self.element.describe())
        return f"{self.logical.value}({', '.join(parts)})" if parts else self.logical.value

    @property
    def lob(self) -> bool:
        """Whether values of this type are LOBs (``LOB_TYPES``)."""
        return self.logical in LOB_TYPES

    def integer_range(self) -> tuple[int, int]:
        """Inclusive range of an INTEGER (or YEAR) column."""
        bits = self.bits or 64
        if self.unsigned:
            return 0, 2**bits - 1
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def duration_text(value: timedelta, fraction: bool = False) -> str:
    """A MySQL TIME (a duration) as MySQL writes it: ``-838:59:59``, ``24:00:00.5`` (``fraction``: always
    six digits); Python's own ``-35 days, 1:00:01`` means nothing to a reader of SQL."""
    micros = value // timedelta(microseconds=1)
    sign, micros = ("-" if micros < 0 else ""), abs(micros)
    seconds, us = divmod(micros, 1_000_000)
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + f".{us:06d}" if fraction else text + (f".{us:06d}".rstrip("0") if us else "")
