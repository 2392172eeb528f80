"""kill -9 in the middle of a full load, then --resume: the target ends equal to the source."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from oracle import canonical_rows, compare, fetch
from tasks import cli, task_doc, write_task

ROWS = 450_000


def make_source(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, amount DECIMAL(12,2), at DATETIME)")
    conn.execute("CREATE TABLE nokey (a INTEGER, b TEXT)")
    conn.executemany(
        "INSERT INTO big VALUES (?, ?, ?, ?)",
        ((i, f"name {i} ✓", f"{i % 100000}.{i % 100:02d}", "2024-01-01 10:00:00") for i in range(ROWS)),
    )
    conn.executemany("INSERT INTO nokey VALUES (?, ?)", ((i % 1000, "dup") for i in range(150_000)))
    conn.commit()
    conn.close()


def committed_segments(target: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(conn.execute("SELECT count(*) FROM conveyor_segments").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def kill_after_first_segment(args: list[str], target: Path, timeout: float = 120) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor.control.cli.main", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while committed_segments(target) < 1:
        assert proc.poll() is None, "the load finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def rows_of(url: str, table: str, columns: list[str]) -> list[Any]:
    return canonical_rows(fetch(url, table, columns))


def test_kill9_then_resume_sqlite(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    make_source(src)
    task = write_task(task_doc(f"sqlite:///{src}", f"sqlite:///{dst}", name="killme"), tmp_path / "task.yaml")
    state = str(tmp_path / "state")
    kill_after_first_segment(["run", str(task), "--state-dir", state, "--no-progress"], dst)
    assert committed_segments(dst) < 3  # really interrupted
    proc = cli("run", str(task), "--state-dir", state, "--resume", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for table, cols, key in (("big", ["id", "name", "amount", "at"], [0]), ("nokey", ["a", "b"], [])):
        diff = compare(rows_of(f"sqlite:///{src}", table, cols), rows_of(f"sqlite:///{dst}", table, cols), key)
        assert diff.equal, f"{table}: {diff}"


def pg_committed_segments(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM public.conveyor_segments").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


def test_kill9_then_resume_pg_with_ctid_segments(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL to PostgreSQL: key-range segments and, for the table without a key, heap-page
    (ctid) segments; killed after the first commits, resumed, then equal row for row."""
    src = pg_server.create_database("kill_src")
    dst = pg_server.create_database("kill_dst")
    with pg_server.connect("kill_src") as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, name text, amount numeric(12,2))")
        conn.execute("INSERT INTO big SELECT g, 'name ' || g, g / 100.0 FROM generate_series(1, 500000) g")
        conn.execute("CREATE TABLE nokey (a int, b text)")
        conn.execute("INSERT INTO nokey SELECT g % 1000, repeat('x', 40) FROM generate_series(1, 700000) g")
        conn.execute("ANALYZE")
    doc = task_doc(src, dst, name="killpg", FullLoadSettings={"MaxFullLoadSubTasks": 2})
    task = write_task(doc, tmp_path / "task.yaml")
    state = str(tmp_path / "state")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor.control.cli.main", "run", str(task), "--state-dir", state, "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while pg_committed_segments(dst) < 1:
        assert proc.poll() is None, "the load finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pg_committed_segments(dst) < 7  # 3 key ranges + 4 page ranges: really interrupted
    done = cli("run", str(task), "--state-dir", state, "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    for table, cols, key in (("big", ["id", "name", "amount"], [0]), ("nokey", ["a", "b"], [])):
        diff = compare(
            canonical_rows(fetch(src, table, cols, schema="public")),
            canonical_rows(fetch(dst, table, cols, schema="public")),
            key,
        )
        assert diff.equal, f"{table}: {diff}"
