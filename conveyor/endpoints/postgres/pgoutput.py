"""Decoding pgoutput, PostgreSQL's logical replication protocol (version 1), into Transactions.

Pure: payloads of XLogData messages in, model objects out; no I/O. ``capture.py`` feeds it from the
replication connection; the unit tests feed it captured bytes.

Values arrive as the type's text output (the walsender session's DateStyle, IntervalStyle, ...
are set by ``replication.py``) and must become exactly what the snapshot reader gives for the same
row (``types.select_expression`` + psycopg's binary loaders). Most types go through psycopg's text
loaders, which are C code: a relation's columns get one ``Transformer`` whose ``load_sequence``
decodes a whole row in one call. The columns the snapshot casts are mapped to the loader of the
cast's result (json, interval, bit, inet, ... stay text, oid loads as int8), and a few Python
loaders cover what text cannot give directly: money (the digits of its text, scaled like
``money::numeric``), real (rounded to 32 bits, as the binary loader returns it) and arrays of inet
(with the mask ``inet[]::text[]`` spells out).

Positions are LSNs as ints. A transaction's ``commit_position`` is the end of its commit record:
the point to store as a checkpoint and to confirm to the server (decoding from there resends
nothing already committed before it, and skips nothing after).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from types import CodeType, FunctionType
from typing import Any

from psycopg import DataError, postgres, pq
from psycopg.adapt import AdaptersMap, Loader, Transformer

from conveyor.endpoints.postgres.types import ARRAY_CASTS, NATIVE_TO_LOGICAL, SELECT_CASTS, extra_value, far_date_text
from conveyor.errors import TerminalError
from conveyor.model.changes import UNCHANGED, Change, Op, Transaction, change_from_fields
from conveyor.model.rows import Row
from conveyor.model.schema import TableId
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

ENGINE = "postgresql"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TEXT_OID = 25
TEXT_ARRAY_OID = 1009
INT8_OID = 20
INT8_ARRAY_OID = 1016
FLOAT4_OID = 700
FLOAT4_ARRAY_OID = 1021
MONEY_OID = 790
MONEY_ARRAY_OID = 791
INET_ARRAY_OID = 1041
#: types the snapshot reads through a cast to text (``types.SELECT_CASTS``): their text output is the value
TEXT_TYPES = frozenset(name for name, cast in SELECT_CASTS.items() if cast == "{}::text") | {"inet", "xml"}
DATETIME_TYPES = frozenset({"date", "time", "timetz", "timestamp", "timestamptz"})


# --------------------------------------------------------------------------- positions
def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL spells it: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """``16/B374D848`` -> int; raises ValueError on anything else."""
    high, sep, low = text.strip().partition("/")
    if not sep or not high or not low or len(high) > 8 or len(low) > 8:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def pg_timestamp(micros: int) -> datetime:
    """A protocol timestamp (microseconds since 2000-01-01 UTC) as an aware datetime."""
    return PG_EPOCH + timedelta(microseconds=micros)


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class RelationColumn:
    name: str
    type_oid: int
    typmod: int
    #: part of the replica identity (the primary key, the identity index, or every column with FULL)
    key: bool
    type: ColumnType


@dataclass(frozen=True, slots=True)
class Relation:
    """A table as a Relation message describes it."""

    oid: int
    table: TableId
    #: ``d`` default (primary key), ``n`` nothing, ``f`` full, ``i`` index
    replica_identity: str
    columns: tuple[RelationColumn, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    @property
    def signature(self) -> tuple[tuple[str, str], ...]:
        """(column, native type) pairs: what a schema change alters."""
        return tuple((c.name, c.type.native) for c in self.columns)


@dataclass(frozen=True, slots=True)
class RelationChanged:
    """A table's columns (or name) differ from what was known: from an earlier Relation message of
    this session, or from the table description the capture was given. Reported at ``position``,
    before the transaction that holds it; each ``Change`` carries its own ``columns``."""

    table: TableId
    old_table: TableId
    old: tuple[tuple[str, str], ...]
    new: tuple[tuple[str, str], ...]
    relation: Relation
    position: int

    def describe(self, renamed: Sequence[tuple[str, str]] | None = None) -> str:
        """What changed, for people; ``renamed``: the column renames where they are known."""
        old, new = dict(self.old), dict(self.new)
        was, now = {o for o, _ in renamed or ()}, {n for _, n in renamed or ()}
        parts = [f"renamed from {self.old_table}"] if self.old_table != self.table else []
        parts += [f"renamed column {o} to {n}" for o, n in renamed or ()]
        parts += [f"added {n} ({t})" for n, t in self.new if n not in old and n not in now]
        parts += [f"dropped {n}" for n in old if n not in new and n not in was]
        parts += [f"{n}: {old[n]} -> {t}" for n, t in self.new if n in old and old[n] != t]
        if not parts and [n for n, _ in self.old] != [n for n, _ in self.new]:
            parts.append("columns reordered")
        return f"table {self.table} changed at {format_lsn(self.position)}: {', '.join(parts) or 'columns differ'}"


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A ``pg_logical_emit_message`` record (only sent with the ``messages`` option)."""

    transactional: bool
    position: int
    prefix: str
    content: bytes


