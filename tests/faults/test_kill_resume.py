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
