"""Validating a task: every planned table compared through the plan, rechecked, and recorded.

A row that differs is read again after ``recheck_delay`` seconds: reported as a failure only when both
reads agree; a row whose values moved between the reads (still changing on the source, or caught up by
change processing) is *pending*, not a failure.

What the task itself did to values is done again before they are compared (``value_rules``): a column the
hash or digits mask masked is masked on the source side (a randomized one is left out); a LOB limited LOB
mode truncated, and every LOB with ``ValidationPartialLobSize``, is compared by its prefix on both sides;
``SkipLobColumns`` leaves LOB columns out. Added columns (expressions, before images) are not compared.
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
from conveyor.model.schema import Column as SchemaColumn
from conveyor.model.schema import Table
from conveyor.model.types import LogicalType
from conveyor.runner import stats as st
from conveyor.runner.planning import control_schema, plan_tables
from conveyor.runner.task import Task
from conveyor.transform.lobs import clip, structured
from conveyor.transform.masking import DIGITS_MASK, DIGITS_RANDOMIZE, HASH_MASK, Mask
from conveyor.validate.canonical import Kind, column_kind
from conveyor.validate.compare import RowFailure, TableComparer
from conveyor.validate.connections import readers
from conveyor.validate.dialects import DIALECTS, Column, Dialect
from conveyor.validate.failures import FailureTable
from conveyor.validate.side import TableSide

VALIDATED = "Validated"
MISMATCHED = "Mismatched records"
PENDING = "Pending records"
TABLE_ERROR = "Table error"
#: rows that could not be validated (``MaxKeyColumnSize``), or a table over ``TableFailureMaxCount``
SUSPENDED = "Suspended records"
#: source types whose values the masks see as the text both sides' SQL masks again
_MASKED_TEXT = (LogicalType.CHAR, LogicalType.VARCHAR, LogicalType.TEXT)


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
    #: rows not validated: differing rows with keys over ``MaxKeyColumnSize``, the rest of a suspended table
    suspended: int = 0
    #: more failures than ``TableFailureMaxCount``: the table's validation stopped
    table_suspended: bool = False

    @property
    def state(self) -> str:
        return validation_state(
            bool(self.error), self.table_suspended, len(self.failures), self.pending, self.suspended
        )

    def stats(self) -> st.TableStats:
        t = self.plan.target.id
        out = st.TableStats(t.schema, t.name, estimated_rows=self.source_rows, error=self.error)
        out.validation_state = self.state
        out.validation_failed = len(self.failures)
        out.validation_pending = self.pending
        out.validation_suspended = self.suspended
        return out

    @property
    def names(self) -> list[str]:
        """The compared columns' target names (a failure's row texts are in this order)."""
        return self.comparer.names if self.comparer is not None else list(self.plan.target.column_names)


def validation_state(error: bool, table_suspended: bool, failed: int, pending: int, suspended: int) -> str:
    """DMS's ValidationState of a table from its counts."""
    if error:
        return TABLE_ERROR
    if table_suspended:
        return SUSPENDED
    if failed:
        return MISMATCHED
    if pending:
        return PENDING
    return SUSPENDED if suspended else VALIDATED


