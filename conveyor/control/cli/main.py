"""`conveyor`: run tasks from the command line.

Exit codes: 0 every selected table loaded completely; 3 the task finished but rows were rejected
(and logged); 1 the task failed; 2 the command line or task file is wrong; 130 interrupted (Ctrl-C),
143 terminated (SIGTERM): committed segments stay, ``--resume`` continues.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from conveyor.runner import forking
from conveyor.runner.state import DEFAULT_STATE_DIR

if forking.wanted(sys.argv, __name__):
    # Worker processes come from a fork server that imports Conveyor and its drivers once (~0.6 s of
    # CPU). Started first thing, it does so while this process imports the same and plans the load;
    # started when the runner needs it, the runner would wait ~0.5 s for it.
    forking.start()

import typer

from conveyor.control.cli.assess import assess
from conveyor.control.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    Debug,
    StateDir,
    Terminated,
    err,
    guarded,
    say,
)
from conveyor.control.cli.convert import convert

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.runner.fullload import RunResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Conveyor: migrate and replicate databases (PostgreSQL, MySQL/MariaDB, SQLite).",
)


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def stop_on_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


#: the signal that asked change processing to stop (``stop_gracefully``)
_asked_by: list[int] = []


def stop_gracefully(stop: threading.Event) -> None:
    """Change processing: the first SIGTERM or Ctrl-C asks the stream to stop after its current target
    commit (the position is saved; exit code 0); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return

    def request(signum: int, frame: object) -> None:
        if stop.is_set():
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        say("stopping after the current commit (again to interrupt now)")
        _asked_by.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, request)
    signal.signal(signal.SIGINT, request)


def exit_code(result: RunResult) -> int:
    if not result.complete:
        return EXIT_FAILED
    return EXIT_REJECTED if result.rejected_rows else EXIT_OK


def wide_console(stderr: bool = False) -> Console:
    """A rich console; piped, as wide as the statistics table needs (rich's 80 columns for a file would
    cut its names and figures short)."""
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=240)


def report(result: RunResult, as_json: bool, console: Console | None = None) -> None:
    """The statistics: as JSON on stdout, or as a table on ``console`` (the progress bars'), by default stdout."""
    from conveyor.runner.fullload import STOPPED_LOADING

    if as_json:
        done = "stopped" if result.cdc is not None else "finished"
        doc: dict[str, Any] = {
            "Status": "failed" if not result.complete else (f"{done}-with-errors" if result.rejected_rows else done),
            "StopReason": result.failed or result.stopped,
            "TableStatistics": [t.dms() for t in result.tables],
            "Warnings": result.warnings,
        }
        if result.cdc is not None:
            doc["CdcStatistics"] = result.cdc.dms()
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return

    from conveyor.control.cli.progress import statistics_table

    console = console or wide_console()
    console.print(statistics_table(result.tables, cdc=result.cdc is not None))
    if result.cdc is not None and result.cdc.checkpoint:
        console.print(f"checkpoint: {result.cdc.checkpoint}", markup=False, highlight=False)
    if result.failed:
        say(f"error: task stopped: {result.failed}")
    elif not result.complete and result.stopped != STOPPED_LOADING:
        failed = [t for t in result.tables if t.error]
        say(f"error: {len(failed)} table(s) failed: " + "; ".join(f"{t.schema}.{t.table}: {t.error}" for t in failed))
    elif result.rejected_rows:
        console.print(
            f"{result.rejected_rows} rows were rejected; see the conveyor_apply_exceptions table on the target",
            markup=False,
        )


