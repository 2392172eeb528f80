"""Validation inside tasks (``ValidationSettings``): after each table's full load, during CDC, and
validation-only runs.

* ``AfterLoad``: with ``EnableValidation`` a table is validated once its full load is complete, on a
  thread beside the load. Before change processing (full-load-and-cdc) the source moves on while the
  load runs, so a differing row is *pending*, handed to ``ChangedRows``, not a failure.
* ``ChangedRows``: during CDC, the rows each committed batch changed are validated again, on their own
  connections, at a low rate, in chunks of keys. A row that differs is read again later; it is a failure
  only when both reads agree, no change to it arrived in between, and the stream has applied the source's
  transactions up to the first read (a transaction committed after it, or a quiet stream). Otherwise it
  stays pending. Rows are read by their key (any primary or unique key); tables without one are not
  re-validated (warned). Changes of a transaction that comes in parts are queued when it commits.
  ``ValidationSettings``: a changed row is first read ``ValidationQueryCdcDelaySeconds`` after its change;
  a differing one is a failure only once it has differed for ``RecordFailureDelayInMinutes`` (or
  ``...LimitInMinutes``); a table over ``TableFailureMaxCount`` failures for ``RecordSuspendDelayInMinutes``
  is suspended (no more reads; its changed rows counted as suspended); a key longer than
  ``MaxKeyColumnSize`` bytes is not read, only counted as suspended.
* ``ValidationOnly``: ``conveyor run`` compares source and target once, like ``conveyor validate``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.convert.plan import TablePlan
from conveyor.errors import ConveyorError
from conveyor.model.changes import UNCHANGED, Change, Transaction
from conveyor.model.schema import TableId
from conveyor.model.types import LogicalType
from conveyor.runner import stats as st
from conveyor.runner.fullload import RunResult
from conveyor.runner.planning import control_schema
from conveyor.runner.task import Task
from conveyor.validate.canonical import Kind, column_kind, text
from conveyor.validate.compare import RowFailure, TableComparer
from conveyor.validate.failures import FailureTable
from conveyor.validate.repair import key_value
from conveyor.validate.run import PENDING, TABLE_ERROR, Validation, validation_state
from conveyor.validate.side import Scope

#: seconds before a differing row is read again
RECHECK_SECONDS = 1.0
#: seconds between rounds of CDC re-validation (the low rate)
ROUND_SECONDS = 1.0
#: keys per table validated in one round
KEYS_PER_ROUND = 1000
#: keys per read (bound parameters per statement stay well under every engine's limit)
KEYS_PER_READ = 250
#: keys per table waiting at most (memory bound); more are counted as suspended
MAX_QUEUED = 100_000
#: a stream without a commit for this long has applied everything the source committed
QUIET_SECONDS = 2.0
#: key types whose size depends on the value (MaxKeyColumnSize)
_SIZED = frozenset(
    {
        LogicalType.CHAR,
        LogicalType.VARCHAR,
        LogicalType.TEXT,
        LogicalType.BINARY,
        LogicalType.VARBINARY,
        LogicalType.BLOB,
        LogicalType.JSON,
        LogicalType.ARRAY,
        LogicalType.DYNAMIC,
    }
)


def _show(stats: st.TableStats, failed: int, pending: int, suspended: int = 0, table_suspended: bool = False) -> None:
    stats.validation_failed = failed
    stats.validation_pending = pending
    stats.validation_suspended = suspended
    stats.validation_state = validation_state(False, table_suspended, failed, pending, suspended)


def _record(validation: Validation, plan: TablePlan, failures: Iterable[RowFailure], names: list[str]) -> None:
    """``names``: the compared columns (``TableComparer.names``)."""
    applier = validation.target.open_applier(validation.task.target, control_schema(validation.task, validation.target))
    try:
        FailureTable(applier).replace(validation.task.name, [(plan.target.id, list(failures), names)])
    finally:
        applier.close()


class AfterLoad:
    """``loaded(plan, stats)`` after a table's full load; ``wait()`` before the run reports.
    ``streaming``: change processing follows, so differences are pending (``carried``) for it."""

    def __init__(self, task: Task, streaming: bool, changed: Callable[[st.TableStats], None]) -> None:
        self.validation = Validation(task, recheck_delay=RECHECK_SECONDS)
        self.streaming = streaming
        self.changed = changed
        #: target table key -> rows that differed after the load (full-load-and-cdc)
        self.carried: dict[str, list[RowFailure]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="conveyor-validate")
        self._futures: list[Future[None]] = []

    @property
    def warnings(self) -> list[str]:
        return self.validation.warnings

    def loaded(self, plan: TablePlan, stats: st.TableStats) -> None:
        stats.validation_state = PENDING
        self._futures.append(self._pool.submit(self._validate, plan, stats))

    def _validate(self, plan: TablePlan, stats: st.TableStats) -> None:
        (result,) = self.validation.run([plan]).tables
        if result.error:
            stats.validation_state = TABLE_ERROR
            self.validation.warn(f"{plan.target.id}: validation failed: {result.error}")
        elif self.streaming:
            self.carried[plan.key] = result.failures
            _show(stats, 0, len(result.failures) + result.pending, result.suspended)
        else:
            _record(self.validation, plan, result.failures, result.names)
            _show(stats, len(result.failures), result.pending, result.suspended, result.table_suspended)
        self.changed(stats)

    def wait(self) -> None:
        for future in self._futures:
            future.result()

    def close(self) -> None:
        """Validations not started yet are dropped (a run that stops early)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def validation_only(task: Task) -> RunResult:
    """``ValidationOnly``: every selected table compared once; failures recorded as by ``conveyor validate``."""
    validation = Validation(task)
    result = validation.run()
    validation.record(result)
    tables = []
    for table in result.tables:
        stats = table.stats()
        stats.state = st.ERROR if table.error else st.COMPLETED
        tables.append(stats)
    return RunResult(tables, [*task.warnings, *result.warnings])


