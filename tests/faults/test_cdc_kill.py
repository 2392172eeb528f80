"""kill -9 of a running change-processing task, again and again, under a concurrent workload: every
restart continues from the position stored in the target, so nothing is lost and nothing doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdc_support import postgres_source, wait_equal, wait_until, write_workload
from servers import PostgresServer
from tasks import task_doc, write_task

CONVEYOR = (sys.executable, "-m", "conveyor.control.cli.main")
KILLS = int(os.environ.get("CONVEYOR_CDC_KILLS", "6"))


class TaskProcess:
    """``conveyor run`` in a subprocess."""

    def __init__(self, task_file: Path, state_dir: Path) -> None:
        self.log = open(state_dir.parent / f"run-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*CONVEYOR, "run", str(task_file), "--no-progress", "--state-dir", str(state_dir)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the task exited with {self.proc.returncode}:\n{self.output()}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture
def source_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "kill_" + request.node.name, "cdckill")


@pytest.mark.parametrize(
    ("target", "batch_apply"),
    [("pg_url", False), ("mysql_url", False), ("pg_url", True)],
    ids=["pg", "mysql", "pg-batch"],
)
def test_kill_9_again_and_again_loses_and_doubles_nothing(
    source_url: str, target: str, batch_apply: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target_url = str(request.getfixturevalue(target))
    doc = {**task_doc(source_url, target_url, name="cdckill"), "migration_type": "full-load-and-cdc"}
    if batch_apply:  # windows of BatchApplyTimeoutMin (1 s): a kill often lands while one is open or committing
        doc["settings"] = {"TargetMetadata": {"BatchApplyEnabled": True}}
    task_file = write_task(doc, tmp_path / "task.yaml")
    state = tmp_path / "state"
    writer = threading.Thread(target=write_workload, args=(source_url, 600, 11, 0.01))
    writer.start()
    rng = random.Random(5)
    kills = 0
    while kills < KILLS or writer.is_alive():
        run = TaskProcess(task_file, state)
        if kills % 3:  # mid-stream, while the workload's transactions are being applied
            wait_until(run, lambda run=run: "streaming changes from" in run.output())  # type: ignore[misc]
            time.sleep(rng.uniform(0.1, 1.5))
        else:  # anywhere: starting up, in the full load, streaming
            time.sleep(rng.uniform(0.5, 2.5))
        run.check()
        run.kill()
        kills += 1
    writer.join()
    final = TaskProcess(task_file, state)
    wait_until(final, lambda: "streaming changes from" in final.output())
    wait_equal(final, source_url, target_url, timeout=90)
    assert final.stop() == 0, final.output()
    assert "stopped (asked to stop)" in final.output()
