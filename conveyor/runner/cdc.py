"""Change processing: the ``cdc`` and ``full-load-and-cdc`` migration types.

Sequence (the runner owns it; engines fill roles):
1. plan the selected tables as full load does; open the source's ``Capture`` and run its pre-flight
   checks before anything is created;
2. where the target already holds a position for this task (``conveyor_cdc_state``), continue from
   it: that is what makes a restart exact, whatever stopped the previous run;
3. otherwise, full-load-and-cdc: load every table inside the snapshot the capture hands over, then
   store the handoff position; cdc: start from ``cdc_start_position`` or from now;
4. stream: whole source transactions are grouped into one target transaction that also stores the
   position of the last one (``ChangeApplier``); only after that commit is the source told it may
   discard its log (``Capture.ack``).

A stop request (SIGTERM, Ctrl-C, ``cdc_stop_position``) ends the stream after the current target
commit; the stored position is where the next run continues. Connection trouble on either side is
retried from the stored position, with back-off; a gap in the source's log is fatal (NEEDS_RESYNC).
The source's schema changes are followed on the target, or the table suspended (``schema_following``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from operator import is_, itemgetter
from typing import TYPE_CHECKING, Any

from conveyor.convert.plan import TablePlan
from conveyor.endpoints.base import Capture, ErrorPolicy, PrepMode, Snapshot
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.endpoints.sql.changes import ApplyResult, ChangeApplier, ChangeTarget, NetPlan, rejected_change
from conveyor.endpoints.watchdog import Watchdog
from conveyor.errors import ConveyorError, TerminalError, TransientError, UserActionError
from conveyor.model.changes import CREATED, Idle, Op, Transaction
from conveyor.model.schema import TableId
from conveyor.runner import stats as st
from conveyor.runner.durability import DurableAcks
from conveyor.runner.executor import classify
from conveyor.runner.fullload import FullLoad, RunResult
from conveyor.runner.planning import change_target, control_schema, plan_tables
from conveyor.runner.schema_following import NOT_REPLICATED, SchemaFollowing, definitions_at
from conveyor.runner.state import StateStore
from conveyor.runner.task import StopPoint, Task
from conveyor.transform.lobs import truncation_warning
from conveyor.transform.mapping import RowMapping

if TYPE_CHECKING:
    from conveyor.validate.intask import ChangedRows

#: a Change's op and table (its fields 0 and 1), read in C by ``_route``
_OP, _TABLE = itemgetter(0), itemgetter(1)

#: a target transaction holds at most this many changes (whole source transactions: one bigger
#: source transaction is applied whole; bench/cdc.py pg2pg stream rate 5,000: ~97k changes/s, 10,000:
#: ~105k) ...
BATCH_CHANGES = 10_000
#: ... and waits at most this long for more transactions to join it (seconds)
BATCH_SECONDS = 0.02
#: batch apply: changes per MB of BatchApplyMemoryLimit (a change held, decoded and as bulk statement text,
#: takes about 1.25 KB: measured, 40,000 changes held = ~50 MB) ...
CHANGES_PER_MB = 800
#: ... and never more than this many changes per window: on a backlog of distinct rows a bigger window
#: folds hardly more, while the stream's thread builds one huge statement set with the target idle and
#: memory grows with the window. bench/cdc.py pg2pg stream rate by cap (medians of 3): 20,000: ~88k
#: changes/s, 108 MB; 12,000: 99k; 10,000: 103k, 79 MB; 8,000: 104k; 5,000: 100k (1 s windows without
#: a cap, on an older host: a third slower than a 20,000 cap, ~300 MB)
BATCH_APPLY_CHANGES = 10_000
#: a source transaction with more changes comes in parts of this many, applied into one open target
#: transaction: memory stays bounded whatever the transaction's size ...
PART_CHANGES = 10_000
#: ... and so does one with more bytes of row images (as the source logged them: wide rows, LOBs), and a
#: window never holds more either, in both apply modes: held decoded and as statement text, a byte the
#: source sent takes a few in memory (two windows at a time: the one committing and the next)
PART_BYTES = WINDOW_BYTES = 16 << 20
#: the interpreter's thread switch interval while streaming (Python's default is 5 ms): each target
#: answer wakes the apply thread, which then waits for this thread (decoding, holding the GIL) to let it
#: run. With 5 ms, those waits left the target idle ~40% of a PG->PG drain (bench/cdc.py, py-spy)
GIL_SWITCH_SECONDS = 0.0005
#: seconds of quiet on the source after which the stream says so (and stop requests are seen)
IDLE_SECONDS = 0.02
#: a quiet stream stores its advancing position at most this often (seconds): keeps the source's log short
IDLE_CHECKPOINT_SECONDS = 5.0
#: seconds a stopping task waits for its last target commits to be durable, to acknowledge them to the source
STOP_DURABLE_SECONDS = 2.0
#: seconds between statistics updates (and source lag queries)
STATS_SECONDS = 1.0
#: seconds a target whose server ends idle sessions (MySQL/MariaDB's wait_timeout) keeps the apply session
#: idle: a session its client lost to a network partition then ends, with its locks, within that time
#: instead of 8 hours; a quiet stream pings it four times as often
TARGET_IDLE_SECONDS = 600
#: seconds a target call may go unanswered before the connection is dropped and the stream retried
TARGET_SILENCE_SECONDS = 45.0
#: seconds an endpoint may stay unreachable (or refuse the login) before a task that streamed gives up
USER_ERROR_RETRY_SECONDS = 600.0
#: apply errors said one by one per table in a run (a window of thousands of refused changes would print
#: thousands of lines); the others are counted and recorded all the same
REJECT_LINES = 10
#: back-off between attempts after a transient failure (seconds)
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class _Batch:
    transactions: list[Transaction]
    changes: int
    opened: float
    position: Any
    #: bytes the source sent for the changes (``Transaction.size``)
    size: int = 0


class ChangeProcessing:
    """Runs one cdc or full-load-and-cdc task until it is asked to stop or fails."""

    def __init__(
        self,
        task: Task,
        state_dir: str,
        resume: bool = False,
        listener: st.Listener | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.task = task
        self.state_dir = state_dir
        self.resume = resume
        self.listener = listener or st.NullListener()
        self.stop = stop or threading.Event()
        self.source = engine_for(task.source)
        self.target = engine_for(task.target)
        if not self.source.capabilities.cdc or self.source.open_capture is None:
            raise UserActionError(
                f"change data capture from {self.source.name} is not available; sources for cdc and "
                "full-load-and-cdc are PostgreSQL and MySQL/MariaDB (use migration_type full-load)"
            )
        self.warnings: list[str] = list(task.warnings)
        self.stopped_because: str | None = None
        #: apply errors told per table so far: past ``REJECT_LINES``, only counted and recorded
        self._rejects_said: dict[TableId, int] = {}
        self.stats = st.TaskStats()
        self.cdc = st.CdcStats()
        #: one list for the whole run: schema following replaces plans in it
        self.plans: list[TablePlan] = []
        self.schema = SchemaFollowing(
            task, self.source, self.target, self.plans, self._table_stats, self._target_for, self.listener, self._warn
        )
        self._capture: Capture | None = None
        self._handoff: Any = None
        #: source table -> its statistics (looked up per change; filled as tables are first met)
        self._stats_by_source: dict[TableId, st.TableStats | None] = {}
        #: source table -> its table-mapping row mapping, for tables that have one (``_changes``)
        self._mappings: dict[TableId, RowMapping] = {}
        #: the target connection a retry opened (closed when the run ends)
        self._reopened: SqlApplier | None = None
        #: ValidationSettings.EnableValidation: re-validates the rows of committed batches; rows that
        #: differed after the full load (target table key -> failures) go to it first
        self.validating: ChangedRows | None = None
        self._carried: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ entry point
    def run(self) -> RunResult:
        applier = self._open_applier()
        try:
            stored = ChangeApplier(applier, {}).read_position(self.task.name)
            if stored is None and self.task.migration_type == "full-load-and-cdc":
                result = self._full_load()
                if not result.complete:
                    return result
                lease = applier.start_task(self.task.name, fresh=False)
                stored = self.capture.position_json(self._handoff)
                self._changes(applier).apply(self.task.name, lease, [], stored)
            else:
                known = definitions_at(self.task, self.source, stored)
                self.plans[:] = plan_tables(self.task, self.source, self.target, applier, self._warn, definitions=known)
                if stored is not None:
                    self._leave_out_new_tables(applier)
                self._open_capture()
                self._plan_stats()
                if stored is None:
                    stored = self._first_position(applier)
                else:
                    for table, reason in ChangeApplier(applier, {}).read_suspended(self.task.name).items():
                        self.schema.suspend(table, reason, stored=True)
                    self.schema.reconcile(applier, self.capture, set(known))
            self.schema.record_columns(applier, self.plans, every=True)
            self._warn_unlogged_actions()
            if self.task.settings.ValidationSettings.EnableValidation:  # changed rows validated again (intask)
                from conveyor.validate.intask import ChangedRows  # only here: ~50 ms of imports (validation's dialects)

                self.validating = ChangedRows(
                    self.task, self.plans, self._table_stats, self.listener.table_changed, self._warn
                )
                self.validating.carry(self._carried)
            self._stream_with_retries(applier, stored)
        finally:
            if self.validating is not None:
                self.validating.close()
            for used in (applier, self._reopened):
                if used is not None:
                    with contextlib.suppress(Exception):
                        used.close()
            if self._capture is not None:
                self._capture.close()
        return RunResult(list(self.stats.tables.values()), self.warnings, cdc=self.cdc, stopped=self.stopped_because)

    @property
    def suspended(self) -> dict[TableId, str]:
        """Source tables whose changes are skipped -> why."""
        return self.schema.suspended

    @property
    def capture(self) -> Capture:
        assert self._capture is not None
        return self._capture

    def _leave_out_new_tables(self, applier: SqlApplier) -> None:
        """Tables the selection matches that were not the task's when it last recorded its tables (created
        on the source since, or selected since): the stream holds their changes after the stored position
        only, without their rows from before, so they are left out, each named in a warning."""
        recorded = ChangeApplier(applier, {}).read_columns(self.task.name)
        if not recorded:
            return  # last run by a version that kept no record
        for plan in self.plans:
            if plan.source.id not in recorded:
                self._warn(f"table {plan.source.id} {NOT_REPLICATED}")
        self.plans[:] = [plan for plan in self.plans if plan.source.id in recorded]

    def _warn_unlogged_actions(self) -> None:
        """MySQL's binlog leaves out the rows its foreign keys' actions changed (a replica's own keys make
        them); Conveyor applies net changes per key (a key update is a delete and an insert), which a
        target's ON UPDATE CASCADE would turn into deletes, so the target's keys stay quiet: say which
        tables may then keep rows the source changed."""
        if self.source.capabilities.logs_foreign_key_actions:
            return
        selected = {plan.source.id for plan in self.plans}
        for plan in self.plans:
            for fk in plan.source.foreign_keys:
                actions = [
                    f"ON {what} {action}" for what, action in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update))
                ]
                acting = [a for a in actions if not a.endswith(("NO ACTION", "RESTRICT"))]
                if acting and fk.ref_table in selected:
                    self._warn(
                        f"{plan.source.id}: foreign key {fk.name} has {' and '.join(acting)}, and the source's binlog "
                        "leaves out the rows such actions change: after a DELETE or UPDATE of a "
                        f"{fk.ref_table} row the target keeps them until {plan.source.id} is reloaded"
                    )

    def _open_applier(self) -> SqlApplier:
        applier = self.target.open_applier(self.task.target, control_schema(self.task, self.target))
        if not isinstance(applier, SqlApplier):  # every target is one today; a file target would not be
            raise UserActionError(f"change data capture into {self.target.name} is not available")
        if (warning := applier.foreign_key_actions(self.source.capabilities.logs_foreign_key_actions)) is not None:
            self._warn(warning)
        return applier

    def _open_capture(self) -> None:
        assert self.source.open_capture is not None
        self._capture = self.source.open_capture(self.task.source, self.task.name, [p.source for p in self.plans])
        self._capture.idle_seconds = IDLE_SECONDS
        self._capture.part_changes = PART_CHANGES
        self._capture.part_bytes = PART_BYTES
        for w in self.capture.check():
            self._warn(w)

    # ------------------------------------------------------------------ starting points
    def _full_load(self) -> RunResult:
        """The full load, inside the snapshot where the stream begins; always whole (a snapshot does
        not outlive its run, so an interrupted full load starts over)."""
        status = self._last_status()
        if status == "finished":
            self._warn(
                "this task's full load finished before, but the target holds no position for it (its database "
                "recreated, or its conveyor_cdc_state row removed); the full load starts over"
            )
        elif status is not None:
            self._warn(
                "the full load of this full-load-and-cdc task did not finish before; it starts over, because the "
                "snapshot it read ended with that run"
            )

        def open_snapshot(plans: list[TablePlan], workers: int, hold: bool) -> Snapshot:
            self.plans[:] = plans
            self._open_capture()
            snapshot, self._handoff = self.capture.handoff(workers, hold)
            self.listener.message(f"change capture starts at {self._checkpoint(self._handoff)}")
            return snapshot

        loader = FullLoad(
            self.task, self.state_dir, resume=False, listener=self.listener, open_snapshot=open_snapshot, stop=self.stop
        )
        result = loader.run()
        self._carried = loader.after_load.carried if loader.after_load is not None else {}
        self.warnings = list(dict.fromkeys([*self.warnings, *loader.warnings]))
        self.stats = loader.stats
        self._stats_by_source.clear()
        return result

    def _first_position(self, applier: SqlApplier) -> dict[str, Any]:
        """cdc without a stored position: the user's start position, else now, stored on the target. Target
        tables are created where missing (DMS leaves them to the user; an empty table is the useful default)."""
        for plan in self.plans:
            applier.prepare(plan.target, plan.native_types, PrepMode.DO_NOTHING)
        # a malformed position, or a start time the engine cannot honour, fails before a slot exists
        text, at = self.task.cdc_start_position, self.task.cdc_start_time
        position = start_position(self.capture, text) if text else None
        if at is not None:
            position = self.capture.position_at(at)
        position = self.capture.begin(position)
        self.listener.message(f"change capture starts at {self._checkpoint(position)}")
        stored = self.capture.position_json(position)
        # stored at once: a run stopped before its first change resumes here, not at a later "now" (a MySQL
        # source keeps no place of its own, so the changes in between would be skipped)
        lease = applier.start_task(self.task.name, fresh=False)
        self._changes(applier).apply(self.task.name, lease, [], stored)
        return stored

    # ------------------------------------------------------------------ streaming
    def _stream_with_retries(self, applier: SqlApplier, stored: dict[str, Any]) -> None:
        """Stream until stopped. Connection trouble on either side is retried from the position the
        target stored, with back-off (reset once a retry has applied something); so is an endpoint
        that cannot be reached or refuses the login once the task has streamed before (a server
        restarting looks like that), for ``USER_ERROR_RETRY_SECONDS``. A gap in the source's log
        (NEEDS_RESYNC) or any other terminal error ends the task."""
        attempt = 0
        current: SqlApplier | None = applier
        applied = self.cdc.applied_transactions
        first_user_error: float | None = None
        while not self.stop.is_set():
            try:
                if current is None:
                    current = self._reopened = self._open_applier()
                self._stream(current, stored)
                return
            except ConveyorError as exc:
                if isinstance(exc, UserActionError) and self.cdc.started is not None:
                    # after streaming worked: a restarting server looks like this; give it a while
                    first_user_error = first_user_error or time.monotonic()
                    if time.monotonic() - first_user_error > USER_ERROR_RETRY_SECONDS:
                        raise
                elif not isinstance(exc, TransientError):
                    raise
                error: ConveyorError = exc
            except Exception as exc:
                error = classify(exc, (self.source, self.target))
                if not isinstance(error, TransientError):
                    raise error from exc
            if self.cdc.applied_transactions > applied:  # it worked for a while: a new fault, not the same one
                attempt, applied = 0, self.cdc.applied_transactions
            if not isinstance(error, UserActionError):
                first_user_error = None
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            attempt += 1
            self._warn(f"{error}; retrying in {delay:.0f} s from the stored position")
            if current is not None:
                with contextlib.suppress(Exception):
                    current.close()
                current = None
            if self.stop.wait(delay):
                return

    def _stream(self, applier: SqlApplier, stored: dict[str, Any]) -> None:
        """One streaming session; a target that stops answering mid-call becomes a ``TransientError``."""
        watchdog = Watchdog(TARGET_SILENCE_SECONDS, applier.interrupt)
        try:
            self._follow(applier, stored, watchdog)
        except Exception as exc:
            if watchdog.fired:
                raise TransientError(
                    f"the target did not answer for {TARGET_SILENCE_SECONDS:.0f} s (a hung server or network, or a "
                    "lock another session holds on a row being changed)"
                ) from exc
            raise
        finally:
            watchdog.close()

    def _follow(self, applier: SqlApplier, stored: dict[str, Any], watchdog: Watchdog) -> None:
        # One batch at a time is applied on its own thread while this one reads and decodes the next from
        # the source: the source's log sender and the target work at the same time instead of in turns.
        # At most one batch is in flight (the target connection is one), so memory stays two windows.
        executor = ThreadPoolExecutor(1, thread_name_prefix="conveyor-apply")
        switch = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        try:
            self._follow_with(applier, stored, watchdog, executor)
        except KeyboardInterrupt:  # a second SIGTERM or Ctrl-C: the batch in flight fails now, not waited for
            with contextlib.suppress(Exception):
                applier.interrupt()
            raise
        finally:
            executor.shutdown(wait=True)  # a batch in flight ends (commits or fails) before the connection closes
            sys.setswitchinterval(switch)

    def _follow_with(
        self, applier: SqlApplier, stored: dict[str, Any], watchdog: Watchdog, executor: ThreadPoolExecutor
    ) -> None:
        lease = applier.start_task(self.task.name, fresh=False)
        # Another run of this task may have committed after this one read the position: the lease fences it
        # from here on (taking it waited for any commit of its in progress), so the position now is final.
        # (A PostgreSQL slot admits one reader anyway; a binlog admits any number.)
        stored = ChangeApplier(applier, {}).read_position(self.task.name) or stored
        durable = DurableAcks(applier)  # the source is acknowledged what the target holds on disk
        applier.bound_idle_session(TARGET_IDLE_SECONDS)
        ping_every = applier.idle_timeout / 4 if applier.idle_timeout else None
        changes = self._changes(applier)
        changes.on_progress = watchdog.pet
        capture = self.capture
        saved = capture.position_from_json(stored)
        self.cdc.checkpoint = self._checkpoint(saved)
        self.cdc.started = self.cdc.started or st.now()
        self.listener.message(f"streaming changes from {self.cdc.checkpoint}")
        batch: _Batch | None = None
        inflight: tuple[_Batch, Future[tuple[ApplyResult, Any]]] | None = None
        last_saved_at = last_call = time.monotonic()
        last_stats = last_clock = 0.0
        recent: deque[tuple[float, int]] = deque(maxlen=20)
        stop_at = self.task.cdc_stop_position
        # Both modes commit whole source transactions, so the target only ever shows states the source
        # had, and both fold a commit's changes into net changes per key (exactly the same end state;
        # any constraint the bulk statements trip sends that commit the ordered way). Batch apply
        # differs in its windows: BatchApplyTimeoutMin seconds instead of a few milliseconds.
        batch_apply = self.task.settings.TargetMetadata.BatchApplyEnabled
        tuning = self.task.settings.ChangeProcessingTuning
        window = tuning.BatchApplyTimeoutMin if batch_apply else BATCH_SECONDS
        # past it, a window stops growing while the target applies the one before: the stream waits
        longest = tuning.BatchApplyTimeoutMax if batch_apply else float("inf")
        max_changes = (
            min(tuning.BatchApplyMemoryLimit * CHANGES_PER_MB, BATCH_APPLY_CHANGES) if batch_apply else BATCH_CHANGES
        )

        def prepare(committing: _Batch) -> NetPlan | None:
            """On this thread, while the target may still be committing the batch before: the batch's
            bulk statements (``ChangeApplier.prepare_net``). None when that fails: the apply does it again
            and meets the failure where it handles it (a value the target type refuses: the ordered way)."""
            try:
                return changes.prepare_net(committing.transactions)
            except Exception:
                return None

        def apply(committing: _Batch, position: dict[str, Any], prepared: NetPlan | None) -> tuple[ApplyResult, Any]:
            """On the apply thread: the batch committed, and the source position now safe to acknowledge."""
            with watchdog.guard():
                result = changes.apply(
                    self.task.name, lease, committing.transactions, position, net=True, prepared=prepared
                )
                return result, durable.committed(committing.position)

        def acknowledge(durable_position: Any) -> None:
            """Tell the source it may discard its log up to a position the target holds on disk (None: none new)."""
            if durable_position is not None:
                capture.ack(durable_position)

        def settle(block: bool) -> None:
            """The batch in flight, once committed: the source may discard its log up to it. Its error,
            if it failed, is raised here."""
            nonlocal inflight, saved, last_saved_at, last_call
            if inflight is None or (not block and not inflight[1].done()):
                return
            done, future = inflight
            result, durable_position = future.result()  # failed: the batch stays in flight, uncounted below
            inflight = None
            acknowledge(durable_position)
            saved, last_saved_at = done.position, time.monotonic()
            last_call = last_saved_at
            self._applied(done, result)
            # --- validation (validate.intask): the batch's changed rows, now committed, are queued
            if self.validating is not None:
                self.validating.settled(done.transactions)
            # ---
            recent.append((time.monotonic(), self.cdc.applied_changes))

        def flush(wait: bool = False, busy_ok: bool = False) -> None:
            """Send the open batch to the target; ``wait``: and return once everything sent is committed
            (before anything else uses the target connection, and before stopping). ``busy_ok``: unless
            the target is still committing the batch before; the open one then goes on growing (group
            commit), so this thread reads and decodes on instead of waiting, and the next commit carries
            more changes for the same round trips."""
            nonlocal batch, inflight
            if batch is not None:
                if busy_ok and inflight is not None and not inflight[1].done():
                    return
                prepared = prepare(batch)
                settle(block=True)
                inflight = (batch, executor.submit(apply, batch, capture.position_json(batch.position), prepared))
                batch = None
            if wait:
                settle(block=True)

        in_parts = False  # the open target transaction holds parts of a big source transaction
        parts: list[tuple[_Batch, ApplyResult]] = []  # those parts, with what applying them did
        self.cdc.incoming_changes = 0  # nothing is held: a session that failed left its batches uncounted
        loose: Transaction | None = None  # routed (so counted), not yet held in a batch or the parts
        try:
            for event in capture.stream(saved):
                settle(block=False)
                if isinstance(event, Transaction):
                    if (
                        stop_at is not None
                        and stop_at.kind == "commit_time"
                        and not in_parts
                        and _after(event.commit_ts, stop_at.at)
                    ):
                        flush(wait=True)
                        self._stopped(f"reached the stop position {stop_at}")
                        break
                    txn = loose = self._route(event)  # counted; loose until a batch or the parts hold it
                    if event.partial:
                        flush(wait=True)
                        in_parts = True
                        if txn is not None:
                            self.cdc.incoming_changes += len(txn.changes)
                            part = _Batch([txn], len(txn.changes), time.monotonic(), None)
                            with watchdog.guard():
                                result = changes.apply_part(txn)
                            # applied changes counted once the transaction commits (a retry sends it again)
                            parts.append((part, result))
                            loose = None
                            if self.validating is not None:  # validation (validate.intask): keys queued at commit
                                self.validating.part(txn)
                        continue
                    if in_parts:  # the end of a transaction that came in parts: it commits alone, with them
                        in_parts = False
                        flush(wait=True)
                        # the commit's own changes (none when the parts held them all): one applied transaction
                        last = txn or Transaction(event.txid, event.commit_position, event.commit_ts, [])
                        batch = _Batch([last], len(last.changes), 0.0, event.commit_position)
                        loose = None
                        self.cdc.incoming_changes += batch.changes
                        self._latency_source(event)
                        flush(wait=True)
                        for part, result in parts:
                            self._applied(part, result)
                        parts.clear()
                        continue
                    if txn is None:
                        continue
                    if batch is None:
                        batch = _Batch([], 0, time.monotonic(), None)
                    batch.transactions.append(txn)
                    loose = None
                    batch.changes += len(txn.changes)
                    batch.size += txn.size
                    batch.position = txn.commit_position
                    self.cdc.incoming_changes += len(txn.changes)
                    self._latency_source(txn)
                    if batch.changes >= max_changes or batch.size >= WINDOW_BYTES:
                        flush()
                    elif (age := time.monotonic() - batch.opened) >= window:
                        flush(busy_ok=age < longest)
                elif isinstance(event, Idle):
                    # caught up: what is held goes now, or, while the target commits the batch before, with
                    # the next event (a transaction or the next Idle, within IDLE_SECONDS)
                    flush(busy_ok=True)
                    now = time.monotonic()
                    if in_parts or inflight is not None:
                        pass  # a checkpoint now would commit half a source transaction, or wait for the target
                    elif event.position != saved and now - last_saved_at >= IDLE_CHECKPOINT_SECONDS:
                        with watchdog.guard():
                            changes.apply(self.task.name, lease, [], capture.position_json(event.position))
                            durable_position = durable.committed(event.position)
                        acknowledge(durable_position)
                        saved, last_saved_at, last_call = event.position, now, now
                        self.cdc.checkpoint = self._checkpoint(saved)
                    elif durable.waiting:
                        with watchdog.guard():
                            durable_position = durable.poll_if_due()
                        acknowledge(durable_position)
                    elif ping_every is not None and now - last_call >= ping_every:
                        with watchdog.guard():
                            applier.ping()
                        last_call = now
                    if stop_at is not None and now - last_clock >= STATS_SECONDS:
                        last_clock = now
                        flush(wait=True)
                        if self._stop_point_reached(stop_at, event.position):
                            self._stopped(f"reached the stop position {stop_at}")
                            break
                elif event.description == CREATED:  # a table outside the task: nothing to commit or follow
                    self.schema.created(event)
                elif event.suspends:  # its changes from here on are skipped
                    self.schema.suspend(event.old_table, event.description)
                elif in_parts:
                    # target DDL commits, and the open target transaction holds parts of this source
                    # transaction: following the change would show it half done
                    self.schema.suspend(
                        event.old_table,
                        f"{event.description}, inside a transaction of more than {PART_CHANGES:,} changes: reload the "
                        "table",
                    )
                else:
                    flush(wait=True)
                    with watchdog.guard():
                        self.schema.follow(event, changes)
                now = time.monotonic()
                if now - last_stats >= STATS_SECONDS:
                    last_stats = now
                    self._progress(saved, recent)
                if self.stop.is_set():
                    flush(wait=True)
                    self._stopped("asked to stop")
                    break
            flush(wait=True)
            with watchdog.guard():
                durable_position = durable.drain(STOP_DURABLE_SECONDS)
            acknowledge(durable_position)
            self._progress(saved, recent)
        finally:
            # what did not commit (a failure, or a stop amid a big transaction's parts) is streamed again by the
            # next session, and counted then; nothing is held any more
            unsettled = [part.transactions for part, _ in parts]
            unsettled += [inflight[0].transactions] if inflight else []
            unsettled += [batch.transactions] if batch else []
            unsettled += [[loose]] if loose else []
            self._uncount([held for transactions in unsettled for held in transactions])
            self.cdc.incoming_changes = 0

    def _route(self, txn: Transaction) -> Transaction | None:
        """The transaction's changes to tables that are still replicated; statistics per table."""
        changes = txn.changes
        if changes and not self._mappings:
            # the common case, counted in C: one table, replicated as it is, no truncation to leave out
            only = changes[0].table
            counted = None if only in self.suspended else self._table_stats(only)
            if counted is not None and all(map(is_, repeat(only), map(_TABLE, changes))):
                ops = list(map(_OP, changes))
                inserts, updates, deletes = ops.count(Op.INSERT), ops.count(Op.UPDATE), ops.count(Op.DELETE)
                if inserts + updates + deletes == len(ops):
                    counted.inserts += inserts
                    counted.updates += updates
                    counted.deletes += deletes
                    return Transaction(txn.txid, txn.commit_position, txn.commit_ts, changes, size=txn.size)
        kept = []
        table: TableId | None = None
        suspended, mapping, stats = self.suspended, None, None
        for change in txn.changes:
            if change.table is not table:  # runs of one table (the same object) skip the lookups
                table = change.table
                mapping = self._mappings.get(table) if self._mappings else None
                stats = None if table in suspended else self._table_stats(table)
            if stats is None:  # suspended, or not replicated
                continue
            if (
                change.op is Op.TRUNCATE
                and not self.task.settings.ChangeProcessingDdlHandlingPolicy.HandleSourceTableTruncated
            ):
                continue
            if mapping is not None:
                mapped = mapping.change(change, txn)  # table-mapping rules and filters (``transform.mapping``)
                if mapped is None:
                    continue
                change = mapped
            if change.op is Op.INSERT:
                stats.inserts += 1
            elif change.op is Op.UPDATE:
                stats.updates += 1
            elif change.op is Op.DELETE:
                stats.deletes += 1
            else:
                stats.ddls += 1
            kept.append(change)
        if not kept:
            return None
        return Transaction(txn.txid, txn.commit_position, txn.commit_ts, kept, size=txn.size)

    def _uncount(self, transactions: list[Transaction]) -> None:
        """Take back what ``_route`` counted for transactions that never committed."""
        for txn in transactions:
            for change in txn.changes:
                stats = self._table_stats(change.table)
                if stats is None:
                    continue
                if change.op is Op.INSERT:
                    stats.inserts -= 1
                elif change.op is Op.UPDATE:
                    stats.updates -= 1
                elif change.op is Op.DELETE:
                    stats.deletes -= 1
                else:
                    stats.ddls -= 1

    def _applied(self, batch: _Batch, result: ApplyResult) -> None:
        """Statistics after a target commit (``batch.position`` set) or a part sent into the open one."""
        for (table, op), count in result.by_table.items():
            stats = self._table_stats(table)
            if stats is None:
                continue
            if op is Op.INSERT:
                stats.applied_inserts += count
            elif op is Op.UPDATE:
                stats.applied_updates += count
            elif op is Op.DELETE:
                stats.applied_deletes += count
            else:
                stats.applied_ddls += count
            stats.last_update = st.now()
        policy = self.task.settings.ErrorBehavior.DataErrorPolicy
        for reject in result.failed:
            stats = self._table_stats(reject.table)
            if stats is not None:
                stats.apply_error_rows += 1
            if policy is ErrorPolicy.SUSPEND_TABLE:  # stored with the commit that rejected it (ChangeApplier)
                self.schema.suspend(reject.table, rejected_change(reject))
            if policy is ErrorPolicy.IGNORE_RECORD:
                continue  # only counted
            said = self._rejects_said[reject.table] = self._rejects_said.get(reject.table, 0) + 1
            if said <= REJECT_LINES:
                self.listener.message(
                    f"apply error: {reject.table} key {reject.key}: "
                    f"{(reject.column + ': ') if reject.column else ''}{reject.reason}"
                )
            elif said == REJECT_LINES + 1:
                self.listener.message(
                    f"apply error: {reject.table}: more changes rejected; each is counted in the table's statistics "
                    "and recorded in the target's conveyor_apply_exceptions table"
                )
        self.cdc.incoming_changes -= batch.changes
        self.cdc.applied_changes += batch.changes - len(result.failed)
        if batch.position is None:
            return
        self.cdc.applied_transactions += len(batch.transactions)
        self.cdc.checkpoint = self._checkpoint(batch.position)
        last = batch.transactions[-1].commit_ts if batch.transactions else None
        if last is not None:
            self.cdc.latency_target = max(0.0, (st.now() - _utc(last)).total_seconds())

    def _latency_source(self, txn: Transaction) -> None:
        if txn.commit_ts is not None:
            self.cdc.latency_source = max(0.0, (st.now() - _utc(txn.commit_ts)).total_seconds())

    def _progress(self, saved: Any, recent: deque[tuple[float, int]]) -> None:
        self._lob_truncations()
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            self.cdc.throughput = (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
        with contextlib.suppress(Exception):
            self.cdc.source_lag_bytes = self.capture.lag_bytes(saved)
        self.listener.cdc_progress(self.cdc)

    def _lob_truncations(self) -> None:
        """Limited LOB mode's truncations since the last call: counted per table and warned about."""
        for table, mapping in self._mappings.items():
            if mapping.lobs and (truncated := mapping.take_truncations()):
                stats = self._table_stats(table)
                if stats is not None:
                    stats.lob_truncations += sum(truncated.values())
                self._warn(truncation_warning(table, truncated, mapping.lobs))

    def _stop_point_reached(self, stop_at: StopPoint, delivered: Any) -> bool:
        """At a quiet moment: has every transaction before the stop point been applied?"""
        if stop_at.kind == "server_time":
            return st.now() >= stop_at.at
        clock, end = self.capture.clock()
        # a commit stamped just before ``clock`` may still be writing its commit record: a margin
        return _utc(clock).timestamp() > stop_at.at.timestamp() + 1.0 and _not_before(delivered, end)

    def _stopped(self, why: str) -> None:
        self.stopped_because = why
        self.listener.message(f"stopped ({why}) at {self.cdc.checkpoint}; run the task again to continue")

    # ------------------------------------------------------------------ helpers
    def _changes(self, applier: SqlApplier) -> ChangeApplier:
        """The apply path's view of each planned table: keyed by source table, written to the target
        table, with encoders for canonical values (even between the same engines: the stream decodes),
        or none for tables whose changes come as the source's own text."""
        self._mappings = {plan.source.id: plan.mapping for plan in self.plans if plan.mapping is not None}
        if self.source.name == self.target.name and self.source.capabilities.cdc_text_values:
            # nothing converted on the way (same engine; a mapping that only renames tables or columns,
            # as the full load copies the source's own values then): the target reads the source's text.
            # Filters compare canonical values, so a filtered table's changes are decoded.
            self.capture.text_tables = frozenset(
                p.source.id for p in self.plans if p.passthrough and (p.mapping is None or not p.mapping.filters)
            )
        targets = {plan.source.id: self._target_for(applier, plan) for plan in self.plans}
        return ChangeApplier(applier, targets, self.schema.unsaved, self.task.settings.ErrorBehavior.DataErrorPolicy)

    def _target_for(self, applier: SqlApplier, plan: TablePlan) -> ChangeTarget:
        if plan.source.id not in self.capture.text_tables:
            return change_target(applier, plan)
        names = [c.name for c in plan.target.columns]
        if plan.mapping is not None:  # as planned: schema following suspends mapped tables instead of altering them
            return ChangeTarget(plan.target, [None] * len(names), list(plan.native_types))
        # per the source's columns, which the target's may no longer follow in order once schema changes were followed
        natives = dict(zip(plan.source.column_names, plan.native_types, strict=True))
        return ChangeTarget(plan.target, [None] * len(names), [natives[n] for n in names])

    def _plan_stats(self) -> None:
        for plan in self.plans:
            stats = st.TableStats(plan.target.id.schema, plan.target.id.name, state=st.COMPLETED)
            self.stats.tables[plan.key] = stats
            self.listener.table_planned(stats)

    def _table_stats(self, source: TableId) -> st.TableStats | None:
        try:
            return self._stats_by_source[source]
        except KeyError:
            plan = self.schema.plan_for(source)  # a table's source id and target key never change once planned
            found = self._stats_by_source[source] = self.stats.tables.get(plan.key) if plan is not None else None
            return found

    def _checkpoint(self, position: Any) -> str:
        return _checkpoint_text(self.capture.position_json(position))

    def _last_status(self) -> str | None:
        """How this task's last full load ended, where the state directory recorded one."""
        store = StateStore(self.state_dir)
        try:
            last = store.load(self.task.name)
            return None if last is None else str(last["status"])
        finally:
            store.close()

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        self.listener.message(f"warning: {text}")


def _checkpoint_text(position: dict[str, Any]) -> str:
    """The position's place; what else it carries (MySQL's table definitions) is not part of its name."""
    return ",".join(f"{k}={v}" for k, v in sorted(position.items()) if not isinstance(v, list | dict))


def start_position(capture: Capture, text: str) -> Any:
    """A user's ``CdcStartPosition``: in the source's own syntax (``Capture.parse_position``), or a checkpoint
    Conveyor printed (``_checkpoint_text``: ``lsn=16/B374D848``, ``file=mysql-bin.000003,pos=4``)."""
    if "=" not in text:
        return capture.parse_position(text)
    fields: dict[str, str] = {}
    name = ""
    for piece in text.split(","):
        key, equals, value = piece.partition("=")
        if equals and key.strip():
            name = key.strip()
            fields[name] = value.strip()
        elif name:  # a value with commas in it: a MariaDB GTID position of several domains
            fields[name] += "," + piece.strip()
    try:
        return capture.position_from_json(fields)
    except (KeyError, ValueError, TypeError):
        raise UserActionError(
            f"cdc_start_position {text!r} is no checkpoint of this source: give one as Conveyor printed it (e.g. "
            "lsn=16/B374D848, or file=mysql-bin.000003,pos=4), or a position in the source's own syntax"
        ) from None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _after(commit_ts: datetime | None, at: datetime) -> bool:
    return commit_ts is not None and _utc(commit_ts) > at


def _not_before(delivered: Any, end: Any) -> bool:
    try:
        return bool(delivered >= end)
    except TypeError:
        raise TerminalError(f"cannot compare stream positions {delivered!r} and {end!r}") from None


def cleanup(task: Task, state_dir: str) -> list[str]:
    """``conveyor cleanup``: drop what change capture created on the source (PostgreSQL: the slot, which
    keeps WAL while the task is stopped, and the publication) and the task's stored position and table
    suspensions on the target, so its next run starts over. Returns what was removed."""
    source, target = engine_for(task.source), engine_for(task.target)
    removed: list[str] = []
    if source.open_capture is not None:
        capture = source.open_capture(task.source, task.name, [])
        try:
            removed += [f"{what} on the source" for what in capture.drop()]
        finally:
            capture.close()
    applier = target.open_applier(task.target, control_schema(task, target))
    try:
        if isinstance(applier, SqlApplier) and ChangeApplier(applier, {}).forget(task.name):
            removed.append("the stored CDC position on the target")
    finally:
        applier.close()
    store = StateStore(state_dir)
    try:
        if store.forget(task.name):
            removed.append(f"the task's state in {state_dir}")
    finally:
        store.close()
    return removed
