"""Partition segments survive the plan state's JSON, so a resumed full load reads the same partitions."""

from __future__ import annotations

import json

from conveyor.model.schema import TableId
from conveyor.model.segments import Condition, Segment, SourceFilter


def test_partition_segment_round_trips() -> None:
    segment = Segment(
        TableId("public", "events"),
        2,
        "partitions",
        partitions=(TableId("public", "ev_a_lo"), TableId("arch", "ev.rest")),
        filters=(SourceFilter("v", (Condition("notnull"),)),),
    )
    assert Segment.from_json(json.loads(json.dumps(segment.to_json()))) == segment


def test_segments_stored_before_partitions_still_load() -> None:
    stored = {"table": ["s", "t"], "number": 0, "kind": "all", "column": None, "lo": None, "hi": None}
    assert Segment.from_json(stored) == Segment(TableId("s", "t"), 0)
