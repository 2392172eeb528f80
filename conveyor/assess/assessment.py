"""Run the assessments that apply to a task and grade each: passed, warning, failed or skipped.

``assess(task)`` is ``conveyor assess``; ``require_blocking(task)`` is what ``conveyor run`` does
first: the blocking server checks only (the tables' own checks run when the runner plans them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.assess.catalog import COMMON, SELECTION, Spec, source_specs, target_specs
from conveyor.assess.probes import Server
from conveyor.assess.tables import table_findings
from conveyor.assess.targets import target_key_findings
from conveyor.endpoints.registry import EngineSpec, engine_for
from conveyor.errors import UserActionError
from conveyor.model.findings import Finding
from conveyor.model.schema import Table, TableId
from conveyor.runner.task import Task

#: the key under which a source refuses to let a selected table be read
SELECT_KEYS = {
    "postgresql": "postgres-check-select-object-privileges",
    "mysql": "mysql-check-select-privileges",
    "mariadb": "mariadb-check-select-privileges",
}


class Status(StrEnum):
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Result:
    key: str
    title: str
    status: Status
    #: passed: the title; skipped: why; otherwise what was found, with the exact fix
    message: str
    fix: str
    #: a failure of this assessment stops ``conveyor run``
    blocking: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "status": str(self.status),
            "message": self.message,
            "fix": self.fix,
            "blocking": self.blocking,
        }


@dataclass(frozen=True)
class Assessment:
    task: str
    migration_type: str
    source: str
    target: str
    results: list[Result]

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status is Status.FAILED]

    def as_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "migration_type": self.migration_type,
            "source": self.source,
            "target": self.target,
            "summary": {str(s): sum(r.status is s for r in self.results) for s in Status},
            "assessments": [r.as_json() for r in self.results],
        }


def assess(task: Task, blocking_only: bool = False) -> Assessment:
    """Every assessment for ``task``'s engines and migration type (``blocking_only``: the blocking
    ones that need no table descriptions, as ``conveyor run`` does first)."""
    source_engine, target_engine = engine_for(task.source), engine_for(task.target)
    cdc = task.migration_type != "full-load"
    source = Server(task.source, "source")
    try:
        target = Server(task.target, "target")
        try:
            specs = [*COMMON, *source_specs(source.flavor), *target_specs(target.flavor)]
            if blocking_only:
                specs = [s for s in specs if s.blocking and not s.per_table]
            keys = {s.key for s in specs if s.scope.applies(task.migration_type)}
            tables, found = _select(task, source_engine, source.flavor, describe=not blocking_only)
            if cdc and source_engine.open_capture is not None:
                capture = source_engine.open_capture(task.source, task.name, tables)
                try:
                    found += capture.preflight(tables=bool(tables))
                finally:
                    with contextlib.suppress(Exception):
                        capture.close()
            found += source.findings(keys) + target.findings(keys)
            if tables:
                found += table_findings(tables, source.flavor, source_engine.name == target_engine.name, cdc)
                if cdc:
                    found += target_key_findings(task, source_engine, target_engine)
        finally:
            target.close()
    finally:
        source.close()
    results = [grade(s, found, task.migration_type, selected=bool(tables) or blocking_only) for s in specs]
    known = {s.key for s in specs}
    results += _unlisted([f for f in found if f.key not in known])
    return Assessment(task.name, task.migration_type, source.flavor, target.flavor, results)


def require_blocking(task: Task) -> None:
    """``conveyor run``'s first step: a ``UserActionError`` naming every blocking check that failed."""
    failed = assess(task, blocking_only=True).failed
    if failed:
        raise UserActionError(
            f"the task cannot start: {len(failed)} blocking premigration assessment(s) failed (conveyor assess "
            "shows them all): " + " | ".join(f"{r.key}: {r.message}" for r in failed)
        )


def _select(task: Task, engine: EngineSpec, flavor: str, describe: bool) -> tuple[list[Table], list[Finding]]:
    """The selected tables, described (``describe``), and what went wrong selecting or reading them."""
    introspector = engine.open_introspector(task.source)
    try:
        ids: list[TableId] = []
        for schema in introspector.schemas():
            ids.extend(introspector.table_ids(schema))
        selected = [tid for tid, _ in task.mappings.select(ids)]
        if not selected:
            return [], [
                Finding(
                    SELECTION.key,
                    f"no source table matches the table mappings ({len(ids)} tables on {task.source.display()}); "
                    "check the selection rules' schema-name and table-name",
                )
            ]
        if not describe:
            return [], []
        tables, found = [], []
        for tid in selected:
            try:
                tables.append(introspector.table(tid))
            except UserActionError as exc:
                if flavor not in SELECT_KEYS:
                    raise
                found.append(Finding(SELECT_KEYS[flavor], str(exc)))
        return tables, found
    finally:
        introspector.close()


def grade(spec: Spec, found: Sequence[Finding], migration_type: str, selected: bool) -> Result:
    def result(status: Status, message: str) -> Result:
        return Result(spec.key, spec.title, status, message, spec.fix, spec.blocking)

    if not spec.scope.applies(migration_type):
        return result(Status.SKIPPED, f"applies to {spec.scope} tasks; this one is {migration_type}")
    mine = [f for f in found if f.key == spec.key]
    if not mine:
        if spec.per_table and not selected:
            return result(Status.SKIPPED, "no table is selected")
        return result(Status.PASSED, spec.title)
    status = Status.WARNING if all(f.warning for f in mine) else Status.FAILED
    return result(status, "; ".join(dict.fromkeys(f.message for f in mine)))


def _unlisted(found: Sequence[Finding]) -> list[Result]:
    """Findings under a key the catalog does not list for this task: reported as they are."""
    by_key: dict[str, list[Finding]] = {}
    for f in found:
        by_key.setdefault(f.key, []).append(f)
    return [
        Result(
            key,
            key,
            Status.WARNING if all(f.warning for f in group) else Status.FAILED,
            "; ".join(dict.fromkeys(f.message for f in group)),
            "see the message",
            not all(f.warning for f in group),
        )
        for key, group in by_key.items()
    ]
