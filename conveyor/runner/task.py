"""The task file: the user's contract (YAML or JSON, format in DESIGN.md)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from conveyor.convert.overrides import TypeMapping, parse_type_mappings
from conveyor.endpoints.config import MySQLConfig, PostgresConfig, SQLiteConfig, parse_endpoint
from conveyor.errors import ConfigError
from conveyor.runner.settings import TaskSettings, parse_settings
from conveyor.transform.selection import TableMappings, parse_mappings

EndpointConfig = PostgresConfig | MySQLConfig | SQLiteConfig
MIGRATION_TYPES = ("full-load", "cdc", "full-load-and-cdc")
_TOP_KEYS = {
    "name",
    "source",
    "target",
    "migration_type",
    "table_mappings",
    "settings",
    "cdc_start_position",
    "cdc_start_time",
    "cdc_stop_position",
    "type_mappings",
}
_STOP_KINDS = ("server_time", "commit_time")


@dataclass(frozen=True)
class StopPoint:
    """DMS's CdcStopPosition: ``server_time:2026-11-27T10:00:00`` stops once Conveyor's clock passes
    that time, ``commit_time:...`` after the last source transaction committed at or before it (UTC)."""

    kind: str
    at: datetime

    def __str__(self) -> str:
        return f"{self.kind}:{self.at.strftime('%Y-%m-%dT%H:%M:%S')}"


def _start_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # YAML reads an unquoted timestamp as one
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ConfigError(
                f"{value!r} is not a time; write it as 2026-11-27T10:00:00 (UTC)", "cdc_start_time"
            ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def parse_stop_point(text: str, path: str = "cdc_stop_position") -> StopPoint:
    kind, sep, when = text.strip().partition(":")
    if not sep or kind.lower() not in _STOP_KINDS:
        raise ConfigError(f"write it as server_time:YYYY-MM-DDTHH:MM:SS or commit_time:... (UTC), not {text!r}", path)
    try:
        at = datetime.fromisoformat(when.strip())
    except ValueError:
        raise ConfigError(f"{when!r} is not a time; write it as 2026-11-27T10:00:00 (UTC)", path) from None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return StopPoint(kind.lower(), at)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Task:
    name: str
    source: EndpointConfig
    target: EndpointConfig
    migration_type: str
    mappings: TableMappings
    settings: TaskSettings
    warnings: list[str] = field(default_factory=list)
    #: DMS CdcStartPosition: where a cdc task without a stored position starts (engine's own syntax)
    cdc_start_position: str | None = None
    #: DMS CdcStartTime: where a cdc task without a stored position starts (UTC)
    cdc_start_time: datetime | None = None
    #: DMS CdcStopPosition
    cdc_stop_position: StopPoint | None = None
    #: schema conversion's type-mapping overrides (``convert.overrides``)
    type_mappings: list[TypeMapping] = field(default_factory=list)
    #: the task file as written (with ${VARS} unexpanded), so a worker process can rebuild the task
    document: dict[str, Any] = field(default_factory=dict, compare=False)


def load_task(path: str | Path) -> Task:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"task file {str(file)!r} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read task file {str(file)!r}: {exc.strerror}") from None
    if file.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _invalid(file, "JSON", exc) from None
    else:
        import yaml  # YAML task files only: ~15 ms that a JSON task file's start-up does without

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _invalid(file, "YAML", exc) from None
    return task_from_document(doc)


def _invalid(file: Path, language: str, exc: Exception) -> ConfigError:
    return ConfigError(f"task file {str(file)!r} is not valid {language}: {str(exc).splitlines()[0]}")


def task_from_document(doc: Any) -> Task:
    if not isinstance(doc, dict):
        raise ConfigError("a task file is a map with name, source, target, migration_type, ...")
    for key in doc:
        if key not in _TOP_KEYS:
            raise ConfigError(f"unknown key; allowed keys: {', '.join(sorted(_TOP_KEYS))}", str(key))
    for key in ("name", "source", "target"):
        if key not in doc:
            raise ConfigError("is required", key)
    name = doc["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}", name):
        raise ConfigError("task names use letters, digits, '_', '.', '-' (at most 200)", "name")
    migration_type = doc.get("migration_type", "full-load")
    if migration_type not in MIGRATION_TYPES:
        raise ConfigError(f"must be one of {', '.join(MIGRATION_TYPES)}", "migration_type")
    mappings_doc = doc.get("table_mappings")
    if isinstance(mappings_doc, str):
        try:
            mappings_doc = json.loads(mappings_doc)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"is not valid JSON: {exc.msg}", "table_mappings") from None
    settings, warnings = parse_settings(doc.get("settings"))
    start = doc.get("cdc_start_position")
    if start is not None and (not isinstance(start, str) or not start.strip()):
        raise ConfigError(
            "is a position in the source's own syntax, e.g. 16/B374D848 or mysql-bin.000003:4", "cdc_start_position"
        )
    start_time = _start_time(doc.get("cdc_start_time"))
    if start_time is not None and start:
        raise ConfigError("give cdc_start_position or cdc_start_time, not both", "cdc_start_time")
    stop = doc.get("cdc_stop_position")
    if stop is not None and not isinstance(stop, str):
        raise ConfigError("write it as server_time:YYYY-MM-DDTHH:MM:SS or commit_time:...", "cdc_stop_position")
    if (start or stop or start_time) and migration_type == "full-load":
        raise ConfigError(
            "applies to the cdc and full-load-and-cdc migration types only",
            "cdc_start_position" if start else "cdc_stop_position",
        )
    return Task(
        name=name,
        source=parse_endpoint(expand_env(doc["source"], "source"), "source"),
        target=parse_endpoint(expand_env(doc["target"], "target"), "target"),
        migration_type=migration_type,
        mappings=parse_mappings(mappings_doc),
        settings=settings,
        warnings=warnings,
        cdc_start_position=start,
        cdc_start_time=start_time,
        cdc_stop_position=parse_stop_point(stop) if stop else None,
        type_mappings=parse_type_mappings(doc.get("type_mappings")),
        document=doc,
    )


def expand_env(value: Any, path: str) -> Any:
    """``${VAR}`` in endpoint strings -> the environment's value; a missing variable is an error.

    Inside a URL the value is percent-encoded, so a password may hold ``@``, ``:`` or ``/``.
    """
    if isinstance(value, str):
        in_url = "://" in value

        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise ConfigError(f"environment variable {var} is not set", path)
            return quote(os.environ[var], safe="") if in_url else os.environ[var]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, f"{path}.{k}") for k, v in value.items()}
    return value
