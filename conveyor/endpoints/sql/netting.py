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
    """Fold one table's changes (in source order) by ``key``; None when they cannot be folded.

    Most keys are changed once in a window: such a change is kept as it is, and only a key's second
    change (or a change that moves a row to another key) folds into an ``_Entry``."""
    if not changes or not key:
        return None
    columns = changes[0].columns
    try:
        positions = [columns.index(k) for k in key]
        key_of = _key_getter(positions)
    except ValueError:
        return None
    insert, delete, update = Op.INSERT, Op.DELETE, Op.UPDATE
    entries: dict[Key, Change | _Entry] = {}
    for change in changes:
        op = change.op
        if change.columns is not columns and change.columns != columns:
            return None
        if op is insert:
            assert change.after is not None
            if UNCHANGED in change.after:
                return None
            k = key_of(change.after)
        elif op is delete or op is update:
            image = change.before if change.before is not None else change.after
            assert image is not None
            k = key_of(image)
            if UNCHANGED in k:
                return None
            if op is update:
                assert change.after is not None
                new_key = key_of(change.after)
                if new_key != k:
                    if UNCHANGED in new_key:
                        return None
                    if not _fold(entries, change, k, new_key):
                        return None
                    continue
        else:
            return None  # TRUNCATE
        if k not in entries:
            entries[k] = change
        elif not _fold(entries, change, k, k):
            return None
    net = NetChanges(columns, tuple(key))
    # key columns keep their values: leaving them out of SET keeps PostgreSQL's updates HOT
    non_key = tuple(i for i in range(len(columns)) if i not in positions)
    pick = _key_getter(list(non_key)) if non_key else None
    deletes, inserts, updates = net.deletes, net.inserts, net.updates
    for k, entry in entries.items():
        if type(entry) is Change:  # the key's only change
            op, after = entry.op, entry.after
            if op is insert:
                inserts.append(tuple(after))  # type: ignore[arg-type]
                continue
            if op is delete:
                deletes.append(k)
                continue
            assert after is not None
            if UNCHANGED not in after:  # a whole row: every column but the key's
                if pick is not None:
                    updates.append((k, non_key, pick(after)))
                continue
            folded = _entry(entries, k)  # columns not sent: the fold state knows which to set
            assert folded is not None
            entry = folded
        assert isinstance(entry, _Entry)
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


def _entry(entries: dict[Key, Change | _Entry], k: Key) -> _Entry | None:
    """The fold state of key ``k``: a change kept as it is becomes one first."""
    found = entries.get(k)
    if found is None or isinstance(found, _Entry):
        return found
    if found.op is Op.INSERT:
        entry = _Entry(False, found.after)
    elif found.op is Op.DELETE:
        entry = _Entry(True, deleted=True)
    else:  # an update that kept its key
        entry = _Entry(True)
        assert found.after is not None
        _merge(entry, found.after)
    entries[k] = entry
    return entry


def _fold(entries: dict[Key, Change | _Entry], change: Change, old_key: Key, new_key: Key) -> bool:
    """Fold ``change`` (whose row was at ``old_key``, and is at ``new_key`` after it) into ``entries``;
    False when the fold cannot express it exactly."""
    after = change.after
    if change.op is Op.INSERT:
        assert after is not None
        entry = _entry(entries, new_key)
        if entry is None:
            entries[new_key] = _Entry(False, after)
        else:  # after a delete in this window: the row is replaced
            entry.row, entry.updates, entry.deleted = after, None, False
        return True
    entry = _entry(entries, old_key)
    if entry is None:
        entry = entries[old_key] = _Entry(True)
    if change.op is Op.DELETE:
        entry.row, entry.updates, entry.deleted = None, None, True
        return True
    assert after is not None
    if entry.deleted:
        return False  # an update of a row this window deleted: not a history the fold can trust
    if new_key == old_key:
        _merge(entry, after)
        return True
    # the row moves to another key: delete it here, insert it there, whole
    moved: Sequence[Any] = after
    if UNCHANGED in moved:
        if entry.row is None:
            return False  # columns not sent, and the window never saw them
        moved = [old if new is UNCHANGED else new for old, new in zip(entry.row, moved, strict=True)]
    entry.row, entry.updates, entry.deleted = None, None, True
    target = _entry(entries, new_key)
    if target is None:
        entries[new_key] = _Entry(False, moved)
    else:
        target.row, target.updates, target.deleted = moved, None, False
    return True


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
