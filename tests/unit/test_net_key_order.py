"""Batch apply sends a table's net updates in key order where the key is integers."""

from __future__ import annotations

from typing import Any

from conveyor.endpoints.sql.changes import ChangeTarget, _in_key_order
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.types import ColumnType, LogicalType

INT, TEXT = ColumnType(LogicalType.INTEGER), ColumnType(LogicalType.TEXT)


def target(key: tuple[str, ...], types: dict[str, ColumnType]) -> ChangeTarget:
    table = Table(
        TableId("public", "t"),
        tuple(Column(n, t, nullable=n not in key) for n, t in types.items()),
        Key("t_pkey", key) if key else None,
    )
    return ChangeTarget(table, [None] * len(types))


def updates(*keys: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], tuple[int, ...], tuple[Any, ...]]]:
    return [(k, (1,), (f"v{i}",)) for i, k in enumerate(keys)]


def test_only_a_key_of_integers_is_sorted() -> None:
    assert target(("id",), {"id": INT, "name": TEXT}).integer_key
    assert target(("a", "b"), {"a": INT, "b": INT, "name": TEXT}).integer_key
    assert not target(("a", "b"), {"a": INT, "b": TEXT}).integer_key
    assert not target((), {"id": INT}).integer_key


def test_numbers_and_their_text_sort_by_value_with_their_values() -> None:
    numbers = updates((30,), (2,), (100,))
    _in_key_order(numbers)
    assert numbers == [((2,), (1,), ("v1",)), ((30,), (1,), ("v0",)), ((100,), (1,), ("v2",))]
    texts = updates(("30",), ("-2",), ("100",), ("9",))  # a PostgreSQL source's own text: numeric order
    _in_key_order(texts)
    assert [k for (k,), _, _ in texts] == ["-2", "9", "30", "100"]
    composite = updates((2, 1), (1, 10), (1, 9))
    _in_key_order(composite)
    assert [k for k, _, _ in composite] == [(1, 9), (1, 10), (2, 1)]


def test_a_key_that_is_no_number_leaves_the_order_as_it_came() -> None:
    odd = updates(("3",), ("x",), ("1",))
    _in_key_order(odd)
    assert [k for (k,), _, _ in odd] == ["3", "x", "1"]
