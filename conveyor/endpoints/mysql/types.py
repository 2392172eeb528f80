"""MySQL / MariaDB column types <-> LogicalType, and value conversions, as data tables.

Reading (MySQL source -> canonical values, ``model.types.CANONICAL_PYTHON``): ``DECODE`` holds one
Python expression per logical type over a value's text-protocol bytes ``x``, which
``protocol.RowParser`` inlines into its row parser. A value without a canonical form is left as
the driver gives it, so the target's encoder rejects it by name rather than Conveyor guessing:
zero dates stay the text ``'0000-00-00'``, a TIME outside 00:00..24:00 stays a ``timedelta``.

Writing (canonical values -> MySQL target): ``to_native`` picks the column type; ``encoder``
returns a function that passes a value, converts it without loss, or raises ``RowRejected``, and
is None when canonical values already suit (to keep the per-row path cheap).

Choices worth knowing:

* ``tinyint(1)`` stays INTEGER (8 bits): MySQL's BOOLEAN is tinyint(1) and may hold 2 or -1.
  BOOLEAN from other engines is written as tinyint(1).
* ``timestamp`` columns are TIMESTAMPTZ (instants, read in a UTC session as aware UTC datetimes);
  ``datetime`` is TIMESTAMP (no zone). TIMESTAMPTZ is written as ``datetime(p)`` holding UTC:
  MySQL's TIMESTAMP only spans 1970-2038.
* MariaDB's JSON is longtext with a ``json_valid()`` check; the introspector reports it as JSON.
* A DECIMAL beyond decimal(65,30), or unconstrained (PostgreSQL's numeric), is written as ASCII
  text with every digit (``varchar(n)`` or ``longtext``): decimal(65,30) would round or reject values.
* FLOAT columns are read as ``col * 1e0``: the text protocol prints a FLOAT with 6 significant
  digits, a double exactly. MySQL and MariaDB store -0.0 as 0, so -0.0 is rejected, not changed.
* BIT(n) values are '0101' text; a PostgreSQL varbit, or a BIT longer than 64, is written as ASCII text.
* Geometry (and other types without a logical equivalent) are DYNAMIC: bytes in MySQL's internal
  format; copied exactly to MySQL, reported for other targets.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Any, NoReturn

from pymysql.converters import convert_timedelta

from conveyor.endpoints.base import Encoder
from conveyor.endpoints.mysql.connect import quote_literal
from conveyor.errors import RowRejected
from conveyor.model.types import ColumnType, duration_text
from conveyor.model.types import LogicalType as L

ENGINE = "mysql"
#: engines whose canonical values always have their column's Python type (SQLite's do not)
TYPED_ENGINES = frozenset({"postgresql", "mysql"})

#: type name -> logical type
NATIVE_TO_LOGICAL: dict[str, L] = {
    "tinyint": L.INTEGER,
    "smallint": L.INTEGER,
    "mediumint": L.INTEGER,
    "int": L.INTEGER,
    "integer": L.INTEGER,
    "bigint": L.INTEGER,
    "decimal": L.DECIMAL,
    "numeric": L.DECIMAL,
    "dec": L.DECIMAL,
    "fixed": L.DECIMAL,
    "float": L.FLOAT,
    "double": L.FLOAT,
    "double precision": L.FLOAT,
    "real": L.FLOAT,
    "bit": L.BIT,
    "bool": L.INTEGER,
    "boolean": L.INTEGER,
    "char": L.CHAR,
    "varchar": L.VARCHAR,
    "tinytext": L.TEXT,
    "text": L.TEXT,
    "mediumtext": L.TEXT,
    "longtext": L.TEXT,
    "binary": L.BINARY,
    "varbinary": L.VARBINARY,
    "tinyblob": L.BLOB,
    "blob": L.BLOB,
    "mediumblob": L.BLOB,
    "longblob": L.BLOB,
    "date": L.DATE,
    "time": L.TIME,
    "datetime": L.TIMESTAMP,
    "timestamp": L.TIMESTAMPTZ,
    "year": L.YEAR,
    "enum": L.ENUM,
    "set": L.SET,
    "json": L.JSON,
    "uuid": L.UUID,
    "inet4": L.INET,
    "inet6": L.INET,
}
#: integer type -> bits
INT_BITS: dict[str, int] = {
    "tinyint": 8,
    "bool": 8,
    "boolean": 8,
    "smallint": 16,
    "mediumint": 24,
    "int": 32,
    "integer": 32,
    "bigint": 64,
}
BITS_INT: dict[int, str] = {8: "tinyint", 16: "smallint", 24: "mediumint", 32: "int", 64: "bigint"}
#: types whose values are bytes on the wire; a target loads them from hex (see ``protocol.hex_field``)
BINARY_NATIVES = frozenset(
    {
        "binary",
        "varbinary",
        "tinyblob",
        "blob",
        "mediumblob",
        "longblob",
        "bit",
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    }
)

#: MariaDB's own types: a MySQL target gets the logical type's mapping instead
MARIADB_ONLY = frozenset({"uuid", "inet4", "inet6", "vector"})
#: logical type -> MySQL type, for the logical types without parameters
LOGICAL_TO_NATIVE: dict[L, str] = {
    L.BOOLEAN: "tinyint(1)",
    L.TEXT: "longtext",
    L.BLOB: "longblob",
    L.DATE: "date",
    L.INTERVAL: "varchar(64)",
    L.YEAR: "year",
    L.JSON: "json",
    L.UUID: "char(36)",
    L.INET: "varchar(43)",
    L.CIDR: "varchar(43)",
    L.MACADDR: "varchar(43)",
    L.MONEY: "decimal(19,2)",
    L.ARRAY: "json",
    L.DYNAMIC: "longtext",
}
MAX_DECIMAL_PRECISION = 65
MAX_DECIMAL_SCALE = 30
MAX_CHAR = 255  # char(n), binary(n)
MAX_VARCHAR = 16383  # varchar(n) in utf8mb4: 4 bytes per character under the 65535-byte row limit
MAX_VARBINARY = 65532
MAX_BIT = 64
MAX_ENUM_MEMBERS = 65535
MAX_SET_MEMBERS = 64
#: (bytes it holds, type): the smallest that fits
TEXT_SIZES = ((65535, "text"), (16777215, "mediumtext"), (4294967295, "longtext"))
BLOB_SIZES = ((65535, "blob"), (16777215, "mediumblob"), (4294967295, "longblob"))
ASCII = " CHARACTER SET ascii COLLATE ascii_bin"

# --------------------------------------------------------------------------- native -> logical
_TYPE = re.compile(r"^\s*([a-z][a-z0-9_ ]*?)\s*(?:\((.*)\))?((?:\s+[a-z0-9_]+)*)\s*$", re.IGNORECASE | re.DOTALL)
_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "Z": "\x1a"}


def parse_members(params: str) -> tuple[str, ...]:
    """``'a','b''c','d\\\\e'`` (ENUM/SET members as COLUMN_TYPE prints them) -> ('a', "b'c", 'd\\e')."""
    members: list[str] = []
    i, n = 0, len(params)
    while i < n:
        if params[i] != "'":
            i += 1
            continue
        i += 1
        out: list[str] = []
        while i < n:
            ch = params[i]
            if ch == "\\" and i + 1 < n:
                out.append(_ESCAPES.get(params[i + 1], params[i + 1]))
                i += 2
            elif ch == "'" and i + 1 < n and params[i + 1] == "'":
                out.append("'")
                i += 2
            elif ch == "'":
                i += 1
                break
            else:
                out.append(ch)
                i += 1
        members.append("".join(out))
    return tuple(members)


def _numbers(params: str | None) -> list[int]:
    if not params:
        return []
    try:
        return [int(p) for p in params.split(",")]
    except ValueError:
        return []


def to_logical(column_type: str, json_check: bool = False) -> ColumnType:
    """A COLUMN_TYPE (``int(10) unsigned``, ``enum('a','b')``, ``decimal(65,30)``) -> ColumnType.

    ``json_check``: MariaDB's JSON is a longtext with a ``json_valid()`` CHECK constraint.
    """
    match = _TYPE.match(column_type or "")
    if not match:
        return ColumnType(L.DYNAMIC, native=column_type, engine=ENGINE, extra=(("unsupported", column_type),))
    name = match.group(1).lower()
    params = match.group(2)
    attributes = (match.group(3) or "").lower().split()
    if json_check and name in ("longtext", "text", "mediumtext"):
        return ColumnType(L.JSON, native="json", engine=ENGINE)
    logical = NATIVE_TO_LOGICAL.get(name)
    if logical is None:
        return ColumnType(L.DYNAMIC, native=column_type, engine=ENGINE, extra=(("unsupported", name),))
    nums = _numbers(params) if logical not in (L.ENUM, L.SET) else []
    kw: dict[str, Any] = {}
    if logical is L.INTEGER:
        kw["bits"] = INT_BITS[name]
        kw["unsigned"] = "unsigned" in attributes
    elif logical is L.DECIMAL:
        kw["precision"] = nums[0] if nums else 10
        kw["scale"] = nums[1] if len(nums) > 1 else 0
    elif logical is L.FLOAT:
        kw["bits"] = 32 if name == "float" and (not nums or len(nums) > 1 or nums[0] <= 24) else 64
    elif logical in (L.CHAR, L.BINARY):
        kw["length"] = nums[0] if nums else 1
    elif logical in (L.VARCHAR, L.VARBINARY):
        kw["length"] = nums[0] if nums else None
    elif logical is L.BIT:
        kw["length"] = nums[0] if nums else 1
    elif logical in (L.TIME, L.TIMESTAMP, L.TIMESTAMPTZ):
        kw["precision"] = nums[0] if nums else 0
    elif logical in (L.ENUM, L.SET):
        kw["values"] = parse_members(params or "")
    return ColumnType(logical, native=column_type, engine=ENGINE, **kw)


def native_name(native: str) -> str:
    match = _TYPE.match(native or "")
    return match.group(1).lower() if match else ""


def is_binary_native(native: str) -> bool:
    return native_name(native) in BINARY_NATIVES


# --------------------------------------------------------------------------- logical -> native
def to_native(t: ColumnType, mariadb: bool = True) -> str:
    """The MySQL column type for a logical type; a MySQL source's own type is kept as it is
    (unless it is a MariaDB type and the target is MySQL)."""
    if t.engine == ENGINE and t.native and (mariadb or native_name(t.native) not in MARIADB_ONLY):
        return t.native
    lg = t.logical
    fixed = LOGICAL_TO_NATIVE.get(lg)
    if fixed is not None:
        return fixed
    if lg is L.INTEGER:
        bits = t.bits if t.bits in BITS_INT else 64
        return BITS_INT[bits or 64] + (" unsigned" if t.unsigned else "")
    if lg is L.DECIMAL:
        return decimal_native(t.precision, t.scale)
    if lg is L.FLOAT:
        return "float" if t.bits == 32 else "double"
    if lg is L.CHAR:
        if t.length is not None and 0 < t.length <= MAX_CHAR:
            return f"char({t.length})"
        return varchar_native(t.length)
    if lg is L.VARCHAR:
        return varchar_native(t.length)
    if lg is L.BINARY:
        if t.length is not None and 0 < t.length <= MAX_CHAR:
            return f"binary({t.length})"
        return varbinary_native(t.length)
    if lg is L.VARBINARY:
        return varbinary_native(t.length)
    if lg is L.TIME:
        return f"time({_fraction_digits(t)})"
    if lg in (L.TIMESTAMP, L.TIMESTAMPTZ):
        return f"datetime({_fraction_digits(t)})"
    if lg is L.BIT:
        varying = ("varying", "1") in t.extra
        if t.length is not None and 0 < t.length <= MAX_BIT and not varying:
            return f"bit({t.length})"
        return ascii_text_native(t.length)
    if lg is L.ENUM:
        if t.values and len(t.values) <= MAX_ENUM_MEMBERS and _bmp(t.values):
            return "enum(" + ",".join(quote_literal(v) for v in t.values) + ")"
        return "varchar(255)"
    if lg is L.SET:
        if t.values and len(t.values) <= MAX_SET_MEMBERS and _bmp(t.values) and not any("," in v for v in t.values):
            return "set(" + ",".join(quote_literal(v) for v in t.values) + ")"
        return "varchar(255)"
    return "longtext"


def _bmp(values: tuple[str, ...]) -> bool:
    """MySQL keeps ENUM / SET members in 3-byte UTF-8 metadata: 4-byte characters would become '?'."""
    return all(ord(ch) <= 0xFFFF for v in values for ch in v)


def decimal_native(precision: int | None, scale: int | None) -> str:
    if precision is None:
        return "longtext" + ASCII  # unconstrained: every digit, as text
    s = scale or 0
    if 0 < precision <= MAX_DECIMAL_PRECISION and 0 <= s <= min(precision, MAX_DECIMAL_SCALE):
        return f"decimal({precision},{s})"
    # sign, point, a leading "0." and zeros a negative scale adds
    return ascii_text_native(max(precision, s) + max(-s, 0) + 3)


def varchar_native(length: int | None) -> str:
    if length is not None and 0 < length <= MAX_VARCHAR:
        return f"varchar({length})"
    return _sized(TEXT_SIZES, None if length is None else length * 4)


def varbinary_native(length: int | None) -> str:
    if length is not None and 0 < length <= MAX_VARBINARY:
        return f"varbinary({length})"
    return _sized(BLOB_SIZES, length)


def ascii_text_native(length: int | None) -> str:
    if length is not None and 0 < length <= MAX_VARBINARY:
        return f"varchar({length})" + ASCII
    return "longtext" + ASCII


def _sized(sizes: tuple[tuple[int, str], ...], nbytes: int | None) -> str:
    if nbytes is not None:
        for limit, name in sizes:
            if nbytes <= limit:
                return name
    return sizes[-1][1]


#: InnoDB's limit on the declared size of a row's columns, TEXT and BLOB counting 12 bytes each
ROW_LIMIT = 65535
_ROW_MARGIN = 1024  # fixed-size columns, NULL bitmap, length bytes


def row_bytes(native: str) -> int:
    """Bytes a column counts toward ``ROW_LIMIT`` (utf8mb4: 4 bytes a character)."""
    match = _TYPE.match(native or "")
    if not match:
        return 12
    name = match.group(1).lower()
    nums = _numbers(match.group(2))
    per_char = 1 if "ascii" in (match.group(3) or "").lower() else 4
    if name in ("varchar", "char") and nums:
        return nums[0] * per_char + 2
    if name in ("varbinary", "binary") and nums:
        return nums[0] + 2
    return 12


def fit_row(natives: list[str], keys: list[bool]) -> list[str]:
    """Turn the widest varchar / varbinary columns (not key columns) into TEXT / BLOB types until
    the row fits InnoDB's limit, which counts their declared sizes (PostgreSQL has no such limit)."""
    sizes = [row_bytes(n) for n in natives]
    if sum(sizes) <= ROW_LIMIT - _ROW_MARGIN:
        return natives
    out = list(natives)
    order = sorted(range(len(out)), key=lambda i: -sizes[i])
    for i in order:
        if sum(sizes) <= ROW_LIMIT - _ROW_MARGIN:
            break
        name = native_name(out[i])
        if keys[i] or name not in ("varchar", "varbinary"):
            continue
        length = _numbers(_TYPE.match(out[i]).group(2))[0]  # type: ignore[union-attr]
        if name == "varbinary":
            out[i] = _sized(BLOB_SIZES, length)
        else:
            ascii_only = ASCII.strip().lower() in out[i].lower()
            out[i] = _sized(TEXT_SIZES, length * (1 if ascii_only else 4)) + (ASCII if ascii_only else "")
        sizes[i] = 12
    return out


