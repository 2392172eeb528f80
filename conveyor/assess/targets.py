"""Target tables that change apply writes into and that exist already: DMS's
``target-table-has-unique-key-or-primary-key-for-cdc``.

Change apply matches each UPDATE and DELETE on the source's key (``ChangeApplier``), where the task
plans the table (``planning.plan_tables``: mappings, target schema). A table the task creates gets that
key; an existing table without a primary or unique key is still applied to correctly, one full scan
per change, but nothing refuses a second row with the same key. Where such a table already repeats a
key value, every change to those rows matches several rows and is rejected: that fails.
"""

from __future__ import annotations

from conveyor.assess.catalog import TARGET_KEY
from conveyor.assess.tables import names
from conveyor.endpoints.base import PrepMode
from conveyor.endpoints.registry import EngineSpec
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.errors import ConveyorError
from conveyor.model.findings import Finding
from conveyor.model.schema import Table
from conveyor.runner.planning import control_schema, plan_tables
from conveyor.runner.task import Task


def has_key(table: Table) -> bool:
    """A primary key, a unique constraint or a unique index on columns (PostgreSQL lists those as indexes)."""
    return bool(table.primary_key or table.unique_keys or any(i.unique for i in table.indexes))


def target_key_findings(task: Task, source: EngineSpec, target: EngineSpec) -> list[Finding]:
    """cdc / full-load-and-cdc: the planned target tables that exist without a key (warning), or that
    also repeat a value of the key change apply matches on (failure)."""
    prep = task.settings.FullLoadSettings.TargetTablePrepMode
    if task.migration_type == "full-load-and-cdc" and prep is PrepMode.DROP_AND_CREATE:
        return []  # every target table is created anew, with the source's key
    keeps_rows = task.migration_type == "cdc" or prep is PrepMode.DO_NOTHING
    applier = target.open_applier(task.target, control_schema(task, target))
    try:
        if not isinstance(applier, SqlApplier):
            return []
        try:
            plans = plan_tables(task, source, target, applier, lambda _: None)
        except ConveyorError as exc:  # the cause is reported under its own key (selection, privileges)
            return [Finding(TARGET_KEY.key, f"not checked: the task's tables cannot be planned: {exc}", warning=True)]
        introspector = target.open_introspector(task.target)
        try:
            keyless: list[str] = []
            found: list[Finding] = []
            for plan in plans:
                if not applier.table_exists(plan.target.id):
                    continue  # the task creates it, with the source's key
                existing = introspector.table(plan.target.id)
                if has_key(existing):
                    continue
                key = plan.target.row_key()
                matched = f"key ({', '.join(key)})" if key else "every column"
                keyless.append(f"{plan.target.id} (changes match on {matched})")
                if key and keeps_rows:
                    found += _repeated(applier, existing, key)
        finally:
            introspector.close()
    finally:
        applier.close()
    if keyless:
        found.append(
            Finding(
                TARGET_KEY.key,
                f"{len(keyless)} existing target table(s) without a primary or unique key: {names(keyless)}; each "
                "UPDATE and DELETE scans the table, and a row inserted twice is not refused",
                warning=True,
            )
        )
    return found


def _repeated(applier: SqlApplier, table: Table, key: tuple[str, ...]) -> list[Finding]:
    """A failure when ``table`` lacks a key column or already holds two rows with one key value."""
    missing = [k for k in key if k not in table.column_names]
    if missing:
        return [
            Finding(
                TARGET_KEY.key,
                f"{table.id} has no column {', '.join(missing)} of the key change apply matches on; every UPDATE "
                "and DELETE would be rejected: let the task create the table (DROP_AND_CREATE) or add the column",
            )
        ]
    columns = applier.column_list(key)
    try:
        row = applier.execute(
            f"SELECT {columns} FROM {applier.qualified(table.id)} GROUP BY {columns} HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
    finally:
        applier.rollback()
    if row is None:
        return []
    value = ", ".join(f"{k} = {v!r}" for k, v in zip(key, row, strict=True))
    return [
        Finding(
            TARGET_KEY.key,
            f"{table.id} already holds several rows with {value}: every UPDATE and DELETE of such a row matches "
            f"them all and is rejected; remove the duplicates, then ALTER TABLE {applier.qualified(table.id)} "
            f"ADD PRIMARY KEY ({columns})",
        )
    ]
