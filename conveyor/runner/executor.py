"""Executors: run full-load units (copy one segment) in worker processes, or on threads.

A unit takes only serialisable inputs (DESIGN.md, "Units of work"): the task document, the control
schema and the snapshot token a worker gets once, then per unit its plan key, segment, source and
target tables, native types and lease. Its progress lives in the target (the segment's control row
commits with its rows), never in executor memory. Events flow back to the runner, which alone keeps
statistics: ``Progress`` per batch (negative rows: a rolled-back attempt uncounted), ``Notice`` (a
warning), then ``Done`` or ``Failed`` (an already classified, picklable ``ConveyorError``).

``ProcessExecutor`` runs units in worker processes, so the per-row Python work (decoding source
rows, encoding them for the target) runs on every core instead of sharing one GIL.

* Workers are forked by multiprocessing's fork server (see ``forking``): a clean, single-threaded
  process that holds Conveyor's imports, so a worker starts in milliseconds.
  As with any multiprocessing program, a script embedding the runner must guard its entry point
  (``if __name__ == "__main__":``): workers import the main module.
* Start-up, outside any source lock: each worker rebuilds the task from its document (with the
  runner's environment and working directory, so ``${VARS}`` expand the same) and opens its applier.
  Where the engine can (``EngineSpec.prepare_join``), it connects to the source too. Then ``join()``
  hands every worker the snapshot token; each opens its reader inside the snapshot
  (``EngineSpec.join_snapshot``) and reports back, so the runner can ``Snapshot.release()`` (MySQL:
  UNLOCK TABLES) as soon as all have joined, within ``JOIN_TIMEOUT``: the lock waits for a BEGIN
  per worker (measured: ~5 ms for 4 workers), not for their connections.
* One reader and one applier per worker, reused across units; a transient error reopens both
  (``RETRIES`` attempts, as the threaded runner did).
* Stopping: ``stop()`` lets running units finish (they commit whole) and starts no others.
  ``close(abort=True)`` (Ctrl-C, SIGTERM, an error in the runner) terminates the workers at once:
  their open target transactions roll back. Workers ignore SIGINT (the runner decides), and a
  watchdog thread in each exits the worker as soon as the runner process is gone, even after
  ``kill -9``, so no worker keeps writing without its runner.

``ThreadExecutor`` runs the same units on threads of the runner's process, reading through
``Snapshot.reader()``. The runner uses it where worker processes would only add their start-up
(``fullload.uses_worker_processes``): single-writer targets (SQLite loads one segment at a time) and
PostgreSQL-to-PostgreSQL copies, which move COPY bytes without Python work per row.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.convert.plan import encoder_for
from conveyor.endpoints.base import Applier, Encoder, RejectedRow, Snapshot, SnapshotReader
from conveyor.endpoints.registry import EngineSpec, engine_for
from conveyor.errors import (
    ConveyorError,
    PassThroughRefused,
    StopTask,
    TerminalError,
    TransientError,
    UserActionError,
)
from conveyor.model.rows import RowBatch
from conveyor.model.schema import Table
from conveyor.model.segments import Segment
from conveyor.runner import forking
from conveyor.runner.task import Task, task_from_document
from conveyor.transform.mapping import RowMapping

#: attempts after a transient error (each reopens the worker's connections)
RETRIES = 3
#: seconds for worker processes to start (fork, rebuild the task, open the applier); no lock is held
START_TIMEOUT = 120
#: seconds for every worker to join the snapshot (MySQL holds FLUSH TABLES WITH READ LOCK meanwhile)
JOIN_TIMEOUT = 20
#: seconds ``close()`` waits for a worker to finish before terminating it
STOP_TIMEOUT = 10


def process_limit() -> int:
    """Most worker processes a task gets, whatever MaxFullLoadSubTasks asks: two per core. Beyond
    the cores more processes still help while they wait on remote databases; each costs a process
    (~50-100 MB) and two connections."""
    return 2 * (os.cpu_count() or 1)


# --------------------------------------------------------------------------- units and events
@dataclass(frozen=True)
class Unit:
    """Copy one segment: everything a worker needs besides the task and the snapshot."""

    id: int
    key: str  # the plan's key (target table)
    segment: dict[str, Any]  # Segment.to_json()
    source: Table
    target: Table
    native_types: tuple[str, ...]
    passthrough: bool
    lease: int
    #: the table mapping's row mapping (transformation rules, filters), None when rows go unchanged
    mapping: RowMapping | None = None


@dataclass(frozen=True)
class Progress:
    key: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class Done:
    unit: int
    #: rows in the result that no ``Progress`` counted (rows rejected in the careful reload were not)
    uncounted: int
    rejected: list[RejectedRow] = field(default_factory=list)
    #: limited LOB mode: values truncated, by target column
    truncated: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    unit: int  # -1: the worker failed outside a unit (start-up, joining the snapshot)
    error: ConveyorError


@dataclass(frozen=True)
class _Started:
    pass


@dataclass(frozen=True)
class _Joined:
    pass


Event = Progress | Notice | Done | Failed


def classify(exc: BaseException, engines: Iterable[EngineSpec]) -> ConveyorError:
    """Conveyor's classification of an exception: its own, an engine's, or terminal."""
    if isinstance(exc, ConveyorError):
        return exc
    for engine in engines:
        error = engine.classify(exc) if engine.classify else None
        if error is not None:
            return error
    return TerminalError(f"{type(exc).__name__}: {exc}")


def portable(error: ConveyorError) -> ConveyorError:
    """The error itself when it survives pickling, else its nearest Conveyor class with its message
    (the classification is what the runner acts on)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        for cls in (StopTask, TerminalError, TransientError, UserActionError):
            if isinstance(error, cls):
                return cls(str(error))
        return TerminalError(str(error))