def _fraction_digits(t: ColumnType) -> int:
    return 6 if t.precision is None else max(0, min(6, t.precision))


# --------------------------------------------------------------------------- decoding (source)
#: logical type -> expression over the value's bytes ``x`` giving its canonical value (None: bytes)
DECODE: dict[L, str | None] = {
    L.INTEGER: "int(x)",
    L.YEAR: "int(x)",
    L.DECIMAL: "Decimal(x.decode())",
    L.FLOAT: "float(x)",
    L.CHAR: "x.decode()",
    L.VARCHAR: "x.decode()",
    L.TEXT: "x.decode()",
    L.ENUM: "x.decode()",
    L.SET: "x.decode()",
    L.JSON: "x.decode()",
    L.INET: "x.decode()",
    L.BINARY: None,
    L.VARBINARY: None,
    L.BLOB: None,
    L.DYNAMIC: None,
    L.DATE: "date_(x.decode())",
    L.TIME: "time_(x.decode())",
    L.TIMESTAMP: "datetime_(x.decode())",
    # the session's time zone is UTC, so the text is the instant in UTC
    L.TIMESTAMPTZ: "datetime_(x.decode() + '+00:00')",
    L.UUID: "UUID(x.decode())",
    L.BIT: "format(from_bytes(x, 'big'), '0{length}b')",
}
#: the names DECODE's expressions call
DECODE_NAMES: dict[str, Any] = {
    "Decimal": Decimal,
    "date_": date.fromisoformat,
    "time_": time.fromisoformat,
    "datetime_": datetime.fromisoformat,
    "UUID": uuid.UUID,
    "from_bytes": int.from_bytes,
}