# --------------------------------------------------------------------------- CDC
#: a row's key values, as the source's changes carry them
Key = tuple[Any, ...]


@dataclass
class Recheck:
    """The keys of one table on their way to a verdict (pure bookkeeping; times in seconds). ``delay``:
    before a changed row is read (ValidationQueryCdcDelaySeconds); ``failure_delay``: how long a row must
    keep differing before it is a failure (RecordFailureDelayInMinutes)."""

    delay: float = 0.0
    failure_delay: float = 0.0
    #: key -> when its latest change was committed on the target
    queued: dict[Key, float] = field(default_factory=dict)
    #: key -> (its difference, when it was first read so, when it was last read)
    suspects: dict[Key, tuple[RowFailure, float, float]] = field(default_factory=dict)
    failures: dict[Key, RowFailure] = field(default_factory=dict)
    suspended: int = 0
    #: over TableFailureMaxCount since (None: not over); ``stopped``: the table's re-validation is suspended
    over_since: float | None = None
    stopped: bool = False

    def changed(self, keys: Iterable[Key], now: float) -> None:
        for k in keys:
            if self.stopped:
                self.suspended += 1
                continue
            self.suspects.pop(k, None)
            self.failures.pop(k, None)
            if k in self.queued or len(self.queued) < MAX_QUEUED:
                self.queued[k] = now
            else:
                self.suspended += 1

    def due(self, now: float, limit: int) -> list[Key]:
        """Keys to read now: queued ones ``delay`` after their change, and suspects read again (each
        ``RECHECK_SECONDS``, and once they have differed for ``failure_delay``)."""
        keys = [
            k
            for k, (_, first, last) in self.suspects.items()
            if now - last >= RECHECK_SECONDS and now - first >= self.failure_delay
        ][:limit]
        ready: list[Key] = []
        for k, at in self.queued.items():
            if len(keys) + len(ready) >= limit:
                break
            if now - at >= self.delay:
                ready.append(k)
        for k in ready:
            del self.queued[k]
        return keys + ready

    def observed(self, key: Key, failure: RowFailure | None, now: float, caught_up: Callable[[float], bool]) -> None:
        """The verdict of one read: equal, a difference (suspect), or a failure (the same difference since
        ``failure_delay`` ago at least, twice, with the stream caught up to the first read); a change in
        between re-queued the key."""
        if key in self.queued:  # changed again meanwhile: read after that change
            self.suspects.pop(key, None)
            return
        first = self.suspects.pop(key, None)
        same = first is not None and first[0] == failure
        if failure is None:
            self.failures.pop(key, None)
        elif first is not None and same and caught_up(first[1]) and now - first[1] >= self.failure_delay:
            self.failures[key] = failure
        else:
            self.suspects[key] = (failure, first[1] if first is not None and same else now, now)

    def over_limit(self, limit: int, delay: float, now: float) -> bool:
        """Whether the table has had more than ``limit`` failures for ``delay`` seconds now: its
        re-validation is then suspended (the keys waiting are counted as suspended, failures kept)."""
        if self.stopped:
            return False
        if len(self.failures) <= limit:
            self.over_since = None
            return False
        if self.over_since is None:
            self.over_since = now
        if now - self.over_since < delay:
            return False
        self.stopped = True
        self.suspended += len(self.queued) + len(self.suspects)
        self.queued.clear()
        self.suspects.clear()
        return True

    @property
    def pending(self) -> int:
        return len(self.queued) + len(self.suspects)


