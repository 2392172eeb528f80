"""Batch apply's fold of a window of changes into net changes per key."""

from __future__ import annotations

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
