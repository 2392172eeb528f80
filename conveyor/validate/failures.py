"""The failures table on the target, with the columns of DMS's ``awsdms_validation_failures_v1``.

KEY_TYPE is ``Row``; KEY is ``{"key": [canonical texts of the key columns]}`` (the whole row for a table
without a key); DETAILS is JSON: for RECORD_DIFF the differing columns with both values, else the row
as the side that has it. A validation run replaces the task's earlier rows for the tables it validated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from conveyor.endpoints.base import Applier
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.errors import TerminalError
from conveyor.model.schema import TableId
from conveyor.validate.compare import RECORD_DIFF, RowFailure

FAILURES_TABLE = "awsdms_validation_failures_v1"
COLUMNS = ("TASK_NAME", "TABLE_OWNER", "TABLE_NAME", "FAILURE_TIME", "KEY_TYPE", "KEY", "FAILURE_TYPE", "DETAILS")


def key_json(failure: RowFailure) -> str:
    return json.dumps({"key": [v for _, v in failure.key]}, ensure_ascii=False)


def details(failure: RowFailure, names: Sequence[str]) -> dict[str, Any]:
    if failure.kind == RECORD_DIFF:
        return {"columns": [{"column": c, "source": a, "target": b} for c, a, b in failure.columns]}
    row = failure.source if failure.source is not None else failure.target
    return {"row": dict(zip(names, row or (), strict=False))}


class FailureTable:
    def __init__(self, applier: Applier) -> None:
        if not isinstance(applier, SqlApplier):
            raise TerminalError("validation failures can only be recorded on a SQL target")
        self.a = applier

    def ddl(self) -> str:
        a = self.a
        v = "VARCHAR(128)"
        types = (v, v, v, a.timestamp_type, v, a.text_type, v, a.text_type)
        cols = ", ".join(
            f"{a.quote(c)} {t}{' NOT NULL' if i < 4 else ''}"
            for i, (c, t) in enumerate(zip(COLUMNS, types, strict=True))
        )
        return f"CREATE TABLE IF NOT EXISTS {a.control(FAILURES_TABLE)} ({cols})"

    def replace(self, task_name: str, tables: Sequence[tuple[TableId, Sequence[RowFailure], Sequence[str]]]) -> int:
        """Drop the task's earlier rows for these tables and write the new failures, in one transaction."""
        a = self.a
        name = a.control(FAILURES_TABLE)
        p = a.param
        now = datetime.now(UTC).replace(tzinfo=None)
        count = 0
        try:
            a.execute(self.ddl())
            a.commit()
            for table_id, failures, names in tables:
                a.execute(
                    f"DELETE FROM {name} WHERE {a.quote('TASK_NAME')} = {p} AND {a.quote('TABLE_OWNER')} = {p} "
                    f"AND {a.quote('TABLE_NAME')} = {p}",
                    (task_name, table_id.schema, table_id.name),
                )
                rows = [
                    (
                        task_name,
                        table_id.schema,
                        table_id.name,
                        now,
                        "Row",
                        key_json(f),
                        f.kind,
                        json.dumps(details(f, names), ensure_ascii=False),
                    )
                    for f in failures
                ]
                if rows:
                    a.executemany(
                        f"INSERT INTO {name} ({a.column_list(COLUMNS)}) VALUES ({a.params(len(COLUMNS))})", rows
                    )
                count += len(rows)
            a.commit()
        except Exception:
            a.rollback()
            raise
        return count
