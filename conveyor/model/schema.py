"""Tables and their parts, as every engine describes them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from conveyor.model.types import ColumnType


@dataclass(frozen=True, slots=True, order=True)
class TableId:
    """``schema`` is the PostgreSQL schema, the MySQL database, or ``main`` in SQLite."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True
    default: str | None = None  # the source's default expression, verbatim
    identity: bool = False  # serial / identity / AUTO_INCREMENT / INTEGER PRIMARY KEY rowid alias


@dataclass(frozen=True, slots=True)
class Key:
    """A primary key or unique constraint."""

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: TableId
    ref_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"


@dataclass(frozen=True, slots=True)
class Table:
    id: TableId
    columns: tuple[Column, ...]
    primary_key: Key | None = None
    unique_keys: tuple[Key, ...] = ()
    indexes: tuple[Index, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    estimated_rows: int = 0
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def row_key(self) -> tuple[str, ...]:
        """Columns that identify a row: the primary key, else the first unique key on NOT NULL
        columns, else nothing (a multiset table)."""
        if self.primary_key:
            return self.primary_key.columns
        for uk in self.unique_keys:
            if all(not self.column(c).nullable for c in uk.columns):
                return uk.columns
        return ()

    def renamed(self, table_id: TableId) -> Table:
        return replace(self, id=table_id)
