import itertools
from typing import cast

from conveyor.endpoints.base import SnapshotReader
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.types import ColumnType, LogicalType
from conveyor.runner.segments import plan_segments


class Bounds:
    """Answers the two questions the planner asks a reader."""

    def __init__(self, lo: int, hi: int, pages: int = 0) -> None:
        self.lo, self.hi, self.pages = lo, hi, pages

    def key_bounds(self, table: Table, column: str) -> tuple[int, int]:
        return self.lo, self.hi

    def page_count(self, table: Table) -> int:
        return self.pages


def bounds(lo: int, hi: int, pages: int = 0) -> SnapshotReader:
    """The planner's reader: plan_segments calls only key_bounds and page_count."""
    return cast(SnapshotReader, Bounds(lo, hi, pages))


INT = ColumnType(LogicalType.INTEGER, bits=64)
TEXT = ColumnType(LogicalType.TEXT)
KEYED = Table(TableId("s", "t"), (Column("id", INT), Column("v", TEXT)), primary_key=Key("pk", ("id",)))
TEXT_KEY = Table(TableId("s", "t"), (Column("k", TEXT), Column("v", TEXT)), primary_key=Key("pk", ("k",)))
NO_KEY = Table(TableId("s", "t"), (Column("v", TEXT),))


def test_small_table_is_one_segment() -> None:
    assert [s.kind for s in plan_segments(bounds(1, 10), KEYED, 10, ctid=False)] == ["all"]


def test_key_ranges_cover_everything_with_open_ends() -> None:
    segments = plan_segments(bounds(1, 1_000_000), KEYED, 1_000_000, ctid=False, rows_per_segment=100_000)
    assert len(segments) == 10
    assert segments[0].lo is None and segments[-1].hi is None
    for a, b in itertools.pairwise(segments):
        assert a.hi == b.lo  # contiguous: no gap, no overlap
    assert [s.number for s in segments] == list(range(10))


def test_non_integer_key_is_one_segment() -> None:
    assert len(plan_segments(bounds(0, 0), TEXT_KEY, 10**7, ctid=True, rows_per_segment=1000)) == 1


def test_ctid_segments_for_tables_without_a_key() -> None:
    segments = plan_segments(bounds(0, 0, pages=100_000), NO_KEY, 10**7, ctid=True, rows_per_segment=1_000_000)
    assert [s.kind for s in segments] == ["ctid"] * 10
    assert segments[0].lo == 0 and segments[-1].hi is None
    assert plan_segments(bounds(0, 0, pages=100_000), NO_KEY, 10**7, ctid=False)[0].kind == "all"
