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
    #: the final row (every column), or None when the row ends deleted / only partly known; the change's
    #: own tuple until a partial update merges into it
    row: Sequence[Any] | None = None
    #: for a row that existed and was only updated: column index -> new value (None: none yet); a list
    #: (every column, by index) once an update sent the whole row, which is the common case and cheaper
    updates: dict[int, Any] | list[Any] | None = None
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
    insert, delete, truncate = Op.INSERT, Op.DELETE, Op.TRUNCATE
    entries: dict[Key, _Entry] = {}
    for change in changes:
        op = change.op
        if (change.columns is not columns and change.columns != columns) or op is truncate:
            return None
        after = change.after
        if op is insert:
            assert after is not None
            if UNCHANGED in after:
                return None
            new_key = key_of(after)
            entry = entries.get(new_key)
            if entry is None:
                entries[new_key] = _Entry(False, after)
            else:  # after a delete in this window: the row is replaced
                entry.row, entry.updates, entry.deleted = after, None, False
            continue
        image = change.before if change.before is not None else after
        assert image is not None
        old_key = key_of(image)
        if UNCHANGED in old_key:
            return None
        entry = entries.get(old_key)
        if entry is None:
            entry = entries[old_key] = _Entry(True)
        if op is delete:
            entry.row, entry.updates, entry.deleted = None, None, True
            continue
        assert after is not None
        if entry.deleted:
            return None  # an update of a row this window deleted: not a history the fold can trust
        new_key = key_of(after)
        if new_key == old_key or UNCHANGED in new_key:
            if new_key != old_key:
                return None
            _merge(entry, after)
            continue
        # the row moves to another key: delete it here, insert it there, whole
        moved: Sequence[Any] = after
        if UNCHANGED in moved:
            if entry.row is None:
                return None  # columns not sent, and the window never saw them
            moved = [old if new is UNCHANGED else new for old, new in zip(entry.row, moved, strict=True)]
        entry.row, entry.updates, entry.deleted = None, None, True
        target = entries.get(new_key)
        if target is None:
            entries[new_key] = _Entry(False, moved)
        else:
            target.row, target.updates, target.deleted = moved, None, False
    net = NetChanges(columns, tuple(key))
    # key columns keep their values: leaving them out of SET keeps PostgreSQL's updates HOT
    non_key = tuple(i for i in range(len(columns)) if i not in positions)
    deletes, inserts, updates = net.deletes, net.inserts, net.updates
    for k, entry in entries.items():
        row = entry.row
        if entry.existed and (entry.deleted or row is not None):
            deletes.append(k)
        if row is not None:
            inserts.append(tuple(row))
        elif not entry.deleted and entry.updates:
            changed = entry.updates
            whole = isinstance(changed, list) or len(changed) == len(columns)
            indexes = non_key if whole else tuple(i for i in non_key if i in changed)
            if indexes:
                updates.append((k, indexes, tuple([changed[i] for i in indexes])))
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
    row = entry.row
    if row is not None:
        if UNCHANGED not in after:
            entry.row = after
        else:
            entry.row = [old if new is UNCHANGED else new for old, new in zip(row, after, strict=True)]
        return
    if entry.updates is None and UNCHANGED not in after:
        entry.updates = list(after)
        return
    updates: dict[int, Any] | list[Any] = entry.updates if entry.updates is not None else {}
    entry.updates = updates
    for i, value in enumerate(after):
        if value is not UNCHANGED:
            updates[i] = value
