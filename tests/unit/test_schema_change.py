"""diff_table: a source's new column list -> the changes a target can follow, or why it cannot."""

from __future__ import annotations

import pytest

from conveyor.convert.schema_change import (
    AddColumn,
    DropColumn,
    RenameColumn,
    WidenColumn,
    apply_change,
    diff_table,
    widens,
)
from conveyor.endpoints.postgres.capture import renames_by_number
from conveyor.model.schema import Column, Index, Key, Table, TableId
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

INT = ColumnType(L.INTEGER, bits=32)
BIGINT = ColumnType(L.INTEGER, bits=64)
TEXT = ColumnType(L.TEXT)


def varchar(n: int | None) -> ColumnType:
    return ColumnType(L.VARCHAR, length=n)


def decimal(p: int | None, s: int | None) -> ColumnType:
    return ColumnType(L.DECIMAL, precision=p, scale=s)


def table(*columns: Column, key: tuple[str, ...] = ("id",)) -> Table:
    return Table(
        TableId("public", "t"),
        (Column("id", INT, nullable=False), *columns),
        primary_key=Key("t_pkey", key) if key else None,
    )


def col(name: str, t: ColumnType = INT, nullable: bool = True) -> Column:
    return Column(name, t, nullable=nullable)


ID = col("id", INT, nullable=False)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (INT, BIGINT),
        (ColumnType(L.INTEGER, bits=16, unsigned=True), INT),
        (ColumnType(L.INTEGER, bits=32, unsigned=True), BIGINT),
        (varchar(10), varchar(50)),
        (varchar(10), varchar(None)),
        (varchar(10), TEXT),
        (ColumnType(L.CHAR, length=3), ColumnType(L.CHAR, length=8)),
        (ColumnType(L.VARBINARY, length=4), ColumnType(L.BLOB)),
        (decimal(10, 2), decimal(14, 2)),
        (decimal(10, 2), decimal(12, 4)),
        (decimal(10, 2), decimal(None, None)),
        (ColumnType(L.FLOAT, bits=32), ColumnType(L.FLOAT, bits=64)),
        (ColumnType(L.TIMESTAMP, precision=0), ColumnType(L.TIMESTAMP, precision=6)),
        (ColumnType(L.TIMESTAMP, precision=3), ColumnType(L.TIMESTAMP)),
        (ColumnType(L.ENUM, values=("a", "b")), ColumnType(L.ENUM, values=("a", "b", "c"))),
        # one type spelt by two describers
        (ColumnType(L.INTEGER, bits=32, native="int4", engine="postgresql"), ColumnType(L.INTEGER, bits=32)),
    ],
)
def test_widenings(old: ColumnType, new: ColumnType) -> None:
    assert widens(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (BIGINT, INT),
        (INT, ColumnType(L.INTEGER, bits=32, unsigned=True)),  # same size, loses the negatives
        (varchar(50), varchar(10)),
        (varchar(None), varchar(10)),
        (TEXT, varchar(100)),
        (decimal(10, 2), decimal(10, 4)),  # scale up, integer digits down
        (decimal(10, 2), decimal(12, 1)),  # scale down
        (decimal(None, None), decimal(30, 10)),
        (ColumnType(L.FLOAT, bits=64), ColumnType(L.FLOAT, bits=32)),
        (INT, ColumnType(L.FLOAT, bits=64)),  # another logical type
        (INT, decimal(20, 0)),
        (ColumnType(L.BINARY, length=4), ColumnType(L.BINARY, length=8)),  # pads existing values
        (ColumnType(L.TIMESTAMP), ColumnType(L.TIMESTAMP, precision=3)),
        (ColumnType(L.ENUM, values=("a", "b")), ColumnType(L.ENUM, values=("b", "a"))),
    ],
)
def test_not_widenings(old: ColumnType, new: ColumnType) -> None:
    assert not widens(old, new)


def test_unchanged_table_has_no_changes() -> None:
    old = table(col("a"), col("b", TEXT))
    assert diff_table(old, old.columns) == ([], [])


def test_add_drop_rename_widen() -> None:
    old = table(col("a"), col("b", varchar(10)), col("c", TEXT), col("d", decimal(10, 2), nullable=False))
    new = [ID, col("bb", varchar(10)), col("c", TEXT), col("d", decimal(14, 2)), col("e", TEXT)]
    changes, reasons = diff_table(old, new)
    assert reasons == []
    assert changes == [
        DropColumn("a"),
        RenameColumn("b", "bb"),
        WidenColumn(col("d", decimal(14, 2))),
        AddColumn(col("e", TEXT)),
    ]


