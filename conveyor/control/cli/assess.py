"""`conveyor assess TASK_FILE`: the premigration assessments that apply to a task (docs/assessment.md).

Exit codes: 0 nothing failed (warnings allowed); 1 an assessment failed, or the assessment could not
run (the error on stderr); 2 the command line or task file is wrong.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from conveyor.control.cli.common import EXIT_FAILED, EXIT_OK, Debug, guarded

if TYPE_CHECKING:
    from conveyor.assess.assessment import Assessment

STYLES = {"passed": "green", "warning": "yellow", "failed": "bold red", "skipped": "dim"}


def assessment_table(assessment: Assessment) -> RichTable:
    table = RichTable(
        title=f"Premigration assessment of {assessment.task} ({assessment.migration_type}: "
        f"{assessment.source} -> {assessment.target})",
        show_lines=True,
    )
    table.add_column("Assessment", no_wrap=True, overflow="fold")  # keys whole where the terminal allows
    table.add_column("Status")
    table.add_column("Blocks run")
    table.add_column("Message", ratio=3, overflow="fold")
    table.add_column("Fix", ratio=2, overflow="fold")
    for r in assessment.results:
        style = STYLES[r.status]
        fix = "" if r.status in ("passed", "skipped") else r.fix
        # Text, not markup: messages hold brackets ("my.cnf [mysqld]")
        table.add_row(Text(r.key), Text(r.status, style), "yes" if r.blocking else "no", Text(r.message), Text(fix))
    return table


def assess(
    task_file: Annotated[str, typer.Argument(help="Task file (YAML or JSON).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    debug: Debug = False,
) -> None:
    """Run AWS DMS's premigration assessments that apply to the task's source, target and migration
    type: each passed, warning, failed or skipped, with its message and fix."""

    def action() -> int:
        from conveyor.assess.assessment import assess as run_assessment
        from conveyor.runner.task import load_task

        assessment = run_assessment(load_task(task_file))
        if as_json:
            sys.stdout.write(json.dumps(assessment.as_json(), indent=2) + "\n")
        else:
            console = Console()
            console.print(assessment_table(assessment))
            summary = assessment.as_json()["summary"]
            console.print(", ".join(f"{n} {status}" for status, n in summary.items()), markup=False)
        return EXIT_FAILED if assessment.failed else EXIT_OK

    raise typer.Exit(guarded(debug, action))
