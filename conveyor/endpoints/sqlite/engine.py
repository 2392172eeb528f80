"""SQLite as an engine: capabilities and how to open each role."""

from __future__ import annotations

from conveyor.endpoints.base import Capabilities
from conveyor.endpoints.config import SQLiteConfig
from conveyor.endpoints.registry import EngineSpec
from conveyor.endpoints.sqlite.applier import SQLiteApplier
from conveyor.endpoints.sqlite.connect import connect
from conveyor.endpoints.sqlite.introspect import SCHEMA, SQLiteIntrospector
from conveyor.endpoints.sqlite.snapshot import SQLiteSnapshot, join


def _introspector(config: SQLiteConfig) -> SQLiteIntrospector:
    return SQLiteIntrospector(connect(config, readonly=True))


def _snapshot(config: SQLiteConfig, workers: int, hold: bool = False) -> SQLiteSnapshot:
    return SQLiteSnapshot(config)


def _applier(config: SQLiteConfig, control_schema: str) -> SQLiteApplier:
    return SQLiteApplier(connect(config, readonly=False), control_schema)


ENGINE = EngineSpec(
    name="sqlite",
    capabilities=Capabilities(
        transactional_ddl=True, max_identifier_length=1000, schemas=False, exported_snapshots=False
    ),
    open_introspector=_introspector,
    open_snapshot=_snapshot,
    join_snapshot=join,
    open_applier=_applier,
    default_schema=lambda config: SCHEMA,
    single_writer=True,
)