def decode_expr(t: ColumnType) -> str | None:
    expr = DECODE.get(t.logical)
    if expr is not None and t.logical is L.BIT:
        expr = expr.format(length=int(t.length or 1))
    return expr


def select_expression(t: ColumnType, quoted: str) -> str:
    """FLOAT prints 6 significant digits in the text protocol; as a double it prints exactly."""
    if t.logical is L.FLOAT and t.bits == 32:
        return f"{quoted} * 1e0"
    return quoted


def fallback(t: ColumnType) -> Callable[[bytes], Any] | None:
    """A converter that never raises: the canonical value, else the driver's own (zero dates as
    text, TIME outside a day as ``timedelta``, undecodable text as bytes)."""
    expr = decode_expr(t)
    if expr is None:
        return None
    fast: Callable[[bytes], Any] = eval(f"lambda x: {expr}", dict(DECODE_NAMES))  # our own table's expression
    last: Callable[[bytes], Any] = convert_timedelta if t.logical is L.TIME else fallback_text

    def convert(x: bytes) -> Any:
        try:
            return fast(x)
        except Exception:
            return last(x)

    return convert


def fallback_text(x: bytes) -> Any:
    try:
        return x.decode()
    except UnicodeDecodeError:
        return x


# --------------------------------------------------------------------------- encoding (target)
MAX_FLOAT32 = 3.4028234663852886e38
MAX_TIME = timedelta(hours=838, minutes=59, seconds=59)
#: a date with a zero year, month or day (zero dates and zero parts), as the binlog and the snapshot give it
_ZERO_DATE = re.compile(r"(?:0000-\d\d-\d\d|\d{4}-00-\d\d|\d{4}-\d\d-00)(?: \d\d:\d\d:\d\d(?:\.\d+)?)?$")
TIMESTAMP_RANGE = (datetime(1970, 1, 1, 0, 0, 1), datetime(2038, 1, 19, 3, 14, 7, 999999))
YEAR_RANGE = (1901, 2155)
_WIDE = Context(prec=1000)
_INTEGER_TEXT = re.compile(r"[+-]?\d+")
#: logical types whose canonical value is str
STR_LOGICALS = frozenset(
    {L.CHAR, L.VARCHAR, L.TEXT, L.ENUM, L.SET, L.JSON, L.INET, L.CIDR, L.MACADDR, L.INTERVAL, L.BIT}
)
BYTES_LOGICALS = frozenset({L.BINARY, L.VARBINARY, L.BLOB})


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _not_a(v: Any, what: str) -> NoReturn:
    if isinstance(v, str):
        raise RowRejected(f"text {_short(v)} is not {what}")
    raise RowRejected(f"{type(v).__name__} {_short(v)} is not {what}")


