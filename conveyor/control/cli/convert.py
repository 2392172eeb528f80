"""`conveyor convert`: the target's DDL for a task's tables, and the assessment report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.table import Table as RichTable

    from conveyor.convert.report import Report

#: exit code when some object needs action (the DDL and report are still written)
EXIT_NEEDS_ACTION = 3


def summary_table(report: Report) -> RichTable:
    """Objects that are not simply converted, with their first issue; then the counts."""
    # rich and the report here, not at the top: main imports this module to register the command
    from rich.table import Table as RichTable

    from conveyor.convert.report import Status

    styles = {Status.CONVERTED: "green", Status.WARNINGS: "yellow", Status.ACTION: "bold red"}
    table = RichTable(title=f"Schema conversion {report.source} -> {report.target}", title_justify="left")
    for column in ("Object", "Status", "Issue", "Effort"):
        table.add_column(column, overflow="fold")
    for item in report.items:
        if item.status is Status.CONVERTED:
            continue
        for n, issue in enumerate(item.issues):
            label = f"{item.kind} {item.name}" if n == 0 else ""
            status = item.status.value if n == 0 else ""
            table.add_row(label, f"[{styles[item.status]}]{status}[/]", issue.reason, issue.effort.value)
    return table


def convert(
    task_file: Annotated[str, typer.Argument(help="Task file (YAML or JSON).")],
    out: Annotated[str, typer.Option("--out", help="Where to write the target's DDL.")] = "schema.sql",
    report_dir: Annotated[
        str, typer.Option("--report", help="Folder for conversion-report.json and conversion-report.html.")
    ] = ".",
    apply: Annotated[bool, typer.Option("--apply", help="Also create the schema on the target.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Convert the task's schema for its target: tables, keys, indexes, constraints, sequences, views;
    write the DDL and an assessment report of what needs action (exit code 3 when something does)."""

    from conveyor.control.cli.common import EXIT_OK, guarded, say

    def action() -> int:
        from rich.console import Console

        from conveyor.convert.report import Status
        from conveyor.runner.conversion import convert_task
        from conveyor.runner.task import load_task

        conversion = convert_task(load_task(task_file), lambda w: say(f"warning: {w}"), apply=apply)
        Path(out).write_text(conversion.script(), encoding="utf-8")
        as_json, as_html = conversion.report.write(Path(report_dir))
        console = Console(stderr=True)
        console.print(summary_table(conversion.report))
        counts = conversion.report.counts()
        say(", ".join(f"{n} {s}" for s, n in counts.items()))
        say(f"wrote {out}, {as_json} and {as_html}" + ("; the schema is created on the target" if apply else ""))
        return EXIT_NEEDS_ACTION if counts[Status.ACTION.value] else EXIT_OK

    raise typer.Exit(guarded(debug, action))
