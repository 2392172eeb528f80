"""Whether ``conveyor run`` starts the fork server first thing (``forking.wanted``), read from the task file
and the local state store before the heavy imports."""

import json
from pathlib import Path

import pytest

from conveyor.runner import forking
from conveyor.runner.state import StateStore

MYSQL = "mysql://root@127.0.0.1:3306/shop"
PG = "postgresql://app@127.0.0.1:5432/shop"


def task_file(tmp_path: Path, migration_type: str, source: str = MYSQL, suffix: str = ".json") -> Path:
    doc = {"name": "shop", "source": source, "target": PG, "migration_type": migration_type}
    path = tmp_path / f"task{suffix}"
    path.write_text(json.dumps(doc) if suffix == ".json" else "\n".join(f"{k}: {v}" for k, v in doc.items()))
    return path


def record(state_dir: Path, status: str) -> None:
    store = StateStore(state_dir)
    try:
        store.save("shop", status, 1, {})
    finally:
        store.close()


def test_change_processing_only_needs_no_fork_server(tmp_path: Path) -> None:
    state = tmp_path / "state"
    full_load_and_cdc = str(task_file(tmp_path, "full-load-and-cdc"))
    assert forking.needed_for(full_load_and_cdc, str(state))  # the full load is still to come
    assert not state.exists()  # only read: a task that never ran leaves no store behind
    record(state, "running")
    assert forking.needed_for(full_load_and_cdc, str(state))  # interrupted: the full load starts over
    record(state, "finished")
    assert not forking.needed_for(full_load_and_cdc, str(state))  # a restart resumes the stream
    assert forking.needed_for(str(task_file(tmp_path, "full-load")), str(state))
    assert not forking.needed_for(str(task_file(tmp_path, "cdc")), str(tmp_path / "none"))


def test_state_dir_and_yaml_task_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default state dir, .conveyor, is relative
    state = tmp_path / "elsewhere"
    record(state, "finished")
    path = str(task_file(tmp_path, "full-load-and-cdc", suffix=".yaml"))
    assert forking.wanted(["conveyor", "run", path], "conveyor.control.cli.main")  # default state dir: none
    assert not forking.wanted(["conveyor", "run", path, "--state-dir", str(state)], "conveyor.control.cli.main")
    assert not forking.wanted(["conveyor", "run", path, f"--state-dir={state}"], "conveyor.control.cli.main")
    assert not forking.wanted(["conveyor", "run", path], "__mp_main__")
    pg2pg = str(task_file(tmp_path, "full-load", source=PG))
    assert not forking.wanted(["conveyor", "run", pg2pg], "conveyor.control.cli.main")
    assert forking.wanted(["conveyor", "run", str(tmp_path / "missing.json")], "conveyor.control.cli.main")