def collect_garbage_rarely() -> None:
    """For a CDC process: it allocates a few short-lived tuples per change, nearly all freed by reference
    counting, so at CPython's default gen0 threshold (700) the cyclic collector ran every few transactions
    for nothing (bench/cdc.py pg2pg: Conveyor's CPU per change ~20 -> ~16.5 us). What start-up loaded
    (modules, the task) is never garbage: frozen out of every collection."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def execute_task(task_file: str, state_dir: str, resume: bool, as_json: bool, show_progress: bool) -> int:
    from conveyor.assess.assessment import require_blocking
    from conveyor.control.cli.lines import LineListener
    from conveyor.runner.cdc import ChangeProcessing
    from conveyor.runner.fullload import STOPPED_LOADING, FullLoad
    from conveyor.runner.task import load_task

    task = load_task(task_file)
    if task.settings.ValidationSettings.ValidationOnly:  # compares only: nothing to assess, load or apply
        from conveyor.control.cli.validate import EXIT_DIFFERENT
        from conveyor.validate.intask import validation_only

        result = validation_only(task)
        report(result, as_json)
        differs = any(t.validation_failed for t in result.tables)
        return EXIT_DIFFERENT if result.complete and differs else exit_code(result)
    require_blocking(task)  # every blocking premigration assessment that fails, named at once, before any work
    loader_listener = None
    if show_progress:  # rich only for the bars: without them a run prints plain lines
        from conveyor.control.cli.progress import ProgressListener

        loader_listener = ProgressListener(wide_console(stderr=as_json))
    listener = loader_listener or LineListener()
    runner: FullLoad | ChangeProcessing
    if task.migration_type == "full-load":
        stop_on_sigterm()
        runner = FullLoad(task, state_dir, resume=resume, listener=listener)
    else:
        stop = threading.Event()
        stop_gracefully(stop)
        collect_garbage_rarely()
        runner = ChangeProcessing(task, state_dir, resume=resume, listener=listener, stop=stop)
    if loader_listener is not None:
        with loader_listener:
            result = runner.run()
    else:
        result = runner.run()
    report(result, as_json, loader_listener.console if loader_listener else None)
    if result.stopped == STOPPED_LOADING:  # asked to stop before the full load of full-load-and-cdc ended
        say(f"interrupted ({result.stopped}); run the task again: its full load starts over")
        return 143 if _asked_by[-1:] == [signal.SIGTERM] else 130
    return exit_code(result)


@app.command()
def run(
    task_file: Annotated[str, typer.Argument(help="Task file (YAML or JSON).")],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run (DMS resume-processing).")
    ] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print statistics as JSON (DMS field names).")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
    debug: Debug = False,
) -> None:
    """Run a task: full load, change data capture, or both, from source to target."""
    show = not no_progress and sys.stderr.isatty() if as_json else not no_progress
    code = guarded(debug, lambda: execute_task_reporting(task_file, state_dir, resume, as_json, show))
    raise typer.Exit(code)


def execute_task_reporting(task_file: str, state_dir: str, resume: bool, as_json: bool, show_progress: bool) -> int:
    """``execute_task``; with ``--json``, a task that fails before it has statistics, or is interrupted (a
    second SIGTERM or Ctrl-C), still prints a status document (its reason as ``StopReason``) for whatever
    reads stdout, then the error goes on to stderr."""
    from conveyor.errors import ConveyorError

    try:
        return execute_task(task_file, state_dir, resume, as_json, show_progress)
    except (ConveyorError, KeyboardInterrupt) as exc:
        if as_json:
            why = str(exc) if isinstance(exc, ConveyorError) else "interrupted; run again to continue"
            doc = {"Status": "failed", "StopReason": why, "TableStatistics": [], "Warnings": []}
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        raise


@app.command()
def demo(
    directory: Annotated[str, typer.Option("--dir", help="Where to put the sample databases.")] = "demo",
    rows: Annotated[int, typer.Option("--rows", help="Approximate rows in the sample shop.")] = 100_000,
    debug: Debug = False,
) -> None:
    """Generate a sample SQLite shop database and fully load it into a second SQLite database."""
    from conveyor.control.cli.sample import generate

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    source, target = folder / "shop.db", folder / "shop-copy.db"
    counts = generate(source, rows)
    err().print(
        f"generated {source} ({sum(counts.values()):,} rows: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        + ")"
    )
    task_path = folder / "task.yaml"
    task_path.write_text(
        "name: demo-shop\n"
        f"source: sqlite:///{source}\n"
        f"target: sqlite:///{target}\n"
        "migration_type: full-load\n"
        "settings:\n  FullLoadSettings:\n    TargetTablePrepMode: DROP_AND_CREATE\n",
        encoding="utf-8",
    )
    err().print(f"running {task_path}: {source} -> {target}")
    code = guarded(debug, lambda: execute_task(str(task_path), str(folder / DEFAULT_STATE_DIR), False, False, True))
    raise typer.Exit(code)


@app.command()
def cleanup(
    task_file: Annotated[str, typer.Argument(help="Task file (YAML or JSON).")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    debug: Debug = False,
) -> None:
    """Remove what a task keeps between runs: its replication slot and publication on the source (a
    stopped task's slot makes PostgreSQL keep WAL), its stored position on the target, its local state."""

    def action() -> int:
        from conveyor.runner.cdc import cleanup as run_cleanup
        from conveyor.runner.task import load_task

        removed = run_cleanup(load_task(task_file), state_dir)
        for what in removed:
            say(f"dropped {what}")
        if not removed:
            say("nothing to clean up")
        return EXIT_OK

    raise typer.Exit(guarded(debug, action))


app.command()(assess)
app.command()(convert)

from conveyor.control.cli.validate import validate  # noqa: E402

app.command()(validate)


def main() -> None:  # pragma: no cover - console entry point
    """Run the command, then end the process without the interpreter's teardown when nothing is left to
    wait for: the exit handlers run and the output is flushed, but freeing every module's objects one by
    one is left to the operating system (~80 ms of gc's last collection after ``conveyor validate``)."""
    try:
        app()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int | None) or threading.active_count() > 1:
        raise SystemExit(code)  # a message to print, or threads the normal exit would wait for
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    main()
