"""A source table's new column list -> the column changes a target can follow, or why it cannot.

During CDC a source reports a table's whole column list after DDL (``SchemaChanged``), and which
columns were renamed where it knows (``SchemaChanged.renamed``: MySQL's statements; PostgreSQL's column
numbers while its catalog still shows the definition the stream reached). Where it does not (relation
messages never say "rename", and several statements may hide behind one message), ``diff_table``
recovers the changes by these rules:

* A name in both lists is the same column; its type may only widen (``widens``), and NOT NULL may
  become NULL but not the other way round.
* The columns kept by name anchor the lists: every other column belongs to the gap after the
  nearest kept column before it (or the head). Renamed columns keep their place and order, so within
  a gap each new column is matched, in order, to the next gone column of the same type: one column
  renamed. Any other gone column was dropped, any other new one added (PostgreSQL appends them).
* A gap is ambiguous when a dropped column could be one of the gap's new columns (same or widened
  type): a rename next to a drop, or a rename with a type change; and so is a rename after the last
  kept column, which looks exactly like a drop and an add (PostgreSQL appends added columns). Guessing
  wrong would give the new column the old one's values, so it is reported instead.
* Unsupported: narrowing or incompatible types, NULL -> NOT NULL, a primary-key column renamed or
  dropped, a column added NOT NULL without a default (the source's existing rows took a value that
  the change stream never carries). A column added with a default is followed where the target can
  fill the existing rows with the same value: ``convert.added_default`` decides. Table renames are the
  runner's to see (``SchemaChanged.table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from conveyor.model.schema import Column, ForeignKey, Index, Key, Table
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L


@dataclass(frozen=True, slots=True)
class AddColumn:
    column: Column


@dataclass(frozen=True, slots=True)
class DropColumn:
    name: str


@dataclass(frozen=True, slots=True)
class RenameColumn:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class WidenColumn:
    """The column's new definition: a wider type, NOT NULL relaxed to NULL, or both."""

    column: Column


ColumnChange = AddColumn | DropColumn | RenameColumn | WidenColumn

#: logical types whose ``length`` bounds their values (fixed BINARY and BIT are left out: a longer
#: one pads existing values, which changes them)
_LENGTH_BOUND = frozenset({L.CHAR, L.VARCHAR, L.VARBINARY, L.TEXT, L.BLOB})
#: logical type -> a wider logical type that holds all its values unchanged
_WIDER_KIND = {L.VARCHAR: L.TEXT, L.VARBINARY: L.BLOB}
#: logical types whose ``precision`` is fractional-second digits (None: the engine's maximum)
_FRACTIONAL = frozenset({L.TIME, L.TIMESTAMP, L.TIMESTAMPTZ})


def shape(t: ColumnType) -> ColumnType:
    """The type without its source spelling: two engines (or a catalog and a relation message) may
    spell one type differently (``int4`` / ``integer``)."""
    element = shape(t.element) if t.element is not None else None
    return replace(t, native="", engine="", extra=(), element=element)


def widens(old: ColumnType, new: ColumnType) -> bool:
    """Every value of ``old`` is a value of ``new``, unchanged (the same type counts)."""
    if shape(old) == shape(new):
        return True
    if old.logical is L.INTEGER and new.logical is L.INTEGER:
        lo, hi = old.integer_range()
        new_lo, new_hi = new.integer_range()
        return new_lo <= lo and hi <= new_hi
    if old.logical is L.DECIMAL and new.logical is L.DECIMAL:
        if new.precision is None:
            return True
        if old.precision is None:
            return False
        old_scale, new_scale = old.scale or 0, new.scale or 0
        return new_scale >= old_scale and new.precision - new_scale >= old.precision - old_scale
    if old.logical is L.FLOAT and new.logical is L.FLOAT:
        return (new.bits or 64) >= (old.bits or 64)
    if old.logical in _LENGTH_BOUND and new.logical in (old.logical, _WIDER_KIND.get(old.logical)):
        return _at_most(old.length, new.length)
    if old.logical in _FRACTIONAL and new.logical is old.logical:
        return _at_most(old.precision, new.precision)
    if old.logical in (L.ENUM, L.SET) and new.logical is old.logical:
        return new.values[: len(old.values)] == old.values  # members appended, none removed or moved
    return False


