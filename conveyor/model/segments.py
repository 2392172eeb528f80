"""Segments: the unit of full-load work, serialisable so any executor can run it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from conveyor.model.schema import TableId


@dataclass(frozen=True, slots=True)
class Condition:
    """One DMS filter condition: ``op`` is eq, noteq, lte, gte, between, notbetween, null or notnull;
    ``values`` are written as in the table mapping (strings, numbers), read by the column's type."""

    op: str
    values: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceFilter:
    """A DMS source filter on one column: its conditions are ORed (filters are ANDed)."""

    column: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class SourcePartition:
    """One partition of a source table: a PostgreSQL partition (a table of its own, any schema), or a
    MySQL / MariaDB partition or subpartition (``id.schema`` is the table's)."""

    id: TableId
    #: the partitions it belongs to, the top level first (empty: a top-level partition)
    ancestors: tuple[TableId, ...]
    #: holds rows itself (no subpartitions)
    leaf: bool


@dataclass(frozen=True, slots=True)
class Segment:
    """A slice of one source table.

    ``kind`` is ``all`` (the whole table), ``range`` (``column`` in ``[lo, hi)``, an open end is
    None), ``ctid`` (PostgreSQL heap pages ``[lo, hi)``, for tables without a key) or ``bounds``
    (DMS parallel-load ranges: the row value of ``columns`` in ``(lo, hi]``, an open end is None) or
    ``partitions`` (DMS partitions-auto / partitions-list / subpartitions-auto: the rows of the source
    ``partitions``, read from them alone). ``filters`` (DMS source filters) restrict every kind.
    """

    table: TableId
    number: int
    kind: str = "all"
    column: str | None = None
    lo: Any = None
    hi: Any = None
    columns: tuple[str, ...] = ()
    filters: tuple[SourceFilter, ...] = ()
    partitions: tuple[TableId, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["table"] = [self.table.schema, self.table.name]
        data["partitions"] = [[p.schema, p.name] for p in self.partitions]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        schema, name = data["table"]
        filters = tuple(
            SourceFilter(f["column"], tuple(Condition(c["op"], tuple(c["values"])) for c in f["conditions"]))
            for f in data.get("filters", ())
        )
        lo, hi = data["lo"], data["hi"]
        if data["kind"] == "bounds":
            lo, hi = (tuple(lo) if lo is not None else None), (tuple(hi) if hi is not None else None)
        return cls(
            TableId(schema, name),
            data["number"],
            data["kind"],
            data["column"],
            lo,
            hi,
            tuple(data.get("columns", ())),
            filters,
            tuple(TableId(schema, name) for schema, name in data.get("partitions", ())),
        )
