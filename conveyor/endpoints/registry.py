"""Which engine serves an endpoint config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol

from conveyor.endpoints.base import Applier, Capabilities, Capture, Introspector, Snapshot, SnapshotReader
from conveyor.errors import ConveyorError
from conveyor.model.schema import Table


class OpenSnapshot(Protocol):
    def __call__(self, config: Any, workers: int, hold: bool = False) -> Snapshot: ...


@dataclass(frozen=True)
class EngineSpec:
    """An engine as data: its capabilities and how to open each role."""

    name: str
    capabilities: Capabilities
    open_introspector: Callable[[Any], Introspector]
    open_snapshot: OpenSnapshot
    #: (config, ``Snapshot.token()``) -> a reader inside that snapshot, from any process (see base.Snapshot)
    join_snapshot: Callable[[Any, Any], SnapshotReader]
    open_applier: Callable[[Any, str], Applier]
    default_schema: Callable[[Any], str]
    #: one writer at a time (SQLite): the runner loads segments into it serially
    single_writer: bool = False
    #: driver exception -> Conveyor's classification, or None when the exception is not the engine's
    classify: Callable[[BaseException], ConveyorError | None] | None = None
    #: config -> ``join_snapshot`` in two steps: connect now, before the snapshot is opened; join with
    #: the token later (MySQL: so the lock waits for a BEGIN per worker, not for their connections)
    prepare_join: Callable[[Any], Callable[[Any], SnapshotReader]] | None = None
    #: (config, task name, selected source tables) -> the task's change capture (engines with ``cdc``)
    open_capture: Callable[[Any, str, Sequence[Table]], Capture] | None = None


_MODULES = {
    "postgresql": "conveyor.endpoints.postgres.engine",
    "mysql": "conveyor.endpoints.mysql.engine",
    "sqlite": "conveyor.endpoints.sqlite.engine",
}


def engine_for(config: Any) -> EngineSpec:
    spec: EngineSpec = import_module(_MODULES[config.engine]).ENGINE
    return spec
