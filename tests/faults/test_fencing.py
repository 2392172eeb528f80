"""The same task started twice: the newer run takes the lease and the older one can no longer commit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from oracle import canonical_rows, compare, fetch
from tasks import cli, task_doc, write_task
from test_kill_resume import pg_committed_segments


def test_second_run_fences_the_first(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = pg_server.create_database("fence_src")
    dst = pg_server.create_database("fence_dst")
    with pg_server.connect("fence_src") as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v text)")
        conn.execute("INSERT INTO big SELECT g, repeat('v', 100) FROM generate_series(1, 600000) g")
        conn.execute("ANALYZE")
    task = write_task(
        task_doc(src, dst, name="fenced", FullLoadSettings={"MaxFullLoadSubTasks": 1}), tmp_path / "task.yaml"
    )
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor.control.cli.main",
            "run",
            str(task),
            "--state-dir",
            str(tmp_path / "s1"),
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while pg_committed_segments(dst) < 1:
        assert first.poll() is None, "the first run finished before the second started"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # a newer run takes the lease (what its start does first), while the first is mid-load
    with pg_server.connect("fence_dst") as conn:
        conn.execute("UPDATE public.conveyor_leases SET lease = lease + 1 WHERE task_name = 'fenced'")
    _, first_err = first.communicate(timeout=300)
    second = cli("run", str(task), "--state-dir", str(tmp_path / "s2"), "--no-progress")
    assert second.returncode == 0, second.stderr
    assert first.returncode == 1 and "stale" in first_err, first_err
    diff = compare(
        canonical_rows(fetch(src, "big", schema="public")), canonical_rows(fetch(dst, "big", schema="public")), key=[0]
    )
    assert diff.equal, str(diff)