class ChangedRows:
    """Re-validation during CDC. ``settled`` is called by the CDC loop after each committed batch (it only
    queues keys); a thread of its own does the reading. ``stats_for``: a source table's statistics."""

    def __init__(
        self,
        task: Task,
        plans: list[TablePlan],
        stats_for: Callable[[TableId], st.TableStats | None],
        changed: Callable[[st.TableStats], None],
        warn: Callable[[str], None],
    ) -> None:
        self.validation = Validation(task, recheck_delay=0, warn=warn)
        settings = task.settings.ValidationSettings
        self.settings = settings
        failure_delay = 60.0 * max(settings.RecordFailureDelayInMinutes, settings.RecordFailureDelayLimitInMinutes)
        self.stats_for = stats_for
        self.changed_stats = changed
        self.plans: dict[TableId, TablePlan] = {}
        self.tables: dict[TableId, Recheck] = {}
        #: tables whose keys can be longer than MaxKeyColumnSize -> that size
        self._long_keys: dict[TableId, int] = {}
        for plan in plans:
            if _masked_key(plan):
                warn(f"{plan.target.id}: changed rows are not validated during CDC (a key column is masked)")
            elif plan.source.row_key():
                self.plans[plan.source.id] = plan
                self.tables[plan.source.id] = Recheck(settings.ValidationQueryCdcDelaySeconds, failure_delay)
                if _keys_may_be_long(plan, settings.MaxKeyColumnSize):
                    self._long_keys[plan.source.id] = settings.MaxKeyColumnSize
            else:
                warn(
                    f"{plan.target.id}: changed rows are not validated during CDC (that needs a primary or unique key)"
                )
        #: keys of the parts of a source transaction not committed yet (queued when it commits)
        self._parts: dict[TableId, list[Key]] = {}
        self._comparers: dict[TableId, TableComparer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        #: the latest source commit applied (UTC seconds) and when a batch last settled (monotonic)
        self._applied_commit = 0.0
        self._settled_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="conveyor-validate-cdc", daemon=True)
        self._thread.start()

    def carry(self, failures: dict[str, list[RowFailure]]) -> None:
        """Rows that differed after the full load: validated again once changes are applied."""
        now = time.monotonic()
        with self._lock:
            for source_id, plan in self.plans.items():
                keys = [_failure_key(plan, f) for f in failures.get(plan.key, [])]
                self.tables[source_id].changed([k for k in keys if k is not None], now)

    def part(self, txn: Transaction) -> None:
        """A part of a source transaction, applied into the open target transaction: its keys wait for
        the commit (``settled``). At most ``MAX_QUEUED`` keys per table; more are counted as suspended."""
        for table, found in self._keys(txn.changes).items():
            held = self._parts.setdefault(table, [])
            room = max(0, MAX_QUEUED - len(held))
            held += found[:room]
            if len(found) > room:
                with self._lock:
                    self.tables[table].suspended += len(found) - room

    def settled(self, transactions: Iterable[Transaction]) -> None:
        now = time.monotonic()
        transactions = list(transactions)
        keys = self._keys(change for txn in transactions for change in txn.changes)
        for table, held in self._parts.items():  # the transaction that came in parts has committed
            keys.setdefault(table, [])[:0] = held
        self._parts = {}
        latest = max([self._applied_commit, *(_epoch(t.commit_ts) for t in transactions if t.commit_ts is not None)])
        with self._lock:
            if keys or latest > self._applied_commit:  # a commit, not an idle checkpoint
                self._settled_at = now
            self._applied_commit = latest
            for table, found in keys.items():
                self.tables[table].changed(found, now)

    def _keys(self, changes: Iterable[Change]) -> dict[TableId, list[Key]]:
        """The keys of the rows the changes touched, per validated table (a key's old and new values); a
        key longer than MaxKeyColumnSize is counted as suspended instead."""
        keys: dict[TableId, list[Key]] = {}
        for change in changes:
            plan = self.plans.get(change.table)
            if plan is not None:
                for row in (change.before, change.after):
                    key = _change_key(plan, change.columns, row)
                    if key is None:
                        continue
                    size = self._long_keys.get(change.table)
                    if size is not None and sum(len(str(v).encode()) for v in key) > size:
                        with self._lock:
                            self.tables[change.table].suspended += 1
                        continue
                    keys.setdefault(change.table, []).append(key)
        return keys

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for comparer in self._comparers.values():
            comparer.close()

    # ------------------------------------------------------------------ the thread
    def _caught_up(self, read_at: float) -> bool:
        """Whether the stream has applied what the source committed before a read at ``read_at``."""
        wall = time.time() - (time.monotonic() - read_at)
        return self._applied_commit >= wall or time.monotonic() - self._settled_at >= QUIET_SECONDS

    def _loop(self) -> None:
        while not self._stop.wait(ROUND_SECONDS):
            for source_id in self.plans:
                try:
                    self._round(source_id)
                except Exception as exc:
                    known = exc if isinstance(exc, ConveyorError) else self.validation.classify(exc)
                    self.validation.warn(f"{self.plans[source_id].target.id}: CDC validation: {known or exc!r}")
                    if known is None:
                        return  # not a database's error: validation stops, change processing goes on

    def _round(self, source_id: TableId) -> None:
        plan = self.plans[source_id]
        recheck = self.tables[source_id]
        with self._lock:
            keys = recheck.due(time.monotonic(), KEYS_PER_ROUND)
            failures_before = dict(recheck.failures)
        if keys:
            comparer = self._comparer(plan)
            scopes = [Scope(keys=tuple(keys[i : i + KEYS_PER_READ])) for i in range(0, len(keys), KEYS_PER_READ)]
            found = {tuple(v for _, v in f.key): f for f in comparer.rows_diff(scopes)}
            kinds = _key_kinds(plan)
            now = time.monotonic()
            with self._lock:
                for k in keys:
                    texts = tuple(text(kind, v) for kind, v in zip(kinds, k, strict=True))
                    recheck.observed(k, found.get(texts), now, self._caught_up)
        limit = self.settings.TableFailureMaxCount
        with self._lock:
            stopped = recheck.over_limit(limit, 60.0 * self.settings.RecordSuspendDelayInMinutes, time.monotonic())
            failures, pending, suspended = dict(recheck.failures), recheck.pending, recheck.suspended
        if stopped:
            self.validation.warn(
                f"{plan.target.id}: CDC validation suspended: more than {limit} failing rows "
                "(ValidationSettings.TableFailureMaxCount)"
            )
        if failures != failures_before:
            _record(self.validation, plan, failures.values(), self._comparer(plan).names)
        stats = self.stats_for(source_id)
        if stats is not None:
            _show(stats, len(failures), pending, suspended, recheck.stopped)
            self.changed_stats(stats)

    def _comparer(self, plan: TablePlan) -> TableComparer:
        comparer = self._comparers.get(plan.source.id)
        if comparer is None:
            comparer = self._comparers[plan.source.id] = self.validation.table_comparer(plan)
        return comparer


