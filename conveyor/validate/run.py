"""Validating a task: every planned table compared through the plan, rechecked, and recorded.

A row that differs is read again after ``recheck_delay`` seconds: reported as a failure only when both
reads agree; a row whose values moved between the reads (still changing on the source, or caught up by
change processing) is *pending*, not a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from conveyor.convert.plan import TablePlan
from conveyor.endpoints.registry import EngineSpec, engine_for
from conveyor.errors import ConveyorError
from conveyor.model.schema import Table
from conveyor.model.types import LogicalType
from conveyor.runner import stats as st
from conveyor.runner.planning import control_schema, plan_tables
from conveyor.runner.task import Task
from conveyor.validate.canonical import Kind, column_kind
from conveyor.validate.compare import TableComparer
from conveyor.validate.connections import readers
from conveyor.validate.dialects import DIALECTS
from conveyor.validate.failures import FailureTable
from conveyor.validate.side import TableSide

VALIDATED = "Validated"
MISMATCHED = "Mismatched records"
PENDING = "Pending records"
TABLE_ERROR = "Table error"


@dataclass
class TableResult:
    plan: TablePlan
    comparer: TableComparer | None = None
    failures: list[Any] = field(default_factory=list)
    pending: int = 0
    source_rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    seconds: float = 0.0
    error: str | None = None
    truncated: bool = False

    @property
    def state(self) -> str:
        if self.error:
            return TABLE_ERROR
        if self.failures:
            return MISMATCHED
        return PENDING if self.pending else VALIDATED

    def stats(self) -> st.TableStats:
        t = self.plan.target.id
        out = st.TableStats(t.schema, t.name, estimated_rows=self.source_rows, error=self.error)
        out.validation_state = self.state
        out.validation_failed = len(self.failures)
        out.validation_pending = self.pending
        return out


@dataclass
class ValidationResult:
    tables: list[TableResult]
    warnings: list[str]

    @property
    def equal(self) -> bool:
        return all(t.state == VALIDATED for t in self.tables)


class Validation:
    """``between_passes`` runs after the first read of differing rows and before the recheck (tests
    use it to change a row while the table is being validated)."""

    def __init__(
        self,
        task: Task,
        recheck_delay: float = 1.0,
        between_passes: Callable[[], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.task = task
        self.recheck_delay = recheck_delay
        self.between_passes = between_passes
        self.warnings: list[str] = []
        self._warn = warn
        self.source: EngineSpec = engine_for(task.source)
        self.target: EngineSpec = engine_for(task.target)
        #: chunks of one table checksummed at once
        self.lanes = 1

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        if self._warn is not None:
            self._warn(text)

    def plans(self) -> list[TablePlan]:
        applier = self.target.open_applier(self.task.target, control_schema(self.task, self.target))
        try:
            return plan_tables(self.task, self.source, self.target, applier, self.warn)
        finally:
            applier.close()

    def run(self, plans: list[TablePlan] | None = None) -> ValidationResult:
        plans = plans if plans is not None else self.plans()
        settings = self.task.settings.ValidationSettings
        results: list[TableResult] = []
        introspector = self.target.open_introspector(self.task.target)
        try:
            targets: list[Table | None] = []
            for plan in plans:
                try:
                    targets.append(introspector.table(plan.target.id))
                except ConveyorError as exc:
                    targets.append(None)
                    results.append(TableResult(plan, error=f"target table {plan.target.id}: {exc}"))
        finally:
            introspector.close()
        todo = [(p, t) for p, t in zip(plans, targets, strict=True) if t is not None]
        budget = [settings.FailureMaxCount]
        # ThreadCount queries per database at once: spread over the tables, the rest on chunks of each
        self.lanes = max(1, settings.ThreadCount // max(1, min(settings.ThreadCount, len(todo))))
        with ThreadPoolExecutor(max(1, settings.ThreadCount)) as tables:
            results += list(tables.map(lambda pt: self._table(pt[0], pt[1], budget), todo))
        order = {p.key: i for i, p in enumerate(plans)}
        results.sort(key=lambda r: order[r.plan.key])
        return ValidationResult(results, self.warnings)

    def _table(self, plan: TablePlan, target_table: Table, budget: list[int]) -> TableResult:
        result = TableResult(plan)
        started = time.monotonic()
        settings = self.task.settings.ValidationSettings
        try:
            comparer = self.comparer(plan, target_table, budget[0])
        except ConveyorError as exc:
            result.error = str(exc)
            return result
        result.comparer = comparer
        try:
            diff = comparer.compare()
            result.source_rows, result.target_rows, result.chunks = diff.source_rows, diff.target_rows, diff.chunks
            result.truncated = diff.truncated
            if diff.failures:
                if self.between_passes is not None:
                    self.between_passes()
                time.sleep(self.recheck_delay)
                again = {f.identity: f for f in comparer.rows_diff(diff.scopes)}
                first = {f.identity: f for f in diff.failures}
                result.failures = [f for i, f in first.items() if again.get(i) == f]
                result.pending = sum(1 for i, f in again.items() if first.get(i) != f)
            budget[0] -= len(result.failures)
            if diff.truncated:
                self.warn(
                    f"{plan.target.id}: validation stopped after {settings.FailureMaxCount} failures "
                    "(ValidationSettings.FailureMaxCount)"
                )
        except ConveyorError as exc:
            result.error = str(exc)
        except Exception as exc:
            known = self.classify(exc)
            if known is None:
                raise
            result.error = str(known)
        finally:
            comparer.close()
            result.seconds = time.monotonic() - started
        return result

    def classify(self, exc: BaseException) -> ConveyorError | None:
        """A database error of either side as Conveyor's (None: not one)."""
        for spec in (self.source, self.target):
            known = spec.classify(exc) if spec.classify is not None else None
            if known is not None:
                return known
        return None

    def table_comparer(self, plan: TablePlan) -> TableComparer:
        """One planned table's comparer, its target table introspected now (validation inside tasks)."""
        introspector = self.target.open_introspector(self.task.target)
        try:
            target_table = introspector.table(plan.target.id)
        finally:
            introspector.close()
        return self.comparer(plan, target_table, self.task.settings.ValidationSettings.FailureMaxCount)

    def comparer(self, plan: TablePlan, target_table: Table, max_failures: int) -> TableComparer:
        """Both sides of one planned table: columns paired by the plan, kinds from the source types."""
        src_cols = plan.source.columns
        tgt_cols = []
        for planned in plan.target.columns:
            try:
                tgt_cols.append(target_table.column(planned.name))
            except KeyError:
                raise ConveyorError(f"{plan.target.id}: column {planned.name} is missing on the target") from None
        kinds = [column_kind(s.type, t.type) for s, t in zip(src_cols, tgt_cols, strict=True)]
        native_json = self.source.name == self.target.name == "postgresql"
        names = [c.name for c in src_cols]
        key = tuple(names.index(k) for k in plan.source.row_key())
        ranged = bool(key) and all(
            c.type.logical is LogicalType.INTEGER and kinds[key[0]] is Kind.INT
            for c in (src_cols[key[0]], tgt_cols[key[0]])
        )
        # one engine, the same column types: checksums may sum the engine's own row hashes
        same_types = self.source.name == self.target.name and all(
            s.type.native == t.type.native for s, t in zip(src_cols, tgt_cols, strict=True)
        )
        sides = []
        for spec, config, table, columns in (
            (self.source, self.task.source, plan.source, src_cols),
            (self.target, self.task.target, plan.target, tgt_cols),
        ):
            connect, quote = readers(spec.name, config)
            dialect = DIALECTS[spec.name]
            side_columns = [
                dialect.column(quote(c.name), c.type, kind, native_json) for c, kind in zip(columns, kinds, strict=True)
            ]
            sides.append(
                TableSide(
                    dialect,
                    connect,
                    spec.name,
                    f"{quote(table.id.schema)}.{quote(table.id.name)}",
                    side_columns,
                    key or tuple(range(len(columns))),
                    quote(columns[key[0]].name) if ranged else None,
                    dialect.native_hash([quote(c.name) for c in columns]) if same_types else None,
                    key_columns=tuple(quote(columns[i].name) for i in key),
                )
            )
        hashed = sides[0].native_hash
        if hashed is not None and not all(side.evaluates(hashed) for side in sides):
            for side in sides:
                side.native_hash = None
        # JSON between PostgreSQL and another engine: both sides' documents hashed as PostgreSQL's jsonb
        # texts, the other side sending its texts to the PostgreSQL side (cheaper than rebuilding
        # MariaDB's JSON_NORMALIZE form in PostgreSQL's SQL)
        postgres = [side for side in sides if side.engine == "postgresql"]
        if len(postgres) == 1 and not any(side.python for side in sides):
            sides[1 - sides.index(postgres[0])].send_jsonb = postgres[0].jsonb_sums
            for side in sides:
                side.without_checksums()
        else:
            for side in sides:
                side.without_jsonb()
        # both sides checksum the same texts: a column's ``checksum`` form only where both compute it
        probes = [(side, c.checksum) for side in sides for c in side.columns if c.checksum is not None]
        if any(side.python for side in sides) or not all(side.evaluates(expr) for side, expr in probes):
            for side in sides:
                side.without_checksums()
        settings = self.task.settings.ValidationSettings
        return TableComparer(
            sides[0],
            sides[1],
            [c.name for c in plan.target.columns],
            keyed=bool(key),
            partition_rows=settings.PartitionSize,
            max_failures=max(0, max_failures),
            lanes=self.lanes,
        )

    def record(self, result: ValidationResult) -> int:
        """Write the failures to the target's failures table; returns how many."""
        applier = self.target.open_applier(self.task.target, control_schema(self.task, self.target))
        try:
            table = FailureTable(applier)
            return table.replace(
                self.task.name,
                [(r.plan.target.id, r.failures, r.plan.target.column_names) for r in result.tables if not r.error],
            )
        finally:
            applier.close()
