"""Terminal progress: a bar per table while loading, a statistics table at the end."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable

from conveyor.runner import stats as st


class RowsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Any) -> Any:
        speed = task.finished_speed or task.speed
        return f"{speed:>9,.0f} rows/s" if speed else " " * 16


class ProgressListener:
    """Shows one bar per table; safe to call from loader threads."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            RowsPerSecond(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[state]}"),
            console=console,
            transient=False,
        )
        self._ids: dict[str, TaskID] = {}
        self._cdc: TaskID | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ProgressListener:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _key(self, stats: st.TableStats) -> str:
        return f"{stats.schema}.{stats.table}"

    def table_planned(self, stats: st.TableStats) -> None:
        with self._lock:
            self._ids[self._key(stats)] = self.progress.add_task(
                self._key(stats),
                total=max(stats.estimated_rows, stats.full_load_rows) or None,
                completed=stats.full_load_rows,
                state=stats.state,
            )

    def rows_loaded(self, stats: st.TableStats, rows: int) -> None:
        task_id = self._ids.get(self._key(stats))
        if task_id is None:
            return
        total = max(stats.estimated_rows, stats.full_load_rows)
        self.progress.update(task_id, completed=stats.full_load_rows, total=total or None)

    def table_changed(self, stats: st.TableStats) -> None:
        task_id = self._ids.get(self._key(stats))
        if task_id is None:
            return
        if stats.state == st.COMPLETED:
            self.progress.update(
                task_id, completed=stats.full_load_rows, total=stats.full_load_rows or 1, state=stats.state
            )
        else:
            self.progress.update(task_id, state=stats.state)

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def cdc_progress(self, cdc: st.CdcStats) -> None:
        """One line for change processing: applied changes, rate, latency, what waits."""
        text = (
            f"changes: {cdc.applied_changes:,} applied, {cdc.throughput:,.0f}/s, latency {cdc.latency_target:.2f} s, "
            f"{cdc.incoming_changes:,} incoming"
        )
        if cdc.source_lag_bytes is not None:
            text += f", source lag {cdc.source_lag_bytes / 1e6:,.1f} MB"
        with self._lock:
            if self._cdc is None:
                self._cdc = self.progress.add_task(text, total=None, state="CDC")
            else:
                self.progress.update(self._cdc, description=text)


def statistics_table(tables: list[st.TableStats], cdc: bool = False) -> RichTable:
    table = RichTable(title="Table statistics")
    names = ["Table", "State", "FullLoadRows", "ErrorRows", "Seconds", "Rows/s"]
    if cdc:
        names += ["AppliedInserts", "AppliedUpdates", "AppliedDeletes", "AppliedDdls", "ApplyErrorRows"]
    for name in names:
        table.add_column(name, justify="left" if name in ("Table", "State") else "right")
    for t in tables:
        seconds = (t.end - t.start).total_seconds() if t.start and t.end else 0.0
        rate = f"{t.full_load_rows / seconds:,.0f}" if seconds > 0 else "-"
        cells = [
            f"{t.schema}.{t.table}",
            t.state,
            f"{t.full_load_rows:,}",
            f"{t.full_load_error_rows:,}",
            f"{seconds:.2f}",
            rate,
        ]
        if cdc:
            cells += [f"{n:,}" for n in (t.applied_inserts, t.applied_updates, t.applied_deletes, t.applied_ddls)]
            cells.append(f"{t.apply_error_rows:,}")
        table.add_row(*cells)
    return table