def _masked_key(plan: TablePlan) -> bool:
    """Whether a key column is masked: rows are read by the source's key values, which the target lacks."""
    if plan.mapping is None or not plan.mapping.masks:
        return False
    keys = set(plan.source.row_key())
    return any(plan.mapping.read.columns[plan.mapping.keep[m.position]].name in keys for m in plan.mapping.masks)


def _keys_may_be_long(plan: TablePlan, size: int) -> bool:
    """Whether a key of the table can be longer than ``size`` bytes: a text or binary key column of
    unbounded length, or their lengths at 4 bytes a character over it."""
    columns = [plan.source.column(name).type for name in plan.source.row_key()]
    sized = [t for t in columns if t.logical in _SIZED]
    return any(t.length is None for t in sized) or sum(4 * (t.length or 0) for t in sized) > size


def _key_kinds(plan: TablePlan) -> list[Kind]:
    """The kinds of the key's canonical texts (those of a failure's key)."""
    columns = [plan.source.column(name) for name in plan.source.row_key()]
    return [column_kind(c.type, c.type) for c in columns]


def _change_key(plan: TablePlan, columns: tuple[str, ...], row: Any) -> Key | None:
    """The key values of a changed row (None when the change does not carry all of them, or one is NULL)."""
    if row is None:
        return None
    key = []
    for name in plan.source.row_key():
        value = row[columns.index(name)] if name in columns else None
        if value is UNCHANGED or value is None:
            return None
        key.append(value)
    return tuple(key)


def _failure_key(plan: TablePlan, failure: RowFailure) -> Key | None:
    """The key values of a row that differed after the full load (from its canonical texts)."""
    positions = [plan.source.column_names.index(name) for name in plan.source.row_key()]
    values = tuple(key_value(plan, i, v) for i, (_, v) in zip(positions, failure.key, strict=True))
    return None if None in values else values


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp()
