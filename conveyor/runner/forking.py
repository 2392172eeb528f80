"""Where worker processes come from: a fork server, started as early as a process knows it will run a
task, so its imports overlap the runner's own start-up.

``fork`` from the runner itself is unsafe (it has threads and open connections by the time it needs
workers), and ``spawn`` makes every worker import Conveyor and its drivers again (~0.7 s of CPU
each). multiprocessing's fork server is a clean, single-threaded process that imports those modules
once (``PRELOAD``) and forks a worker per request in milliseconds. This module is light on purpose:
the command line imports it before the heavy modules and calls ``start()``.

Where there is no fork server (Windows) workers are spawned.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any

from conveyor.runner.state import DEFAULT_STATE_DIR, StateStore

#: what the fork server imports once: the workers' code and every engine's driver
PRELOAD = (
    "conveyor.runner.executor",
    "conveyor.endpoints.postgres.engine",
    "conveyor.endpoints.mysql.engine",
    "conveyor.endpoints.sqlite.engine",
)
#: imported last: freezes the garbage collector over all of the above (see the module)
FREEZE = "conveyor.runner.forkserver_freeze"


def context() -> Any:
    """The multiprocessing context workers start from."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Conveyor modules this process has loaded too: a worker re-imports the main module (the command
    # line's, say) before it runs, which costs nothing when the fork server already holds its imports.
    # Ignored once the fork server runs.
    loaded = {name for name in sys.modules if name.startswith("conveyor.")} - {FREEZE}
    ctx.set_forkserver_preload([*sorted(loaded | set(PRELOAD)), FREEZE])  # in this order
    return ctx


def engine_of(endpoint: Any) -> str | None:
    """``postgresql`` / ``mysql`` / ``sqlite`` from an endpoint as written in a task file, at a glance."""
    text = str(endpoint.get("engine", "")) if isinstance(endpoint, dict) else str(endpoint).split(":", 1)[0]
    text = text.lower()
    for engine, prefixes in (("postgresql", ("postgres",)), ("mysql", ("mysql", "mariadb")), ("sqlite", ("sqlite",))):
        if text.startswith(prefixes):
            return engine
    return None


def wanted(argv: list[str], main_module: str) -> bool:
    """``conveyor run TASK_FILE`` whose task may load in worker processes (not in a worker process
    itself, which re-imports the main module as ``__mp_main__``)."""
    if argv[1:2] != ["run"] or main_module == "__mp_main__":
        return False
    return needed_for(argv[2] if len(argv) > 2 else "", _option(argv, "--state-dir") or DEFAULT_STATE_DIR)


def _option(argv: list[str], name: str) -> str | None:
    """A command-line option's value, as ``--name VALUE`` or ``--name=VALUE`` (the last one given)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def needed_for(task_file: str, state_dir: str = DEFAULT_STATE_DIR) -> bool:
    """Whether a task may load in worker processes, read cheaply from its file before the heavy imports:
    not between two PostgreSQL databases (raw COPY on threads) nor into SQLite (one writer), not for
    change processing only (``cdc``, or a ``full-load-and-cdc`` whose full load ``state_dir`` records
    as finished: a restart resumes its stream). When in doubt, yes: the runner decides for good
    (``fullload.uses_worker_processes``; without the fork server it starts workers when it needs them)."""
    try:
        with open(task_file, encoding="utf-8") as f:
            if task_file.lower().endswith(".json"):
                doc = json.load(f)
            else:
                import yaml  # YAML task files only: ~20 ms that a JSON task file's start-up does without

                doc = yaml.safe_load(f)
        source, target = engine_of(doc["source"]), engine_of(doc["target"])
        migration_type = doc.get("migration_type")
        if migration_type == "full-load-and-cdc" and _full_load_finished(state_dir, str(doc.get("name"))):
            return False
    except Exception:
        return True
    if migration_type == "cdc":
        return False
    return not ((source == target == "postgresql") or target == "sqlite")


def _full_load_finished(state_dir: str, task_name: str) -> bool:
    """Whether the local state store records the task's full load as finished (read only; no store: no)."""
    if not (Path(state_dir) / StateStore.FILE).is_file():
        return False
    store = StateStore(state_dir)
    try:
        saved = store.load(task_name)
    finally:
        store.close()
    return saved is not None and saved["status"] == "finished"


def start() -> None:
    """Start the fork server now; it imports in the background while this process goes on.
    Nothing in a worker process (which re-imports the main module, and with it this call)."""
    if multiprocessing.parent_process() is not None or getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    ctx = context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
