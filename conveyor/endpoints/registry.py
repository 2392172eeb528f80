"""Which engine serves an endpoint config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from conveyor.endpoints.base import Applier, Capabilities, Introspector, Snapshot
from conveyor.errors import ConveyorError


@dataclass(frozen=True)
class EngineSpec:
    """An engine as data: its capabilities and how to open each role."""

    name: str
    capabilities: Capabilities
    open_introspector: Callable[[Any], Introspector]
    open_snapshot: Callable[[Any, int], Snapshot]
    open_applier: Callable[[Any, str], Applier]
    default_schema: Callable[[Any], str]
    #: one writer at a time (SQLite): the runner loads segments into it serially
    single_writer: bool = False
    #: driver exception -> Conveyor's classification, or None when the exception is not the engine's
    classify: Callable[[BaseException], ConveyorError | None] | None = None


_MODULES = {
    "postgresql": "conveyor.endpoints.postgres.engine",
    "mysql": "conveyor.endpoints.mysql.engine",
    "sqlite": "conveyor.endpoints.sqlite.engine",
}


def engine_for(config: Any) -> EngineSpec:
    spec: EngineSpec = import_module(_MODULES[config.engine]).ENGINE
    return spec
