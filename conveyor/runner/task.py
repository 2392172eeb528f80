"""The task file: the user's contract (YAML or JSON, format in DESIGN.md)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from conveyor.endpoints.config import MySQLConfig, PostgresConfig, SQLiteConfig, parse_endpoint
from conveyor.errors import ConfigError
from conveyor.runner.settings import TaskSettings, parse_settings
from conveyor.transform.selection import TableMappings, parse_mappings

EndpointConfig = PostgresConfig | MySQLConfig | SQLiteConfig
MIGRATION_TYPES = ("full-load", "cdc", "full-load-and-cdc")
_TOP_KEYS = {"name", "source", "target", "migration_type", "table_mappings", "settings"}
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
    try:
        doc = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"task file {str(file)!r} is not valid {'JSON' if file.suffix == '.json' else 'YAML'}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return task_from_document(doc)


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
    return Task(
        name=name,
        source=parse_endpoint(expand_env(doc["source"], "source"), "source"),
        target=parse_endpoint(expand_env(doc["target"], "target"), "target"),
        migration_type=migration_type,
        mappings=parse_mappings(mappings_doc),
        settings=settings,
        warnings=warnings,
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
