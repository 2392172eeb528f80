"""Following the source's schema changes during change processing.

The stream announces a table's new definition before the first change written under it
(``SchemaChanged``): ADD / DROP / RENAME COLUMN and type widening are made on the target table too;
anything else suspends that one table. Changes made while the task was stopped are found when it
resumes (``reconcile``). A suspended table's changes are skipped until it is reloaded; the target
stores the suspension with the next position, so later runs keep it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.convert.engines import NotConvertible
from conveyor.convert.plan import TablePlan
from conveyor.convert.schema_change import (
    AddColumn,
    ColumnChange,
    DropColumn,
    WidenColumn,
    apply_change,
    diff_table,
)
from conveyor.endpoints.base import Capture, DroppedColumns, PositionDefinitions
from conveyor.endpoints.registry import EngineSpec
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.endpoints.sql.changes import ChangeApplier, ChangeTarget
from conveyor.errors import NeedsResync
from conveyor.model.changes import SchemaChanged
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.types import LogicalType
from conveyor.runner import stats as st
from conveyor.runner.task import Task


def definitions_at(task: Task, source: EngineSpec, stored: dict[str, Any] | None) -> dict[TableId, Table]:
    """The selected tables as the source held them at the stored position, where the position says
    (``PositionDefinitions``): planned so, the stream's own schema changes move them (and the target) on
    to the current definitions, each at its place. Empty: the tables are planned from the catalog."""
    if stored is None:
        return {}
    assert source.open_capture is not None
    reader = source.open_capture(task.source, task.name, [])  # connects only when used
    try:
        if not isinstance(reader, PositionDefinitions):
            return {}
        return reader.definitions_at(reader.position_from_json(stored))
    finally:
        reader.close()


#: said of a table the task's selection matches that was not among its tables when it first ran
NOT_REPLICATED = (
    "matches the table mappings but is not one of the tables this task's stream has followed throughout (it was "
    "created on the source, or selected, after the task started, or left out of an earlier run): the stream holds "
    f"only some of its changes, so it is not replicated; {NeedsResync.RECOVERY} (or replicate it with a task of "
    "its own)"
)


@dataclass
class SchemaFollowing:
    """Keeps one run's target tables (and their ``plans``, replaced in that list) the source's as its
    schema changes, and suspends the tables it cannot follow. Composed by ``ChangeProcessing``, which
    owns the stream: this class only decides and alters, through the callables it is handed."""

    task: Task
    source: EngineSpec
    target: EngineSpec
    plans: list[TablePlan]
    table_stats: Callable[[TableId], st.TableStats | None]
    target_for: Callable[[SqlApplier, TablePlan], ChangeTarget]
    listener: st.Listener
    warn: Callable[[str], None]
    #: source table -> why its changes are skipped
    suspended: dict[TableId, str] = field(default_factory=dict)
    #: suspensions the target does not hold yet: the next commit stores them with its position
    unsaved: dict[TableId, str] = field(default_factory=dict)

    def plan_for(self, source: TableId) -> TablePlan | None:
        for plan in self.plans:
            if plan.source.id == source:
                return plan
        return None

    # ------------------------------------------------------------------ while streaming
    def created(self, event: SchemaChanged) -> None:
        """A table the source created that the task does not capture (``CREATED``): named where the task's
        selection matches it."""
        if self.task.mappings.select([event.table]):
            self.warn(f"table {event.table} {NOT_REPLICATED}")

    def follow(self, event: SchemaChanged, changes: ChangeApplier) -> None:
        """ADD / DROP / RENAME COLUMN and type widening are made on the target table too, before the
        first change written under the new definition; anything else suspends that one table (its
        changes are no longer applied, the other tables go on) with the reason in its statistics."""
        plan, stats = self.plan_for(event.old_table), self.table_stats(event.old_table)
        if plan is None or stats is None or event.old_table in self.suspended:
            return
        stats.ddls += 1
        if event.table != event.old_table:
            self.suspend(event.old_table, f"{event.description}: renamed tables are not followed")
            return
        if plan.mapping is not None:
            self.suspend(event.table, f"{event.description}: the table mapping transforms or filters it; reload it")
            return
        if not self.task.settings.ChangeProcessingDdlHandlingPolicy.HandleSourceTableAltered:
            self.suspend(event.table, f"{event.description} (HandleSourceTableAltered is false)")
            return
        column_changes, reasons = diff_table(plan.source, event.columns, event.renamed)
        reasons += _checked_enums(plan, column_changes)
        if reasons:
            self.suspend(event.table, f"{event.description}: {'; '.join(reasons)}")
            return
        applier = changes.applier
        try:
            on_target = [self._for_target(plan.target, plan.native_types, c, applier) for c in column_changes]
        except NotConvertible as exc:
            self.suspend(event.table, f"{event.description}: {exc}")
            return
        try:
            target = applier.alter_table(plan.target, on_target, plan.native_types)
        except BaseException:
            stats.ddls -= 1  # the retry streams it again, and counts it then
            raise
        source = plan.source
        for change in column_changes:
            source = apply_change(source, change)
        natives = [applier.map_type(c.type) for c in source.columns]
        updated = replace(plan, source=source, target=target, native_types=natives)
        self.plans[self.plans.index(plan)] = updated
        changes.targets[source.id] = self.target_for(applier, updated)
        self.record_columns(applier, [updated])
        stats.applied_ddls += 1
        self.listener.message(f"{target.id}: followed the source: {event.description}")

    def suspend(self, table: TableId, reason: str, stored: bool = False) -> None:
        """The table's changes are skipped from now on, in this run and the next ones (``stored``: an
        earlier run's suspension, read back from the target) until the table is reloaded."""
        if table in self.suspended:
            return
        stats = self.table_stats(table)
        if stored and stats is None:
            return  # no longer selected: nothing of it is applied anyway
        self.suspended[table] = reason
        if not stored:
            self.unsaved[table] = reason
        if stats is None:
            return
        stats.state = st.ERROR
        stats.error = f"suspended: {reason}"
        self.listener.table_changed(stats)
        if stored:
            self.warn(
                f"{table}: suspended by an earlier run: {reason}; its changes are skipped until it is reloaded "
                "(docs/cdc.md)"
            )
        else:
            self.warn(f"{table}: suspended: {reason}")

    # ------------------------------------------------------------------ on resume
    def reconcile(self, applier: SqlApplier, capture: Capture, known: set[TableId]) -> None:
        """The target's columns made the source's again where its tables changed while the task was
        stopped, before the stream resumes: its changes carry the new definitions, and it may hold no
        older change of a table that would announce the difference. Tables planned as the stored position
        holds them (``known``) need none: the stream announces every change since.

        - Columns the source gained are added, nullable: the target's existing rows have no value for them.
        - Target columns the source no longer has are dropped (``_drop_reason`` says when not), where the
          last run recorded them as the source's (``record_columns``; a task from before records: any) and
          the capture can tell that the source lost at least as many columns (``DroppedColumns``); else they
          are the target's own and stay.
        - Both at once is a rename, or a drop and an add: a rename leaves no trace in the catalog, and only
          the columns' attnums at the stored position could tell them apart, which nothing stores. The
          table is suspended rather than guessed (a wrong guess loses a column's values)."""
        remembers = capture if isinstance(capture, DroppedColumns) else None
        recorded = ChangeApplier(applier, {}).read_columns(self.task.name)
        kept: list[str] = []  # target columns the source never had (as far as the record goes): the user's
        for i, plan in enumerate(self.plans):
            if plan.source.id in self.suspended:
                continue
            present = [r[0] for r in applier.execute(applier.columns_sql, (plan.target.id.schema, plan.target.id.name))]
            applier.commit()
            if not present:
                continue  # no such table: DO_NOTHING created nothing, or it was dropped; the apply will say
            missing = [c for c in plan.target.columns if c.name not in present]
            if missing and (plan.mapping is not None or plan.source.id in known):
                # not a column the source gained (a mapped table's changes are not followed; a known table's
                # stream names every change): the table mappings changed, or the target lost it
                names = ", ".join(c.name for c in missing)
                self.suspend(
                    plan.source.id,
                    f"target table {plan.target.id} has no column {names}, which the task plans (its table "
                    "mappings changed since the table was loaded, or the column was dropped on the target); reload "
                    "the table",
                )
                continue
            if plan.source.id in known:
                continue
            gone = [n for n in present if n not in plan.target.column_names] if remembers is not None else []
            if plan.source.id in recorded:
                kept += [f"{plan.target.id}.{n}" for n in gone if n not in recorded[plan.source.id]]
                gone = [n for n in gone if n in recorded[plan.source.id]]
            if gone and missing:
                self.suspend(
                    plan.source.id,
                    f"columns {', '.join(gone)} left the source and {', '.join(c.name for c in missing)} came while "
                    "the task was stopped: renamed, or dropped and added, cannot be told apart; reload the table",
                )
                continue
            if remembers is not None and gone and remembers.dropped_columns(plan.source.id) < len(gone):
                gone = []  # not all dropped on the source, and which were cannot be told: the target's own
            if not missing and not gone:
                continue
            keep = [j for j, c in enumerate(plan.target.columns) if c.name in present]
            base = replace(plan.target, columns=tuple(plan.target.columns[j] for j in keep))
            natives = [plan.native_types[j] for j in keep]
            try:
                changes = [self._gained(plan, base, natives, c, applier) for c in missing]
            except NotConvertible as exc:
                self.suspend(plan.source.id, f"{exc}, while the task was stopped; reload the table")
                continue
            if gone:
                own = self._target_table(plan.target.id)
                reason = self._drop_reason(plan, own, gone)
                if reason is not None:
                    self.suspend(plan.source.id, reason)
                    continue
                base = replace(base, columns=(*base.columns, *(own.column(n) for n in gone)))
                natives += [own.column(n).type.native for n in gone]
                changes = [DropColumn(n) for n in gone]
            target = applier.alter_table(base, changes, natives)
            self.plans[i] = replace(plan, target=target)
            done = f"added {', '.join(c.name for c in missing)}" if missing else f"dropped {', '.join(gone)}"
            self.warn(f"{target.id}: {done}: the source {'gained' if missing else 'lost'} them while stopped")
        if kept:
            self.warn(f"target columns the source never had are left as they are: {', '.join(kept)}")

    def record_columns(self, applier: SqlApplier, plans: list[TablePlan], every: bool = False) -> None:
        """Record the planned tables' columns on the target (``conveyor_cdc_columns``): the next run's
        reconcile drops only target columns in that record, never one the user added. A suspended table
        keeps its record: its plan may not be what the target holds. ``every``: ``plans`` are all the task's
        tables, and a table no longer among them loses its record (``ChangeApplier.save_columns``)."""
        columns = {p.source.id: p.target.column_names for p in plans if p.source.id not in self.suspended}
        tables = [p.source.id for p in plans] if every else None
        ChangeApplier(applier, {}).save_columns(self.task.name, columns, tables)

    # ------------------------------------------------------------------ helpers
    def _gained(
        self, plan: TablePlan, base: Table, natives: list[str], column: Column, applier: SqlApplier
    ) -> ColumnChange:
        """A target column the source gained while the task was stopped, as the target adds it: nullable
        (the target's rows have no value for it), or filled as the source filled its rows: with the value
        they took where the source keeps it (``Column.filled``), else with its default (a default changed
        since the column was added cannot be seen there)."""
        source = next((c for c in plan.source.columns if c.name == column.name), None)
        if source is None or plan.mapping is not None or (source.default is None and source.filled is None):
            return AddColumn(replace(column, nullable=True, default=None))
        added = replace(column, default=source.default, filled=source.filled)
        return self._for_target(base, natives, AddColumn(added), applier)

    def _drop_reason(self, plan: TablePlan, own: Table, gone: list[str]) -> str | None:
        """Why columns the source dropped while the task was stopped are not dropped on the target too."""
        what = f"columns {', '.join(gone)} were dropped on the source while the task was stopped"
        if plan.mapping is not None:
            return f"{what}: the table mapping transforms or filters the table; reload it"
        if not self.task.settings.ChangeProcessingDdlHandlingPolicy.HandleSourceTableAltered:
            return f"{what} (HandleSourceTableAltered is false)"
        key = [n for n in gone if own.primary_key is not None and n in own.primary_key.columns]
        if key:
            return f"{what}: the target's primary key holds {', '.join(key)}; reload the table"
        return None

    def _target_table(self, table: TableId) -> Table:
        """The target table as its catalog describes it."""
        introspector = self.target.open_introspector(self.task.target)
        try:
            return introspector.table(table)
        finally:
            introspector.close()

    def _for_target(self, target: Table, natives: list[str], change: ColumnChange, applier: SqlApplier) -> ColumnChange:
        """A column change as the target table (its columns of types ``natives``) makes it: an added column's
        default (the source's) in the target's SQL, where it fills the existing rows as the source filled
        them (``added_default``), else ``NotConvertible``."""
        if not isinstance(change, AddColumn):
            return change
        column = change.column
        if column.filled is not None:  # what the source's rows took, whatever the default is now
            column = replace(column, default=column.filled)
        if column.default is None:
            return change
        by_name = dict(zip(target.column_names, natives, strict=True))
        native = applier.column_native(apply_change(target, change), column.name, by_name)
        from conveyor.convert.added_default import added_default  # sqlglot: for a default only

        try:
            default = added_default(column, native, self.source.name, applier.engine)
        except NotConvertible as exc:
            reason = f"column {column.name} was added with a default the target cannot follow: {exc}"
            raise NotConvertible(reason) from None
        return AddColumn(replace(column, default=default))


def _checked_enums(plan: TablePlan, changes: list[ColumnChange]) -> list[str]:
    """Why enums that gained values cannot be widened on the target: where it is no enum type (text on
    PostgreSQL and SQLite), a CHECK holds the values it was loaded with, and would refuse the new ones."""
    natives = dict(zip(plan.source.column_names, plan.native_types, strict=True))
    return [
        f"enum column {change.column.name} gained values, which the target's CHECK of its values would refuse; "
        "reload the table"
        for change in changes
        if isinstance(change, WidenColumn)
        and change.column.type.logical is LogicalType.ENUM
        and not natives.get(change.column.name, "").lower().startswith("enum(")
    ]
