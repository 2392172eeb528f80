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
    comment: str | None = field(default=None, compare=False)
    #: an identity's last value handed out on the source (None: unknown, or never used): the target's
    #: identity goes on after it, even when the rows holding the highest values are gone
    identity_last: int | None = field(default=None, compare=False)
    #: the value the table's rows took when the column was added with a default, as a constant in the
    #: source's SQL, where the source keeps it (PostgreSQL's ``attmissingval``): it may differ from
    #: ``default``, changed or dropped since, and it is known even for a default such as ``now()``
    filled: str | None = field(default=None, compare=False)


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
class Check:
    """A CHECK constraint; ``expression`` in the SQL of the engine that described it (``Table.dialect``)."""

    name: str
    expression: str


@dataclass(frozen=True, slots=True)
class GeneratedColumn:
    """A column the engine computes from ``expression``; not data to copy, so not in ``Table.columns``."""

    name: str
    type: ColumnType
    expression: str
    stored: bool = True
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class ExpressionIndex:
    """An index that is not a plain column list: elements that are expressions, a partial index's
    predicate, or an access method other than the b-tree. Elements are SQL (columns quoted)."""

    name: str
    elements: tuple[str, ...]
    unique: bool = False
    predicate: str | None = None
    method: str = "btree"
    definition: str = ""  # the source's own statement, for the report


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
    # schema conversion's parts (``conveyor.convert``); not compared, so change capture ignores them
    checks: tuple[Check, ...] = field(default=(), compare=False)
    generated_columns: tuple[GeneratedColumn, ...] = field(default=(), compare=False)
    expression_indexes: tuple[ExpressionIndex, ...] = field(default=(), compare=False)
    comment: str | None = field(default=None, compare=False)
    #: the engine whose SQL the defaults, checks and expressions are written in (``ColumnType.engine``'s names)
    dialect: str = field(default="", compare=False)
    #: schema conversion made this the target's table: defaults, checks, generated columns, expression
    #: indexes and comments are in the target's SQL, and the applier creates them
    converted: bool = field(default=False, compare=False)

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


@dataclass(frozen=True, slots=True)
class SequenceDef:
    """A standalone sequence (one owned by an identity or serial column goes with its column)."""

    id: TableId
    start: int = 1
    increment: int = 1
    min_value: int | None = None
    max_value: int | None = None
    cycle: bool = False
    last_value: int | None = None  # None: never used


@dataclass(frozen=True, slots=True)
class View:
    id: TableId
    definition: str  # the SELECT, in the engine's SQL
    materialized: bool = False
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class EnumType:
    """A named enum type (PostgreSQL); MySQL enums live in their columns' types."""

    id: TableId
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Routine:
    """A trigger, procedure or function: not converted, listed with its source text."""

    id: TableId
    kind: str  # "trigger", "procedure", "function"
    source: str
    table: TableId | None = None  # a trigger's table


@dataclass(frozen=True, slots=True)
class SchemaObjects:
    """What a schema holds besides tables, as ``Introspector.objects`` reads it."""

    dialect: str
    views: tuple[View, ...] = ()
    sequences: tuple[SequenceDef, ...] = ()
    enums: tuple[EnumType, ...] = ()
    routines: tuple[Routine, ...] = ()
