"""Positions in a change log: engine-owned, opaque to everything but their engine, ordered."""

from __future__ import annotations

from typing import Any, Protocol


class Position(Protocol):
    """PostgreSQL: an LSN; MySQL/MariaDB: binlog file + offset (+ GTID set). Serialised as JSON by the
    engine that owns it, so a checkpoint row can store it and a restart can parse it back."""

    def to_json(self) -> dict[str, Any]: ...

    def __lt__(self, other: Any) -> bool: ...
