"""Segments loaded by worker processes: exact copies, one MySQL snapshot across processes, worker
errors as table errors, and no worker outliving its runner (kill -9, SIGTERM, Ctrl-C)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from oracle import canonical_rows, compare, fetch
from tasks import cli, run_task, task_doc, write_task
from test_kill_resume import pg_committed_segments

from conveyor.endpoints.postgres import engine as postgres_engine
from conveyor.runner import fullload, segments
from conveyor.runner.executor import ProcessExecutor, ThreadExecutor, process_limit
from conveyor.runner.fullload import FullLoad
from conveyor.runner.task import task_from_document

WORKERS = {"MaxFullLoadSubTasks": 3}


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many segments from little data (segments are planned in the runner's process)."""
    monkeypatch.setattr(fullload, "plan_segments", functools.partial(segments.plan_segments, rows_per_segment=2000))


@pytest.fixture
def pg2pg_in_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL to PostgreSQL loads on threads (raw COPY bytes, no Python work per row); these tests
    run it in worker processes all the same: the exported snapshot joined by token, a target error."""
    spec = postgres_engine.ENGINE
    capabilities = replace(spec.capabilities, raw_copy=False)
    monkeypatch.setattr(postgres_engine, "ENGINE", replace(spec, capabilities=capabilities))


def executor_of(doc: dict[str, Any], tmp_path: Path) -> ThreadExecutor | ProcessExecutor:
    return FullLoad(task_from_document(doc), str(tmp_path / "probe"))._executor()


def test_executor_choice(tmp_path: Path) -> None:
    """Processes where rows pass through Python; threads for single-writer targets and raw copies."""
    pg, my, lite = "postgresql://u@127.0.0.1:1/db", "mysql://u@127.0.0.1:1/db", f"sqlite:///{tmp_path / 'x.db'}"
    decoded = executor_of(task_doc(my, pg, FullLoadSettings={"MaxFullLoadSubTasks": 49}), tmp_path)
    assert isinstance(decoded, ProcessExecutor) and decoded.slots == process_limit()
    assert executor_of(task_doc(pg, my, FullLoadSettings=WORKERS), tmp_path).slots == min(3, process_limit())
    raw = executor_of(task_doc(pg, pg, FullLoadSettings=WORKERS), tmp_path)
    assert isinstance(raw, ThreadExecutor) and raw.slots == 3
    single = executor_of(task_doc(my, lite, FullLoadSettings=WORKERS), tmp_path)
    assert isinstance(single, ThreadExecutor) and single.slots == 1


def same_rows(src: str, dst: str, table: str, columns: list[str], src_schema: str | None, key: list[int]) -> None:
    diff = compare(
        canonical_rows(fetch(src, table, columns, schema=src_schema)),
        canonical_rows(fetch(dst, table, columns, schema="public")),
        key,
    )
    assert diff.equal, f"{table}: {diff}"


def test_pg2pg_in_worker_processes(  # type: ignore[no-untyped-def]
    pg_server, tmp_path: Path, small_segments: None, pg2pg_in_processes: None
) -> None:
    src = pg_server.create_database("workers_pg_src")
    dst = pg_server.create_database("workers_pg_dst")
    with pg_server.connect("workers_pg_src") as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)")
        conn.execute(
            "INSERT INTO big SELECT g, 'name ' || g || ' ✓', g / 100.0, '2024-01-01'::timestamptz + g * interval '1 s' "
            "FROM generate_series(1, 30000) g"
        )
        conn.execute("CREATE TABLE nokey (a int, b text)")
        conn.execute("INSERT INTO nokey SELECT g % 100, repeat('x', 30) FROM generate_series(1, 5000) g")
        conn.execute("ANALYZE")
    doc = task_doc(src, dst, FullLoadSettings=WORKERS)
    assert isinstance(executor_of(doc, tmp_path), ProcessExecutor)
    result = run_task(doc, tmp_path / "state")
    assert result.complete, (result.failed, [(t.table, t.error) for t in result.tables])
    stats = {t.table: t for t in result.tables}
    assert stats["big"].segments >= 10 and stats["big"].full_load_rows == 30000
    assert stats["nokey"].full_load_rows == 5000
    same_rows(src, dst, "big", ["id", "name", "amount", "at"], "public", [0])
    same_rows(src, dst, "nokey", ["a", "b"], "public", [])


def test_mysql2pg_in_worker_processes_with_one_snapshot(  # type: ignore[no-untyped-def]
    mysql_server, pg_server, tmp_path: Path, small_segments: None
) -> None:
    """A writer commits pairs of rows (one in each table, one transaction) all through the load: the
    workers' snapshots are one view, so the target holds both rows of a pair or neither."""
    src = mysql_server.create_database("workers_my_src")
    dst = pg_server.create_database("workers_my_dst")
    with mysql_server.connect("workers_my_src") as conn, conn.cursor() as cur:
        for table in ("a", "b"):
            cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v varchar(40), d decimal(10,2), at datetime(6))")
            cur.execute(
                f"INSERT INTO {table} SELECT seq, CONCAT('v', seq, ' ✓'), seq / 100, "
                "'2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_20000"
            )
        cur.execute("ANALYZE TABLE a, b")
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with mysql_server.connect("workers_my_src", autocommit=False) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 120")
            next_id = 1_000_000
            while not stop.is_set():
                for table in ("a", "b"):
                    cur.execute(f"INSERT INTO {table} VALUES (%s, 'late', 1, NOW())", (next_id,))
                conn.commit()
                written.append(next_id)
                next_id += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        result = run_task(task_doc(src, dst, FullLoadSettings={"MaxFullLoadSubTasks": 4}), tmp_path / "state")
    finally:
        stop.set()
        thread.join()
    assert result.complete, (result.failed, [(t.table, t.error) for t in result.tables])
    assert not result.warnings, result.warnings
    assert len(written) > 10  # the writer really ran through the load
    a = {r[0] for r in fetch(dst, "a", ["id"], schema="public")}
    b = {r[0] for r in fetch(dst, "b", ["id"], schema="public")}
    assert a == b, f"only in a: {sorted(a - b)[:10]}, only in b: {sorted(b - a)[:10]}"
    assert set(range(1, 20001)) <= a
    columns = ["id", "v", "d", "at"]
    for table in ("a", "b"):  # row for row, as the source was at the snapshot
        source = [r for r in fetch(src, table, columns) if r[0] in a]
        diff = compare(canonical_rows(source), canonical_rows(fetch(dst, table, columns, schema="public")), [0])
        assert diff.equal, f"{table}: {diff}"
    assert any(t.segments >= 10 for t in result.tables)