Event = Transaction | RelationChanged | LogicalMessage


class DecodeError(TerminalError):
    """The stream holds something this decoder cannot read (a bug, or an option it did not ask for)."""


# --------------------------------------------------------------------------- types
TypeResolver = Callable[[int, int], ColumnType]

_EXTRA_BUILTINS = {18: "char"}  # "char" is missing from psycopg's registry


def _builtin_maps() -> tuple[dict[int, str], dict[int, str]]:
    scalars: dict[int, str] = dict(_EXTRA_BUILTINS)
    arrays: dict[int, str] = {1002: "char"}
    for info in postgres.types:
        scalars.setdefault(info.oid, info.name)
        if info.array_oid:
            arrays.setdefault(info.array_oid, info.name)
    return scalars, arrays


_SCALARS, _ARRAYS = _builtin_maps()
_OID_BY_NAME = {name: oid for oid, name in _SCALARS.items()}
_ARRAY_OID_BY_NAME = {name: oid for oid, name in _ARRAYS.items()}


def builtin_type(oid: int, typmod: int = -1) -> ColumnType:
    """A ColumnType for a built-in type oid without asking the catalog (user types are DYNAMIC, i.e.
    text). ``capture.py`` resolves types through the introspector instead, which knows domains and enums."""

    def scalar(name: str) -> ColumnType:
        logical = NATIVE_TO_LOGICAL.get(name, L.DYNAMIC)
        return ColumnType(logical, native=name, engine=ENGINE, extra=(("typname", name), ("typtype", "b")))

    if oid in _SCALARS:
        return scalar(_SCALARS[oid])
    if oid in _ARRAYS:
        element = scalar(_ARRAYS[oid])
        return ColumnType(L.ARRAY, element=element, native=f"{element.native}[]", engine=ENGINE)
    return ColumnType(L.DYNAMIC, native=str(oid), engine=ENGINE, extra=(("typname", ""), ("user_type", "1")))


def loader_oid(t: ColumnType) -> int:
    """The oid whose text loader turns a column's text output into the value the snapshot reader
    gives (mirrors ``types.select_expression``)."""
    typname = extra_value(t, "typname") or ""
    if t.logical is L.ARRAY:
        element = t.element
        etype = extra_value(element, "typname") if element is not None else None
        if element is None or not etype:
            return TEXT_ARRAY_OID
        if etype == "inet":
            return INET_ARRAY_OID  # text[] with the mask always written, see _InetArrayLoader
        if etype in ARRAY_CASTS:
            return {"money": MONEY_ARRAY_OID, "oid": INT8_ARRAY_OID}.get(etype, TEXT_ARRAY_OID)
        if element.logical in (L.ENUM, L.DYNAMIC):
            return TEXT_ARRAY_OID
        return _ARRAY_OID_BY_NAME.get(etype, TEXT_ARRAY_OID)
    if typname == "money":
        return MONEY_OID
    if typname == "oid":
        return INT8_OID
    if typname in TEXT_TYPES or t.logical in (L.ENUM, L.DYNAMIC):
        return TEXT_OID
    return _OID_BY_NAME.get(typname, TEXT_OID)


# --------------------------------------------------------------------------- Python loaders
_F32 = struct.Struct("f")
_NOT_DIGITS = re.compile(rb"[^0-9]")


