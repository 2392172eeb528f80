"""Changes: what a change stream (CDC) delivers, one row operation at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any, Final, NamedTuple

from conveyor.model.rows import Row
from conveyor.model.schema import Column, TableId


class Op(StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"


class _Unchanged:
    """A column value the source did not send (PostgreSQL TOAST not modified by an UPDATE): the
    target keeps what it has. Never NULL, never a placeholder written to the target."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()


class Change(NamedTuple):
    """One row change in canonical values, in ``columns`` order.

    ``before`` is the old row (the key columns only, or the full row with REPLICA IDENTITY FULL /
    binlog_row_image=FULL; None for inserts); ``after`` the new row (None for deletes); columns the
    source did not send are ``UNCHANGED``. ``position`` is the engine's JSON-serialisable position of
    the change. Its transaction's commit (position, time, id) is the ``Transaction``'s: a decoder makes
    the change as its message arrives, before the commit is known.

    A named tuple, not a frozen dataclass: one is made per source change, and a frozen dataclass's
    ``__init__`` (a ``object.__setattr__`` per field) cost more than decoding the change.
    """

    op: Op
    table: TableId
    columns: tuple[str, ...]
    before: Row | None
    after: Row | None
    position: Any


#: a Change from a tuple of its fields, without the Python-level ``__new__`` a named tuple's constructor runs
#: (one per source change: the decoders' hot path)
change_from_fields: Callable[[tuple[Any, ...]], Change] = partial(tuple.__new__, Change)


@dataclass(slots=True)
class Transaction:
    """A source transaction, whole: applied atomically on a transactional target.

    A big one may come in parts (memory stays bounded): every part but the last has ``partial`` set
    and no ``commit_position``; the parts of one transaction arrive one after the other, and the
    target commits only after the last."""

    txid: int | str | None
    commit_position: Any
    commit_ts: datetime | None
    changes: list[Change] = field(default_factory=list)
    partial: bool = False
    #: bytes the source sent for ``changes`` (row images as logged): what memory bounds are counted in
    size: int = 0


#: ``SchemaChanged.description`` of a table the source created that the capture does not follow (MySQL:
#: its CREATE TABLE statement; the capture follows the tables selected when the task first ran)
CREATED = "created on the source"
#: ``SchemaChanged.description`` (its start) of a table a statement changed whose rows the log does not
#: hold (MySQL: DML logged as SQL by a session whose binlog_format is not ROW); such an event ``suspends``
STATEMENT_LOGGED = "changed by a statement logged as SQL, not as rows"


@dataclass(frozen=True, slots=True)
class SchemaChanged:
    """A captured table's definition changed (DDL on the source), reported before the first change
    written under the new definition. ``columns`` is the table as it is from ``position`` on."""

    table: TableId
    #: the table's name before the change (differs on a rename)
    old_table: TableId
    columns: tuple[Column, ...]
    position: Any
    #: what changed, for people ("added email (text), dropped note")
    description: str
    #: the statement, where the source logs one (MySQL); None where it does not (PostgreSQL)
    ddl: str | None = None
    #: the columns renamed (old name, new name) where the source knows exactly (MySQL: the statement's
    #: clauses; PostgreSQL: the catalog's column numbers), so any other column gone was dropped; None
    #: where it does not (a column gone while another came of its type is then taken for a rename)
    renamed: tuple[tuple[str, str], ...] | None = None
    #: the change cannot be followed on the target (rows it removed are not in the log, the key the target
    #: finds rows by changed, the table was dropped): the consumer suspends the table, ``description``
    #: saying why
    suspends: bool = False


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to deliver for a while; the consumer may check for stop requests.

    Every transaction that committed before ``position`` has been delivered, so once everything
    delivered is stored in the target, ``position`` is a valid checkpoint to store and acknowledge:
    a task on quiet tables must not hold the source's log forever."""

    position: Any
