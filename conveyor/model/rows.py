"""RowBatch: the unit that flows from a snapshot reader to an applier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Row = tuple[Any, ...]


@dataclass(slots=True)
class RowBatch:
    """Rows in canonical values (see ``model.types.CANONICAL_PYTHON``), in ``columns`` order.

    ``raw`` carries an engine's own encoded bytes instead of ``rows`` when the target can take
    them unchanged (PostgreSQL binary COPY pass-through); ``row_count`` is then set by the reader.
    """

    columns: tuple[str, ...]
    rows: list[Row]
    raw: bytes | None = None
    row_count: int = 0
    byte_count: int = 0

    def __len__(self) -> int:
        return self.row_count if self.raw is not None else len(self.rows)
