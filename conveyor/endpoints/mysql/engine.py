"""MySQL / MariaDB as an engine: capabilities and how to open each role."""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.endpoints.base import Capabilities
from conveyor.endpoints.config import MySQLConfig
from conveyor.endpoints.mysql.applier import MySQLApplier
from conveyor.endpoints.mysql.capture import MySQLCapture
from conveyor.endpoints.mysql.connect import connect
from conveyor.endpoints.mysql.errors import classify
from conveyor.endpoints.mysql.introspect import MySQLIntrospector
from conveyor.endpoints.mysql.snapshot import MySQLSnapshot, join, prepare_join
from conveyor.endpoints.registry import EngineSpec
from conveyor.model.schema import Table


def _introspector(config: MySQLConfig) -> MySQLIntrospector:
    return MySQLIntrospector(connect(config, "source"), config)


def _snapshot(config: MySQLConfig, workers: int, hold: bool = False) -> MySQLSnapshot:
    return MySQLSnapshot(config, workers, hold)


def _capture(config: MySQLConfig, task: str, tables: Sequence[Table]) -> MySQLCapture:
    return MySQLCapture(config, task, tables)


def _applier(config: MySQLConfig, control_schema: str) -> MySQLApplier:
    return MySQLApplier(connect(config, "target"), control_schema)


ENGINE = EngineSpec(
    name="mysql",
    capabilities=Capabilities(
        transactional_ddl=False, max_identifier_length=64, schemas=False, exported_snapshots=False, cdc=True
    ),
    open_introspector=_introspector,
    open_snapshot=_snapshot,
    join_snapshot=join,
    open_applier=_applier,
    default_schema=lambda config: str(config.database),
    classify=classify,
    prepare_join=prepare_join,
    open_capture=_capture,
)