def _at_most(old: int | None, new: int | None) -> bool:
    """A bound that is None is unlimited."""
    return new is None or (old is not None and old <= new)


def diff_table(
    old: Table, new_columns: Sequence[Column], renamed: Sequence[tuple[str, str]] | None = None
) -> tuple[list[ColumnChange], list[str]]:
    """The supported changes from ``old`` to ``new_columns``, in an order that applies (drops,
    renames, widenings, adds: a new name never meets an old one), and a reason for each unsupported
    change (empty when the target can follow). ``renamed``: the renames (old name, new name) where the
    source knows them (``SchemaChanged.renamed``): every other column gone was dropped, every other new
    one added; None: inferred by the rules above."""
    old_names = set(old.column_names)
    new_by_name = {c.name: c for c in new_columns}
    key = set(old.primary_key.columns) if old.primary_key else set()
    drops: list[ColumnChange] = []
    renames: list[ColumnChange] = []
    widenings: list[ColumnChange] = []
    adds: list[ColumnChange] = []
    reasons: list[str] = []

    for column in old.columns:
        if column.name in new_by_name:
            reason = _column_change(column, new_by_name[column.name], column.name in key, widenings)
            reasons += [reason] if reason else []

    tail: list[Column] = []  # the gone columns after the last kept one
    if renamed is None:
        old_gaps = _gaps(old.columns, new_by_name)
        new_gaps = _gaps(new_columns, old_names)
        groups = [(old_gaps.get(a, []), new_gaps.get(a, [])) for a in dict.fromkeys([*old_gaps, *new_gaps])]
        kept = [c.name for c in old.columns if c.name in new_by_name]
        tail = old_gaps.get(kept[-1] if kept else None, [])
    else:
        groups = [
            ([c for c in old.columns if c.name not in new_by_name], [c for c in new_columns if c.name not in old_names])
        ]
        # a swap, or a name reused at once: the names alone would pair the wrong columns
        old_folded, new_folded = {n.casefold() for n in old_names}, {c.name.casefold() for c in new_columns}
        reasons += [
            f"column {o} was renamed to {n} while a column of that name stays: not followed"
            for o, n in renamed
            if o.casefold() != n.casefold() and (o.casefold() in new_folded or n.casefold() in old_folded)
        ]
    for gone, fresh in groups:
        pairs = _match(gone, fresh) if renamed is None else _named(gone, fresh, renamed)
        renamed_from, renamed_to = {g.name for g, _ in pairs}, {f.name for _, f in pairs}
        dropped = [g for g in gone if g.name not in renamed_from]
        added = [f for f in fresh if f.name not in renamed_to]
        if renamed is None and (
            any(widens(g.type, f.type) for g in dropped for f in fresh) or any(g in tail for g, _ in pairs)
        ):
            reasons.append(
                f"cannot tell which of {', '.join(g.name for g in gone)} were dropped and which renamed to "
                f"{', '.join(f.name for f in fresh)}"
            )
            continue
        for g, f in pairs:
            if g.name in key:
                reasons.append(f"primary key column {g.name} was renamed to {f.name}")
                continue
            renames.append(RenameColumn(g.name, f.name))
            reason = _column_change(g, f, False, widenings)
            reasons += [reason] if reason else []
        for g in dropped:
            if g.name in key:
                reasons.append(f"primary key column {g.name} was dropped")
            else:
                drops.append(DropColumn(g.name))
        for f in added:
            if not f.nullable and f.default is None and f.filled is None:
                reasons.append(
                    f"column {f.name} was added NOT NULL without a default: the source's existing rows hold a "
                    "value the change stream does not carry"
                )
            else:
                adds.append(AddColumn(f))
    return drops + renames + widenings + adds, reasons