def test_dropped_then_added_at_the_end_are_told_apart_by_the_kept_column_between() -> None:
    # PostgreSQL: DROP COLUMN a (same type as the new e), ADD COLUMN e: the kept b anchors both
    old = table(col("a", TEXT), col("b"))
    changes, reasons = diff_table(old, [ID, col("b"), col("e", TEXT)])
    assert (changes, reasons) == ([DropColumn("a"), AddColumn(col("e", TEXT))], [])


def test_renamed_in_place_then_added_columns() -> None:
    old = table(col("a", TEXT), col("k"))
    changes, reasons = diff_table(old, [ID, col("b", TEXT), col("k"), col("c", TEXT)])
    assert (changes, reasons) == ([RenameColumn("a", "b"), AddColumn(col("c", TEXT))], [])


def test_a_rename_of_the_last_column_is_told_from_a_drop_and_an_add_only_where_the_source_says() -> None:
    old, new = table(col("a", TEXT)), [ID, col("b", TEXT), col("c", TEXT)]
    assert diff_table(old, new)[1] == ["cannot tell which of a were dropped and which renamed to b, c"]
    assert diff_table(old, new, renamed=(("a", "b"),)) == ([RenameColumn("a", "b"), AddColumn(col("c", TEXT))], [])
    assert diff_table(old, new, renamed=()) == (
        [DropColumn("a"), AddColumn(col("b", TEXT)), AddColumn(col("c", TEXT))],
        [],
    )


def test_added_in_the_middle_mysql_after() -> None:
    old = table(col("a"), col("b"))
    changes, reasons = diff_table(old, [ID, col("a"), col("x", TEXT), col("b")])
    assert (changes, reasons) == ([AddColumn(col("x", TEXT))], [])


def test_other_type_in_the_same_place_is_a_drop_and_an_add() -> None:
    old = table(col("a"))
    changes, reasons = diff_table(old, [ID, col("b", TEXT)])
    assert (changes, reasons) == ([DropColumn("a"), AddColumn(col("b", TEXT))], [])


def test_renames_in_order_within_a_gap() -> None:
    old = table(col("a"), col("b", TEXT), col("k"))
    changes, reasons = diff_table(old, [ID, col("x"), col("y", TEXT), col("k")])
    assert (changes, reasons) == ([RenameColumn("a", "x"), RenameColumn("b", "y")], [])


def test_renamed_and_relaxed_to_null() -> None:
    old = table(col("a", TEXT, nullable=False), col("k"))
    changes, reasons = diff_table(old, [ID, col("b", TEXT), col("k")])
    assert (changes, reasons) == ([RenameColumn("a", "b"), WidenColumn(col("b", TEXT))], [])


@pytest.mark.parametrize(
    ("old_columns", "new_columns"),
    [
        # a and b gone, x (the type of both) appeared: which one was renamed?
        ((col("a"), col("b")), (col("x"),)),
        # a dropped and b renamed, or the reverse with the types swapped in place
        ((col("a"), col("b", TEXT)), (col("x", TEXT), col("y"))),
        # renamed and widened in one message, or dropped and added
        ((col("a"),), (col("x", BIGINT),)),
    ],
)
def test_ambiguous_gaps_are_reported(old_columns: tuple[Column, ...], new_columns: tuple[Column, ...]) -> None:
    changes, reasons = diff_table(table(*old_columns), [ID, *new_columns])
    assert changes == []
    assert len(reasons) == 1 and "cannot tell" in reasons[0]


def test_ambiguity_stays_in_its_gap() -> None:
    old = table(col("a"), col("b"), col("k", TEXT), col("c"), col("z"))
    changes, reasons = diff_table(old, [ID, col("x"), col("k", TEXT), col("cc"), col("z")])
    assert changes == [RenameColumn("c", "cc")]
    assert reasons == ["cannot tell which of a, b were dropped and which renamed to x"]