def _portable_reject(row: RejectedRow) -> RejectedRow:
    """What the runner reports of a rejected row (the row itself is already recorded on the target)."""
    key = row.key
    try:
        pickle.dumps(key)
    except Exception:
        key = {k: repr(v) for k, v in key.items()}
    return RejectedRow(row.table, key, row.column, row.reason, {})


# --------------------------------------------------------------------------- the worker side
class UnitRunner:
    """Runs units one at a time with one reader and one applier: one per worker (thread or process)."""

    def __init__(
        self,
        task: Task,
        control_schema: str,
        emit: Callable[[Event], None],
        stopping: Callable[[], bool],
        rejoin_warning: str | None = None,
    ) -> None:
        self.task = task
        self.control_schema = control_schema
        self.source = engine_for(task.source)
        self.target = engine_for(task.target)
        self.emit = emit
        self.stopping = stopping
        #: said once when a reader is opened again after the snapshot was released
        self.rejoin_warning = rejoin_warning
        self.open_reader: Callable[[], SnapshotReader] | None = None
        self._reader: SnapshotReader | None = None
        self._applier: Applier | None = None
        self._joined = False
        self._encoders: dict[tuple[str, bool], list[Encoder | None]] = {}
        #: the truncations of the unit's last pass over its rows (a careful reload reads them again)
        self._truncated: dict[str, int] = {}

    def applier(self) -> Applier:
        if self._applier is None:
            self._applier = self.target.open_applier(self.task.target, self.control_schema)
        return self._applier

    def reader(self) -> SnapshotReader:
        if self._reader is None:
            if self.open_reader is None:
                raise TerminalError("internal: a unit ran before its worker joined the snapshot")
            if self._joined and self.rejoin_warning:
                self.emit(Notice(self.rejoin_warning))
                self.rejoin_warning = None
            self._reader = self.open_reader()
            self._joined = True
        return self._reader

    def joined(self, reader: SnapshotReader) -> None:
        """The reader a worker opened itself when it joined the snapshot."""
        self._reader = reader
        self._joined = True

    def encoders(self, unit: Unit) -> list[Encoder | None]:
        found = self._encoders.get((unit.key, unit.passthrough))
        if found is None:
            if unit.passthrough:
                found = [None] * len(unit.target.columns)
            elif unit.mapping is not None:
                found = unit.mapping.encoders(encoder_for(self.applier()), unit.native_types)
            else:
                encoder = encoder_for(self.applier())
                found = [encoder(c.type, n) for c, n in zip(unit.source.columns, unit.native_types, strict=True)]
            self._encoders[unit.key, unit.passthrough] = found
        return found

    def batches(self, unit: Unit, segment: Segment, batch_rows: int) -> Iterable[RowBatch]:
        batches = self.reader().read(unit.source, segment, batch_rows, decode=not unit.passthrough)
        self._truncated = {}
        return batches if unit.mapping is None else unit.mapping.batches(batches, self._truncated)

    def run(self, unit: Unit) -> Done | Failed:
        settings = self.task.settings
        batch_rows = settings.FullLoadSettings.CommitRate
        segment = Segment.from_json(unit.segment)
        for attempt in range(RETRIES + 1):
            loaded = 0

            def progress(rows: int, byte_count: int) -> None:
                nonlocal loaded
                loaded += rows
                self.emit(Progress(unit.key, rows, byte_count))

            try:
                encoders = self.encoders(unit)
                result = self.applier().load(
                    self.task.name,
                    unit.lease,
                    unit.target,
                    segment.number,
                    lambda: self.batches(unit, segment, batch_rows),
                    encoders,
                    settings.ErrorBehavior.DataErrorPolicy,
                    progress,
                    unit.native_types,
                )
            except Exception as exc:
                if loaded:
                    self.emit(Progress(unit.key, -loaded, 0))  # the transaction rolled back: uncount
                if isinstance(exc, PassThroughRefused) and unit.passthrough:
                    # the raw stream cannot say which row: the segment again, decoded, where the task's
                    # DataErrorPolicy meets each row the target refuses
                    return self.run(replace(unit, passthrough=False))
                error = classify(exc, (self.source, self.target))
                if isinstance(error, TransientError) and attempt < RETRIES and not self.stopping():
                    self.drop_connections()
                    time.sleep(min(2**attempt, 10))
                    continue
                return Failed(unit.id, portable(error))
            rejected = [_portable_reject(r) for r in result.rejected]
            return Done(unit.id, result.rows - loaded, rejected, self._truncated)
        raise AssertionError("unreachable")

    def drop_connections(self) -> None:
        for resource in (self._reader, self._applier):
            if resource is not None:
                with contextlib.suppress(Exception):
                    resource.close()
        self._reader = self._applier = None

    def close(self) -> None:
        self.drop_connections()


