"""Full load: plan tables into segments, load them in parallel, finish tables, report statistics.

Sequence (the runner owns it; engines only fill roles):
1. introspect and select the source tables, plan each onto the target;
2. take a lease on the target (fencing) and open one consistent source snapshot;
3. prepare target tables (DROP_AND_CREATE, ...), unless a resumed run already did;
4. load every segment not already committed, each in one target transaction with its control row;
5. per table, once its segments are in: unique keys, indexes, identity values; then foreign keys.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.convert.plan import TablePlan, plan_table
from conveyor.endpoints.base import Applier, ErrorPolicy, Snapshot, SnapshotReader
from conveyor.endpoints.registry import engine_for
from conveyor.errors import ConveyorError, StopTask, TerminalError, TransientError, UserActionError
from conveyor.model.rows import RowBatch
from conveyor.model.schema import TableId
from conveyor.model.segments import Segment
from conveyor.runner import stats as st
from conveyor.runner.segments import plan_segments
from conveyor.runner.state import StateStore
from conveyor.runner.task import Task

RETRIES = 3


@dataclass
class RunResult:
    tables: list[st.TableStats]
    warnings: list[str] = field(default_factory=list)
    failed: str | None = None

    @property
    def rejected_rows(self) -> int:
        return sum(t.full_load_error_rows for t in self.tables)

    @property
    def complete(self) -> bool:
        return self.failed is None and all(t.state == st.COMPLETED for t in self.tables)


class _Workers(threading.local):
    reader: SnapshotReader | None = None
    applier: Applier | None = None


class FullLoad:
    def __init__(self, task: Task, state_dir: str, resume: bool = False, listener: st.Listener | None = None) -> None:
        if task.migration_type != "full-load":
            raise UserActionError(f"migration_type {task.migration_type!r} is not available yet; use full-load")
        self.task = task
        self.resume = resume
        self.listener = listener or st.NullListener()
        self.store = StateStore(state_dir)
        self.source = engine_for(task.source)
        self.target = engine_for(task.target)
        self.stats = st.TaskStats()
        self.warnings: list[str] = list(task.warnings)
        self._local = _Workers()
        self._resources: list[Any] = []
        self._resource_lock = threading.Lock()
        self._stop = threading.Event()
        self._snapshot: Snapshot

    # ------------------------------------------------------------------ entry point
    def run(self) -> RunResult:
        settings = self.task.settings
        previous = self.store.load(self.task.name)
        if self.resume and previous is None:
            raise UserActionError(
                f"task {self.task.name!r} has no earlier run in this state directory to resume; "
                "run it without --resume (or pass the --state-dir it used)"
            )
        if self.task.settings.FullLoadSettings.CreatePkAfterFullLoad and not self._pk_after_load():
            self.warnings.append(f"CreatePkAfterFullLoad is not honoured on {self.target.name} targets")
        for w in self.warnings:
            self.listener.message(f"warning: {w}")
        applier = self.target.open_applier(self.task.target, self._control_schema())
        self._track(applier)
        snapshot = None
        try:
            plans = self._plan_tables(applier)
            workers = 1 if self.target.single_writer else settings.FullLoadSettings.MaxFullLoadSubTasks
            snapshot = self.source.open_snapshot(self.task.source, workers)
            self._snapshot = snapshot
            for w in snapshot.warnings:
                self._warn(w)
            plan_state = previous["plan"] if (self.resume and previous) else {}
            lease = applier.start_task(self.task.name, fresh=not self.resume)
            done = applier.done_segments(self.task.name) if self.resume else {}
            coordinator = snapshot.reader()
            self._track(coordinator)
            segments = self._segments(coordinator, plans, plan_state)
            self.store.save(self.task.name, "running", lease, plan_state)
            for plan in plans:
                self._prepare(applier, plan, plan_state, lease)
            result = self._load_all(snapshot, plans, segments, done, lease, plan_state)
            self._foreign_keys(applier, plans)
            status = "finished" if result.complete else "failed"
            self.store.save(self.task.name, status, lease, plan_state, [t.dms() for t in result.tables])
            return result
        finally:
            if snapshot is not None:
                snapshot.close()
            self._close_all()
            self.store.close()

    # ------------------------------------------------------------------ planning
    def _control_schema(self) -> str:
        cs = self.task.settings.ControlTablesSettings.ControlSchema
        return cs or self._target_schema(None)

    def _target_schema(self, source_schema: str | None) -> str:
        explicit = self.task.settings.TargetMetadata.TargetSchema
        if explicit:
            return explicit
        if self.target.capabilities.schemas:
            if source_schema and self.source.capabilities.schemas:
                return source_schema
            return self.target.default_schema(self.task.target)
        return self.target.default_schema(self.task.target)

    def _plan_tables(self, applier: Applier) -> list[TablePlan]:
        introspector = self.source.open_introspector(self.task.source)
        self._track(introspector)
        ids: list[TableId] = []
        for schema in introspector.schemas():
            ids.extend(introspector.table_ids(schema))
        selected = self.task.mappings.select(ids)
        if not selected:
            raise UserActionError(
                "no source table matches the table mappings; check the selection rules' schema-name and table-name"
            )
        id_map = {tid: TableId(self._target_schema(tid.schema), tid.name) for tid, _ in selected}
        same = self.source.name == self.target.name
        plans = []
        for tid, order in selected:
            table = introspector.table(tid)
            plan, warnings = plan_table(table, id_map[tid], applier, same, id_map, order)
            self.warnings.extend(warnings)
            for w in warnings:
                self.listener.message(f"warning: {w}")
            plans.append(plan)
        return plans

    def _segments(
        self, reader: SnapshotReader, plans: list[TablePlan], plan_state: dict[str, Any]
    ) -> dict[str, list[Segment]]:
        out: dict[str, list[Segment]] = {}
        for plan in plans:
            saved = plan_state.get(plan.key)
            estimate = reader.estimate_rows(plan.source)
            if saved:
                segments = [Segment.from_json(s) for s in saved["segments"]]
            else:
                segments = plan_segments(reader, plan.source, estimate, self.source.capabilities.ctid_segments)
                plan_state[plan.key] = {
                    "segments": [s.to_json() for s in segments],
                    "prepared": False,
                    "finished": False,
                }
            out[plan.key] = segments
            stats = st.TableStats(
                plan.target.id.schema, plan.target.id.name, estimated_rows=estimate, segments=len(segments)
            )
            self.stats.tables[plan.key] = stats
            self.listener.table_planned(stats)
        return out

    def _prepare(self, applier: Applier, plan: TablePlan, plan_state: dict[str, Any], lease: int) -> None:
        entry = plan_state[plan.key]
        if entry["prepared"]:
            return
        table = replace(plan.target, primary_key=None) if self._pk_after_load() else plan.target
        applier.prepare(table, plan.native_types, self.task.settings.FullLoadSettings.TargetTablePrepMode)
        entry["prepared"] = True
        self.store.save(self.task.name, "running", lease, plan_state)

    def _pk_after_load(self) -> bool:
        """DMS's CreatePkAfterFullLoad, where the target can add a key to a filled table."""
        return self.task.settings.FullLoadSettings.CreatePkAfterFullLoad and self.target.capabilities.late_primary_key

    # ------------------------------------------------------------------ loading
    def _load_all(
        self,
        snapshot: Any,
        plans: list[TablePlan],
        segments: dict[str, list[Segment]],
        done: dict[tuple[str, int], tuple[int, int]],
        lease: int,
        plan_state: dict[str, Any],
    ) -> RunResult:
        settings = self.task.settings
        workers = 1 if self.target.single_writer else settings.FullLoadSettings.MaxFullLoadSubTasks
        remaining: dict[str, int] = {}
        failed: str | None = None
        for plan in plans:
            stats = self.stats.tables[plan.key]
            committed = {n: v for (t, n), v in _done_items(done) if t == plan.key}
            for rows, rejected in committed.values():
                stats.full_load_rows += rows
                stats.full_load_error_rows += rejected
            stats.segments_done = len(committed)
            remaining[plan.key] = sum(1 for s in segments[plan.key] if s.number not in committed)
        lock = threading.Lock()

        def finish_if_done(plan: TablePlan) -> None:
            stats = self.stats.tables[plan.key]
            if stats.state == st.ERROR:
                return
            if plan_state[plan.key]["finished"]:
                stats.state = st.COMPLETED
            else:
                for w in self._applier().finish(plan.target, plan.native_types, self._pk_after_load()):
                    self._warn(w)
                stats.state = st.COMPLETED
                with lock:
                    plan_state[plan.key]["finished"] = True
                    self.store.save(self.task.name, "running", lease, plan_state)
            stats.end = stats.end or st.now()
            self.listener.table_changed(stats)

        def run_segment(plan: TablePlan, segment: Segment) -> None:
            stats = self.stats.tables[plan.key]
            if self._stop.is_set() or stats.state == st.ERROR:
                return
            with lock:
                if stats.state == st.BEFORE_LOAD:
                    stats.state = st.FULL_LOAD
                    stats.start = st.now()
                    self.listener.table_changed(stats)
            try:
                self._load_segment(plan, segment, lease)
            except Exception as exc:
                self._table_failed(plan, exc)
                return
            with lock:
                stats.segments_done += 1
                remaining[plan.key] -= 1
                last = remaining[plan.key] == 0
            if last:
                finish_if_done(plan)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conveyor-load")
        futures: list[Future[None]] = []
        try:
            for plan in plans:
                if remaining[plan.key] == 0:
                    finish_if_done(plan)
                    continue
                numbers = {n for (t, n), _ in _done_items(done) if t == plan.key}
                for segment in segments[plan.key]:
                    if segment.number not in numbers:
                        futures.append(pool.submit(run_segment, plan, segment))
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for f in finished:
                    f.result()
                if self._stop.is_set():
                    break
        except BaseException:
            self._stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._stop.is_set():
            failed = self._stop_reason
        return RunResult(list(self.stats.tables.values()), self.warnings, failed)

    _stop_reason: str | None = None

    def _table_failed(self, plan: TablePlan, exc: BaseException) -> None:
        error = self._classify(exc)
        stats = self.stats.tables[plan.key]
        stats.state = st.ERROR
        stats.error = str(error)
        stats.end = st.now()
        self.listener.table_changed(stats)
        self.listener.message(f"error: {plan.target.id}: {error}")
        if (
            isinstance(error, UserActionError)
            or self.task.settings.ErrorBehavior.TableErrorPolicy is ErrorPolicy.STOP_TASK
            or isinstance(error, StopTask)
        ):
            self._stop_reason = f"{plan.target.id}: {error}"
            self._stop.set()

    def _load_segment(self, plan: TablePlan, segment: Segment, lease: int) -> None:
        settings = self.task.settings
        batch_rows = settings.FullLoadSettings.CommitRate
        stats = self.stats.tables[plan.key]

        def batches() -> Iterator[RowBatch]:
            yield from self._reader().read(plan.source, segment, batch_rows, decode=not plan.passthrough)

        def progress(rows: int, byte_count: int) -> None:
            self.listener.rows_loaded(self.stats.add_rows(plan.key, rows, byte_count), rows)

        for attempt in range(RETRIES + 1):
            loaded = 0

            def counting(rows: int, byte_count: int) -> None:
                nonlocal loaded
                loaded += rows
                progress(rows, byte_count)

            try:
                result = self._applier().load(
                    self.task.name,
                    lease,
                    plan.target,
                    segment.number,
                    batches,
                    plan.encoders,
                    settings.ErrorBehavior.DataErrorPolicy,
                    counting,
                    plan.native_types,
                )
            except Exception as exc:
                self.stats.add_rows(plan.key, -loaded, 0)  # the transaction rolled back: uncount
                error = self._classify(exc)
                if isinstance(error, TransientError) and attempt < RETRIES and not self._stop.is_set():
                    self._drop_connections()
                    time.sleep(min(2**attempt, 10))
                    continue
                raise
            with self.stats.lock:
                # rows rejected inside the careful reload were never counted as loaded
                stats.full_load_rows += result.rows - loaded
                stats.full_load_error_rows += len(result.rejected)
            for r in result.rejected:
                self.listener.message(
                    f"rejected: {r.table} key {r.key}: {(r.column + ': ') if r.column else ''}{r.reason}"
                )
            return

    def _foreign_keys(self, applier: Applier, plans: list[TablePlan]) -> None:
        for plan in plans:
            if self.stats.tables[plan.key].state == st.COMPLETED:
                for w in applier.add_foreign_keys(plan.target):
                    self._warn(w)

    # ------------------------------------------------------------------ per-thread connections
    def _reader(self) -> SnapshotReader:
        if self._local.reader is None:
            self._local.reader = self._snapshot.reader()
            self._track(self._local.reader)
        return self._local.reader

    def _applier(self) -> Applier:
        if self._local.applier is None:
            self._local.applier = self.target.open_applier(self.task.target, self._control_schema())
            self._track(self._local.applier)
        return self._local.applier

    def _drop_connections(self) -> None:
        for attr in ("reader", "applier"):
            resource = getattr(self._local, attr)
            if resource is not None:
                with contextlib.suppress(Exception):
                    resource.close()
                setattr(self._local, attr, None)

    def _track(self, resource: Any) -> None:
        with self._resource_lock:
            self._resources.append(resource)

    def _close_all(self) -> None:
        with self._resource_lock:
            resources, self._resources = self._resources, []
        for resource in resources:
            with contextlib.suppress(Exception):
                resource.close()

    def _classify(self, exc: BaseException) -> ConveyorError:
        if isinstance(exc, ConveyorError):
            return exc
        for engine in (self.source, self.target):
            error = engine.classify(exc) if engine.classify else None
            if error is not None:
                return error
        return TerminalError(f"{type(exc).__name__}: {exc}")

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        self.listener.message(f"warning: {text}")


def _done_items(done: dict[tuple[str, int], tuple[int, int]]) -> list[tuple[tuple[str, int], tuple[int, int]]]:
    return list(done.items())
