"""Change data capture from PostgreSQL under faults, with the task run as a subprocess (``conveyor run``):
source and target restarts mid-stream, network faults through ``FaultProxy`` (reset, blackhole,
latency) between the task and either side, a 50k-row transaction that must never be seen half
applied, the snapshot/stream handoff under ~1,000 transactions/s, and a dropped slot. Each run that
should survive ends row-by-row equal to the source and exits 0 on SIGTERM.

The long forms (a blackhole held past the 45 s silence timeout) are marked ``soak`` (deselected by
default: ``pytest -m soak``); ``CONVEYOR_HANDOFF_RUNS`` sets how many handoffs run (10 in the long form).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from cdc_support import wait_equal, wait_until
from oracle import mysql_connect
from proxy import FaultProxy
from servers import MariaDBServer, PostgresServer, running, unique_db_name
from tasks import cli, task_doc, write_task
from test_cdc_kill import TaskProcess
from workload import Workload

from conveyor.endpoints.postgres.capture import capture_name

TABLES = (("cdc_items", (0,)), ("cdc_bag", ()))
BULK_TABLES = (*TABLES, ("bulk", (0,)))
HANDOFF_RUNS = int(os.environ.get("CONVEYOR_HANDOFF_RUNS", "3"))
#: seconds a restarted server stays down (a real restart is not instantaneous)
DOWN = 2.0
#: the workload's pace while a fault hits (transactions per second)
RATE = 100.0
#: how long the issue gives the task to notice a hung connection (seconds)
NOTICE_WITHIN = 60.0
#: resets in a row, and the seconds the task may take to stream again after each
RESETS = 4
RECOVER_WITHIN = 8.0

_RUNS: list[TaskProcess] = []


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_task_outlives_its_test() -> Iterator[None]:
    """Kill the ``conveyor run`` processes a failing test left running."""
    yield
    for run in _RUNS:
        if run.proc.poll() is None:
            run.kill()
    _RUNS.clear()


@pytest.fixture
def pg_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A source database on the shared server; dropping it drops the task's slot too."""
    pg_server.ensure_running()
    name = unique_db_name("src_" + request.node.name)
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


# ----------------------------------------------------------------------------------------- helpers


def source_workload(url: str, seed: int, transactions: int = 60) -> Workload:
    """The workload's tables on ``url``, with some rows already (the full load copies them)."""
    workload = Workload(url, seed=seed)
    workload.create()
    workload.run(transactions)
    return workload


def task_file(tmp_path: Path, source: str, target: str, name: str) -> Path:
    """A full-load-and-cdc task file."""
    doc = {**task_doc(source, target, name=name), "migration_type": "full-load-and-cdc"}
    return write_task(doc, tmp_path / f"{name}.yaml")


def streaming(path: Path, state: Path) -> TaskProcess:
    """``conveyor run`` once its full load is done and it streams."""
    run = TaskProcess(path, state)
    _RUNS.append(run)
    wait_until(run, lambda: "streaming changes from" in run.output(), timeout=90)
    return run


def retried(run: TaskProcess) -> bool:
    return "retrying in" in run.output()


def finish(
    run: TaskProcess, source: str, target: str, tables: tuple[tuple[str, tuple[int, ...]], ...] = TABLES
) -> None:
    """The target catches up row by row, then SIGTERM stops the task with exit code 0."""
    wait_equal(run, source, target, timeout=120, tables=tables)
    assert run.stop() == 0, run.output()
    assert "stopped (asked to stop)" in run.output(), run.output()


def write_for(workload: Workload, seconds: float, rate: float = RATE) -> None:
    workload.start_background(threads=2, rate=rate)
    time.sleep(seconds)
    workload.stop()


# ------------------------------------------------------------------------------ server restarts


def crash(server: PostgresServer | MariaDBServer) -> None:
    """A crash (PostgreSQL: ``pg_ctl stop -m immediate``; MariaDB: kill -9 of mariadbd), down for ``DOWN``
    seconds, then a start on the same port and data."""
    server.stop("immediate")
    time.sleep(DOWN)
    server.start()


