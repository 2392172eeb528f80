"""Segments: the unit of full-load work, serialisable so any executor can run it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from conveyor.model.schema import TableId


@dataclass(frozen=True, slots=True)
class Segment:
    """A slice of one source table.

    ``kind`` is ``all`` (the whole table), ``range`` (``column`` in ``[lo, hi)``, an open end is
    None) or ``ctid`` (PostgreSQL heap pages ``[lo, hi)``, for tables without a key).
    """

    table: TableId
    number: int
    kind: str = "all"
    column: str | None = None
    lo: Any = None
    hi: Any = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["table"] = [self.table.schema, self.table.name]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        schema, name = data["table"]
        return cls(TableId(schema, name), data["number"], data["kind"], data["column"], data["lo"], data["hi"])
