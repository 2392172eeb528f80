"""Batch apply into PostgreSQL never cuts a value short: an explicit cast to ``varchar(n)``, ``char(n)`` or
``bit(n)`` would (SQL's rule), so the bulk statements cast to the unbounded type and the column's own length
refuses a longer value, which is then rejected by the apply-error policy like any row the target refuses."""

from __future__ import annotations

from typing import Any

import psycopg

from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.registry import engine_for
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.endpoints.sql.changes import ChangeApplier, ChangeTarget
from conveyor.model.changes import UNCHANGED, Change, Op, Transaction
from conveyor.model.schema import TableId

COLUMNS = ("id", "name", "code", "bits")


def test_over_long_values_are_rejected_not_cut(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE sized (id bigint PRIMARY KEY, name varchar(5), code char(3), bits bit(4))")
    config = parse_endpoint(pg_url, "target")
    spec = engine_for(config)
    schema = spec.default_schema(config)
    applier = spec.open_applier(config, schema)
    assert isinstance(applier, SqlApplier)
    applier.copy_rows = lambda *_: None  # type: ignore[method-assign]  # the inserts' array form too
    table = spec.open_introspector(config).table(TableId(schema, "sized"))
    natives = [applier.map_type(c.type) for c in table.columns]
    assert natives[1:] == ["character varying(5)", "character(3)", "bit(4)"]
    changes = ChangeApplier(applier, {table.id: ChangeTarget(table, [None] * len(natives), natives)})
    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None  # makes the control tables

    def change(op: Op, before: Any = None, after: Any = None) -> Change:
        return Change(op, table.id, COLUMNS, before, after, position=None)

    def key(k: str) -> tuple[Any, ...]:
        return (k, UNCHANGED, UNCHANGED, UNCHANGED)

    fits = [change(Op.INSERT, after=(str(i), "abcde", "xyz", "1010")) for i in range(1, 4)]
    result = changes.apply("cdc", lease, [Transaction(1, None, None, fits)], {"lsn": 1}, net=True)
    assert (result.inserts, result.failed) == (3, [])
    too_long = [
        change(Op.INSERT, after=("4", "abcdef", "xyz", "1010")),  # 6 characters into varchar(5)
        change(Op.UPDATE, key("1"), ("1", "abcde", "wxyz", "1010")),  # 4 into char(3)
        change(Op.UPDATE, key("2"), ("2", "abcde", "xyz", "10101")),  # 5 bits into bit(4)
        change(Op.UPDATE, key("3"), ("3", "vwxyz", "uvw", "0101")),  # fits
    ]
    result = changes.apply("cdc", lease, [Transaction(2, None, None, too_long)], {"lsn": 2}, net=True)
    assert (result.inserts, result.updates) == (0, 1)
    assert sorted(r.key["id"] for r in result.failed) == ["1", "2", "4"]
    applier.close()
    with psycopg.connect(pg_url) as conn:
        got = conn.execute("SELECT id, name, code, bits::text FROM sized ORDER BY id").fetchall()
    assert got == [(1, "abcde", "xyz", "1010"), (2, "abcde", "xyz", "1010"), (3, "vwxyz", "uvw", "0101")]