def key_bytes(failure: RowFailure) -> int:
    """The size of a failure's key as ``MaxKeyColumnSize`` counts it: UTF-8 bytes of its key texts."""
    return sum(len(v.encode()) for _, v in failure.key if v is not None)


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
        table_max = settings.TableFailureMaxCount
        try:
            # one failure over the table's limit tells that it is over (then the table is suspended)
            comparer = self.comparer(plan, target_table, min(budget[0], table_max + 1))
        except ConveyorError as exc:
            result.error = str(exc)
            return result
        result.comparer = comparer
        try:
            diff = comparer.compare()
            result.source_rows, result.target_rows, result.chunks = diff.source_rows, diff.target_rows, diff.chunks
            if diff.failures:
                if self.between_passes is not None:
                    self.between_passes()
                time.sleep(self.recheck_delay)
                again = {f.identity: f for f in comparer.rows_diff(comparer.failing_scopes(diff))}
                first = {f.identity: f for f in diff.failures}
                result.failures = [f for i, f in first.items() if again.get(i) == f]
                result.pending = sum(1 for i, f in again.items() if first.get(i) != f)
            # rows whose keys are too long to be recorded (MaxKeyColumnSize): suspended, not failed
            kept = [f for f in result.failures if key_bytes(f) <= settings.MaxKeyColumnSize]
            result.suspended = len(result.failures) - len(kept)
            result.failures = kept
            if diff.truncated and len(diff.failures) > table_max:
                result.table_suspended = True
                # the rows not recorded: found over the limit, left unread, and never checksummed (a count, for
                # a suspended table only)
                result.suspended += len(result.failures) - table_max
                result.failures = result.failures[:table_max]
                result.suspended += diff.unchecked + max(0, comparer.source.count() - diff.source_rows)
                self.warn(
                    f"{plan.target.id}: validation suspended after more than {table_max} failing rows "
                    "(ValidationSettings.TableFailureMaxCount)"
                )
            elif diff.truncated:
                result.truncated = True
                self.warn(
                    f"{plan.target.id}: validation stopped after {settings.FailureMaxCount} failures "
                    "(ValidationSettings.FailureMaxCount)"
                )
            budget[0] -= len(result.failures)
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
        pairs = self.compared_columns(plan)
        src_cols = [s for s, _, _ in pairs]
        tgt_cols = []
        for _, planned, _ in pairs:
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
        rules = [r for _, _, r in pairs]
        # one engine, the same column types, values compared as they are: checksums may sum the engine's
        # own row hashes
        same_types = (
            self.source.name == self.target.name
            and not any(rules)
            and all(s.type.native == t.type.native for s, t in zip(src_cols, tgt_cols, strict=True))
        )
        sides = []
        for spec, config, table, columns, is_source in (
            (self.source, self.task.source, plan.source, src_cols, True),
            (self.target, self.task.target, plan.target, tgt_cols, False),
        ):
            connect, quote = readers(spec.name, config)
            dialect = DIALECTS[spec.name]
            side_columns = [
                _ruled(dialect, spec.name == "sqlite", quote(c.name), c, kind, native_json, rule, is_source)
                for c, kind, rule in zip(columns, kinds, rules, strict=True)
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
            sides[-1].mark_utf8()
        hashed = sides[0].native_hash
        if hashed is not None and not all(side.evaluates(hashed) for side in sides):
            for side in sides:
                side.native_hash = None
        # JSON between PostgreSQL and another engine, in a keyed table: the other side sends its keys and
        # documents to the PostgreSQL side, which compares them with its own as jsonb (cheaper than
        # rebuilding MariaDB's JSON_NORMALIZE form in PostgreSQL's SQL, or than printing both sides' jsonb)
        postgres = [side for side in sides if side.engine == "postgresql"]
        jsonb = any(c.jsonb is not None for side in sides for c in side.columns)
        if jsonb and len(postgres) == 1 and key and not any(side.python for side in sides):
            sides[1 - sides.index(postgres[0])].send_jsonb = postgres[0].jsonb_mismatches
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
            [t.name for _, t, _ in pairs],
            keyed=bool(key),
            partition_rows=settings.PartitionSize,
            max_failures=max(0, max_failures),
            lanes=self.lanes,
            range_texts=ranged and rules[key[0]] is None,
        )

    def compared_columns(self, plan: TablePlan) -> list[tuple[SchemaColumn, SchemaColumn, ValueRule | None]]:
        """(source column, planned target column, value rule) of each compared column, warning once about
        the columns left out."""
        settings = self.task.settings.ValidationSettings
        mapping = plan.mapping
        sources = list(plan.source.columns) if mapping is None else [mapping.read.columns[i] for i in mapping.keep]
        masks = {m.position: m for m in mapping.masks} if mapping is not None else {}
        limits = {x.position: x.max_bytes for x in mapping.lobs if not x.structured} if mapping is not None else {}
        keys = set(plan.source.row_key())
        partial = settings.ValidationPartialLobSize * 1024
        pairs: list[tuple[SchemaColumn, SchemaColumn, ValueRule | None]] = []
        left_out: list[str] = []
        for i, (s, t) in enumerate(zip(sources, plan.target.columns, strict=False)):
            lob = s.type.lob and s.name not in keys
            mask = masks.get(i)
            if lob and settings.SkipLobColumns:
                left_out.append(f"{t.name} (SkipLobColumns)")
                continue
            if mask is not None and (mask.action == DIGITS_RANDOMIZE or s.type.logical not in _MASKED_TEXT):
                why = (
                    "new random digits each time" if mask.action == DIGITS_RANDOMIZE else "masked from a non-text type"
                )
                left_out.append(f"{t.name} ({mask.action}: {why})")
                continue
            # the prefix limited LOB mode kept, or ValidationPartialLobSize's; JSON / XML are never cut
            sizes = [n for n in (limits.get(i, 0), partial if lob else 0) if n]
            prefix = min(sizes) if sizes and not structured(s.type) and s.type.logical is not LogicalType.JSON else 0
            pairs.append((s, t, ValueRule(mask, prefix) if mask is not None or prefix else None))
        added = plan.target.columns[len(sources) :]
        left_out += [f"{c.name} (added by the task)" for c in added]
        if left_out:
            self._warn_once(f"{plan.target.id}: not compared: {', '.join(left_out)}")
        return pairs

    def _warn_once(self, text: str) -> None:
        if text not in self.warnings:
            self.warn(text)

    def record(self, result: ValidationResult) -> int:
        """Write the failures to the target's failures table; returns how many."""
        applier = self.target.open_applier(self.task.target, control_schema(self.task, self.target))
        try:
            table = FailureTable(applier)
            return table.replace(
                self.task.name,
                [(r.plan.target.id, r.failures, r.names) for r in result.tables if not r.error],
            )
        finally:
            applier.close()


