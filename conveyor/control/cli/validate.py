"""`conveyor validate TASK_FILE`: compare source and target through the task's plan; optionally repair.

Exit codes: 0 every table equal; 4 differences found (recorded in the failures table); 1 a table could
not be validated or validation failed; 2 the command line or task file is wrong.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

EXIT_DIFFERENT = 4
#: differing rows shown per table in the terminal report (all of them are in the failures table)
SHOWN = 20


def validate(
    task_file: Annotated[str, typer.Argument(help="Task file (YAML or JSON).")],
    repair: Annotated[
        bool, typer.Option("--repair", help="Rewrite each failing row from the source, then validate it again.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (DMS field names).")] = False,
    recheck_delay: Annotated[
        float, typer.Option("--recheck-delay", help="Seconds before differing rows are read again.")
    ] = 1.0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Compare every selected table of source and target row by row (through the task's mappings)."""
    # main.py registers this command, so its helpers are imported when the command runs
    from conveyor.control.cli.common import guarded

    raise typer.Exit(guarded(debug, lambda: _run(task_file, repair, as_json, recheck_delay)))


def _run(task_file: str, repair: bool, as_json: bool, recheck_delay: float) -> int:
    from conveyor.control.cli.common import EXIT_FAILED, EXIT_OK, say
    from conveyor.runner.task import load_task
    from conveyor.validate.run import Validation

    task = load_task(task_file)
    for w in task.warnings:
        say(f"warning: {w}")
    validation = Validation(task, recheck_delay=recheck_delay, warn=lambda w: say(f"warning: {w}"))
    plans = validation.plans()
    result = validation.run(plans)
    repaired: dict[str, int] = {}
    if repair and not result.equal:
        from conveyor.validate.repair import repair_table

        for table in result.tables:
            if table.failures:
                repaired[table.plan.key] = repair_table(task, table.plan, table.failures)
        result = validation.run([t.plan for t in result.tables])
    recorded = validation.record(result)
    if as_json:
        _json(result, repaired)
    else:
        _terminal(result, repaired, recorded)
    if any(t.error for t in result.tables):
        return EXIT_FAILED
    return EXIT_OK if result.equal else EXIT_DIFFERENT


def _json(result: Any, repaired: dict[str, int]) -> None:
    doc = {
        "Equal": result.equal,
        "TableStatistics": [t.stats().dms() for t in result.tables],
        "Failures": [
            {
                "SchemaName": t.plan.target.id.schema,
                "TableName": t.plan.target.id.name,
                "FailureType": f.kind,
                "Key": dict(f.key),
                "Columns": [{"Column": c, "Source": a, "Target": b} for c, a, b in f.columns],
            }
            for t in result.tables
            for f in t.failures
        ],
        "RepairedRows": repaired,
        "Warnings": result.warnings,
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _terminal(result: Any, repaired: dict[str, int], recorded: int) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    from conveyor.control.cli.common import say

    console = Console()
    table = RichTable(title="validation")
    # table names are what a user greps for: never cut; the counts make room
    table.add_column("table", no_wrap=True, min_width=max((len(t.plan.key) for t in result.tables), default=5))
    table.add_column("state")
    for name in ("source rows", "target rows", "failed", "pending", "repaired", "seconds"):
        table.add_column(name, justify="right")
    for t in result.tables:
        table.add_row(
            t.plan.key,
            t.state,
            f"{t.source_rows:,}",
            f"{t.target_rows:,}",
            str(len(t.failures)),
            str(t.pending),
            str(repaired.get(t.plan.key, "")),
            f"{t.seconds:.1f}",
        )
    console.print(table)
    for t in result.tables:
        if t.error:
            say(f"error: {t.plan.key}: {t.error}")
        for f in t.failures[:SHOWN]:
            key = ", ".join(f"{k}={v}" for k, v in f.key)
            cols = "; ".join(f"{c}: source {_show(a)} target {_show(b)}" for c, a, b in f.columns)
            console.print(f"{t.plan.key} {f.kind} {key}" + (f": {cols}" if cols else ""), markup=False, highlight=False)
        if len(t.failures) > SHOWN:
            console.print(f"{t.plan.key}: {len(t.failures) - SHOWN} more", markup=False)
    if recorded:
        console.print(f"{recorded} failures recorded in awsdms_validation_failures_v1 on the target", markup=False)


def _show(value: str | None) -> str:
    return "NULL" if value is None else repr(value)
