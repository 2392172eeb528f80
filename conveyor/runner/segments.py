"""Splitting tables into segments that load in parallel and commit independently."""

from __future__ import annotations

import math
from dataclasses import replace

from conveyor.endpoints.base import Partitions, SnapshotReader
from conveyor.errors import ConfigError
from conveyor.model.schema import Table, TableId
from conveyor.model.segments import Segment, SourceFilter, SourcePartition
from conveyor.model.types import LogicalType
from conveyor.transform.table_settings import PARTITION_TYPES, ParallelLoad

#: rows per segment: big enough to amortise a transaction, small enough to resume cheaply
ROWS_PER_SEGMENT = 200_000
#: heap pages per ctid segment (8 KiB pages)
MIN_PAGES_PER_SEGMENT = 2_000


def range_column(table: Table) -> str | None:
    """The integer primary-key column (first of a composite key) that key ranges split on."""
    if not table.primary_key:
        return None
    first = table.column(table.primary_key.columns[0])
    return first.name if first.type.logical is LogicalType.INTEGER else None


def plan_segments(
    reader: SnapshotReader,
    table: Table,
    estimated_rows: int,
    ctid: bool,
    rows_per_segment: int | None = None,
    parallel: ParallelLoad | None = None,
    filters: tuple[SourceFilter, ...] = (),
) -> list[Segment]:
    """The table's segments: DMS parallel-load ``ranges``, ``none`` or by partition where a table-settings
    rule says so, else (and for ``partitions-auto`` on a table without partitions) an automatic split; each
    carries the source filters."""
    if parallel is not None and parallel.type in PARTITION_TYPES:
        by_partition = partition_segments(reader, table, parallel)
        if by_partition:
            return [replace(s, filters=filters) for s in by_partition]
    if parallel is not None and parallel.type == "ranges":
        points: list[tuple[object, ...] | None] = [None, *parallel.boundaries, None]
        return [
            Segment(table.id, i, "bounds", None, points[i], points[i + 1], parallel.columns, filters)
            for i in range(len(points) - 1)
        ]
    if parallel is not None and parallel.type == "none":
        return [Segment(table.id, 0, filters=filters)]
    segments = _automatic(reader, table, estimated_rows, ctid, rows_per_segment)
    return [replace(s, filters=filters) for s in segments] if filters else segments


def partition_segments(reader: SnapshotReader, table: Table, parallel: ParallelLoad) -> list[Segment]:
    """DMS's segments by source partition: ``partitions-auto`` one per top-level partition,
    ``subpartitions-auto`` one per lowest-level partition, ``partitions-list`` one per listed partition and
    one for the rest. Empty for ``partitions-auto`` on a table without partitions."""
    here = f"rule-id {parallel.rule_id}: parallel-load {parallel.type} on {table.id}"
    if not isinstance(reader, Partitions):
        raise ConfigError(f"{here}: the source engine has no table partitions; use ranges or none")
    partitions = reader.partitions(table)
    if not partitions:
        if parallel.type == "partitions-auto":
            return []
        raise ConfigError(f"{here}: the table is not partitioned; use ranges, partitions-auto or none")
    if parallel.type == "partitions-auto":
        chosen = [p for p in partitions if not p.ancestors]
    elif parallel.type == "subpartitions-auto":
        chosen = [p for p in partitions if p.leaf]
    else:
        chosen = _listed(here, partitions, parallel.partitions)
    groups: list[tuple[TableId, ...]] = [(p.id,) for p in chosen]
    if parallel.type == "partitions-list":
        covered = {p.id for p in chosen}
        rest = tuple(p.id for p in partitions if p.leaf and not covered.intersection((p.id, *p.ancestors)))
        if rest:
            groups.append(rest)
    return [Segment(table.id, i, "partitions", partitions=group) for i, group in enumerate(groups)]


def _listed(here: str, partitions: list[SourcePartition], names: tuple[str, ...]) -> list[SourcePartition]:
    """The partitions ``names`` lists, each existing once, none inside another listed one (its rows twice)."""
    by_name: dict[str, list[SourcePartition]] = {}
    for p in partitions:
        by_name.setdefault(p.id.name, []).append(p)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(by_name)
        raise ConfigError(f"{here}: no partition {', '.join(unknown)} (the table's partitions: {known})")
    ambiguous = [n for n in names if len(by_name[n]) > 1]
    if ambiguous:
        raise ConfigError(f"{here}: several partitions are named {', '.join(ambiguous)} (in different schemas)")
    chosen = [by_name[n][0] for n in names]
    ids = {p.id for p in chosen}
    nested = [f"{p.id.name} (in {a.name})" for p in chosen for a in p.ancestors if a in ids]
    if nested:
        raise ConfigError(f"{here}: lists partitions inside listed partitions: {', '.join(nested)}")
    return chosen


def _automatic(
    reader: SnapshotReader, table: Table, estimated_rows: int, ctid: bool, rows_per_segment: int | None
) -> list[Segment]:
    wanted = max(1, math.ceil(estimated_rows / (rows_per_segment or ROWS_PER_SEGMENT)))
    whole = [Segment(table.id, 0)]
    if wanted == 1:
        return whole
    column = range_column(table)
    if column is not None:
        bounds = reader.key_bounds(table, column)
        if bounds is None:
            return whole
        lo, hi = bounds
        step = max(1, math.ceil((hi - lo + 1) / wanted))
        edges = list(range(lo + step, hi + 1, step))
        points: list[int | None] = [None, *edges, None]
        return [Segment(table.id, i, "range", column, points[i], points[i + 1]) for i in range(len(points) - 1)]
    if ctid and not table.row_key():
        pages = reader.page_count(table)
        step = max(MIN_PAGES_PER_SEGMENT, math.ceil(pages / wanted))
        starts = list(range(0, pages, step))
        if len(starts) <= 1:
            return whole
        ends: list[int | None] = [*starts[1:], None]
        return [Segment(table.id, i, "ctid", None, s, e) for i, (s, e) in enumerate(zip(starts, ends, strict=True))]
    return whole