def _as_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value():
        return int(v)
    if isinstance(v, str) and _INTEGER_TEXT.fullmatch(v):
        return int(v)
    _not_a(v, "an integer")


def integer_encoder(lo: int, hi: int, native: str, zero: bool = False) -> Encoder:
    def encode(v: Any) -> Any:
        n = v if type(v) is int else _as_int(v)
        if lo <= n <= hi or (zero and n == 0):
            return n
        raise RowRejected(f"{n} is outside {native}'s range {lo}..{hi}")

    return encode


def _as_decimal(v: Any) -> Decimal:
    if isinstance(v, bool):
        return Decimal(int(v))
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v)) if math.isfinite(v) else Decimal(str(v))
    if isinstance(v, str):
        try:
            return Decimal(v.strip())
        except InvalidOperation:
            pass
    _not_a(v, "a number")


def decimal_encoder(precision: int, scale: int) -> Encoder:
    limit = Decimal(10) ** (precision - scale)
    quantum = Decimal(1).scaleb(-scale)

    def encode(v: Any) -> Any:
        d = v if type(v) is Decimal else _as_decimal(v)
        if not d.is_finite():
            raise RowRejected(f"{d} cannot be stored: MySQL's decimal has no NaN or Infinity")
        if not -limit < d < limit:
            raise RowRejected(f"{d} does not fit decimal({precision},{scale})")
        q = d.quantize(quantum, context=_WIDE)  # exactly ``scale`` decimals: no server note
        if q != d:
            raise RowRejected(f"{d} has more than {scale} decimal places for decimal({precision},{scale})")
        return q

    return encode


