"""Row events: TABLE_MAP layouts and the rows of WRITE / UPDATE / DELETE_ROWS events, decoded into
canonical values equal to what the snapshot reader gives for the same row (``types.DECODE`` over the
text protocol).

Decoding is the hot path of change capture. A general decoder dispatches on each value's type (that is
where python-mysql-replication spends its time: about 3k rows/s); here a function is generated per table
layout (the TABLE_MAP's types and metadata together with the table's columns), with each column's read
and conversion inlined: ``struct`` for fixed-size values (consecutive NOT NULL ones in one call),
slices for the rest, and helpers only for temporal and decimal values. The code comes from this
module's own templates; the database contributes numbers (sizes, precisions) and, for ENUM and SET,
member names passed as data, never code.

A value without a canonical form is left as the snapshot leaves it: zero dates as MySQL's text
(``'0000-00-00'``), a TIME outside 00:00..24:00 as ``timedelta``, text that does not decode as bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

from conveyor.endpoints.mysql.binlog import lenenc
from conveyor.model.rows import Row
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

# MySQL column types as the binlog names them (``enum_field_types``)
TINY, SHORT, LONG, FLOAT, DOUBLE, NULL, TIMESTAMP, LONGLONG, INT24 = 1, 2, 3, 4, 5, 6, 7, 8, 9
DATE, TIME, DATETIME, YEAR, NEWDATE, VARCHAR, BIT = 10, 11, 12, 13, 14, 15, 16
TIMESTAMP2, DATETIME2, TIME2 = 17, 18, 19
JSON, NEWDECIMAL, ENUM, SET, BLOB, VAR_STRING, STRING, GEOMETRY = 245, 246, 247, 248, 252, 253, 254, 255
TYPE_NAMES = {
    TINY: "tinyint",
    SHORT: "smallint",
    LONG: "int",
    FLOAT: "float",
    DOUBLE: "double",
    TIMESTAMP: "timestamp",
    LONGLONG: "bigint",
    INT24: "mediumint",
    DATE: "date",
    TIME: "time",
    DATETIME: "datetime",
    YEAR: "year",
    NEWDATE: "date",
    VARCHAR: "varchar",
    BIT: "bit",
    TIMESTAMP2: "timestamp",
    DATETIME2: "datetime",
    TIME2: "time",
    JSON: "json",
    NEWDECIMAL: "decimal",
    ENUM: "enum",
    SET: "set",
    BLOB: "blob",
    VAR_STRING: "varchar",
    STRING: "char",
    GEOMETRY: "geometry",
}
#: bytes of TABLE_MAP metadata per column type (types not listed have none)
META_BYTES = {
    FLOAT: 1,
    DOUBLE: 1,
    BLOB: 1,
    GEOMETRY: 1,
    JSON: 1,
    TIMESTAMP2: 1,
    DATETIME2: 1,
    TIME2: 1,
    VARCHAR: 2,
    VAR_STRING: 2,
    BIT: 2,
    NEWDECIMAL: 2,
    STRING: 2,
    ENUM: 2,
    SET: 2,
}
#: fixed-size integer and float columns as ``struct`` codes: (signed, unsigned)
STRUCT_CODES = {TINY: ("b", "B"), SHORT: ("h", "H"), LONG: ("i", "I"), LONGLONG: ("q", "Q")}
INT_BITS = {TINY: 8, SHORT: 16, INT24: 24, LONG: 32, LONGLONG: 64}
#: binlog column type -> the logical types a column of that type can have
COMPATIBLE: dict[int, frozenset[L]] = {
    **{t: frozenset({L.INTEGER}) for t in INT_BITS},
    FLOAT: frozenset({L.FLOAT}),
    DOUBLE: frozenset({L.FLOAT}),
    NEWDECIMAL: frozenset({L.DECIMAL}),
    YEAR: frozenset({L.YEAR}),
    DATE: frozenset({L.DATE}),
    NEWDATE: frozenset({L.DATE}),
    TIME: frozenset({L.TIME}),
    TIME2: frozenset({L.TIME}),
    DATETIME: frozenset({L.TIMESTAMP}),
    DATETIME2: frozenset({L.TIMESTAMP}),
    TIMESTAMP: frozenset({L.TIMESTAMPTZ}),
    TIMESTAMP2: frozenset({L.TIMESTAMPTZ}),
    VARCHAR: frozenset({L.CHAR, L.VARCHAR, L.BINARY, L.VARBINARY}),
    VAR_STRING: frozenset({L.CHAR, L.VARCHAR, L.BINARY, L.VARBINARY}),
    STRING: frozenset({L.CHAR, L.VARCHAR, L.BINARY, L.VARBINARY, L.UUID, L.INET}),
    ENUM: frozenset({L.ENUM}),
    SET: frozenset({L.SET}),
    BLOB: frozenset({L.TEXT, L.BLOB, L.JSON, L.DYNAMIC}),
    GEOMETRY: frozenset({L.DYNAMIC}),
    BIT: frozenset({L.BIT}),
}
#: logical types whose binlog values are bytes, not text (whatever the column's character set)
BINARY_LOGICALS = frozenset({L.BINARY, L.VARBINARY, L.BLOB, L.DYNAMIC, L.BIT, L.UUID, L.INET})
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LayoutMismatch(Exception):
    """The binlog's rows have another layout than the table's columns (``TableMap`` vs ``Table``)."""


class Unsupported(Exception):
    """A column type this decoder cannot read."""


@dataclass(frozen=True, slots=True)
class TableMap:
    """A TABLE_MAP event: which table the next rows events' ``table_id`` means, and its column layout.

    ``meta`` holds each column's metadata as one int (two-byte metadata in the order MySQL reads it:
    first byte high for STRING / ENUM / SET / NEWDECIMAL / BIT, little-endian for VARCHAR)."""

    table_id: int
    schema: str
    name: str
    types: bytes
    meta: tuple[int, ...]
    nullable: int
    #: the layout's bytes (types, metadata, nullability): equal keys decode alike
    key: bytes
    #: why the layout cannot be read (a type unknown to this decoder); a table not captured may have one
    unreadable: str = ""


def parse_table_map(data: bytes, p: int, id_size: int) -> TableMap:
    """A TABLE_MAP event's post-header and body from offset ``p`` (after the common header)."""
    table_id = int.from_bytes(data[p : p + id_size], "little")
    p += id_size + 2  # flags
    n = data[p]
    schema = data[p + 1 : p + 1 + n].decode("utf-8", "surrogateescape")
    p += n + 2
    n = data[p]
    name = data[p + 1 : p + 1 + n].decode("utf-8", "surrogateescape")
    p += n + 2
    start = p
    count, p = lenenc(data, p)
    types = data[p : p + count]
    p += count
    meta_len, p = lenenc(data, p)
    meta_end = p + meta_len
    meta = []
    for t in types:
        size = META_BYTES.get(t, 0)
        if size == 1:
            meta.append(data[p])
        elif t in (VARCHAR, VAR_STRING):
            meta.append(data[p] | data[p + 1] << 8)
        elif size == 2:
            meta.append(data[p] << 8 | data[p + 1])
        else:
            meta.append(0)
        p += size
    unreadable = ""
    if p != meta_end:
        unknown = sorted({t for t in types if t not in TYPE_NAMES})
        unreadable = f"the binlog describes {schema}.{name} with column types this decoder does not know ({unknown})"
        p = meta_end
    nulls_end = p + (count + 7) // 8
    nullable = int.from_bytes(data[p:nulls_end], "little")
    key = bytes(data[start:nulls_end])
    return TableMap(table_id, schema, name, bytes(types), tuple(meta), nullable, key, unreadable)


