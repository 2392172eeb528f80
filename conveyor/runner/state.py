"""The local state store: a task's plan and progress in a SQLite file under ``--state-dir``.

The target's control table is the truth about which segments committed (it is written in the same
transaction as their rows); this store keeps what a resume must reuse: the segment boundaries and
which tables were already prepared and finished.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from conveyor.errors import UserActionError

#: where ``conveyor run`` keeps its state store unless ``--state-dir`` says otherwise
DEFAULT_STATE_DIR = ".conveyor"


class StateStore:
    #: the store's file in the state directory
    FILE = "state.db"

    def __init__(self, state_dir: str | Path) -> None:
        directory = Path(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                directory / self.FILE, isolation_level=None, check_same_thread=False, timeout=30
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS tasks (task_name TEXT PRIMARY KEY, status TEXT NOT NULL, "
                "lease INTEGER NOT NULL, plan TEXT NOT NULL, stats TEXT, updated_at TEXT DEFAULT CURRENT_TIMESTAMP)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise UserActionError(f"cannot use state directory {str(directory)!r}: {exc}") from None

    def load(self, task_name: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT status, lease, plan, stats FROM tasks WHERE task_name = ?", (task_name,)
        ).fetchone()
        if row is None:
            return None
        return {
            "status": row[0],
            "lease": row[1],
            "plan": json.loads(row[2]),
            "stats": json.loads(row[3]) if row[3] else None,
        }

    def save(
        self, task_name: str, status: str, lease: int, plan: dict[str, Any], stats: list[dict[str, Any]] | None = None
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO tasks (task_name, status, lease, plan, stats, updated_at) "
            "VALUES (?, ?, ?, ?, ?, CURRENT_TIMESTAMP)",
            (task_name, status, lease, json.dumps(plan), json.dumps(stats) if stats is not None else None),
        )

    def forget(self, task_name: str) -> bool:
        return self.conn.execute("DELETE FROM tasks WHERE task_name = ?", (task_name,)).rowcount > 0

    def close(self) -> None:
        self.conn.close()
