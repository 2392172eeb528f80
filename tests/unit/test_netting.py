"""Batch apply's fold of a window of changes into net changes per key."""

from __future__ import annotations

import random
from typing import Any

from conveyor.endpoints.sql.netting import net_changes
from conveyor.model.changes import UNCHANGED, Change, Op
from conveyor.model.schema import TableId

T = TableId("public", "t")
COLS = ("id", "name", "big")


def ch(op: Op, before: Any = None, after: Any = None, columns: tuple[str, ...] = COLS) -> Change:
    return Change(op, T, columns, before, after, position=None)


def test_inserted_then_updated_is_one_insert_and_inserted_then_deleted_is_nothing() -> None:
    net = net_changes(
        [
            ch(Op.INSERT, after=(1, "a", "x")),
            ch(Op.UPDATE, before=(1, UNCHANGED, UNCHANGED), after=(1, "b", UNCHANGED)),
            ch(Op.INSERT, after=(2, "gone", None)),
            ch(Op.DELETE, before=(2, UNCHANGED, UNCHANGED)),
        ],
        ("id",),
    )
    assert net is not None
    assert (net.deletes, net.inserts, net.updates) == ([], [(1, "b", "x")], [])


def test_updates_of_an_existing_row_merge_and_keep_unsent_columns() -> None:
    net = net_changes(
        [
            ch(Op.UPDATE, before=(1, UNCHANGED, UNCHANGED), after=(1, "b", UNCHANGED)),
            ch(Op.UPDATE, before=(1, UNCHANGED, UNCHANGED), after=(1, "c", UNCHANGED)),
        ],
        ("id",),
    )
    assert net is not None
    assert (net.deletes, net.inserts, net.updates) == ([], [], [((1,), (1,), ("c",))])


def test_deleted_then_inserted_is_a_replacement_and_updated_then_deleted_a_delete() -> None:
    net = net_changes(
        [
            ch(Op.DELETE, before=(1, UNCHANGED, UNCHANGED)),
            ch(Op.INSERT, after=(1, "new", None)),
            ch(Op.UPDATE, before=(2, UNCHANGED, UNCHANGED), after=(2, "z", UNCHANGED)),
            ch(Op.DELETE, before=(2, UNCHANGED, UNCHANGED)),
        ],
        ("id",),
    )
    assert net is not None
    assert sorted(net.deletes) == [(1,), (2,)]
    assert (net.inserts, net.updates) == ([(1, "new", None)], [])


def test_a_key_update_moves_the_whole_row_when_the_window_knows_it() -> None:
    net = net_changes(
        [
            ch(Op.INSERT, after=(1, "a", "x")),
            ch(Op.UPDATE, before=(1, UNCHANGED, UNCHANGED), after=(5, "a", UNCHANGED)),
            ch(Op.UPDATE, before=(7, "q", "w"), after=(8, "q", "w")),  # full before image: exact
        ],
        ("id",),
    )
    assert net is not None
    assert net.deletes == [(7,)]
    assert sorted(net.inserts) == [(5, "a", "x"), (8, "q", "w")]


def test_what_cannot_be_folded_exactly_is_left_to_the_ordered_path() -> None:
    moved_without_toast = ch(Op.UPDATE, before=(1, UNCHANGED, UNCHANGED), after=(2, "a", UNCHANGED))
    assert net_changes([moved_without_toast], ("id",)) is None
    assert net_changes([ch(Op.INSERT, after=(1, "a", None))], ()) is None  # no key: a multiset
    assert net_changes([ch(Op.TRUNCATE)], ("id",)) is None
    assert (
        net_changes([ch(Op.INSERT, after=(1, "a", None)), ch(Op.INSERT, after=(2, "b"), columns=COLS[:2])], ("id",))
        is None
    )


def test_random_windows_fold_to_the_state_the_changes_in_order_give() -> None:
    """Any window the fold accepts, applied as net changes to the table before it, gives exactly the
    table its changes give one by one (whole-row and partial updates, key moves, deletes, re-inserts)."""
    rng = random.Random(7)
    for _ in range(2000):
        table: dict[int, tuple[Any, ...]] = {k: (k, f"n{k}", f"b{k}") for k in range(4)}
        start = dict(table)
        changes = []
        for _ in range(rng.randint(1, 8)):
            present, absent = sorted(table), [k for k in range(6) if k not in table]
            choice = rng.random()
            if absent and (choice < 0.25 or not present):
                row = (rng.choice(absent), f"i{rng.random():.3f}", f"x{rng.random():.3f}")
                changes.append(ch(Op.INSERT, after=row))
                table[row[0]] = row
            elif choice < 0.45:
                k = rng.choice(present)
                changes.append(ch(Op.DELETE, before=table.pop(k)))
            else:
                k = rng.choice(present)
                old = table[k]
                new_key = rng.choice(absent) if absent and rng.random() < 0.2 else k
                sent = (new_key, f"u{rng.random():.3f}", f"y{rng.random():.3f}")
                after = tuple(v if rng.random() < 0.6 or i == 0 else UNCHANGED for i, v in enumerate(sent))
                changes.append(ch(Op.UPDATE, before=old, after=after))
                del table[k]
                table[new_key] = tuple(o if a is UNCHANGED else a for o, a in zip(old, after, strict=True))
        net = net_changes(changes, ("id",))
        if net is None:
            continue  # left to the ordered path
        result = dict(start)
        for (key,) in net.deletes:
            del result[key]
        for row in net.inserts:
            assert row[0] not in result
            result[row[0]] = tuple(row)
        for (key,), indexes, values in net.updates:
            updated = list(result[key])
            for i, v in zip(indexes, values, strict=True):
                updated[i] = v
            result[key] = tuple(updated)
        assert result == table, changes