def float_encoder(bits: int) -> Encoder:
    limit = MAX_FLOAT32 if bits == 32 else math.inf
    name = "float" if bits == 32 else "double"

    def encode(v: Any) -> Any:
        if type(v) is not float:
            v = _as_float(v)
        if v - v != 0.0:
            raise RowRejected(f"{v} cannot be stored: MySQL has no NaN or Infinity")
        if v == 0.0:
            if math.copysign(1.0, v) < 0:
                raise RowRejected("-0.0 cannot be stored: MySQL stores it as 0")
        elif abs(v) > limit:
            raise RowRejected(f"{v} is outside {name}'s range")
        return v

    return encode


def _as_float(v: Any) -> float:
    if isinstance(v, int | Decimal) and not isinstance(v, bool):
        f = float(v)
        if math.isfinite(f) and Decimal(f) == v:
            return f
        raise RowRejected(f"{v} has more digits than a {type(v).__name__} to double conversion keeps")
    _not_a(v, "a number")


def _json_text(v: Any) -> str:
    """A canonical value as JSON text; numbers stay numbers with every digit."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise RowRejected(f"{v} cannot be stored in JSON")
        return repr(v)
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise RowRejected(f"{v} cannot be stored in JSON")
        return format(v, "f")
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_json_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_json_text(x)}" for k, x in v.items()) + "}"
    if isinstance(v, bytes | bytearray | memoryview):
        return json.dumps("\\x" + bytes(v).hex())
    if isinstance(v, datetime | date | time):
        return json.dumps(v.isoformat())
    return json.dumps(str(v), ensure_ascii=False)


def json_encoder(v: Any) -> Any:
    return v if type(v) is str else _json_text(v)


def text_encoder(v: Any) -> Any:
    """Text columns take text; numbers, dates, UUIDs and arrays become their usual text."""
    if type(v) is str:
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        raise RowRejected("binary data cannot go into a text column")
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, list | tuple | dict):
        return _json_text(v)
    return str(v)


def binary_encoder(v: Any) -> Any:
    if type(v) is bytes:
        return v
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    if isinstance(v, str):
        raise RowRejected(f"text {_short(v)} cannot go into a binary column")
    _not_a(v, "binary data")


def bit_encoder(length: int) -> Encoder:
    nbytes = (length + 7) // 8
    top = 2**length

    def encode(v: Any) -> Any:
        if isinstance(v, str):
            if not v or len(v) > length or v.strip("01"):
                raise RowRejected(f"{_short(v)} is not a string of at most {length} bits")
            return int(v, 2).to_bytes(nbytes, "big")
        if isinstance(v, bytes | bytearray | memoryview):
            n = int.from_bytes(v, "big")
        elif isinstance(v, int):
            n = int(v)
        else:
            _not_a(v, "a bit string")
        if not 0 <= n < top:
            raise RowRejected(f"{_short(v)} does not fit bit({length})")
        return n.to_bytes(nbytes, "big")

    return encode


def _check_fraction(microsecond: int, digits: int, v: Any) -> None:
    if digits < 6 and microsecond % 10 ** (6 - digits):
        raise RowRejected(f"{v} has more than {digits} fractional second digits")


def utc_naive(v: datetime) -> datetime:
    """An aware datetime as naive UTC (constructing is ~3x faster than ``replace(tzinfo=None)``)."""
    if v.tzinfo is not UTC:
        v = v.astimezone(UTC)
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def datetime_encoder(digits: int, timestamp_range: bool = False) -> Encoder:
    lo, hi = TIMESTAMP_RANGE

    def encode(v: Any) -> Any:
        if type(v) is datetime:
            if v.tzinfo is not None:
                v = utc_naive(v)
        elif type(v) is date:
            v = datetime(v.year, v.month, v.day)
        elif _zero_date(v):
            return v  # a MySQL source's zero date: the server takes it where its sql_mode allows
        else:
            _not_a(v, "a date and time")
        _check_fraction(v.microsecond, digits, v)
        if timestamp_range and not lo <= v <= hi:
            raise RowRejected(f"{v} is outside MySQL TIMESTAMP's range {lo}..{hi} (UTC)")
        return v

    return encode


def date_encoder(v: Any) -> Any:
    if type(v) is date:
        return v
    if type(v) is datetime:
        if v.tzinfo is None and v.time() == time(0):
            return v.date()
        raise RowRejected(f"{v} has a time of day; the column is a date")
    if _zero_date(v):
        return v
    _not_a(v, "a date")


def _zero_date(v: Any) -> bool:
    """A zero date (``'0000-00-00'``, ``'2024-00-15 00:00:00'``): how a MySQL source's values that are no
    date travel (``rowevents``)."""
    return type(v) is str and _ZERO_DATE.match(v) is not None


def time_encoder(digits: int) -> Encoder:
    def encode(v: Any) -> Any:
        if type(v) is time:
            if v.tzinfo is not None:
                raise RowRejected(f"{v} has a time zone; MySQL's TIME has none")
            _check_fraction(v.microsecond, digits, v)
            return v
        if v == "24:00:00":  # PostgreSQL's end of day (``postgres.types.out_of_range_text``)
            return timedelta(days=1)
        if type(v) is timedelta:
            if not -MAX_TIME <= v <= MAX_TIME:
                raise RowRejected(f"{duration_text(v)} is outside MySQL TIME's range -838:59:59..838:59:59")
            _check_fraction(v.microseconds, digits, v)
            return v
        _not_a(v, "a time")

    return encode


def encoder(t: ColumnType, native: str) -> Encoder | None:
    """Canonical value of logical type ``t`` -> a value for a MySQL column of type ``native``."""
    dst = to_logical(native)
    name = native_name(native)
    typed = t.engine in TYPED_ENGINES and t.logical is not L.DYNAMIC
    lg, dl = t.logical, dst.logical
    if dl is L.INTEGER:
        lo, hi = dst.integer_range()
        if typed and lg is L.BOOLEAN:
            return None  # bool values are written as 1 / 0
        if typed and lg in (L.INTEGER, L.YEAR):
            slo, shi = t.integer_range()
            if lo <= slo and shi <= hi:
                return None
        return integer_encoder(lo, hi, native)
    if dl is L.YEAR:
        return integer_encoder(YEAR_RANGE[0], YEAR_RANGE[1], native, zero=True)
    if dl is L.DECIMAL:
        return decimal_encoder(dst.precision or 10, dst.scale or 0)
    if dl is L.FLOAT:
        return float_encoder(dst.bits or 64)
    if dl is L.BIT:
        return bit_encoder(dst.length or 1)
    if dl is L.JSON:
        return None if typed and lg is L.JSON else json_encoder
    if dl in (L.CHAR, L.VARCHAR, L.TEXT, L.ENUM, L.SET, L.INET, L.UUID):
        return None if typed and lg in STR_LOGICALS else text_encoder
    if dl in BYTES_LOGICALS:
        return None if typed and lg in BYTES_LOGICALS else binary_encoder
    if dl is L.DATE:
        return None if typed and lg is L.DATE else date_encoder
    if dl is L.TIME:
        return time_encoder(dst.precision or 0)
    if dl is L.TIMESTAMP:
        digits = dst.precision or 0
        if typed and lg is L.TIMESTAMP and (t.precision if t.precision is not None else 6) <= digits:
            return None
        return datetime_encoder(digits)
    if dl is L.TIMESTAMPTZ:
        return datetime_encoder(dst.precision or 0, timestamp_range=True)
    if dl is L.DYNAMIC and name in BINARY_NATIVES:
        return binary_encoder
    return None