# --------------------------------------------------------------------------- value helpers
def _frac_reader(fsp: int) -> tuple[int, Callable[[bytes, int], int]]:
    """(bytes, reader of microseconds) for a fractional-second part of ``fsp`` digits (big-endian)."""
    size = (fsp + 1) // 2
    scale = 10 ** (6 - 2 * size)
    if size == 0:
        return 0, lambda d, p: 0
    return size, lambda d, p: int.from_bytes(d[p : p + size], "big") * scale


def _fraction_text(us: int, fsp: int) -> str:
    return f".{us:06d}"[: fsp + 1] if fsp else ""


def _datetime_text(y: int, mo: int, d: int, h: int, mi: int, s: int, us: int, fsp: int) -> str:
    """How MySQL prints a date-time it cannot be a Python one (zero dates)."""
    return f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}{_fraction_text(us, fsp)}"


def date_value(v: int) -> date | str:
    """DATE: 3 bytes, little-endian ``year << 9 | month << 5 | day``."""
    y, m, d = v >> 9, (v >> 5) & 15, v & 31
    try:
        return date(y, m, d)
    except ValueError:
        return f"{y:04d}-{m:02d}-{d:02d}"


def datetime2_reader(fsp: int) -> tuple[int, Callable[[bytes, int], datetime | str]]:
    """DATETIME(fsp): 5 bytes big-endian (sign bit, year * 13 + month, day, hour, minute, second),
    then the fraction."""
    frac_size, frac = _frac_reader(fsp)

    def read(d: bytes, p: int) -> datetime | str:
        v = int.from_bytes(d[p : p + 5], "big") - 0x8000000000
        ymd = v >> 17
        ym = ymd >> 5
        us = frac(d, p + 5) if frac_size else 0
        try:
            return datetime(ym // 13, ym % 13, ymd & 31, v >> 12 & 31, v >> 6 & 63, v & 63, us)
        except ValueError:
            return _datetime_text(ym // 13, ym % 13, ymd & 31, v >> 12 & 31, v >> 6 & 63, v & 63, us, fsp)

    return 5 + frac_size, read


def timestamp2_reader(fsp: int) -> tuple[int, Callable[[bytes, int], datetime | str]]:
    """TIMESTAMP(fsp): 4 bytes big-endian seconds since the epoch, then the fraction; an instant,
    read as the snapshot's UTC session gives it (aware, UTC). 0 is MySQL's zero timestamp."""
    frac_size, frac = _frac_reader(fsp)

    def read(d: bytes, p: int) -> datetime | str:
        seconds = int.from_bytes(d[p : p + 4], "big")
        us = frac(d, p + 4)
        if seconds == 0 and us == 0:
            return _datetime_text(0, 0, 0, 0, 0, 0, 0, fsp)
        return _EPOCH + timedelta(seconds=seconds, microseconds=us)

    return 4 + frac_size, read


def _time_value(packed: int) -> time | timedelta:
    """MySQL's packed time (``hms << 24 | microseconds``, signed): a ``time`` within a day, else a
    ``timedelta`` (as the snapshot reads TIME values outside 00:00..24:00)."""
    negative = packed < 0
    packed = -packed if negative else packed
    hms, us = packed >> 24, packed & 0xFFFFFF
    h, mi, s = (hms >> 12) & 0x3FF, (hms >> 6) & 63, hms & 63
    if not negative and h < 24:
        return time(h, mi, s, us)
    span = timedelta(hours=h, minutes=mi, seconds=s, microseconds=us)
    return -span if negative else span


def time2_reader(fsp: int) -> tuple[int, Callable[[bytes, int], time | timedelta]]:
    """TIME(fsp): 3 bytes big-endian with an offset sign, then the fraction; a negative value keeps
    its fraction in reverse order (MySQL's ``my_time_packed_from_binary``)."""
    size = 3 + (fsp + 1) // 2

    def read(d: bytes, p: int) -> time | timedelta:
        if fsp > 4:
            return _time_value(int.from_bytes(d[p : p + 6], "big") - 0x800000000000)
        intpart = int.from_bytes(d[p : p + 3], "big") - 0x800000
        if fsp == 0:
            return _time_value(intpart << 24)
        frac = int.from_bytes(d[p + 3 : p + size], "big")
        width = 1 << (8 * (size - 3))
        if intpart < 0 and frac:
            intpart += 1
            frac -= width
        return _time_value((intpart << 24) + frac * (10000 if fsp <= 2 else 100))

    return size, read


def old_time_value(v: int) -> time | timedelta:
    """TIME before MySQL 5.6.4: 3 bytes little-endian, signed ``hhmmss``."""
    if v & 0x800000:
        v -= 0x1000000
    negative, v = v < 0, abs(v)
    h, rest = divmod(v, 10000)
    return _time_value((-1 if negative else 1) * ((h << 12 | (rest // 100) << 6 | rest % 100) << 24))


def old_datetime_value(v: int) -> datetime | str:
    """DATETIME before MySQL 5.6.4: 8 bytes little-endian, ``YYYYMMDDhhmmss`` in decimal."""
    ymd, hms = divmod(v, 1000000)
    y, md = divmod(ymd, 10000)
    mo, dd = divmod(md, 100)
    h, ms = divmod(hms, 10000)
    mi, s = divmod(ms, 100)
    try:
        return datetime(y, mo, dd, h, mi, s)
    except ValueError:
        return _datetime_text(y, mo, dd, h, mi, s, 0, 0)


def old_timestamp_value(seconds: int) -> datetime | str:
    return _EPOCH + timedelta(seconds=seconds) if seconds else _datetime_text(0, 0, 0, 0, 0, 0, 0, 0)


#: exact for any DECIMAL (at most 65 digits): ``scaleb`` only moves the exponent
_DECIMAL_CONTEXT = Context(prec=100)


def decimal_reader(precision: int, scale: int) -> tuple[int, Callable[[bytes, int], Decimal]]:
    """DECIMAL(precision, scale) in MySQL's binary form: the integer and fraction digits in groups of
    nine (4 bytes each, a shorter group first / last), big-endian, the sign in the top bit, negative
    values with every bit inverted. Read with its scale, as the server prints it (``1.50``, not ``1.5``).

    The reader is compiled per (precision, scale) with the digit groups unrolled into one integer of
    all the digits; it runs once per value."""
    intg = precision - scale
    fields = [_DIG2BYTES[intg % 9]] * (intg % 9 > 0) + [4] * (intg // 9)
    frac_fields = [4] * (scale // 9) + [_DIG2BYTES[scale % 9]] * (scale % 9 > 0)
    digits = [9] * (len(fields) + scale // 9) + [scale % 9] * (scale % 9 > 0)
    size = sum(fields) + sum(frac_fields)
    top = 1 << (8 * size - 1)
    number = ""
    offset = 8 * size
    for n, k in zip(fields + frac_fields, digits, strict=True):
        offset -= 8 * n
        group = f"(raw >> {offset} & {(1 << (8 * n)) - 1})"
        number = f"({number}) * {10**k} + {group}" if number else group
    number = number or "0"

    def value(sign: str) -> str:
        return f"Decimal({sign}({number})).scaleb({-scale}, CONTEXT)" if scale else f"Decimal({sign}({number}))"

    source = "\n".join(
        [
            "def read(d, p):",
            f"    raw = from_bytes(d[p:p + {size}], 'big')",
            f"    if raw & {top}:",
            f"        raw ^= {top}",
            f"        return {value('')}",
            f"    raw ^= {((top << 1) - 1) ^ top}",
            f"    return {value('-')}",
        ]
    )
    names: dict[str, Any] = {"Decimal": Decimal, "CONTEXT": _DECIMAL_CONTEXT, "from_bytes": int.from_bytes}
    exec(compile(source, f"<conveyor decimal({precision},{scale}) reader>", "exec"), names)
    read: Callable[[bytes, int], Decimal] = names["read"]
    return size, read


#: temporal types before MySQL 5.6.4: (bytes, little-endian integer -> value)
OLD_TEMPORAL: dict[int, tuple[int, Callable[[int], Any]]] = {
    TIME: (3, old_time_value),
    DATETIME: (8, old_datetime_value),
    TIMESTAMP: (4, old_timestamp_value),
}


def inet_text(b: bytes) -> str:
    """An INET4 / INET6 value as MariaDB prints it: dotted IPv4; IPv6 with the first longest run of
    zero groups (even a single one) as ``::``, IPv4-compatible and -mapped addresses ending dotted."""
    if len(b) == 4:
        return ".".join(map(str, b))
    words = struct.unpack(">8H", b)
    best, best_len, run = -1, 0, -1
    for i, w in enumerate((*words, 1)):
        if w == 0:
            run = i if run < 0 else run
        elif run >= 0:
            if i - run > best_len:
                best, best_len = run, i - run
            run = -1
    if best == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
        return ("::" if best_len == 6 else "::ffff:") + ".".join(map(str, b[12:]))
    if best < 0:
        return ":".join(f"{w:x}" for w in words)
    head = ":".join(f"{w:x}" for w in words[:best])
    tail = ":".join(f"{w:x}" for w in words[best + best_len :])
    return f"{head}::{tail}"


#: MariaDB's fixed-size binary types -> their canonical value
FIXED_BINARY: dict[L, Callable[[bytes], Any]] = {L.UUID: lambda b: UUID(bytes=b), L.INET: inet_text}


@lru_cache(maxsize=4096)
def _set_text(members: tuple[str, ...], mask: int) -> str:
    return ",".join(m for i, m in enumerate(members) if mask >> i & 1)


# --------------------------------------------------------------------------- the generated decoder
@dataclass(frozen=True, slots=True)
class Target:
    """A table column a binlog column is read into: its type and its character set's Python codec
    (None: binary). A binlog column without one (a generated column) is read and left out."""

    name: str
    type: ColumnType
    codec: str | None


class RowsDecoder:
    """Decodes the rows of one table layout: ``rows(data, p, end)`` -> the row images from ``p`` to
    ``end`` (for UPDATE_ROWS: before and after images alternating). A damaged event raises
    ``ValueError``, ``IndexError`` or ``struct.error``."""

    def __init__(self, table_map: TableMap, targets: Sequence[Target | None], describe: str) -> None:
        if table_map.unreadable:
            raise Unsupported(table_map.unreadable)
        if len(targets) != len(table_map.types):
            raise LayoutMismatch(
                f"the binlog's rows of {describe} have {len(table_map.types)} columns, the table has {len(targets)}"
            )
        for target, t, meta in zip(targets, table_map.types, table_map.meta, strict=True):
            if target is not None:
                _check_compatible(target, t, meta, describe)
        self.width = len(targets)
        self.null_bytes = (self.width + 7) // 8
        self.fast = self._compile(table_map, targets, safe=False)
        self.safe = self._compile(table_map, targets, safe=True)

    def rows(self, data: bytes, p: int, end: int) -> list[Row]:
        try:
            return self.fast(data, p, end)
        except UnicodeDecodeError:
            return self.safe(data, p, end)  # text that does not decode stays bytes, as in the snapshot

    def _compile(self, table_map: TableMap, targets: Sequence[Target | None], safe: bool) -> Callable[..., list[Row]]:
        names: dict[str, Any] = {"Decimal": Decimal, "from_bytes": int.from_bytes, "_bytes_or_text": _bytes_or_text}
        body: list[str] = []
        run: list[tuple[int, str]] = []  # pending NOT NULL fixed-size columns: (index, struct code)

        def flush_run() -> None:
            if not run:
                return
            fmt = "<" + "".join(code for _, code in run)
            names[f"_s{run[0][0]}"] = struct.Struct(fmt).unpack_from
            out = [f"v{i}" if targets[i] is not None else "_" for i, _ in run]
            body.append(f"{', '.join(out)}, = _s{run[0][0]}(d, p); p += {struct.calcsize(fmt)}")
            run.clear()

        for i, (t, meta) in enumerate(zip(table_map.types, table_map.meta, strict=True)):
            target = targets[i]
            nullable = bool(table_map.nullable >> i & 1)
            code = _struct_code(t, target)
            if code is not None and not nullable:
                run.append((i, code))
                continue
            flush_run()
            lines = _column_code(i, t, meta, target, names, safe)
            if nullable:
                body.append(f"if n & {1 << i}: v{i} = None")
                body.append("else:")
                body.extend("    " + line for line in lines)
            else:
                body.extend(lines)
        flush_run()
        kept = [f"v{i}" for i, target in enumerate(targets) if target is not None]
        lines = [
            "def rows(d, p, end):",
            "    out = []",
            "    append = out.append",
            "    while p < end:",
            f"        n = {_little_endian(self.null_bytes)}; p += {self.null_bytes}",
            *("        " + line for line in body),
            f"        append(({''.join(v + ', ' for v in kept)}))",
            "    return out",
        ]
        exec(compile("\n".join(lines), f"<conveyor binlog rows {table_map.schema}.{table_map.name}>", "exec"), names)
        rows: Callable[..., list[Row]] = names["rows"]
        return rows


def _bytes_or_text(x: bytes, codec: str) -> str | bytes:
    try:
        return x.decode(codec)
    except UnicodeDecodeError:
        return x


def _struct_code(t: int, target: Target | None) -> str | None:
    if t in STRUCT_CODES:
        signed, unsigned = STRUCT_CODES[t]
        return unsigned if target is not None and target.type.unsigned else signed
    return {FLOAT: "f", DOUBLE: "d"}.get(t)


def _string_meta(meta: int) -> tuple[int, int]:
    """STRING metadata -> (real type, field length in bytes): the high bits of lengths over 255 are
    folded into the type byte (MySQL's ``Field_string::do_save_field_metadata``)."""
    byte0, byte1 = meta >> 8, meta & 0xFF
    if byte0 & 0x30 != 0x30:
        return byte0 | 0x30, byte1 | (((byte0 & 0x30) ^ 0x30) << 4)
    return byte0, byte1


def _check_compatible(target: Target, t: int, meta: int, describe: str) -> None:
    ctype = target.type
    real = _string_meta(meta)[0] if t == STRING else t
    allowed = COMPATIBLE.get(real)
    ok = allowed is not None and ctype.logical in allowed
    if ok and real in INT_BITS:
        ok = ctype.bits == INT_BITS[real]
    if ok and real in (FLOAT, DOUBLE):
        ok = ctype.bits == (32 if real == FLOAT else 64)
    if ok and real == NEWDECIMAL:
        ok = (ctype.precision, ctype.scale) == (meta >> 8, meta & 0xFF)
    if ok and real in (VARCHAR, VAR_STRING, STRING, BLOB):
        ok = (target.codec is None) == (ctype.logical in BINARY_LOGICALS)
    if not ok:
        raise LayoutMismatch(
            f"column {target.name} of {describe} is {ctype.native or ctype.describe()} in the table but "
            f"{TYPE_NAMES.get(real, f'type {real}')} in the binlog"
        )


def _column_code(i: int, t: int, meta: int, target: Target | None, names: dict[str, Any], safe: bool) -> list[str]:
    """Lines reading column ``i`` at ``p`` of ``d`` into ``v{i}`` and moving ``p`` past it."""
    v = f"v{i}"
    ctype = target.type if target is not None else None
    if t in STRUCT_CODES or t in (FLOAT, DOUBLE):
        code = _struct_code(t, target)
        assert code is not None
        names[f"_u{i}"] = struct.Struct("<" + code).unpack_from
        return [f"{v}, = _u{i}(d, p); p += {struct.calcsize(code)}"]
    if t == INT24:
        signed = not (ctype is not None and ctype.unsigned)
        return [f"{v} = from_bytes(d[p:p + 3], 'little', signed={signed}); p += 3"]
    if t == YEAR:
        return [f"{v} = d[p]; {v} = {v} + 1900 if {v} else 0; p += 1"]
    if t in (DATE, NEWDATE):
        names["_date"] = date_value
        return [f"{v} = _date(from_bytes(d[p:p + 3], 'little')); p += 3"]
    if t in (DATETIME2, TIMESTAMP2, TIME2, NEWDECIMAL):
        reader: Callable[[bytes, int], Any]
        if t == NEWDECIMAL:
            size, reader = decimal_reader(meta >> 8, meta & 0xFF)
        else:
            make = {DATETIME2: datetime2_reader, TIMESTAMP2: timestamp2_reader, TIME2: time2_reader}[t]
            size, reader = make(meta)
        names[f"_r{i}"] = reader
        return [f"{v} = _r{i}(d, p); p += {size}"]
    if t in (TIME, DATETIME, TIMESTAMP):
        size, func = OLD_TEMPORAL[t]
        names[f"_r{i}"] = func
        return [f"{v} = _r{i}(from_bytes(d[p:p + {size}], 'little')); p += {size}"]
    if t == BIT:
        nbytes = (meta & 0xFF) + (1 if meta >> 8 else 0)
        bits = int(ctype.length or 1) if ctype is not None else 1
        return [f"{v} = format(from_bytes(d[p:p + {nbytes}], 'big'), '0{bits}b'); p += {nbytes}"]
    if t == STRING:
        real, length = _string_meta(meta)
        if real == ENUM:
            names[f"_e{i}"] = ("", *(ctype.values if ctype is not None else ()))
            index = "d[p]" if length == 1 else "d[p] | d[p + 1] << 8"
            return [f"x = {index}; {v} = _e{i}[x] if x < {len(names[f'_e{i}'])} else ''; p += {length}"]
        if real == SET:
            names["_set_text"] = _set_text
            names[f"_m{i}"] = tuple(ctype.values) if ctype is not None else ()
            return [f"{v} = _set_text(_m{i}, from_bytes(d[p:p + {length}], 'little')); p += {length}"]
        prefix = 1 if length < 256 else 2
        pad = length if target is not None and target.codec is None else 0
        lines = _sized_value(v, prefix, target, safe, pad)
        convert = FIXED_BINARY.get(ctype.logical) if ctype is not None else None
        if convert is not None:  # MariaDB's UUID / INET4 / INET6: fixed binary, read as the server prints them
            names[f"_c{i}"] = convert
            lines.append(f"{v} = _c{i}({v})")
        return lines
    if t in (VARCHAR, VAR_STRING):
        return _sized_value(v, 1 if meta < 256 else 2, target, safe, 0)
    if t in (BLOB, GEOMETRY, JSON):
        if t == JSON:
            raise Unsupported("MySQL's binary JSON in the binlog cannot be decoded yet (MariaDB's JSON is text)")
        return _sized_value(v, meta, target, safe, 0)
    raise Unsupported(f"column type {TYPE_NAMES.get(t, t)} in the binlog cannot be decoded")


def _little_endian(size: int) -> str:
    """An expression reading the unsigned little-endian integer of ``size`` bytes at ``d[p]``: short
    ones byte by byte, which is quicker than slicing for ``int.from_bytes``."""
    if size == 1:
        return "d[p]"
    if size == 2:
        return "(d[p] | d[p + 1] << 8)"
    return f"from_bytes(d[p:p + {size}], 'little')"


def _sized_value(v: str, prefix: int, target: Target | None, safe: bool, pad: int) -> list[str]:
    """A value after its little-endian length of ``prefix`` bytes: bytes, or text in the column's
    character set. BINARY(n) values lose their trailing zero bytes in the binlog: ``pad`` restores them."""
    length = _little_endian(prefix)
    x = f"d[p:e].ljust({pad}, b'\\x00')" if pad else "d[p:e]"
    codec = target.codec if target is not None else None
    if codec is None:
        value = x
    elif safe:
        value = f"_bytes_or_text({x}, {codec!r})"
    else:
        value = f"{x}.decode({codec!r})" if codec != "utf-8" else f"{x}.decode()"
    return [f"e = p + {prefix} + {length}; p += {prefix}", f"{v} = {value}; p = e"]
