"""`conveyor assess TASK_FILE`: the premigration assessments that apply to a task (docs/assessment.md).

Exit codes: 0 nothing failed (warnings allowed); 1 an assessment failed, or the assessment could not
run (the error on stderr); 2 the command line or task file is wrong.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.control.cli.common import EXIT_FAILED, EXIT_OK, Debug, guarded

if TYPE_CHECKING:
    from rich.table import Table as RichTable

    from conveyor.assess.assessment import Assessment

STYLES = {"passed": "green", "warning": "yellow", "failed": "bold red", "skipped": "dim"}
#: the terminal lists problems first
ORDER = {"failed": 0, "warning": 1, "passed": 2, "skipped": 3}


def assessment_table(assessment: Assessment) -> RichTable:
    """Two columns, so a 100-column terminal reads it: the status, then for a problem the key on its own
    line with the message and the fix wrapped below it at the full width (passed and skipped: one line)."""
    # rich here, not at the top: main imports this module to register the command, for `conveyor run` too
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    table = RichTable(
        title=f"Premigration assessment of {assessment.task} ({assessment.migration_type}: "
        f"{assessment.source} -> {assessment.target})",
        box=box.SIMPLE_HEAD,
        expand=True,
    )
    table.add_column("Status", no_wrap=True)
    table.add_column("Assessment", ratio=1, overflow="fold")
    for r in sorted(assessment.results, key=lambda r: ORDER[r.status]):
        problem = r.status in ("failed", "warning")
        # Text, not markup: messages hold brackets ("my.cnf [mysqld]")
        if problem:
            cell = Text(r.key, "bold")
            if r.blocking:
                cell.append("  (blocks run)", "dim")
            cell.append(f"\n{r.message}\nfix: {r.fix}")
            cell.stylize("cyan", len(cell) - len(r.fix) - 5)
        else:  # one line where it fits: what was checked, or why not
            cell = Text(r.key)
            cell.append(f"  {r.message}", "dim")
        table.add_row(Text(r.status, STYLES[r.status]), cell, end_section=problem)
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
            from rich.console import Console

            console = Console()
            console.print(assessment_table(assessment))
            summary = assessment.as_json()["summary"]
            console.print(", ".join(f"{n} {status}" for status, n in summary.items()), markup=False)
        return EXIT_FAILED if assessment.failed else EXIT_OK

    raise typer.Exit(guarded(debug, action))