def _float4(data: Any) -> float:
    # the text is the shortest that round-trips a 32-bit float; the binary loader gives that float exactly
    value: float = _F32.unpack(_F32.pack(float(bytes(data))))[0]
    return value


def _nested(fn: Callable[[Any], Any], value: list[Any]) -> list[Any]:
    return [_nested(fn, v) if isinstance(v, list) else (None if v is None else fn(v)) for v in value]


class _Float4Loader(Loader):
    def load(self, data: Any) -> float:
        return _float4(data)


class _TextArrayLoader(Loader):
    """Loads an array as text[], then maps its elements."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        adapters = context.adapters if context is not None else postgres.adapters
        loader = adapters.get_loader(TEXT_ARRAY_OID, pq.Format.TEXT)
        assert loader is not None
        self._inner = loader(TEXT_ARRAY_OID, context).load


class _Float4ArrayLoader(_TextArrayLoader):
    def load(self, data: Any) -> list[Any]:
        return _nested(lambda v: _float4(v.encode()), self._inner(data))


def _with_mask(address: str) -> str:
    return address if "/" in address else f"{address}/{128 if ':' in address else 32}"


class _InetArrayLoader(_TextArrayLoader):
    def load(self, data: Any) -> list[Any]:
        return _nested(_with_mask, self._inner(data))


def money_parser(scale: int) -> Callable[[Any], Decimal]:
    """money's text (with lc_monetary=C: ``-$1,234.56``) -> the Decimal of ``money::numeric``.

    The text holds every digit of the stored integer; ``scale`` is the fraction digits of the
    server's lc_monetary (what ``money::numeric`` uses), asked by ``capture.py``."""

    def parse(data: Any) -> Decimal:
        raw = bytes(data)
        digits = _NOT_DIGITS.sub(b"", raw) or b"0"
        negative = b"-" in raw or b"(" in raw
        return Decimal(-int(digits) if negative else int(digits)).scaleb(-scale)

    return parse


def _adapters(money_scale: int) -> AdaptersMap:
    parse = money_parser(money_scale)

    class MoneyLoader(Loader):
        def load(self, data: Any) -> Decimal:
            return parse(data)

    class MoneyArrayLoader(_TextArrayLoader):
        def load(self, data: Any) -> list[Any]:
            return _nested(lambda v: parse(v.encode()), self._inner(data))

    adapters = AdaptersMap(postgres.adapters)
    adapters.register_loader(FLOAT4_OID, _Float4Loader)
    adapters.register_loader(FLOAT4_ARRAY_OID, _Float4ArrayLoader)
    adapters.register_loader(INET_ARRAY_OID, _InetArrayLoader)
    adapters.register_loader(MONEY_OID, MoneyLoader)
    adapters.register_loader(MONEY_ARRAY_OID, MoneyArrayLoader)
    return adapters


# --------------------------------------------------------------------------- out-of-range dates
def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, any (astronomical) year."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_PG_EPOCH_DAYS = _days_from_civil(2000, 1, 1)
_DAY_MICROS = 86_400_000_000
_DATETIME_TEXT = re.compile(
    r"(\d+)-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d)(?:\.(\d+))?)?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$"
)


def out_of_range_text(typname: str, text: str) -> str:
    """What the snapshot reader gives for a date/time Python cannot hold (``types.out_of_range_text``,
    which works from the binary value), from the text output (a timestamptz in the session's zone)."""
    if text in ("infinity", "-infinity"):
        return text
    if typname in ("time", "timetz"):
        return "24:00:00"
    m = _DATETIME_TEXT.match(text)
    if m is None:
        raise DecodeError(f"cannot read {typname} value {text!r}")
    year, month, day, hh, mi, ss, frac, sign, oh, om, os_, bc = m.groups()
    y = 1 - int(year) if bc else int(year)
    days = _days_from_civil(y, int(month), int(day)) - _PG_EPOCH_DAYS
    if typname == "date":
        return far_date_text(typname, days * _DAY_MICROS)
    seconds = ((days * 24 + int(hh or 0)) * 60 + int(mi or 0)) * 60 + int(ss or 0)
    if sign:
        offset = int(oh) * 3600 + int(om or 0) * 60 + int(os_ or 0)
        seconds -= offset if sign == "+" else -offset
    return far_date_text(typname, seconds * 1_000_000 + int((frac or "0").ljust(6, "0")[:6]))