@dataclass(frozen=True)
class ValueRule:
    """What the task did to a column's values, done again before they are compared: the mask (source side
    only: the target holds masked values), then the prefix of ``prefix`` bytes (both sides; 0: whole)."""

    mask: Mask | None
    prefix: int

    def python(self, value: Any, is_source: bool) -> Any:
        if self.mask is not None and is_source:
            value = self.mask.apply(value)
        return clip(value, self.prefix) if self.prefix and value is not None else value

    def sql(self, dialect: Dialect, expr: str, column: SchemaColumn, kind: Kind, is_source: bool) -> str:
        if self.mask is not None and is_source:
            if self.mask.action == HASH_MASK:
                expr = dialect.sha256_hex(expr, column.type)
            elif self.mask.action == DIGITS_MASK:
                expr = dialect.digits_masked(expr, self.mask.character)
        if self.prefix:
            prefix = dialect.binary_prefix if kind is Kind.BINARY else dialect.text_prefix
            expr = prefix(expr, self.prefix)
        return expr


def _ruled(
    dialect: Dialect,
    in_python: bool,
    quoted: str,
    column: SchemaColumn,
    kind: Kind,
    native_json: bool,
    rule: ValueRule | None,
    is_source: bool,
) -> Column:
    """One side's compared column, its values first passed through ``rule``: in SQL, or where the side
    finishes values in Python (SQLite) before its own finish."""
    if rule is None:
        return dialect.column(quoted, column.type, kind, native_json)
    if not in_python:
        return dialect.column(rule.sql(dialect, quoted, column, kind, is_source), column.type, kind, native_json)
    plain = dialect.column(quoted, column.type, kind, native_json)
    finish = plain.finish
    assert finish is not None
    return Column(plain.sql, lambda v: finish(rule.python(v, is_source)))