# --------------------------------------------------------------------------- threads
class ThreadExecutor:
    """Units on ``threads`` threads of the runner's process, reading from ``Snapshot.reader()``."""

    #: readers come from the snapshot object itself: no token, no hold
    joins_by_token = False

    def __init__(self, task: Task, control_schema: str, threads: int) -> None:
        self.task = task
        self.control_schema = control_schema
        self.slots = threads
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="conveyor-load")
        self._busy = 0
        self._stop = threading.Event()
        self._local = threading.local()
        self._runners: list[UnitRunner] = []
        self._runners_lock = threading.Lock()
        self._open_reader: Callable[[], SnapshotReader] | None = None

    def start(self) -> None:
        pass

    def wait_started(self) -> None:
        pass

    def join(self, snapshot: Snapshot) -> None:
        self._open_reader = snapshot.reader

    def idle(self) -> int:
        return self.slots - self._busy

    def submit(self, unit: Unit) -> None:
        self._busy += 1
        self._pool.submit(self._run, unit)

    def _run(self, unit: Unit) -> None:
        try:
            runner: UnitRunner | None = getattr(self._local, "runner", None)
            if runner is None:
                runner = UnitRunner(self.task, self.control_schema, self._events.put, self._stop.is_set)
                runner.open_reader = self._open_reader
                self._local.runner = runner
                with self._runners_lock:
                    self._runners.append(runner)
            event: Done | Failed = runner.run(unit)
        except BaseException as exc:  # a bug in the runner code: the unit fails, the worker stays
            event = Failed(unit.id, TerminalError(f"{type(exc).__name__}: {exc}"))
        self._events.put(event)

    def events(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        try:
            out.append(self._events.get(timeout=timeout))
            while True:
                out.append(self._events.get_nowait())
        except queue.Empty:
            pass
        self._busy -= sum(1 for e in out if isinstance(e, Done | Failed))
        return out

    def stop(self) -> None:
        self._stop.set()

    def close(self, abort: bool = False) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._runners_lock:
            runners, self._runners = self._runners, []
        for runner in runners:
            runner.close()


# --------------------------------------------------------------------------- processes
@dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    started: bool = False
    joined: bool = False
    unit: int | None = None  # the unit it runs
    alive: bool = True


class ProcessExecutor:
    """Units on ``processes`` worker processes, each joined to the snapshot by its token."""

    joins_by_token = True

    def __init__(self, task: Task, control_schema: str, processes: int) -> None:
        if not task.document:
            raise ValueError("a task without its document cannot run in worker processes")
        self.task = task
        self.control_schema = control_schema
        self.slots = processes
        self._ctx = forking.context()
        self._workers: list[_Worker] = []
        self._starter: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._pending: list[Event] = []
        self._stopped = False

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        """Start the worker processes in the background (the runner goes on planning meanwhile)."""
        self._starter = threading.Thread(target=self._start_all, name="conveyor-start-workers", daemon=True)
        self._starter.start()

    def _start_all(self) -> None:
        env, cwd = dict(os.environ), os.getcwd()
        try:
            for index in range(self.slots):
                if self._stopped:
                    return
                parent_end, child_end = self._ctx.Pipe()
                process = self._ctx.Process(
                    target=_worker_main,
                    args=(child_end, self.task.document, self.control_schema, env, cwd),
                    name=f"conveyor-worker-{index}",
                    daemon=True,
                )
                process.start()
                child_end.close()
                self._workers.append(_Worker(index, process, parent_end))
        except BaseException as exc:
            self._start_error = exc

    def _started_all(self) -> None:
        if self._starter is not None:
            self._starter.join()
        if self._start_error is not None:
            raise TerminalError(f"cannot start worker processes: {self._start_error}") from self._start_error

    def wait_started(self) -> None:
        """Every worker has rebuilt the task and opened its applier."""
        self._started_all()
        self._await(lambda w: w.started, START_TIMEOUT, "start")

    def join(self, snapshot: Snapshot) -> None:
        """Every worker has opened its reader inside the snapshot (the runner then releases it)."""
        token = snapshot.token()
        for w in self._live():
            w.conn.send(("join", token))
        self._await(lambda w: w.joined, JOIN_TIMEOUT, "join the source snapshot")

    def _await(self, ready: Callable[[_Worker], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not all(ready(w) for w in self._live()):
            left = deadline - time.monotonic()
            if left <= 0:
                slow = sum(1 for w in self._live() if not ready(w))
                raise TerminalError(f"{slow} worker process(es) did not {what} within {timeout} s")
            for event in self._receive(left):
                if isinstance(event, Failed) and event.unit == -1:
                    raise event.error
                self._pending.append(event)
            if not self._live():
                raise TerminalError(f"the worker processes exited before they could {what}")

    # ------------------------------------------------------------------ units
    def _live(self) -> list[_Worker]:
        return [w for w in self._workers if w.alive]

    def idle(self) -> int:
        return sum(1 for w in self._live() if w.unit is None)

    def submit(self, unit: Unit) -> None:
        worker = next(w for w in self._live() if w.unit is None)
        worker.unit = unit.id
        worker.conn.send(("unit", unit))

    def events(self, timeout: float) -> list[Event]:
        if self._pending:
            out, self._pending = self._pending, []
            return out + self._receive(0)
        return self._receive(timeout)

    def _receive(self, timeout: float) -> list[Event]:
        live = self._live()
        by_object: dict[Any, _Worker] = {}
        for w in live:
            by_object[w.conn] = w
            by_object[w.process.sentinel] = w
        out: list[Event] = []
        ready = multiprocessing.connection.wait(list(by_object), timeout) if by_object else []
        for obj in ready:
            w = by_object[obj]
            if w.alive:
                self._drain(w, out)
        return out

    def _drain(self, w: _Worker, out: list[Event]) -> None:
        try:
            while w.conn.poll():
                message = w.conn.recv()
                if isinstance(message, _Started):
                    w.started = True
                elif isinstance(message, _Joined):
                    w.joined = True
                else:
                    if isinstance(message, Failed) and message.unit == -1 and w.unit is not None:
                        message = Failed(w.unit, message.error)  # the worker broke down during a unit
                    if isinstance(message, Done | Failed) and message.unit == w.unit:
                        w.unit = None
                    out.append(message)
        except (EOFError, OSError):
            pass
        else:
            if w.process.is_alive():
                return
        # the worker exited: the unit it ran (if any) fails with the reason
        w.alive = False
        w.process.join(5)
        with contextlib.suppress(Exception):
            w.conn.close()
        if w.unit is None and self._stopped:
            return
        code = w.process.exitcode
        reason = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        text = f"worker process {w.process.pid} exited unexpectedly ({reason})"
        if w.unit is not None:
            out.append(Failed(w.unit, TerminalError(text)))
            w.unit = None
        else:
            out.append(Notice(f"{text}; {len(self._live())} worker process(es) left"))

    def stop(self) -> None:
        """Start no more units; idle workers exit, busy ones after their unit (without retrying)."""
        self._stopped = True
        for w in self._live():
            with contextlib.suppress(Exception):
                w.conn.send(("stop",))

    def close(self, abort: bool = False) -> None:
        self._stopped = True
        if self._starter is not None:
            self._starter.join()
        workers = list(self._workers)
        if not abort:
            for w in workers:
                with contextlib.suppress(Exception):
                    w.conn.send(("stop",))
            deadline = time.monotonic() + STOP_TIMEOUT
            for w in workers:
                w.process.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()  # SIGTERM: the worker dies, its target transaction rolls back
        for w in workers:
            w.process.join(5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(5)
            with contextlib.suppress(Exception):
                w.conn.close()
        self._workers = []


def _worker_main(
    conn: multiprocessing.connection.Connection,
    document: dict[str, Any],
    control_schema: str,
    env: dict[str, str],
    cwd: str,
) -> None:
    """A worker process: start, join the snapshot, then run units until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the runner decides
    _exit_with_parent()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    stop = False

    def stopping() -> bool:
        nonlocal stop
        with contextlib.suppress(EOFError, OSError):
            while not stop and conn.poll():
                stop = conn.recv()[0] == "stop"
        return stop

    runner: UnitRunner | None = None
    try:
        task = task_from_document(document)
        source = engine_for(task.source)
        rejoin = None
        if not source.capabilities.exported_snapshots:
            rejoin = (
                f"{task.source.display()}: a worker process opened its source reader again after the snapshot "
                "(a reconnect); it reads with a snapshot of its own"
            )
        runner = UnitRunner(task, control_schema, conn.send, stopping, rejoin)
        runner.applier()
        # connect to the source now, before the snapshot (and MySQL's lock) exists, where the engine can
        begin = source.prepare_join(task.source) if source.prepare_join else None
        conn.send(_Started())
        while not stop:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "join":
                token = message[1]
                runner.open_reader = functools.partial(source.join_snapshot, task.source, token)
                if begin is not None:
                    runner.joined(begin(token))
                    begin = None
                else:
                    runner.reader()
                conn.send(_Joined())
            elif kind == "unit":
                conn.send(runner.run(message[1]))
            elif kind == "stop":
                break
    except Exception as exc:
        engines = [runner.source, runner.target] if runner is not None else []
        with contextlib.suppress(Exception):
            conn.send(Failed(-1, portable(classify(exc, engines))))
    finally:
        if runner is not None:
            runner.close()
        with contextlib.suppress(Exception):
            conn.close()


def _exit_with_parent() -> None:
    """A thread that ends this worker the moment the runner's process is gone (even by kill -9):
    the worker's connections close, so its open target transaction rolls back."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(3)

    threading.Thread(target=watch, name="conveyor-parent-watch", daemon=True).start()