def test_source_restart_mid_stream(pg_url: str, tmp_path: Path) -> None:
    """The source crashes while the task streams and the workload writes, stays down a while and comes
    back: the task retries until the source is there again and catches up exactly."""
    with running("pg") as server:
        assert isinstance(server, PostgresServer)
        source = server.create_database("src")
        workload = source_workload(source, seed=1)
        run = streaming(task_file(tmp_path, source, pg_url, "srcrestart"), tmp_path / "state")
        workload.start_background(threads=2, rate=RATE)
        time.sleep(1.5)
        crash(server)
        with contextlib.suppress(psycopg.Error):
            workload.stop()  # the crash broke its connections
        wait_until(run, lambda: retried(run), timeout=30)
        write_for(workload, 2)
        finish(run, source, pg_url)


@pytest.mark.parametrize("kind", ["pg", "mariadb"])
def test_target_restart_mid_stream(pg_source: str, kind: str, tmp_path: Path) -> None:
    """The target crashes while the task applies, stays down a while and comes back: the task retries
    from the position the target committed, so nothing is lost or applied twice."""
    with running(kind) as server:
        assert isinstance(server, PostgresServer | MariaDBServer)
        target = server.create_database("dst")
        workload = source_workload(pg_source, seed=2)
        workload.start_background(threads=2, rate=RATE)
        run = streaming(task_file(tmp_path, pg_source, target, "dstrestart"), tmp_path / "state")
        time.sleep(1.5)
        crash(server)
        wait_until(run, lambda: retried(run), timeout=30)
        time.sleep(1.5)
        workload.stop()
        finish(run, pg_source, target)


# -------------------------------------------------------------------------------- network faults


def proxied(side: str, source: str, target: str, proxy: FaultProxy) -> tuple[str, str]:
    """The task's (source, target) URLs with ``side`` behind the proxy."""
    return (proxy.url(source), target) if side == "source" else (source, proxy.url(target))


def streams(run: TaskProcess) -> int:
    """How many times the task has (re)started its stream."""
    return run.output().count("streaming changes from")


