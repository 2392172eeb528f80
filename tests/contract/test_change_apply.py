"""Applying change transactions on every target engine: exactly the source's rows, position with them."""

from __future__ import annotations

from typing import Any

import pytest
from oracle import fetch
from schemas import execute_sql

from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier, StaleLease
from conveyor.endpoints.sql.changes import ChangeApplier, ChangeTarget
from conveyor.model.changes import UNCHANGED, Change, Op, Transaction
from conveyor.model.schema import TableId

ITEMS = ("id", "name", "qty", "note")
BAG = ("a", "b")


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def target(request: pytest.FixtureRequest) -> tuple[str, ChangeApplier, SqlApplier, str]:
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param])
    execute_sql(
        url,
        [
            "CREATE TABLE items (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50), qty INTEGER, note TEXT)",
            "CREATE TABLE bag (a INTEGER, b VARCHAR(10))",
        ],
    )
    config = parse_endpoint(url, "target")
    spec = engine_for(config)
    schema = spec.default_schema(config)
    applier = spec.open_applier(config, schema)
    assert isinstance(applier, SqlApplier)
    intro = spec.open_introspector(config)
    targets = {}
    for name in ("items", "bag"):
        table = intro.table(TableId(schema, name))
        natives = [applier.map_type(c.type) for c in table.columns]
        targets[table.id] = ChangeTarget(
            table, [applier.encoder(c.type, n) for c, n in zip(table.columns, natives, strict=True)], natives
        )
    return url, ChangeApplier(applier, targets), applier, schema


def change(op: Op, schema: str, table: str, before: Any = None, after: Any = None) -> Change:
    columns = ITEMS if table == "items" else BAG
    return Change(op, TableId(schema, table), columns, before, after, position=None)


def rows(url: str, table: str) -> list[tuple[Any, ...]]:
    return sorted(
        fetch(url, table, schema="public" if url.startswith("postgres") else None),
        key=lambda r: tuple((v is None, v) for v in r),
    )


def test_apply_transactions_exactly(target: tuple[str, ChangeApplier, SqlApplier, str]) -> None:
    url, changes, applier, schema = target
    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None
    t1 = Transaction(
        1,
        None,
        None,
        [
            change(Op.INSERT, schema, "items", after=(1, "one", 10, "a")),
            change(Op.INSERT, schema, "items", after=(2, "two?", 20, "b")),
            change(Op.INSERT, schema, "items", after=(3, "three", 30, None)),
            change(Op.INSERT, schema, "bag", after=(1, "x")),
            change(Op.INSERT, schema, "bag", after=(1, "x")),
            change(Op.INSERT, schema, "bag", after=(2, None)),
        ],
    )
    t2 = Transaction(
        2,
        None,
        None,
        [
            # an UPDATE that left a TOAST-like column unsent: the target keeps its value
            change(Op.UPDATE, schema, "items", after=(2, "two", UNCHANGED, "b2")),
            # the key itself changes: the old key identifies the row
            change(
                Op.UPDATE, schema, "items", before=(3, UNCHANGED, UNCHANGED, UNCHANGED), after=(33, "three", 30, None)
            ),
            change(Op.DELETE, schema, "items", before=(1, UNCHANGED, UNCHANGED, UNCHANGED)),
            # a table without a key is a multiset: one of the two identical rows goes
            change(Op.DELETE, schema, "bag", before=(1, "x")),
            change(Op.UPDATE, schema, "bag", before=(2, None), after=(2, "y")),
        ],
    )
    result = changes.apply("cdc", lease, [t1, t2], {"lsn": 100})
    assert (result.inserts, result.updates, result.deletes, result.failed) == (6, 3, 2, [])
    assert rows(url, "items") == [(2, "two", 20, "b2"), (33, "three", 30, None)]
    assert rows(url, "bag") == [(1, "x"), (2, "y")]
    assert changes.read_position("cdc") == {"lsn": 100}

    # a change whose row is missing on the target is recorded; the rest of the batch lands
    t3 = Transaction(
        3,
        None,
        None,
        [
            change(Op.UPDATE, schema, "items", after=(999, "ghost", 0, None)),
            change(Op.INSERT, schema, "items", after=(4, "four", 40, None)),
        ],
    )
    result = changes.apply("cdc", lease, [t3], {"lsn": 200})
    assert result.inserts == 1 and len(result.failed) == 1 and result.failed[0].key == {"id": 999}
    assert [r[0] for r in rows(url, "items")] == [2, 4, 33]
    recorded = fetch(
        url, "conveyor_apply_exceptions", ["row_key", "error"], schema="public" if url.startswith("postgres") else None
    )
    assert any('"id": 999' in r[0] and "matched 0" in r[1] for r in recorded), recorded

    # a stale lease commits nothing, not even the position
    with pytest.raises(StaleLease):
        changes.apply(
            "cdc",
            lease - 1,
            [Transaction(4, None, None, [change(Op.INSERT, schema, "items", after=(5, "five", 50, None))])],
            {"lsn": 300},
        )
    assert [r[0] for r in rows(url, "items")] == [2, 4, 33]
    assert changes.read_position("cdc") == {"lsn": 200}

    changes.apply("cdc", lease, [Transaction(5, None, None, [change(Op.TRUNCATE, schema, "bag")])], {"lsn": 400})
    assert rows(url, "bag") == []
    applier.close()


