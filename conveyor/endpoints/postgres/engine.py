"""PostgreSQL as an engine: capabilities and how to open each role."""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.endpoints.base import Capabilities, Capture
from conveyor.endpoints.config import PostgresConfig
from conveyor.endpoints.postgres.applier import PostgresApplier
from conveyor.endpoints.postgres.connect import connect
from conveyor.endpoints.postgres.errors import classify
from conveyor.endpoints.postgres.introspect import PostgresIntrospector
from conveyor.endpoints.postgres.snapshot import PostgresSnapshot, join
from conveyor.endpoints.registry import EngineSpec
from conveyor.model.schema import Table

DEFAULT_SCHEMA = "public"


def _introspector(config: PostgresConfig) -> PostgresIntrospector:
    return PostgresIntrospector(connect(config), config)


def _snapshot(config: PostgresConfig, workers: int, hold: bool = False) -> PostgresSnapshot:
    return PostgresSnapshot(config, workers, hold)


def _capture(config: PostgresConfig, task: str, tables: Sequence[Table]) -> Capture:
    from conveyor.endpoints.postgres.capture import PostgresCapture  # a full load does not need it

    return PostgresCapture(config, task, tables)


def _applier(config: PostgresConfig, control_schema: str) -> PostgresApplier:
    return PostgresApplier(connect(config, autocommit=False), control_schema, config)


ENGINE = EngineSpec(
    name="postgresql",
    capabilities=Capabilities(
        transactional_ddl=True,
        max_identifier_length=63,
        schemas=True,
        exported_snapshots=True,
        ctid_segments=True,
        cdc=True,
        late_primary_key=True,
        raw_copy=True,
        cdc_text_values=True,
        logs_foreign_key_actions=True,
    ),
    open_introspector=_introspector,
    open_snapshot=_snapshot,
    join_snapshot=join,
    open_applier=_applier,
    default_schema=lambda config: DEFAULT_SCHEMA,
    classify=classify,
    open_capture=_capture,
)