def stack(run: TaskProcess) -> str:
    """Where the task's threads are (py-spy), for a failure message."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return "(no py-spy)"
    dump = subprocess.run([str(spy), "dump", "--pid", str(run.proc.pid)], capture_output=True, text=True, check=False)
    return dump.stdout or dump.stderr


@pytest.mark.parametrize("side", ["source", "target"])
def test_resets_mid_stream_again_and_again(
    pg_server: PostgresServer, pg_source: str, pg_url: str, side: str, tmp_path: Path
) -> None:
    """Every connection between the task and one side reset (TCP RST) mid-stream, four times, each
    after the task recovered and applied again: it streams again within RECOVER_WITHIN seconds every
    time (a healthy stretch between faults starts the back-off over), and ends exact."""
    workload = source_workload(pg_source, seed=3)
    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        source, target = proxied(side, pg_source, pg_url, proxy)
        run = streaming(task_file(tmp_path, source, target, f"reset_{side}"), tmp_path / "state")
        workload.start_background(threads=2, rate=RATE)
        for reset in range(1, RESETS + 1):
            time.sleep(1)
            proxy.reset()
            started = time.monotonic()
            while streams(run) <= reset and time.monotonic() - started < RECOVER_WITHIN:
                run.check()
                time.sleep(0.05)
            assert streams(run) > reset, f"reset {reset}: not streaming again after {RECOVER_WITHIN} s:\n{run.output()}"
        time.sleep(1)
        workload.stop()
        finish(run, pg_source, pg_url)


@pytest.mark.parametrize("side", ["source", "target"])
@pytest.mark.parametrize("long", [pytest.param(False, id="3s"), pytest.param(True, id="hang", marks=pytest.mark.soak)])
def test_a_blackhole_mid_stream(
    pg_server: PostgresServer, pg_source: str, pg_url: str, side: str, long: bool, tmp_path: Path
) -> None:
    """A blackhole between the task and one side: bytes are taken (TCP is happy) and never answered.
    Short form: 3 s, lifted by resetting the connections that lost bytes; the task retries. Long form
    (soak): held until the task notices the hang by its own timeouts (the silence timeout is 45 s),
    which must be within 60 s. Either way the target ends exact once the network is back."""
    workload = source_workload(pg_source, seed=4)
    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        source, target = proxied(side, pg_source, pg_url, proxy)
        run = streaming(task_file(tmp_path, source, target, f"hole_{side}"), tmp_path / "state")
        workload.start_background(threads=2, rate=RATE)
        time.sleep(1)
        proxy.blackhole(True)
        started = time.monotonic()
        try:
            while not retried(run) and time.monotonic() - started < (NOTICE_WITHIN if long else 3):
                run.check()
                time.sleep(0.2)
            noticed = retried(run)
            where = "" if noticed or not long else stack(run)
        finally:
            proxy.blackhole(False)
        if long:
            assert noticed, (
                f"no retry {NOTICE_WITHIN:.0f} s into the blackhole:\n{run.output()}\nthe task is at:\n{where}"
            )
        wait_until(run, lambda: retried(run), timeout=30)
        time.sleep(1)
        workload.stop()
        finish(run, pg_source, pg_url)


def test_latency_throughout_on_both_sides(
    pg_server: PostgresServer, pg_source: str, pg_url: str, tmp_path: Path
) -> None:
    """50 ms each way between the task and both its source and its target, from the start (the full load
    included): not a single retry, and the target ends exact."""
    workload = source_workload(pg_source, seed=5)
    with (
        FaultProxy(pg_server.host, pg_server.port) as to_source,
        FaultProxy(pg_server.host, pg_server.port) as to_target,
    ):
        to_source.latency(0.05)
        to_target.latency(0.05)
        run = streaming(
            task_file(tmp_path, to_source.url(pg_source), to_target.url(pg_url), "slow"), tmp_path / "state"
        )
        write_for(workload, 2)
        finish(run, pg_source, pg_url)
    assert not retried(run), run.output()


# ------------------------------------------------------------------------ transactions, handoff


def bulk_state(url: str) -> tuple[int, int]:
    """(rows in bulk, rows the transaction's last statement updated), in one statement."""
    query = "SELECT count(*), coalesce(sum(CASE WHEN v = 'updated' THEN 1 ELSE 0 END), 0) FROM bulk"
    if url.startswith("postgres"):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
    else:
        conn = mysql_connect(url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                row = cur.fetchone()
        finally:
            conn.close()
    assert row is not None
    return int(row[0]), int(row[1])


class Sampler:
    """Reads ``sample()`` every 100 ms on a thread until stopped; keeps every distinct value and when
    it was first seen."""

    def __init__(self, sample: Callable[[], tuple[int, int]]) -> None:
        self.sample = sample
        self.seen: dict[tuple[int, int], float] = {}
        self.count = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                value = self.sample()
                self.seen.setdefault(value, time.monotonic())
                self.count += 1
                self._stop.wait(0.1)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> dict[tuple[int, int], float]:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        return self.seen


@pytest.mark.parametrize("target", ["pg_url", "mysql_url"])
def test_a_50k_row_transaction_is_never_seen_partly_applied(
    pg_source: str, target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """One source transaction of three statements (25k + 25k inserted rows, 10k of them updated) while
    a sampler counts the target's rows every 100 ms: each sample sees none of it or all of it."""
    target_url = str(request.getfixturevalue(target))
    source_workload(pg_source, seed=6, transactions=20)
    with psycopg.connect(pg_source, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulk (id bigint PRIMARY KEY, v varchar(20) NOT NULL)")
    run = streaming(task_file(tmp_path, pg_source, target_url, "bulk"), tmp_path / "state")
    sampler = Sampler(lambda: bulk_state(target_url))
    wait_until(run, lambda: sampler.count >= 5)
    with psycopg.connect(pg_source) as conn:
        conn.execute("INSERT INTO bulk SELECT g, 'first' FROM generate_series(1, 25000) g")
        conn.execute("INSERT INTO bulk SELECT g, 'second' FROM generate_series(25001, 50000) g")
        conn.execute("UPDATE bulk SET v = 'updated' WHERE id % 5 = 0")
    try:
        wait_until(run, lambda: (50_000, 10_000) in sampler.seen, timeout=90)
    finally:
        seen = sampler.stop()
    assert set(seen) == {(0, 0), (50_000, 10_000)}, f"samples saw {sorted(seen)} in {sampler.count} samples"
    finish(run, pg_source, target_url, BULK_TABLES)


@pytest.mark.parametrize("attempt", range(HANDOFF_RUNS))
def test_handoff_under_1000_transactions_per_second(
    pg_source: str, attempt: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A full-load-and-cdc task starts while ~1,000 small transactions per second commit: the slot's
    snapshot is taken between commits, the full load reads inside it and the stream begins exactly
    after it. Odd attempts go to MariaDB, even ones to PostgreSQL."""
    target = str(request.getfixturevalue("mysql_url" if attempt % 2 else "pg_url"))
    workload = source_workload(pg_source, seed=100 + attempt, transactions=200)
    workload.start_background(threads=4, rate=1000, rows_per_txn=1)
    time.sleep(0.5)
    before = workload.progress().transactions
    started = time.monotonic()
    run = streaming(task_file(tmp_path, pg_source, target, f"handoff{attempt}"), tmp_path / "state")
    time.sleep(1)
    counts = workload.stop()
    rate = (counts.transactions - before) / (time.monotonic() - started)
    assert counts.transactions > before and rate > 100, f"only {rate:.0f} transactions/s"
    finish(run, pg_source, target)


# ---------------------------------------------------------------------------------- dropped slot


def drop_slot(url: str, slot: str) -> None:
    """Drop ``slot``, ending the walsender that holds it (again, if the task reconnects meanwhile)."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while True:
            row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            assert row is not None, f"no slot {slot}"
            if row[0] is not None:
                conn.execute("SELECT pg_terminate_backend(%s, 5000)", (row[0],))
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            except psycopg.errors.ObjectInUse:
                assert time.monotonic() < deadline, f"slot {slot} stayed in use"


def test_a_dropped_slot_needs_a_resync(pg_source: str, pg_url: str, tmp_path: Path) -> None:
    """The slot dropped while the task was stopped: the next run fails at once (exit 1, within 30 s)
    with NEEDS_RESYNC naming the slot, instead of streaming from a new slot and missing changes."""
    workload = source_workload(pg_source, seed=7)
    path = task_file(tmp_path, pg_source, pg_url, "dropped")
    state = tmp_path / "state"
    run = streaming(path, state)
    write_for(workload, 1)
    finish(run, pg_source, pg_url)
    drop_slot(pg_source, capture_name("dropped"))
    write_for(workload, 0.5)  # changes the slot would have kept
    started = time.monotonic()
    proc = cli("run", str(path), "--no-progress", "--state-dir", str(state), timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 30, f"{elapsed:.0f} s"
    assert "NEEDS_RESYNC" in proc.stderr and capture_name("dropped") in proc.stderr, proc.stderr
    assert "conveyor cleanup TASK_FILE" in proc.stderr and "full-load-and-cdc" in proc.stderr  # how to recover


def test_a_slot_dropped_while_streaming_fails_the_task(pg_source: str, pg_url: str, tmp_path: Path) -> None:
    """The slot dropped under a streaming task: it fails with NEEDS_RESYNC within 30 s, exit 1, rather
    than retrying for ever."""
    workload = source_workload(pg_source, seed=8)
    run = streaming(task_file(tmp_path, pg_source, pg_url, "dropping"), tmp_path / "state")
    workload.start_background(threads=2, rate=RATE)
    try:
        time.sleep(1)
        drop_slot(pg_source, capture_name("dropping"))
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.proc.wait(30)
    finally:
        workload.stop()
    output = run.output()
    assert run.proc.returncode is not None, f"still running 30 s after the slot was dropped:\n{output}"
    assert run.proc.returncode == 1, output
    assert "NEEDS_RESYNC" in output and capture_name("dropping") in output, output