def _column_change(old: Column, new: Column, in_key: bool, widenings: list[ColumnChange]) -> str | None:
    """Append the widening from ``old`` to ``new`` (renamed already) if there is one; the reason when
    the change is unsupported. Key columns are NOT NULL whatever a relation message says."""
    nullable = old.nullable if in_key else new.nullable
    if old.nullable and not nullable:
        return f"column {new.name} became NOT NULL"
    if not widens(old.type, new.type):
        return f"column {new.name} changed type from {old.type.describe()} to {new.type.describe()}, not a widening"
    if nullable != old.nullable or shape(old.type) != shape(new.type):
        widenings.append(WidenColumn(replace(new, nullable=nullable)))
    return None


def _match(gone: list[Column], fresh: list[Column]) -> list[tuple[Column, Column]]:
    """Each new column with the first gone column of the same type after the last match: renames keep
    the columns' order."""
    pairs, start = [], 0
    for f in fresh:
        for i in range(start, len(gone)):
            if shape(gone[i].type) == shape(f.type):
                pairs.append((gone[i], f))
                start = i + 1
                break
    return pairs


def _named(gone: list[Column], fresh: list[Column], renamed: Sequence[tuple[str, str]]) -> list[tuple[Column, Column]]:
    """The renames the source named, between columns gone and new ones (matched without regard to case:
    a MySQL statement may spell a column otherwise than its catalog)."""
    by_old, by_new = {g.name.casefold(): g for g in gone}, {f.name.casefold(): f for f in fresh}
    return [
        (by_old[o.casefold()], by_new[n.casefold()])
        for o, n in renamed
        if o.casefold() in by_old and n.casefold() in by_new
    ]


def _gaps(columns: Sequence[Column], kept: set[str] | dict[str, Column]) -> dict[str | None, list[Column]]:
    """Columns not in ``kept``, grouped under the nearest kept column before them (None: the head)."""
    gaps: dict[str | None, list[Column]] = {}
    anchor: str | None = None
    for column in columns:
        if column.name in kept:
            anchor = column.name
        else:
            gaps.setdefault(anchor, []).append(column)
    return gaps


def apply_change(table: Table, change: ColumnChange) -> Table:
    """``table`` after one change: what a target looks like once it ran it. A dropped column takes
    the keys, indexes and foreign keys over it along (as PostgreSQL's DROP COLUMN does)."""
    match change:
        case AddColumn(column):
            return replace(table, columns=(*table.columns, column))
        case WidenColumn(column):
            return replace(table, columns=tuple(column if c.name == column.name else c for c in table.columns))
        case RenameColumn(old, new):

            def names(columns: tuple[str, ...]) -> tuple[str, ...]:
                return tuple(new if c == old else c for c in columns)

            return replace(
                table,
                columns=tuple(replace(c, name=new) if c.name == old else c for c in table.columns),
                primary_key=replace(table.primary_key, columns=names(table.primary_key.columns))
                if table.primary_key
                else None,
                unique_keys=tuple(replace(k, columns=names(k.columns)) for k in table.unique_keys),
                indexes=tuple(replace(i, columns=names(i.columns)) for i in table.indexes),
                foreign_keys=tuple(replace(f, columns=names(f.columns)) for f in table.foreign_keys),
            )
        case DropColumn(name):

            def keeps(part: Key | Index | ForeignKey | None) -> bool:
                return part is not None and name not in part.columns

            return replace(
                table,
                columns=tuple(c for c in table.columns if c.name != name),
                primary_key=table.primary_key if keeps(table.primary_key) else None,
                unique_keys=tuple(k for k in table.unique_keys if keeps(k)),
                indexes=tuple(i for i in table.indexes if keeps(i)),
                foreign_keys=tuple(f for f in table.foreign_keys if keeps(f)),
            )
