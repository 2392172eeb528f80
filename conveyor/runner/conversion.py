"""A task's schema conversion (``conveyor convert``): its selected tables and their schemas' objects,
converted for its target, and optionally created there.

Tables are planned exactly as a run plans them (selection, target names, transformation rules), so
the DDL describes the tables a run would load.
"""

from __future__ import annotations

from collections.abc import Callable

from conveyor.convert.ddl import Conversion, convert_schema
from conveyor.convert.overrides import override_for
from conveyor.convert.report import Effort
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier, first_line
from conveyor.errors import TerminalError
from conveyor.runner.planning import control_schema, plan_tables, target_schema
from conveyor.runner.task import Task


def convert_task(task: Task, warn: Callable[[str], None], apply: bool = False) -> Conversion:
    """Introspect, convert, and with ``apply`` run the DDL on the target (a statement the target
    refuses becomes a needs-action issue of its object; the rest still runs)."""
    source, target = engine_for(task.source), engine_for(task.target)
    applier = target.open_applier(task.target, control_schema(task, target))
    if not isinstance(applier, SqlApplier):
        raise TerminalError(f"{target.name} targets have no schema conversion")
    try:
        plans = plan_tables(task, source, target, applier, warn, convert=False)
        introspector = source.open_introspector(task.source)
        try:
            objects = [introspector.objects(s) for s in sorted({p.source.id.schema for p in plans})]
        finally:
            introspector.close()
        conversion = convert_schema(
            applier,
            source.name,
            target.name,
            [(p.target, p.source.id) for p in plans],
            objects,
            lambda schema: target_schema(task, schema, source, target),
            override_for(task.type_mappings),
        )
        if apply:
            run_statements(applier, conversion)
        return conversion
    finally:
        applier.close()


def run_statements(applier: SqlApplier, conversion: Conversion) -> None:
    for statement in conversion.statements:
        try:
            applier.execute(statement.sql)
            applier.commit()
        except Exception as exc:
            applier.rollback()
            if statement.item is None:
                raise
            statement.item.add(
                f"the target refused it: {first_line(exc)}",
                statement.sql,
                "correct the statement in the SQL file and run it by hand",
                Effort.MEDIUM,
            )