@pytest.mark.parametrize("policy", ["SUSPEND_TABLE", "STOP_TASK"])
def test_worker_error_becomes_a_table_error(  # type: ignore[no-untyped-def]
    policy: str, pg_server, tmp_path: Path, small_segments: None, pg2pg_in_processes: None
) -> None:
    """The target table is dropped while workers load it: that table fails with the reason; the other
    one still loads (TableErrorPolicy SUSPEND_TABLE) or is never started (STOP_TASK)."""
    src = pg_server.create_database(f"workers_err_{policy.lower()}_src")
    dst = pg_server.create_database(f"workers_err_{policy.lower()}_dst")
    with pg_server.connect(f"workers_err_{policy.lower()}_src") as conn:
        conn.execute("CREATE TABLE doomed (id bigint PRIMARY KEY, v text)")
        conn.execute("INSERT INTO doomed SELECT g, repeat('d', 300) FROM generate_series(1, 200000) g")
        conn.execute("CREATE TABLE fine (id int PRIMARY KEY)")
        conn.execute("INSERT INTO fine SELECT generate_series(1, 10)")
        conn.execute("ANALYZE")

    def drop_after_first_segment() -> None:
        deadline = time.monotonic() + 60
        while pg_committed_segments(dst) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pg_server.connect(f"workers_err_{policy.lower()}_dst") as conn:
            conn.execute("DROP TABLE public.doomed")

    dropper = threading.Thread(target=drop_after_first_segment)
    dropper.start()
    doc = task_doc(src, dst, FullLoadSettings=WORKERS, ErrorBehavior={"TableErrorPolicy": policy})
    try:
        result = run_task(doc, tmp_path / "state")
    finally:
        dropper.join()
    stats = {t.table: t for t in result.tables}
    assert stats["doomed"].state == "Table error"
    assert "doomed" in (stats["doomed"].error or "") and "dropped during the load" in (stats["doomed"].error or "")
    assert not result.complete
    if policy == "STOP_TASK":
        # the big table's segments go first; the task stopped before the small one started
        assert result.failed and "doomed" in result.failed
        assert stats["fine"].state == "Before load"
    else:
        assert result.failed is None and stats["fine"].state == "Table completed"


