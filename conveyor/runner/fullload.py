"""Full load: plan tables into segments, load them in parallel, finish tables, report statistics.

Sequence (the runner owns it; engines only fill roles):
1. take a lease on the target (fencing); introspect and select the source tables, plan each onto
   the target; meanwhile the executor starts its worker processes;
2. open one consistent source snapshot, let every worker join it, release it (MySQL: unlock);
3. prepare target tables (DROP_AND_CREATE, ...), unless a resumed run already did;
4. load every segment not already committed, each a unit run by a worker (``executor``) in one
   target transaction with its control row;
5. per table, once its segments are in: unique keys, indexes, identity values; then foreign keys.
   These run here, in the runner's process, which alone keeps statistics and state.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from conveyor.convert.plan import TablePlan
from conveyor.endpoints.base import Applier, ErrorPolicy, Snapshot, SnapshotReader
from conveyor.endpoints.registry import engine_for
from conveyor.errors import ConveyorError, StopTask, TerminalError, UserActionError
from conveyor.model.segments import Segment
from conveyor.runner import stats as st
from conveyor.runner.executor import (
    Failed,
    Notice,
    ProcessExecutor,
    Progress,
    ThreadExecutor,
    Unit,
    classify,
    process_limit,
)
from conveyor.runner.planning import control_schema, plan_tables
from conveyor.runner.segments import plan_segments
from conveyor.runner.state import StateStore
from conveyor.runner.task import Task
from conveyor.transform.lobs import truncation_warning

if TYPE_CHECKING:
    from conveyor.validate.intask import AfterLoad


#: ``RunResult.stopped`` of a full load asked to stop (full-load-and-cdc's first SIGTERM or Ctrl-C)
STOPPED_LOADING = "asked to stop during the full load"


@dataclass
class RunResult:
    tables: list[st.TableStats]
    warnings: list[str] = field(default_factory=list)
    failed: str | None = None
    #: change processing's statistics (cdc and full-load-and-cdc tasks)
    cdc: st.CdcStats | None = None
    #: why change processing stopped, when it was asked to or reached its stop position
    stopped: str | None = None

    @property
    def rejected_rows(self) -> int:
        return sum(t.full_load_error_rows + t.apply_error_rows for t in self.tables)

    @property
    def complete(self) -> bool:
        return self.failed is None and all(t.state == st.COMPLETED for t in self.tables)


class _Finishers(threading.local):
    applier: Applier | None = None


#: (plans, readers, hold) -> the snapshot to load from, instead of the source engine's own
SnapshotOpener = Callable[[list[TablePlan], int, bool], Snapshot]


class FullLoad:
    """One full load. ``open_snapshot`` replaces the source's snapshot: full-load-and-cdc loads inside
    the snapshot where its change stream begins."""

    def __init__(
        self,
        task: Task,
        state_dir: str,
        resume: bool = False,
        listener: st.Listener | None = None,
        open_snapshot: SnapshotOpener | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.task = task
        self.open_snapshot = open_snapshot
        self.plans: list[TablePlan] = []
        self.resume = resume
        self.listener = listener or st.NullListener()
        self.store = StateStore(state_dir)
        self.source = engine_for(task.source)
        self.target = engine_for(task.target)
        self.stats = st.TaskStats()
        self.warnings: list[str] = list(task.warnings)
        self._local = _Finishers()
        self._resources: list[Any] = []
        self._resource_lock = threading.Lock()
        self._stop = stop or threading.Event()
        #: ValidationSettings.EnableValidation: validates each table after its load (``validate.intask``)
        self.after_load: AfterLoad | None = None

    # ------------------------------------------------------------------ entry point
    def run(self) -> RunResult:
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
        snapshot: Snapshot | None = None
        executor: ThreadExecutor | ProcessExecutor | None = None
        try:
            # the lease first: another run of this task can no longer commit from here on
            lease = applier.start_task(self.task.name, fresh=not self.resume)
            executor = self._executor()
            executor.start()
            plans = self.plans = self._plan_tables(applier)
            plan_state = previous["plan"] if (self.resume and previous) else {}
            done = applier.done_segments(self.task.name) if self.resume else {}
            executor.wait_started()
            if self.open_snapshot is not None:
                snapshot = self.open_snapshot(plans, executor.slots, executor.joins_by_token)
            else:
                snapshot = self.source.open_snapshot(self.task.source, executor.slots, executor.joins_by_token)
            executor.join(snapshot)
            snapshot.release()
            for w in snapshot.warnings:
                self._warn(w)
            coordinator = snapshot.reader()
            self._track(coordinator)
            segments = self._segments(coordinator, plans, plan_state)
            self.store.save(self.task.name, "running", lease, plan_state)
            for plan in plans:
                self._prepare(applier, plan, plan_state, lease)
            if self.task.settings.ValidationSettings.EnableValidation:
                from conveyor.validate.intask import AfterLoad

                self.after_load = AfterLoad(self.task, self.open_snapshot is not None, self.listener.table_changed)
            result = self._load_all(executor, plans, segments, done, lease, plan_state)
            executor.close()
            self._foreign_keys(applier, plans)
            if self.after_load is not None:
                self.after_load.wait()
                self.warnings += self.after_load.warnings
            status = "finished" if result.complete else "failed"
            self.store.save(self.task.name, status, lease, plan_state, [t.dms() for t in result.tables])
            return result
        except BaseException:
            if executor is not None:
                executor.close(abort=True)  # Ctrl-C, SIGTERM, a failure: workers stop now, mid-segment
            raise
        finally:
            if self.after_load is not None:
                self.after_load.close()
            if executor is not None:
                executor.close()
            if snapshot is not None:
                snapshot.close()
            self._close_all()
            self.store.close()

    # ------------------------------------------------------------------ planning
    def _control_schema(self) -> str:
        return control_schema(self.task, self.target)

    def _plan_tables(self, applier: Applier) -> list[TablePlan]:
        return plan_tables(self.task, self.source, self.target, applier, self._warn)

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
                ctid = self.source.capabilities.ctid_segments
                segments = plan_segments(
                    reader, plan.source, estimate, ctid, parallel=plan.parallel, filters=plan.filters
                )
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
    def _executor(self) -> ThreadExecutor | ProcessExecutor:
        workers = self.task.settings.FullLoadSettings.MaxFullLoadSubTasks
        if self.target.single_writer:
            return ThreadExecutor(self.task, self._control_schema(), 1)
        if not uses_worker_processes(self.task):
            return ThreadExecutor(self.task, self._control_schema(), workers)
        return ProcessExecutor(self.task, self._control_schema(), min(workers, process_limit()))

    def _load_all(
        self,
        executor: ThreadExecutor | ProcessExecutor,
        plans: list[TablePlan],
        segments: dict[str, list[Segment]],
        done: dict[tuple[str, int], tuple[int, int]],
        lease: int,
        plan_state: dict[str, Any],
    ) -> RunResult:
        """The scheduler: hands segments to the executor as its workers free up, turns the events
        they send into statistics, and finishes each table once its last segment is in."""
        remaining: dict[str, int] = {}
        committed_numbers: dict[str, set[int]] = {}
        for plan in plans:
            stats = self.stats.tables[plan.key]
            committed = {n: v for (t, n), v in done.items() if t == plan.key}
            for rows, rejected in committed.values():
                stats.full_load_rows += rows
                stats.full_load_error_rows += rejected
            stats.segments_done = len(committed)
            committed_numbers[plan.key] = set(committed)
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
            if self.after_load is not None:
                self.after_load.loaded(plan, stats)

        # Finishing (indexes, keys) runs on threads beside the loads, except on single-writer targets,
        # where it runs here between segments, while no worker writes.
        finisher = None
        if not self.target.single_writer:
            finisher = ThreadPoolExecutor(max_workers=executor.slots, thread_name_prefix="conveyor-finish")
        finishing: list[Future[None]] = []
        pending: list[tuple[TablePlan, Segment]] = []
        for plan in plans:
            if remaining[plan.key] == 0:
                finish_if_done(plan)
                continue
            pending.extend((plan, s) for s in segments[plan.key] if s.number not in committed_numbers[plan.key])

        def size(plan: TablePlan) -> float:
            stats = self.stats.tables[plan.key]
            return stats.estimated_rows / max(1, stats.segments)

        # Higher load-order first (DMS), then the biggest segments, so that a big table's segments
        # do not start last and leave the other workers idle at the end. Stable: table, segment order.
        pending.sort(key=lambda item: (-item[0].load_order, -size(item[0])))
        todo = deque(pending)
        running: dict[int, TablePlan] = {}
        ids = itertools.count()
        stopping = False
        try:
            while True:
                if self._stop.is_set() and not stopping:
                    stopping = True
                    executor.stop()
                while todo and not stopping and executor.idle() > 0:
                    plan, segment = todo.popleft()
                    stats = self.stats.tables[plan.key]
                    if stats.state == st.ERROR:
                        continue
                    if stats.state == st.BEFORE_LOAD:
                        stats.state = st.FULL_LOAD
                        stats.start = st.now()
                        self.listener.table_changed(stats)
                    unit = Unit(
                        next(ids),
                        plan.key,
                        segment.to_json(),
                        plan.read,
                        plan.target,
                        tuple(plan.native_types),
                        plan.passthrough,
                        lease,
                        plan.mapping,
                    )
                    executor.submit(unit)
                    running[unit.id] = plan
                if not running:
                    if todo and not stopping:
                        raise TerminalError("every worker process exited; the remaining segments were not loaded")
                    break
                for event in executor.events(0.5):
                    if isinstance(event, Progress):
                        stats = self.stats.add_rows(event.key, event.rows, event.bytes)
                        if event.rows >= 0:
                            self.listener.rows_loaded(stats, event.rows)
                    elif isinstance(event, Notice):
                        self._warn(event.text)
                    elif isinstance(event, Failed):
                        if event.unit not in running:
                            raise event.error
                        self._table_failed(running.pop(event.unit), event.error)
                    else:
                        plan = running.pop(event.unit)
                        stats = self.stats.tables[plan.key]
                        with self.stats.lock:
                            stats.full_load_rows += event.uncounted
                            stats.full_load_error_rows += len(event.rejected)
                            stats.lob_truncations += sum(event.truncated.values())
                        if event.truncated and plan.mapping is not None:
                            self._warn(truncation_warning(plan.source.id, event.truncated, plan.mapping.lobs))
                        for r in event.rejected:
                            self.listener.message(
                                f"rejected: {r.table} key {r.key}: {(r.column + ': ') if r.column else ''}{r.reason}"
                            )
                        stats.segments_done += 1
                        remaining[plan.key] -= 1
                        if remaining[plan.key] == 0:
                            if finisher is None:
                                finish_if_done(plan)
                            else:
                                finishing.append(finisher.submit(finish_if_done, plan))
                for future in [f for f in finishing if f.done()]:
                    finishing.remove(future)
                    future.result()
            for future in finishing:
                future.result()
        except BaseException:
            self._stop.set()
            raise
        finally:
            if finisher is not None:
                finisher.shutdown(wait=True, cancel_futures=True)
        failed = self._stop_reason if self._stop.is_set() else None
        # set without a reason: asked to stop (full-load-and-cdc's first SIGTERM or Ctrl-C)
        asked = STOPPED_LOADING if self._stop.is_set() and failed is None else None
        return RunResult(list(self.stats.tables.values()), self.warnings, failed, stopped=asked)

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

    def _foreign_keys(self, applier: Applier, plans: list[TablePlan]) -> None:
        for plan in plans:
            if self.stats.tables[plan.key].state == st.COMPLETED:
                for w in applier.add_foreign_keys(plan.target):
                    self._warn(w)

    # ------------------------------------------------------------------ the runner's own connections
    def _applier(self) -> Applier:
        """One applier per finishing thread."""
        if self._local.applier is None:
            self._local.applier = self.target.open_applier(self.task.target, self._control_schema())
            self._track(self._local.applier)
        return self._local.applier

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
        return classify(exc, (self.source, self.target))

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        self.listener.message(f"warning: {text}")


def uses_worker_processes(task: Task) -> bool:
    """Whether the task loads in worker processes: where rows pass through Python (decoding and
    encoding; one GIL would cap the load at one core). Threads where processes would only add their
    start-up: single-writer targets (SQLite loads one segment at a time), raw same-engine copies
    (PostgreSQL to PostgreSQL moves COPY bytes), and tasks built without their document."""
    source, target = engine_for(task.source), engine_for(task.target)
    raw = source.name == target.name and source.capabilities.raw_copy
    return bool(task.document) and not target.single_writer and not raw
