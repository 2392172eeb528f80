"""Batch apply's net changes: many source changes to one table folded into what the target must do.

Within one target transaction only the final state of each row is visible, so a window of changes
(whole source transactions) reduces, per primary key, to one of: insert a row, update some columns
of an existing row, delete it, or replace it (delete, then insert the final row). Rows inserted and
deleted inside the window vanish; successive updates merge, later values winning.

A change the fold cannot express exactly makes the table ``None`` (the caller applies that batch in
source order instead): a table without a key (a multiset has no identity to fold by), an update
that moves a row to another key while columns of it were not sent (PostgreSQL TOAST), a TRUNCATE,
or changes written under two different column lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from conveyor.model.changes import UNCHANGED, Change, Op

Key = tuple[Any, ...]


@dataclass(slots=True)
class _Entry:
    #: the row existed on the target before the window (its first change was not an insert)
    existed: bool
    #: the final row (every column), or None when the row ends deleted / only partly known
    row: list[Any] | None = None
    #: for a row that existed and was only updated: column index -> new value
    updates: dict[int, Any] = field(default_factory=dict)
    deleted: bool = False


@dataclass
class NetChanges:
    """What one table needs, in this order: delete ``deletes`` (keys; ``expect`` of them must exist),
    insert ``inserts`` (full rows), update ``updates`` (key, column indexes, values)."""

    columns: tuple[str, ...]
    key: tuple[str, ...]
    deletes: list[Key] = field(default_factory=list)
    inserts: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Key, tuple[int, ...], tuple[Any, ...]]] = field(default_factory=list)


def net_changes(changes: Sequence[Change], key: Sequence[str]) -> NetChanges | None:
    """Fold one table's changes (in source order) by ``key``; None when they cannot be folded."""
    if not changes or not key:
        return None
    columns = changes[0].columns
    try:
        positions = [columns.index(k) for k in key]
        key_of = _key_getter(positions)
    except ValueError:
        return None
    entries: dict[Key, _Entry] = {}
    for change in changes:
        if change.columns != columns or change.op is Op.TRUNCATE:
            return None
        if change.op is Op.INSERT:
            assert change.after is not None
            if any(v is UNCHANGED for v in change.after):
                return None
            new_key = key_of(change.after)
            entry = entries.get(new_key)
            if entry is None:
                entries[new_key] = _Entry(existed=False, row=list(change.after))
            else:  # after a delete in this window: the row is replaced
                entry.row, entry.updates, entry.deleted = list(change.after), {}, False
            continue
        image = change.before if change.before is not None else change.after
        assert image is not None
        old_key = key_of(image)
        if any(v is UNCHANGED for v in old_key):
            return None
        entry = entries.get(old_key)
        if entry is None:
            entry = entries[old_key] = _Entry(existed=True)
        if change.op is Op.DELETE:
            entry.row, entry.updates, entry.deleted = None, {}, True
            continue
        assert change.after is not None
        if entry.deleted:
            return None  # an update of a row this window deleted: not a history the fold can trust
        new_key = key_of(change.after)
        if new_key == old_key or any(v is UNCHANGED for v in new_key):
            if new_key != old_key:
                return None
            _merge(entry, change.after)
            continue
        # the row moves to another key: delete it here, insert it there, whole
        moved = list(change.after)
        if any(v is UNCHANGED for v in moved):
            if entry.row is None:
                return None  # columns not sent, and the window never saw them
            moved = [old if new is UNCHANGED else new for old, new in zip(entry.row, moved, strict=True)]
        entry.row, entry.updates, entry.deleted = None, {}, True
        target = entries.get(new_key)
        if target is None:
            entries[new_key] = _Entry(existed=False, row=moved)
        else:
            target.row, target.updates, target.deleted = moved, {}, False
    net = NetChanges(columns, tuple(key))
    for k, entry in entries.items():
        if entry.existed and (entry.deleted or entry.row is not None):
            net.deletes.append(k)
        if entry.row is not None:
            net.inserts.append(tuple(entry.row))
        elif not entry.deleted:
            # key columns keep their values: leaving them out of SET keeps PostgreSQL's updates HOT
            indexes = tuple(sorted(i for i in entry.updates if i not in positions))
            if indexes:
                net.updates.append((k, indexes, tuple(entry.updates[i] for i in indexes)))
    return net


def _key_getter(positions: list[int]) -> Callable[[Sequence[Any]], Key]:
    """row -> its key tuple (``itemgetter`` returns a bare value for one position)."""
    if len(positions) == 1:
        (p,) = positions
        return lambda row: (row[p],)
    return itemgetter(*positions)


def _merge(entry: _Entry, after: Sequence[Any]) -> None:
    """An update that keeps the key: into the full row when the window has it, else into the column
    values to set (columns not sent stay as the target has them)."""
    if entry.row is not None:
        for i, value in enumerate(after):
            if value is not UNCHANGED:
                entry.row[i] = value
        return
    for i, value in enumerate(after):
        if value is not UNCHANGED:
            entry.updates[i] = value
