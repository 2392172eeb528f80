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

import multiprocessing
import sys
from typing import Any

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
    return argv[1:2] == ["run"] and main_module != "__mp_main__" and needed_for(argv[2] if len(argv) > 2 else "")


def needed_for(task_file: str) -> bool:
    """Whether a task may load in worker processes, read cheaply from its file before the heavy imports:
    not between two PostgreSQL databases (raw COPY on threads) nor into SQLite (one writer). When in
    doubt, yes: the runner decides for good (``fullload.uses_worker_processes``)."""
    try:
        import yaml

        with open(task_file, encoding="utf-8") as f:
            doc = yaml.safe_load(f)  # JSON is YAML
        source, target = engine_of(doc["source"]), engine_of(doc["target"])
    except Exception:
        return True
    if doc.get("migration_type") == "cdc":
        return False
    return not ((source == target == "postgresql") or target == "sqlite")


def start() -> None:
    """Start the fork server now; it imports in the background while this process goes on.
    Nothing in a worker process (which re-imports the main module, and with it this call)."""
    if multiprocessing.parent_process() is not None or getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    ctx = context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