@pytest.mark.parametrize(
    ("new_columns", "reason"),
    [
        (
            (col("a", ColumnType(L.INTEGER, bits=16)),),
            "column a changed type from integer(32 bits) to integer(16 bits)",
        ),
        ((col("a", TEXT),), "column a changed type from integer(32 bits) to text, not a widening"),
        ((col("a", nullable=False),), "column a became NOT NULL"),
        ((col("a"), Column("n", INT, nullable=False)), "column n was added NOT NULL without a default"),
    ],
)
def test_unsupported_column_changes(new_columns: tuple[Column, ...], reason: str) -> None:
    changes, reasons = diff_table(table(col("a")), [ID, *new_columns])
    assert changes == []
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons


def test_primary_key_columns() -> None:
    old = table(col("a"))
    assert diff_table(old, [col("key", INT, nullable=False), col("a")]) == (
        [],
        ["primary key column id was renamed to key"],
    )
    assert diff_table(old, [col("a")]) == ([], ["primary key column id was dropped"])
    # widening a key column is supported; a relation message's NULL does not loosen it
    changes, reasons = diff_table(old, [col("id", BIGINT), col("a")])
    assert (changes, reasons) == ([WidenColumn(Column("id", BIGINT, nullable=False))], [])
    assert diff_table(old, [col("id"), col("a")]) == ([], [])


def test_supported_changes_come_with_the_reasons_for_the_rest() -> None:
    changes, reasons = diff_table(table(col("a"), col("b", TEXT)), [ID, col("a", BIGINT), col("b", ColumnType(L.BLOB))])
    assert changes == [WidenColumn(col("a", BIGINT))]
    assert reasons == ["column b changed type from text to blob, not a widening"]


def test_apply_change_follows_names_into_keys_and_indexes() -> None:
    old = Table(
        TableId("public", "t"),
        (ID, col("a"), col("b", TEXT)),
        primary_key=Key("t_pkey", ("id",)),
        unique_keys=(Key("t_a_key", ("a",)),),
        indexes=(Index("t_ab", ("a", "b")), Index("t_b", ("b",))),
    )
    renamed = apply_change(old, RenameColumn("a", "x"))
    assert renamed.column_names == ("id", "x", "b")
    assert renamed.unique_keys == (Key("t_a_key", ("x",)),)
    assert renamed.indexes[0].columns == ("x", "b")
    dropped = apply_change(renamed, DropColumn("b"))
    assert dropped.column_names == ("id", "x") and dropped.indexes == () and dropped.unique_keys == renamed.unique_keys
    widened = apply_change(dropped, WidenColumn(col("x", BIGINT)))
    assert widened.column("x").type == BIGINT
    assert apply_change(widened, AddColumn(col("y", TEXT))).column_names == ("id", "x", "y")


def test_renames_by_column_number_tell_a_rename_from_a_drop_and_an_add() -> None:
    before = {"id": 1, "q": 2, "r": 3}
    assert renames_by_number(before, ["id", "q", "r"], ["id", "q", "s"], {"id": 1, "q": 2, "s": 3}) == (("r", "s"),)
    assert renames_by_number(before, ["id", "q", "r"], ["id", "q", "s"], {"id": 1, "q": 2, "s": 4}) == ()
    assert renames_by_number(before, ["id", "q", "r"], ["id", "q", "r", "t"], {"id": 1, "q": 2, "r": 3}) == ()
    # renamed again, or a number the catalog no longer shows: not known
    assert renames_by_number(before, ["id", "q", "r"], ["id", "q", "s"], {"id": 1, "q": 2, "u": 3}) is None
    assert renames_by_number(None, ["id", "r"], ["id", "s"], {"id": 1, "s": 3}) is None


def test_known_renames_pair_only_the_named_columns() -> None:
    old = Table(TableId("s", "t"), (Column("id", INT), Column("q", INT)), Key("pk", ("id",)))
    assert diff_table(old, [Column("id", INT), Column("r", INT)])[1] == [
        "cannot tell which of q were dropped and which renamed to r"  # the last column: a drop and an add?
    ]
    said, reasons = diff_table(old, [Column("id", INT), Column("r", INT)], renamed=())
    assert said == [DropColumn("q"), AddColumn(Column("r", INT))] and not reasons
    said, reasons = diff_table(old, [Column("id", INT), Column("R", INT)], renamed=(("Q", "R"),))
    assert said == [RenameColumn("q", "R")] and not reasons
    swapped = [Column("id", INT), Column("q", INT)]
    assert diff_table(old, swapped, renamed=(("q", "id"), ("id", "q")))[1]  # a swap: not followed
