"""Batch apply into PostgreSQL where the target refuses something. A value longer than its column is never
cut short: an explicit cast to ``varchar(n)``, ``char(n)`` or ``bit(n)`` would (SQL's rule), so the bulk
statements cast to the unbounded type and the column refuses the value, which the apply-error policy then
rejects like any row the target refuses. A table whose row-level security refuses COPY takes its inserts as
statements."""

from __future__ import annotations

from typing import Any

import psycopg
from cdc_support import text_change_applier
from servers import DEFAULT_PASSWORD, DEFAULT_USER, LIMITED_PASSWORD, LIMITED_USER

from conveyor.model.changes import UNCHANGED, Change, Op, Transaction

COLUMNS = ("id", "name", "code", "bits")


def test_over_long_values_are_rejected_not_cut(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE sized (id bigint PRIMARY KEY, name varchar(5), code char(3), bits bit(4))")
    applier, changes, table, natives = text_change_applier(pg_url, "sized")
    applier.copy_rows = lambda *_: None  # type: ignore[method-assign]  # the inserts' array form too
    assert natives[1:] == ["character varying(5)", "character(3)", "bit(4)"]
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


def test_a_table_under_row_level_security_takes_its_inserts_as_statements(pg_url: str) -> None:
    """COPY FROM refuses a table whose row-level security applies to the user (not its owner, no superuser):
    the batch goes the ordered way, and the table's later batches insert by statement, with no row lost."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        database = conn.info.dbname
        conn.execute("CREATE TABLE guarded (id bigint PRIMARY KEY, name text)")
        conn.execute("ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY anything ON guarded USING (true) WITH CHECK (true)")
        conn.execute(f"GRANT ALL ON guarded TO {LIMITED_USER}")
        conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO {LIMITED_USER}')
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {LIMITED_USER}")  # the control tables
    url = pg_url.replace(f"//{DEFAULT_USER}:{DEFAULT_PASSWORD}@", f"//{LIMITED_USER}:{LIMITED_PASSWORD}@")
    assert LIMITED_USER in url
    applier, changes, table, _ = text_change_applier(url, "guarded")
    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None
    ordered: list[int] = []
    run_ordered = changes._run_ordered

    def spy(transactions: Any) -> Any:
        ordered.append(len(transactions))
        return run_ordered(transactions)

    changes._run_ordered = spy  # type: ignore[method-assign]
    for batch in range(2):
        inserts = [
            Change(Op.INSERT, table.id, ("id", "name"), None, (str(10 * batch + i), f"n{i}"), position=None)
            for i in range(5)
        ]
        result = changes.apply("cdc", lease, [Transaction(batch, None, None, inserts)], {"lsn": batch}, net=True)
        assert (result.inserts, result.failed) == (5, [])
    assert ordered == [1]  # the first batch only: the second's inserts went as one statement
    applier.close()
    with psycopg.connect(pg_url) as conn:
        got = conn.execute("SELECT id FROM guarded ORDER BY id").fetchall()
    assert [r[0] for r in got] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
