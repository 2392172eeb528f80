"""Running tasks from tests: in-process for results, as a subprocess for exit codes and kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from conveyor.runner.fullload import FullLoad, RunResult
from conveyor.runner.task import task_from_document


def task_doc(source: str, target: str, name: str = "t", **settings: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "source": source, "target": target, "migration_type": "full-load"}
    if settings:
        doc["settings"] = settings
    return doc


def run_task(doc: dict[str, Any], state_dir: Path, resume: bool = False) -> RunResult:
    return FullLoad(task_from_document(doc), str(state_dir), resume=resume).run()


def write_task(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor.control.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def cli_json(*args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(*args, "--json", "--no-progress")
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {})
