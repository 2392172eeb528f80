"""Splitting tables into segments that load in parallel and commit independently."""

from __future__ import annotations

import math
from dataclasses import replace

from conveyor.endpoints.base import SnapshotReader
from conveyor.model.schema import Table
from conveyor.model.segments import Segment, SourceFilter
from conveyor.model.types import LogicalType
from conveyor.transform.table_settings import ParallelLoad

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
    """The table's segments: DMS parallel-load ``ranges`` or ``none`` where a table-settings rule says
    so, else (and for ``partitions-auto``) an automatic split; each carries the source filters."""
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