def test_transient_target_error_in_a_worker_is_retried(  # type: ignore[no-untyped-def]
    mysql_server, pg_server, tmp_path: Path, small_segments: None
) -> None:
    """A worker's target connection is cut mid-segment: the segment rolls back, the worker reconnects
    and loads it again; the rows (and FullLoadRows) come out exact, and the worker's new source
    reader, which has a snapshot of its own, is named in a warning."""
    src = mysql_server.create_database("workers_retry_src")
    dst = pg_server.create_database("workers_retry_dst")
    with mysql_server.connect("workers_retry_src") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, v varchar(300))")
        cur.execute("INSERT INTO t SELECT seq, REPEAT('r', 300) FROM seq_1_to_60000")
        cur.execute("ANALYZE TABLE t")
    cut: list[int] = []

    def cut_one_copy() -> None:
        deadline = time.monotonic() + 60
        while not cut and time.monotonic() < deadline:
            with pg_server.connect("postgres") as conn:
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = 'workers_retry_dst' AND query LIKE 'COPY%%' AND state = 'active' LIMIT 1"
                ).fetchall()
            cut.extend(1 for r in rows if r[0])
            time.sleep(0.01)

    cutter = threading.Thread(target=cut_one_copy)
    cutter.start()
    try:
        result = run_task(task_doc(src, dst, FullLoadSettings=WORKERS), tmp_path / "state")
    finally:
        cutter.join()
    assert cut, "no COPY was caught to be cut"
    assert result.complete, (result.failed, [(t.table, t.error) for t in result.tables])
    (stats,) = result.tables
    assert stats.full_load_rows == 60000 and stats.full_load_error_rows == 0
    assert any("opened its source reader again" in w for w in result.warnings), result.warnings
    same_rows(src, dst, "t", ["id", "v"], None, [0])


def test_a_worker_killed_fails_its_table_not_the_task(  # type: ignore[no-untyped-def]
    mysql_server, pg_server, tmp_path: Path, small_segments: None
) -> None:
    """A worker process dies (the OOM killer, say): the segment it ran fails its table with the
    reason; the other workers load the other table, and the run ends (no hang)."""
    src = mysql_server.create_database("workers_kill_src")
    dst = pg_server.create_database("workers_kill_dst")
    with mysql_server.connect("workers_kill_src") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE big (id int PRIMARY KEY, v varchar(300))")
        cur.execute("INSERT INTO big SELECT seq, REPEAT('k', 300) FROM seq_1_to_60000")
        cur.execute("CREATE TABLE small (id int PRIMARY KEY)")
        cur.execute("INSERT INTO small SELECT seq FROM seq_1_to_10")
        cur.execute("ANALYZE TABLE big, small")
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            if pg_committed_segments(dst) >= 1:
                with pg_server.connect("postgres") as conn:
                    row = conn.execute(
                        "SELECT client_port FROM pg_stat_activity WHERE datname = 'workers_kill_dst' "
                        "AND query LIKE 'COPY%%' AND state = 'active' LIMIT 1"
                    ).fetchone()
                pid = row and worker_by_port(row[0])
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        result = run_task(task_doc(src, dst, FullLoadSettings=WORKERS), tmp_path / "state")
    finally:
        killer.join()
    assert killed
    stats = {t.table: t for t in result.tables}
    assert stats["big"].state == "Table error"
    assert f"worker process {killed[0]} exited unexpectedly (signal 9)" in (stats["big"].error or "")
    assert stats["small"].state == "Table completed" and not result.complete


