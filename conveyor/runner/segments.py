"""Splitting tables into segments that load in parallel and commit independently."""

from __future__ import annotations

import math

from conveyor.endpoints.base import SnapshotReader
from conveyor.model.schema import Table
from conveyor.model.segments import Segment
from conveyor.model.types import LogicalType

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
    reader: SnapshotReader, table: Table, estimated_rows: int, ctid: bool, rows_per_segment: int | None = None
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