# --------------------------------------------------------------------------- relations
_I16 = struct.Struct(">h").unpack_from
_I32 = struct.Struct(">i").unpack_from
_U32 = struct.Struct(">I").unpack_from
_BEGIN = struct.Struct(">QqI").unpack_from
_COMMIT = struct.Struct(">BQQq").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_COLUMN_TYPE = struct.Struct(">Ii").unpack_from


class _RelationState:
    """A relation with its loaders, precomputed once per Relation message."""

    __slots__ = (
        "fallbacks",
        "key_index",
        "keyed",
        "load",
        "loaders",
        "names",
        "ncols",
        "read",
        "read_key",
        "relation",
        "table",
        "text",
    )

    def __init__(self, relation: Relation, adapters: AdaptersMap, text: bool = False) -> None:
        self.relation = relation
        #: values stay the server's text form (``PgOutputDecoder.text_tables``)
        self.text = text
        self.table = relation.table
        self.names = relation.names
        self.ncols = len(relation.columns)
        oids = [loader_oid(c.type) for c in relation.columns]
        tx = Transformer(adapters)
        tx.set_loader_types(oids, pq.Format.TEXT)
        self.load: Callable[[list[Any]], Row] = tx.load_sequence
        self.loaders = [tx.get_loader(oid, pq.Format.TEXT).load for oid in oids]
        self.fallbacks = [
            name
            if c.type.logical is not L.ARRAY and (name := extra_value(c.type, "typname")) in DATETIME_TYPES
            else None
            for c in relation.columns
        ]
        self.key_index = tuple(i for i, c in enumerate(relation.columns) if c.key)
        #: keyed(row): the row reduced to its replica identity, the other columns UNCHANGED
        self.keyed: Callable[[Row], Row] = _compile(
            "keyed", ["def keyed(r):", f"    return ({_tuple_of(self._key_items('r[{}]'))})"], {"U": UNCHANGED}
        )
        #: read(data, pos) -> (row, position after it): the TupleData at pos; read_key: the same reduced to
        #: the replica identity (an old key tuple)
        self.read: Callable[[bytes, int], tuple[Row, int]]
        self.read_key: Callable[[bytes, int], tuple[Row, int]]
        self.read, self.read_key = self._readers()

    def _key_items(self, key: str) -> list[str]:
        keys = set(self.key_index)
        return [key.format(i) if i in keys else "U" for i in range(self.ncols)]

    def _readers(self) -> tuple[Callable[[bytes, int], tuple[Row, int]], Callable[[bytes, int], tuple[Row, int]]]:
        """``read`` and ``read_key``, unrolled: one block per column, the row built from locals (a loop over
        the columns into a list cost ~25% more per 8-column tuple). Anything but the common case (a column
        count or kind this code does not know, a value the loaders refuse, TOAST outside a text table) goes
        to ``tuple_at``, which handles it or says what is wrong. Only a text table's key reader skips the
        other columns; elsewhere the whole row is loaded, then keyed."""
        text = self.text
        head = ["    p0 = p", f"    if d[p] << 8 | d[p + 1] != {self.ncols}:", "        return slow(d, p)"]
        head.append("    p += 2")
        blocks = []
        for i in range(self.ncols):
            blocks.append(
                [
                    "    k = d[p]",
                    "    if k == 116:",
                    "        q = p + 5",
                    "        p = q + i32(d, p + 1)[0]",
                    f"        v{i} = d[q:p].decode()" if text else f"        v{i} = d[q:p]",
                    "    elif k == 110:",
                    "        p += 1",
                    f"        v{i} = None",
                    *(["    elif k == 117:", "        p += 1", f"        v{i} = U"] if text else []),
                    "    else:",
                    "        return slow(d, p0)",
                ]
            )
        read = ["def read(d, p):", *head, *(line for block in blocks for line in block)]
        values = _tuple_of([f"v{i}" for i in range(self.ncols)])
        names = {"U": UNCHANGED, "i32": _I32, "slow": self.tuple_at, "load": self.load}
        if not text:
            read += ["    try:", f"        return load([{values}]), p", "    except Exception:"]
            read.append("        return slow(d, p0)")
            return _compile("read", read, names), self._key_at
        read.append(f"    return ({values}), p")
        skip = [  # a column outside the replica identity: UNCHANGED in the keyed row whatever it holds
            "    k = d[p]",
            "    if k == 110 or k == 117:",
            "        p += 1",
            "    elif k == 116:",
            "        p += 5 + i32(d, p + 1)[0]",
            "    else:",
            "        return slow(d, p0)",
        ]
        keys = set(self.key_index)
        read_key = ["def read_key(d, p):", *head]
        for i, block in enumerate(blocks):
            read_key += block if i in keys else skip
        read_key.append(f"    return ({_tuple_of(self._key_items('v{}'))}), p")
        return _compile("read", read, names), _compile("read_key", read_key, {**names, "slow": self._key_at})

    def tuple_at(self, data: bytes, pos: int) -> tuple[Row, int]:
        """TupleData at ``pos`` -> (canonical row, position after it), column by column."""
        ncols = (data[pos] << 8) | data[pos + 1]
        if ncols != self.ncols:
            raise DecodeError(f"a tuple of {ncols} columns for {self.table}, which has {self.ncols}")
        pos += 2
        raw: list[Any] = [None] * ncols
        unchanged: list[int] | None = None
        i32 = _I32
        text = self.text
        for i in range(ncols):
            kind = data[pos]
            if kind == 116:  # 't' text
                start = pos + 5
                pos = start + i32(data, pos + 1)[0]
                raw[i] = data[start:pos].decode() if text else data[start:pos]
            elif kind == 110:  # 'n' NULL
                pos += 1
            elif kind == 117:  # 'u' unchanged TOAST
                pos += 1
                if unchanged is None:
                    unchanged = []
                unchanged.append(i)
            else:
                raise DecodeError(f"tuple column kind {chr(kind)!r} in {self.table} (binary mode is not requested)")
        if text:
            row = tuple(raw)
        else:
            try:
                row = self.load(raw)
            except Exception:  # a date Python cannot hold (or a bug): column by column, to say which
                row = self.slow_load(raw)
        if unchanged is not None:
            values = list(row)
            for i in unchanged:
                values[i] = UNCHANGED
            row = tuple(values)
        return row, pos

    def _key_at(self, data: bytes, pos: int) -> tuple[Row, int]:
        row, pos = self.read(data, pos)
        return self.keyed(row), pos

    def slow_load(self, raw: list[Any]) -> Row:
        """Column by column, dates Python cannot hold kept as text (the snapshot reader's fallback)."""
        out: list[Any] = []
        for value, load, typname, column in zip(raw, self.loaders, self.fallbacks, self.relation.columns, strict=True):
            if value is None:
                out.append(None)
                continue
            try:
                out.append(load(value))
            except Exception as exc:
                if typname is None or not isinstance(exc, DataError):
                    raise DecodeError(f"cannot read column {column.name} of {self.table}: {exc}") from None
                out.append(out_of_range_text(typname, bytes(value).decode()))
        return tuple(out)