def worker_by_port(port: int) -> int | None:
    """The process of this machine with a TCP connection from local port ``port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            inode = fields[9]
    if inode is None:
        return None
    for pid in descendants(os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
    return None


# --------------------------------------------------------------------------- no orphans
def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            out[int(entry)] = (int(fields[1]), fields[0])
    return out


def descendants(pid: int) -> set[int]:
    table = process_table()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    table = process_table()
    return {p for p in pids if p in table and table[p][1] != "Z"}


def start_big_load(mysql_server, pg_server, tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:  # type: ignore[no-untyped-def]
    """MariaDB to PostgreSQL on the command line, in worker processes, stopped after its first segment."""
    src = mysql_server.create_database(f"{name}_src")
    dst = pg_server.create_database(f"{name}_dst")
    with mysql_server.connect(f"{name}_src") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE big (id bigint PRIMARY KEY, name varchar(40), amount decimal(12,2))")
        cur.execute("INSERT INTO big SELECT seq, CONCAT('name ', seq), seq / 100 FROM seq_1_to_1000000")
        cur.execute("ANALYZE TABLE big")
    task = write_task(task_doc(src, dst, name=name, FullLoadSettings=WORKERS), tmp_path / "task.yaml")
    argv = ["run", str(task), "--state-dir", str(tmp_path / "s"), "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor.control.cli.main", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a shell job (for Ctrl-C)
        # as from a terminal, whatever this test runs under (a background job ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while pg_committed_segments(dst) < 1:
        assert proc.poll() is None, "the load finished before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc, dst


def target_sessions(pg_server, database: str) -> int:  # type: ignore[no-untyped-def]
    with pg_server.connect("postgres") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchone()
    return int(row[0])


def wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(pids)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_no_worker_outlives_its_runner(how: str, mysql_server, pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = f"orphans_{how.replace('-', '').lower()}"
    proc, dst = start_big_load(mysql_server, pg_server, tmp_path, name)
    workers = descendants(proc.pid)
    assert len(workers) >= 3, "the worker processes (and the fork server) should be running"
    # workers stuck inside a database call (not sending progress) must end too; and the load cannot
    # finish before the signal arrives: every segment's commit checks the task's lease row, held here
    # (a table lock would first wait for the segments in flight, which may be all that is left)
    blocker = pg_server.connect(f"{name}_dst", autocommit=False)
    blocker.execute("SELECT 1 FROM public.conveyor_leases WHERE task_name = %s FOR UPDATE", (name,))
    time.sleep(0.5)
    if how == "SIGKILL":
        proc.send_signal(signal.SIGKILL)
    elif how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends the whole job
    _, err = proc.communicate(timeout=60)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == (143 if how == "SIGTERM" else 130), err
        assert b"--resume" in err and b"Traceback" not in err, err
    try:
        assert not wait_gone(workers, 10), "worker processes outlived the runner"
    finally:
        blocker.close()
    deadline = time.monotonic() + 10
    while target_sessions(pg_server, dst) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target_sessions(pg_server, dst) == 0, "a worker still has a session on the target"
    committed = pg_committed_segments(dst)
    time.sleep(0.5)
    assert pg_committed_segments(dst) == committed < 5  # nothing writes any more; really interrupted
    if how == "SIGKILL":  # and resuming loads exactly what was missing
        done = cli("run", str(tmp_path / "task.yaml"), "--state-dir", str(tmp_path / "s"), "--resume", "--no-progress")
        assert done.returncode == 0, done.stderr
        # (a million rows: aggregates rather than the row oracle, which test_kill_resume runs)
        aggregates = "SELECT count(*), sum(id), sum(amount), count(DISTINCT name) FROM {}"
        with mysql_server.connect(f"{name}_src") as conn, conn.cursor() as cur:
            cur.execute(aggregates.format("big"))
            source = cur.fetchone()
        with pg_server.connect(f"{name}_dst") as conn:
            target = conn.execute(aggregates.format("public.big")).fetchone()
        assert tuple(target) == tuple(source)
