"""Repair (DMS's resync): each failing row is read again from the source and written to the target.

The target side goes through change apply (``ChangeApplier``, the encoders of the plan), as a delete of
the target's row by key followed by an insert of the source's row, in one target transaction: a row
missing on the target is inserted, a differing one replaced, one missing on the source deleted. Rows
are found on the source by key: a range read on an integer key, else reads filtered on the keys' values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conveyor.convert.plan import TablePlan
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.endpoints.sql.changes import ChangeApplier
from conveyor.errors import TerminalError
from conveyor.model.changes import Change, Op, Transaction
from conveyor.model.segments import Condition, Segment, SourceFilter
from conveyor.model.types import LogicalType
from conveyor.runner.planning import change_target, control_schema
from conveyor.runner.task import Task
from conveyor.validate.canonical import column_kind, text
from conveyor.validate.compare import MISSING_SOURCE, MISSING_TARGET, RowFailure

BATCH_ROWS = 1000
#: keys per source read on a key that is not an integer
KEYS_PER_READ = 500


def repair_table(task: Task, plan: TablePlan, failures: Iterable[RowFailure]) -> int:
    """Rewrite the failing rows of one keyed table; returns how many rows were written or deleted."""
    failures = list(failures)
    key_names = plan.source.row_key()
    if not key_names:
        raise TerminalError(f"{plan.target.id}: repair needs a primary or unique key; this table has none")
    target = engine_for(task.target)
    positions = [plan.source.column_names.index(k) for k in key_names]
    kinds = [column_kind(plan.source.columns[i].type, plan.source.columns[i].type) for i in positions]
    wanted = {tuple(v for _, v in f.key) for f in failures}
    rows = _source_rows(task, plan, positions, kinds, wanted)
    applier = target.open_applier(task.target, control_schema(task, target))
    try:
        if not isinstance(applier, SqlApplier):
            raise TerminalError("repair needs a SQL target")
        names = plan.target.column_names
        target_keys = tuple(names[i] for i in positions)
        changes = []
        for f in failures:
            key_texts = tuple(v for _, v in f.key)
            row = rows.get(key_texts)
            key_values = (
                tuple(row[i] for i in positions)
                if row is not None
                else tuple(key_value(plan, i, v) for i, v in zip(positions, key_texts, strict=True))
            )
            if f.kind != MISSING_TARGET:
                changes.append(Change(Op.DELETE, plan.source.id, target_keys, key_values, None, None))
            if f.kind != MISSING_SOURCE and row is not None:
                insert = Change(Op.INSERT, plan.source.id, plan.source.column_names, None, row, None)
                # as change processing writes it: renamed, masked, LOBs cut (never a source value unmasked)
                mapped = insert if plan.mapping is None else plan.mapping.change(insert)
                if mapped is not None:
                    changes.append(mapped)
        changes_applier = ChangeApplier(applier, {plan.source.id: change_target(applier, plan)})
        result = changes_applier.apply_part(Transaction(None, None, None, changes))
        if result.failed:
            applier.rollback()
            raise TerminalError(f"{plan.target.id}: the target refused a repaired row: {result.failed[0].reason}")
        applier.commit()
        return len(failures)
    finally:
        applier.close()


def key_value(plan: TablePlan, index: int, value: str | None) -> Any:
    """A key's canonical text back to its canonical Python value (a row only the target has)."""
    if value is not None and plan.source.columns[index].type.logical is LogicalType.INTEGER:
        return int(value)
    return value


def _source_rows(
    task: Task, plan: TablePlan, positions: list[int], kinds: list[Any], wanted: set[tuple[str | None, ...]]
) -> dict[tuple[str | None, ...], tuple[Any, ...]]:
    """The wanted rows (by their key's canonical texts) as the source has them, in canonical values."""
    reader = engine_for(task.source).join_snapshot(task.source, None)
    found: dict[tuple[str | None, ...], tuple[Any, ...]] = {}
    try:
        first = plan.source.columns[positions[0]]
        if first.type.logical is LogicalType.INTEGER:
            segments = [
                Segment(plan.source.id, n, "range", first.name, int(v), int(v) + 1)
                for n, v in enumerate(sorted({k[0] for k in wanted if k[0] is not None}, key=int))
            ]
        else:  # the wanted keys as source filters (column = any of the keys' values), a bounded read each
            ordered = sorted(wanted, key=lambda k: tuple(v or "" for v in k))
            segments = [
                Segment(plan.source.id, n, filters=_key_filters(plan, positions, ordered[i : i + KEYS_PER_READ]))
                for n, i in enumerate(range(0, len(ordered), KEYS_PER_READ))
            ]
        for segment in segments:
            for batch in reader.read(plan.source, segment, BATCH_ROWS):
                for row in batch.rows:
                    key = tuple(text(k, row[i]) for k, i in zip(kinds, positions, strict=True))
                    if key in wanted:
                        found[key] = row
    finally:
        reader.close()
    return found


def _key_filters(plan: TablePlan, positions: list[int], keys: list[tuple[str | None, ...]]) -> tuple[SourceFilter, ...]:
    """Each key column equal to one of the keys' values (texts, read by the column's type); rows of other
    key combinations this lets through are dropped by the caller."""
    filters = []
    for j, i in enumerate(positions):
        values = sorted({text for k in keys for text in (k[j],) if text is not None})
        filters.append(SourceFilter(plan.source.columns[i].name, tuple(Condition("eq", (v,)) for v in values)))
    return tuple(filters)
