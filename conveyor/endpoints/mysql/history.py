"""The schema history of a MySQL / MariaDB change stream: each selected table as the binlog holds its
rows at one place (``TableSchema``), and those definitions as JSON, kept in the position a target
commit stores.

TABLE_MAP events carry column types but no names, and the catalog only knows each table as it is now.
A restart from a stored position must decode the rows after it by the definitions they were written
under, even where the table changed later (an ALTER the stream had not reached, or one made while the
task was stopped): so every position the stream hands out carries the definitions valid at it, and
whatever position the target committed gives them back. They change only at a schema change, so
a position refers to them by digest (``History.digest``): the target stores each distinct set once
(``ChangeApplier``'s shared position parts), not with every commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.endpoints.mysql.rowevents import Target
from conveyor.endpoints.mysql.types import ENGINE, to_logical
from conveyor.errors import TerminalError
from conveyor.model.schema import Column, Key, Table, TableId


@dataclass(frozen=True, slots=True)
class History:
    """The selected tables' definitions as JSON (``history_json``) and their digest (SHA-256 of the
    canonical JSON text), computed once: every position until the next schema change shares both."""

    tables: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        text = json.dumps(self.tables, sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "digest", hashlib.sha256(text.encode()).hexdigest())

    def __bool__(self) -> bool:
        return bool(self.tables)


@dataclass(slots=True)
class TableSchema:
    """A selected table as the stream currently decodes it."""

    table: Table
    #: per binlog column (every column of the table, generated ones too): where its value goes
    targets: tuple[Target | None, ...]
    version: int
    #: the table's default character set (for text columns a statement defines without one); "": not read yet
    charset: str = ""
    #: a statement this definition did not follow (it was read from the catalog instead), and why
    unfollowed: str = ""


def history_json(schemas: Mapping[TableId, TableSchema]) -> History:
    """The definitions as JSON: per binlog column ``[name, column type, nullable, default, identity,
    codec]``, or null for a column the rows leave out (a generated one)."""
    return History(tuple(_table_json(schemas[table_id]) for table_id in sorted(schemas)))


def _table_json(schema: TableSchema) -> dict[str, Any]:
    table = schema.table
    columns = iter(table.columns)
    slots: list[list[Any] | None] = []
    for target in schema.targets:
        if target is None:
            slots.append(None)
            continue
        column = next(columns)
        slots.append([column.name, column.type.native, column.nullable, column.default, column.identity, target.codec])
    data: dict[str, Any] = {"schema": table.id.schema, "name": table.id.name, "columns": slots}
    if table.primary_key is not None:
        data["key"] = list(table.primary_key.columns)
    if schema.charset:
        data["charset"] = schema.charset
    if schema.unfollowed:
        data["unfollowed"] = schema.unfollowed
    return data


def history_from_json(history: Sequence[Any]) -> dict[TableId, TableSchema]:
    """``history_json``'s definitions back; a history this version cannot read is a TerminalError."""
    try:
        return {schema.table.id: schema for schema in map(_table_from_json, history)}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TerminalError(
            f"the stored position's table definitions cannot be read ({exc!r}); it was stored by another version "
            "of Conveyor: run `conveyor cleanup` and reload the tables"
        ) from None


def _table_from_json(data: dict[str, Any]) -> TableSchema:
    columns: list[Column] = []
    targets: list[Target | None] = []
    for slot in data["columns"]:
        if slot is None:
            targets.append(None)
            continue
        name, native, nullable, default, identity, codec = slot
        column = Column(str(name), to_logical(str(native)), bool(nullable), default, bool(identity))
        columns.append(column)
        targets.append(Target(column.name, column.type, codec))
    key = data.get("key")
    table_id = TableId(str(data["schema"]), str(data["name"]))
    table = Table(table_id, tuple(columns), Key("PRIMARY", tuple(key)) if key is not None else None, dialect=ENGINE)
    return TableSchema(table, tuple(targets), 0, str(data.get("charset", "")), str(data.get("unfollowed", "")))
