"""Assessments of the selected source tables, from their descriptions (``Introspector.table``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from conveyor.assess.catalog import LOB_NO_KEY, NO_KEY, UNSUPPORTED_TYPES
from conveyor.convert.plan import NOT_COPIED
from conveyor.model.findings import Finding
from conveyor.model.schema import Table
from conveyor.model.types import LogicalType

#: tables named in one finding; the rest are counted
SHOWN = 10


def names(tables: Sequence[str]) -> str:
    shown = ", ".join(tables[:SHOWN])
    return shown if len(tables) <= SHOWN else f"{shown} and {len(tables) - SHOWN} more"


def _each(key: str, tables: Sequence[Table], describe: Callable[[Table], str | None]) -> list[Finding]:
    """One warning under ``key`` naming every table ``describe`` has something to say about."""
    said = [f"{t.id} ({text})" for t in tables if (text := describe(t))]
    return [Finding(key, f"{len(said)} table(s): {names(said)}", warning=True)] if said else []


def table_findings(tables: Sequence[Table], source: str, same_engine: bool, cdc: bool) -> list[Finding]:
    """``source``: the source's key family (``postgresql``, ``mysql``, ``mariadb``, ``sqlite``);
    ``same_engine``: the target is the source's engine (values travel unconverted); ``cdc``: the task
    captures changes."""
    found: list[Finding] = []
    if not same_engine:
        found += _each(UNSUPPORTED_TYPES.key, tables, lambda t: _unsupported(t, source))
    if source in ("mysql", "mariadb"):
        found += _each(
            f"{source}-check-table-storage-engine",
            tables,
            lambda t: f"engine {t.extra['engine']}" if t.extra.get("engine", "InnoDB").lower() != "innodb" else None,
        )
    if cdc:
        keyless = [t for t in tables if not t.row_key()]
        found += _each(NO_KEY.key, keyless, lambda t: "no primary or unique key")
        found += _each(
            LOB_NO_KEY.key,
            keyless,
            lambda t: ", ".join(c.name for c in t.columns if c.type.lob) or None,
        )
    return found


def _unsupported(table: Table, source: str) -> str | None:
    listed = table.extra.get("unsupported_columns")
    if listed:
        return f"{NOT_COPIED['unsupported_columns']}: {listed}"
    if source != "postgresql":
        return None
    user_types = [f"{c.name} ({c.type.native})" for c in table.columns if c.type.logical is LogicalType.DYNAMIC]
    if user_types:
        return f"types without an equivalent on the target, copied as their text form: {', '.join(user_types)}"
    return None
