"""kill -9 of a change-processing task with a MariaDB source, again and again, under a concurrent
workload and binlog rotation every 2 s: every restart continues from the position stored in the
target, so nothing is lost and nothing doubled."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

import pytest
from cdc_support import WORKLOAD_TABLES, wait_equal, wait_until
from schemas import execute_sql
from tasks import task_doc, write_task
from test_cdc_kill import KILLS, TaskProcess
from workload import Workload

from conveyor.endpoints.mysql.capture import BinlogPosition

ROTATE_SECONDS = 2.0
STREAMING = re.compile(r"streaming changes from file=(?P<file>[^,\s]+),(?:gtid=[^,\s]*,)?pos=(?P<pos>\d+)")


def rotate_binlogs(url: str, stop: threading.Event) -> None:
    """FLUSH BINARY LOGS every ROTATE_SECONDS until ``stop``."""
    while not stop.wait(ROTATE_SECONDS):
        execute_sql(url, ["FLUSH BINARY LOGS"])


@pytest.mark.parametrize("target", ["pg_url", "mysql_url"])
def test_kill_9_again_and_again_loses_and_doubles_nothing(
    mysql_source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source_url, target_url = mysql_source_url, str(request.getfixturevalue(target))
    workload = Workload(source_url, seed=7)
    workload.create()
    workload.run(100)
    doc = {**task_doc(source_url, target_url, name="cdckill"), "migration_type": "full-load-and-cdc"}
    task_file = write_task(doc, tmp_path / "task.yaml")
    state = tmp_path / "state"
    stop_rotating = threading.Event()
    rotator = threading.Thread(target=rotate_binlogs, args=(source_url, stop_rotating), daemon=True)
    rotator.start()
    workload.start_background(rate=30)
    starts: list[BinlogPosition] = []  # where each killed run began to stream
    runs: list[TaskProcess] = []
    try:
        rng = random.Random(5)
        for n in range(KILLS):
            run = TaskProcess(task_file, state)
            runs.append(run)
            if n % 3:  # mid-stream, while the workload's transactions are being applied
                wait_until(run, lambda run=run: STREAMING.search(run.output()) is not None)  # type: ignore[misc]
                time.sleep(rng.uniform(0.1, 1.5))
            else:  # anywhere: starting up, in the full load, streaming
                time.sleep(rng.uniform(0.5, 2.5))
            run.check()
            run.kill()
            found = STREAMING.search(run.output())
            if found:
                starts.append(BinlogPosition(found["file"], int(found["pos"])))
    finally:
        for run in runs:
            if run.proc.poll() is None:  # a failure left it running
                run.kill()
        written = workload.stop()
        stop_rotating.set()
        rotator.join()
    assert written.transactions > 0 and written.kinds["update_key"] and written.kinds["bag_delete"]
    # each restart streamed from the position the run before it stored, which moved on
    assert len(starts) >= KILLS * 2 // 3 and starts == sorted(starts) and starts[0] < starts[-1], starts
    final = TaskProcess(task_file, state)
    try:
        wait_until(final, lambda: "streaming changes from" in final.output())
        wait_equal(final, source_url, target_url, timeout=90, tables=WORKLOAD_TABLES)
        assert final.stop() == 0, final.output()
        assert "stopped (asked to stop)" in final.output()
    finally:
        for run in [*runs, final]:
            if run.proc.poll() is None:  # a failure left it running
                run.kill()
