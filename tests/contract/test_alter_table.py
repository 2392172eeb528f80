"""A source's column changes during CDC, followed on every target engine: the table gets the new
columns and types, existing rows keep their values, and a re-run after a crash changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from oracle import fetch
from schemas import execute_sql

from conveyor.convert.schema_change import (
    AddColumn,
    DropColumn,
    RenameColumn,
    WidenColumn,
    diff_table,
    widens,
)
from conveyor.endpoints.base import Introspector, PrepMode
from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.mysql.applier import CHANGE_COLUMN_SQL
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.model.schema import Column, Index, Key, Table, TableId
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

INT = ColumnType(L.INTEGER, bits=32)
BIGINT = ColumnType(L.INTEGER, bits=64)
TEXT = ColumnType(L.TEXT)
VARCHAR10 = ColumnType(L.VARCHAR, length=10)
VARCHAR50 = ColumnType(L.VARCHAR, length=50)

OLD_COLUMNS = (
    Column("id", INT, nullable=False),
    Column("name", VARCHAR10, nullable=False),
    Column("code", VARCHAR10),
    Column("qty", INT),
    Column("price", ColumnType(L.DECIMAL, precision=10, scale=2)),
    Column("ratio", ColumnType(L.FLOAT, bits=32)),
    Column("old_flag", ColumnType(L.INTEGER, bits=16)),
    Column("note", TEXT),
)
#: the source after DDL: name renamed to label and made nullable, old_flag dropped, extra added, the
#: key and four more columns widened
NEW_COLUMNS = (
    Column("id", BIGINT, nullable=False),
    Column("label", VARCHAR10),
    Column("code", VARCHAR50),
    Column("qty", BIGINT),
    Column("price", ColumnType(L.DECIMAL, precision=14, scale=2)),
    Column("ratio", ColumnType(L.FLOAT, bits=64)),
    Column("note", TEXT),
    Column("extra", TEXT),
)
READ = ("id", "label", "code", "qty", "price", "ratio", "note", "extra")


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def target(request: pytest.FixtureRequest) -> Iterator[tuple[str, SqlApplier, Introspector, Table, list[str]]]:
    """The ``items`` table made by the applier itself (so its types are what a task creates), with
    rows, a unique key on ``code`` and an index over the column that will be dropped."""
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param])
    config = parse_endpoint(url, "target")
    spec = engine_for(config)
    applier = spec.open_applier(config, spec.default_schema(config))
    assert isinstance(applier, SqlApplier)
    table = Table(
        TableId(spec.default_schema(config), "items"),
        OLD_COLUMNS,
        primary_key=Key("items_pkey", ("id",)),
        unique_keys=(Key("items_code_key", ("code",)),),
        indexes=(Index("items_qty_flag", ("qty", "old_flag")),),
    )
    natives = [applier.map_type(c.type) for c in table.columns]
    applier.prepare(table, natives, PrepMode.DROP_AND_CREATE)
    execute_sql(
        url,
        [
            "INSERT INTO items (id, name, code, qty, price, ratio, old_flag, note) VALUES "
            "(1, 'ann', 'a1', 5, 10.50, 0.5, 1, 'first'), (2, 'bob', NULL, NULL, NULL, NULL, NULL, NULL)"
        ],
    )
    assert applier.finish(table, natives) == []
    yield url, applier, spec.open_introspector(config), table, natives
    applier.close()


def rows(url: str) -> list[tuple[Any, ...]]:
    got = fetch(url, "items", READ, schema="public" if url.startswith("postgres") else None)
    # SQLite keeps DECIMAL(10,2) values as REAL
    return sorted((*r[:4], None if r[4] is None else Decimal(str(r[4])), *r[5:]) for r in got)


def test_every_kind_of_change_and_a_rerun(target: tuple[str, SqlApplier, Introspector, Table, list[str]]) -> None:
    url, applier, introspector, table, natives = target
    changes, reasons = diff_table(table, NEW_COLUMNS)
    assert reasons == []
    assert changes == [
        DropColumn("old_flag"),
        RenameColumn("name", "label"),
        WidenColumn(NEW_COLUMNS[0]),
        WidenColumn(NEW_COLUMNS[2]),
        WidenColumn(NEW_COLUMNS[3]),
        WidenColumn(NEW_COLUMNS[4]),
        WidenColumn(NEW_COLUMNS[5]),
        WidenColumn(NEW_COLUMNS[1]),  # NOT NULL relaxed, after the rename
        AddColumn(NEW_COLUMNS[7]),
    ]

    # a crash after the first statements (MySQL commits each), then the whole list again, then once more
    applier.alter_table(table, changes[:2], natives)
    after = applier.alter_table(table, changes, natives)
    assert applier.alter_table(table, changes, natives) == after
    assert after.column_names == READ
    assert after.unique_keys == table.unique_keys and after.indexes == ()

    got = introspector.table(table.id)
    assert got.column_names == READ
    for want, column in zip(NEW_COLUMNS, got.columns, strict=True):
        assert widens(want.type, column.type) and widens(column.type, want.type), (want, column)
        assert column.nullable == want.nullable, column
    assert [k.columns for k in got.unique_keys] + [i.columns for i in got.indexes if i.unique] == [("code",)]
    assert not [i for i in got.indexes if "old_flag" in i.columns]

    assert rows(url) == [
        (1, "ann", "a1", 5, Decimal("10.5"), 0.5, "first", None),
        (2, "bob", None, None, None, None, None, None),
    ]
    # the widened columns take what the old ones could not; the relaxed one takes NULL
    big = (2**40, None, "c" * 50, 2**40, Decimal("123456789012.25"), 1e300, None, "new")
    execute_sql(
        url,
        [
            "INSERT INTO items (id, label, code, qty, price, ratio, note, extra) "
            f"VALUES ({big[0]}, NULL, '{big[2]}', {big[3]}, {big[4]}, {big[5]}, NULL, 'new')"
        ],
    )
    assert rows(url)[-1] == big


@pytest.mark.parametrize("target", ["mysql"], indirect=True)
def test_rename_by_change_column(target: tuple[str, SqlApplier, Introspector, Table, list[str]]) -> None:
    """MySQL before 8.0 and MariaDB before 10.5 have no RENAME COLUMN: CHANGE with the definition."""
    url, applier, introspector, table, natives = target
    applier.rename_column_sql = CHANGE_COLUMN_SQL
    changes = [RenameColumn("name", "label"), RenameColumn("id", "key")]
    applier.alter_table(table, changes, natives)
    after = applier.alter_table(table, changes, natives)
    got = introspector.table(table.id)
    assert got.column_names[:2] == ("key", "label") == after.column_names[:2]
    assert got.primary_key is not None and got.primary_key.columns == ("key",)
    assert got.column("label") == Column("label", got.column("label").type, nullable=False)
    assert got.column("label").type.length == 10
    assert sorted(fetch(url, "items", ("key", "label"))) == [(1, "ann"), (2, "bob")]