def _tuple_of(items: Sequence[str]) -> str:
    """A tuple display of Python expressions (``a, b,``; empty for none)."""
    return "".join(f"{item}, " for item in items)


def _compile(name: str, lines: Sequence[str], names: dict[str, Any]) -> Callable[..., Any]:
    """The function ``name`` that ``lines`` define (code made here from column counts and positions, never
    from the stream's names or values), with ``names`` as its globals."""
    return FunctionType(_code(name, "\n".join(lines)), names)


@lru_cache(maxsize=256)
def _code(name: str, source: str) -> CodeType:
    """Compiled once per shape (column count, key columns): tables alike share it, and a Relation message
    sent again (after any invalidation of the walsender's cache) costs no compilation."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<conveyor pgoutput {name}>", "exec"), namespace)
    code: CodeType = namespace[name].__code__
    return code


# --------------------------------------------------------------------------- the decoder
_INSERT, _UPDATE, _DELETE, _TRUNCATE = Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE


class PgOutputDecoder:
    """Feeds on XLogData payloads in stream order; returns an event when one is complete.

    ``resolve_type(oid, typmod)`` describes a column type (the introspector's, so domains, enums and
    user types are read as the snapshot reads them; default: built-in types only). ``expected``
    holds (column, native type) pairs per table as the task knows them: a first Relation message
    that differs is a ``RelationChanged`` too (the table changed while nothing was streaming).
    """

    def __init__(
        self,
        resolve_type: TypeResolver | None = None,
        *,
        money_scale: int = 2,
        expected: Mapping[TableId, Sequence[tuple[str, str]]] | None = None,
        part_changes: int | None = None,
        part_bytes: int | None = None,
        text_tables: Collection[TableId] = (),
    ) -> None:
        #: tables whose values stay the server's text form (str), for a PostgreSQL target that reads
        #: them as they are: exact by construction, and no parsing into Python values and back
        self.text_tables = frozenset(text_tables)
        #: a transaction with more changes than this, or more bytes of change messages, is returned in
        #: parts (``Transaction.partial``)
        self.part_changes = part_changes
        self.part_bytes = part_bytes
        self.resolve_type: TypeResolver = resolve_type or builtin_type
        #: the last known (column, native type) pairs of each table
        self.known: dict[TableId, tuple[tuple[str, str], ...]] = {
            table: tuple(pairs) for table, pairs in (expected or {}).items()
        }
        self._adapters = _adapters(money_scale)
        self._relations: dict[int, _RelationState] = {}
        #: user types announced by Type messages: oid -> (schema, name)
        self.types: dict[int, tuple[str, str]] = {}
        self.origin: str | None = None
        self._pending: list[Change] | None = None
        #: bytes of the change messages in ``_pending``
        self._pending_bytes = 0
        self._xid = 0
        self._commit_ts: datetime | None = None
        self._final_lsn = 0
        self._begin_lsn = 0

    @property
    def in_transaction(self) -> bool:
        return self._pending is not None

    @property
    def pending_changes(self) -> int:
        return len(self._pending) if self._pending is not None else 0

    def relation(self, oid: int) -> Relation | None:
        state = self._relations.get(oid)
        return state.relation if state is not None else None

    def feed(self, data: bytes, lsn: int) -> Event | None:
        """Decode one pgoutput message whose XLogData started at ``lsn``."""
        kind = data[0]
        pending = self._pending
        if kind == 73 or kind == 85 or kind == 68:  # a row change: nearly every message, so all inline
            rel = self._relations.get(_U32(data, 1)[0]) or self._known(_U32(data, 1)[0])
            marker = data[5]
            before: Row | None = None
            after: Row | None = None
            if kind == 73:  # 'I' insert
                if marker != 78:
                    raise DecodeError(f"insert without a new tuple at {format_lsn(lsn)}")
                op = _INSERT
                after, _ = rel.read(data, 6)
            elif kind == 85:  # 'U' update
                op = _UPDATE
                pos = 6
                if marker == 75:  # 'K' old key
                    before, pos = rel.read_key(data, 6)
                    marker = data[pos]
                    pos += 1
                elif marker == 79:  # 'O' old row
                    before, pos = rel.read(data, 6)
                    marker = data[pos]
                    pos += 1
                if marker != 78:
                    raise DecodeError(f"update without a new tuple at {format_lsn(lsn)}")
                after, _ = rel.read(data, pos)
                if before is None and rel.key_index:
                    before = rel.keyed(after)  # key unchanged: the new row's key identifies the old one
            else:  # 'D' delete
                if marker != 75 and marker != 79:
                    raise DecodeError(f"delete without an old tuple at {format_lsn(lsn)}")
                op = _DELETE
                before, _ = rel.read_key(data, 6) if marker == 75 else rel.read(data, 6)
            if pending is None:
                raise DecodeError(f"a change outside a transaction at {format_lsn(lsn)}")
            pending.append(change_from_fields((op, rel.table, rel.names, before, after, lsn)))
            size = self._pending_bytes = self._pending_bytes + len(data)
            if (self.part_changes is not None and len(pending) >= self.part_changes) or (
                self.part_bytes is not None and size >= self.part_bytes
            ):
                return self._part(pending)
            return None
        if kind == 66:  # 'B' begin
            if pending is not None:
                raise DecodeError(f"BEGIN inside a transaction at {format_lsn(lsn)}")
            self._final_lsn, ts, self._xid = _BEGIN(data, 1)
            self._begin_lsn = lsn
            self._commit_ts = pg_timestamp(ts)
            self._pending = []
            self._pending_bytes = 0
            self.origin = None
            return None
        if kind == 67:  # 'C' commit
            if pending is None:
                raise DecodeError(f"COMMIT outside a transaction at {format_lsn(lsn)}")
            _, _commit_lsn, end_lsn, ts = _COMMIT(data, 1)
            self._pending = None
            return Transaction(self._xid, end_lsn, pg_timestamp(ts), pending, size=self._pending_bytes)
        if kind == 82:  # 'R' relation
            return self._relation(data, lsn)
        if kind == 84:  # 'T' truncate
            (count,) = _I32(data, 1)
            pos = 6  # after the options byte (CASCADE / RESTART IDENTITY: the message lists every table)
            if pending is None:
                raise DecodeError(f"a change outside a transaction at {format_lsn(lsn)}")
            for _ in range(count):
                (oid,) = _U32(data, pos)
                pos += 4
                rel = self._known(oid)
                pending.append(change_from_fields((_TRUNCATE, rel.table, rel.names, None, None, lsn)))
            return None
        if kind == 89:  # 'Y' type
            (oid,) = _U32(data, 1)
            schema, pos = _cstring(data, 5)
            name, _ = _cstring(data, pos)
            self.types[oid] = (schema, name)
            return None
        if kind == 79:  # 'O' origin
            (_origin_lsn,) = _U64(data, 1)
            self.origin, _ = _cstring(data, 9)
            return None
        if kind == 77:  # 'M' logical decoding message
            flags = data[1]
            (msg_lsn,) = _U64(data, 2)
            prefix, pos = _cstring(data, 10)
            (size,) = _I32(data, pos)
            return LogicalMessage(bool(flags & 1), msg_lsn, prefix, bytes(data[pos + 4 : pos + 4 + size]))
        if kind in b"SEcAbPKrp":
            raise DecodeError(
                f"pgoutput message {chr(kind)!r} at {format_lsn(lsn)} belongs to streamed or two-phase "
                "transactions, which this capture does not request"
            )
        raise DecodeError(f"unknown pgoutput message {chr(kind)!r} at {format_lsn(lsn)}")

    # ------------------------------------------------------------------ parts
    def _part(self, pending: list[Change]) -> Transaction:
        """The changes so far (``pending``) of a transaction that grew to ``part_changes`` or ``part_bytes``,
        handed out early."""
        self._pending = []
        size, self._pending_bytes = self._pending_bytes, 0
        return Transaction(self._xid, None, self._commit_ts, pending, partial=True, size=size)

    def _known(self, oid: int) -> _RelationState:
        state = self._relations.get(oid)
        if state is None:
            raise DecodeError(f"a change for relation oid {oid} before its Relation message")
        return state

    def _relation(self, data: bytes, lsn: int) -> RelationChanged | None:
        lsn = lsn or self._begin_lsn  # the walsender sends Relation messages without a position
        (oid,) = _U32(data, 1)
        schema, pos = _cstring(data, 5)
        name, pos = _cstring(data, pos)
        identity = chr(data[pos])
        (ncols,) = _I16(data, pos + 1)
        pos += 3
        columns = []
        for _ in range(ncols):
            flags = data[pos]
            column, pos = _cstring(data, pos + 1)
            type_oid, typmod = _COLUMN_TYPE(data, pos)
            pos += 8
            columns.append(
                RelationColumn(column, type_oid, typmod, bool(flags & 1), self.resolve_type(type_oid, typmod))
            )
        table = TableId(schema or "pg_catalog", name)
        relation = Relation(oid, table, identity, tuple(columns))
        old = self._relations.get(oid)
        old_table = old.table if old is not None else table
        old_signature = old.relation.signature if old is not None else self.known.get(table)
        self._relations[oid] = _RelationState(relation, self._adapters, table in self.text_tables)
        self.known[table] = relation.signature
        if old_signature is not None and (old_table != table or old_signature != relation.signature):
            return RelationChanged(table, old_table, old_signature, relation.signature, relation, lsn)
        return None


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(0, pos)
    return bytes(data[pos:end]).decode(), end + 1