def test_batch_apply_lands_the_same_rows_and_falls_back_on_a_missing_one(
    target: tuple[str, ChangeApplier, SqlApplier, str],
) -> None:
    url, changes, applier, schema = target
    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None
    window = [
        Transaction(
            1,
            None,
            None,
            [change(Op.INSERT, schema, "items", after=(i, f"n{i}", i, "note" * i)) for i in range(1, 2500)],
        ),
        Transaction(
            2,
            None,
            None,
            [
                change(Op.UPDATE, schema, "items", after=(2, "two", UNCHANGED, "b2")),
                change(Op.UPDATE, schema, "items", after=(2, "TWO", UNCHANGED, UNCHANGED)),
                change(
                    Op.UPDATE, schema, "items", before=(3, UNCHANGED, UNCHANGED, UNCHANGED), after=(3333, "m", 3, None)
                ),
                change(Op.DELETE, schema, "items", before=(1, UNCHANGED, UNCHANGED, UNCHANGED)),
                change(Op.INSERT, schema, "bag", after=(1, "x")),
                change(Op.INSERT, schema, "bag", after=(1, "x")),
            ],
        ),
    ]
    result = changes.apply("cdc", lease, window, {"lsn": 1}, net=True)
    assert (result.inserts, result.updates, result.deletes, result.failed) == (2501, 3, 1, [])
    got = {r[0]: r for r in rows(url, "items")}
    assert len(got) == 2498 and 1 not in got and 3 not in got
    assert got[2] == (2, "TWO", 2, "b2") and got[3333] == (3333, "m", 3, None) and got[2499][1] == "n2499"
    assert rows(url, "bag") == [(1, "x"), (1, "x")]

    # an existing row is updated in bulk; a row missing on the target sends the window the careful way
    window = [
        Transaction(
            3,
            None,
            None,
            [
                change(
                    Op.UPDATE, schema, "items", before=(4, UNCHANGED, UNCHANGED, UNCHANGED), after=(4, "f", 0, None)
                ),
                change(Op.DELETE, schema, "items", before=(999_999, UNCHANGED, UNCHANGED, UNCHANGED)),
                change(Op.INSERT, schema, "items", after=(-1, "new", 1, None)),
            ],
        )
    ]
    result = changes.apply("cdc", lease, window, {"lsn": 2}, net=True)
    assert (result.inserts, result.updates, result.deletes, len(result.failed)) == (1, 1, 0, 1)
    got = {r[0]: r for r in rows(url, "items")}
    assert got[4] == (4, "f", 0, None) and got[-1] == (-1, "new", 1, None)
    assert changes.read_position("cdc") == {"lsn": 2}

    # the lease check travels with the bulk statements: a stale lease commits nothing, not even the position
    with pytest.raises(StaleLease):
        changes.apply(
            "cdc",
            lease - 1,
            [Transaction(4, None, None, [change(Op.INSERT, schema, "items", after=(-2, "stale", 2, None))])],
            {"lsn": 3},
            net=True,
        )
    assert -2 not in {r[0] for r in rows(url, "items")}
    assert changes.read_position("cdc") == {"lsn": 2}
    applier.close()
