"""Which source tables a task moves and where they land: selection, target names, conversion plans.

Full load and change processing plan tables the same way, so a table streamed by CDC is exactly the
table the full load created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from conveyor.convert.overrides import override_for
from conveyor.convert.plan import TablePlan, encoder_for, plan_table
from conveyor.endpoints.base import Applier
from conveyor.endpoints.registry import EngineSpec
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.endpoints.sql.changes import ChangeTarget
from conveyor.errors import ConfigError, UserActionError
from conveyor.model.schema import Table, TableId
from conveyor.runner.task import Task
from conveyor.transform import tables as rules


def control_schema(task: Task, target: EngineSpec) -> str:
    """Where the control tables live (DMS ControlSchema; default: the target schema)."""
    return task.settings.ControlTablesSettings.ControlSchema or target_schema(task, None, None, target)


def target_schema(task: Task, source_schema: str | None, source: EngineSpec | None, target: EngineSpec) -> str:
    """DMS TargetSchema; otherwise the source schema between engines that both have schemas, else the
    target's default schema (database)."""
    explicit = task.settings.TargetMetadata.TargetSchema
    if explicit:
        return explicit
    if target.capabilities.schemas and source_schema and source is not None and source.capabilities.schemas:
        return source_schema
    return target.default_schema(task.target)


def plan_tables(
    task: Task,
    source: EngineSpec,
    target: EngineSpec,
    applier: Applier,
    warn: Callable[[str], None],
    convert: bool = True,
    definitions: Mapping[TableId, Table] | None = None,
) -> list[TablePlan]:
    """Introspect the source, apply the selection rules and plan each selected table onto the target,
    with the task's type mappings (``convert``: see ``plan_table``). ``definitions``: tables as a change
    stream's stored position holds them (``PositionDefinitions``), planned with those columns instead of
    the catalog's (``as_defined``)."""
    introspector = source.open_introspector(task.source)
    try:
        ids: list[TableId] = []
        for schema in introspector.schemas():
            ids.extend(introspector.table_ids(schema))
        selected = task.mappings.select(ids)
        if not selected:
            raise UserActionError(
                "no source table matches the table mappings; check the selection rules' schema-name and table-name"
            )
        mappings = task.mappings
        known = definitions or {}
        tables = {tid: as_defined(introspector.table(tid), known.get(tid)) for tid, _ in selected}
        id_map = {
            tid: TableId(
                rules.target_schema(mappings, tid.schema, target_schema(task, tid.schema, source, target)),
                rules.target_table(mappings, tid),
            )
            for tid, _ in selected
        }
        if target.name == "sqlite" and any(t.schema != target.default_schema(task.target) for t in id_map.values()):
            raise ConfigError(
                "a schema transformation rule names a target schema, but a SQLite target has one schema (main)",
                "table_mappings",
            )
        names = {tid: rules.column_names(mappings, table) for tid, table in tables.items()}
        lob_policy = task.settings.TargetMetadata.lob_policy()
        same = source.name == target.name
        override = override_for(task.type_mappings)
        plans = []
        for tid, order in selected:
            mapped = rules.map_table(mappings, tables[tid], id_map[tid], names, lob_policy)
            plan, warnings = plan_table(
                tables[tid], id_map[tid], applier, same, id_map, order, mapped, override, convert
            )
            for w in warnings:
                warn(w)
            plans.append(plan)
        return plans
    finally:
        introspector.close()


def as_defined(now: Table, then: Table | None) -> Table:
    """The catalog's table ``now`` with the columns and primary key it had ``then`` (None: as it is now);
    its unique keys, indexes and foreign keys only where ``then`` had all their columns."""
    if then is None:
        return now
    names = set(then.column_names)
    return replace(
        now,
        columns=then.columns,
        primary_key=then.primary_key,
        unique_keys=tuple(k for k in now.unique_keys if names.issuperset(k.columns)),
        indexes=tuple(i for i in now.indexes if names.issuperset(i.columns)),
        foreign_keys=tuple(f for f in now.foreign_keys if names.issuperset(f.columns)),
    )


def change_target(applier: SqlApplier, plan: TablePlan) -> ChangeTarget:
    """Where change apply writes a planned table's changes (CDC, and repair after validation): the target
    table, with encoders for canonical values in its column order."""
    if plan.mapping is not None:  # the mapping's changes come in the target table's columns
        encoders = plan.mapping.encoders(encoder_for(applier), plan.native_types)
        return ChangeTarget(plan.target, encoders, plan.native_types)
    # by name: the target table's columns may be in another order (columns added while stopped)
    natives = dict(zip(plan.source.column_names, plan.native_types, strict=True))
    types = {c.name: c.type for c in plan.source.columns}
    names = [c.name for c in plan.target.columns]
    encoder = encoder_for(applier)
    encoders = [encoder(types[n], natives[n]) for n in names]
    return ChangeTarget(plan.target, encoders, [natives[n] for n in names])
