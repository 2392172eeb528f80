"""Changes the target refuses one by one (the careful path: a savepoint each) leave no savepoints behind:
a window of many refused changes followed by a write commits, on every SQL target."""

from __future__ import annotations

import pytest
from cdc_support import text_change_applier
from schemas import execute_sql

from conveyor.model.changes import Change, Op, Transaction


@pytest.mark.parametrize(
    ("target", "refused"),
    # PostgreSQL: nested that deep, a write at the end runs out of lock-table memory (64 locks x 100
    # connections, and what shared memory spares); the others: the same path, shorter
    [("pg_url", 30_000), ("mysql_url", 3_000), ("sqlite_url", 3_000)],
)
def test_thousands_of_refused_changes_then_a_write_commit(
    target: str, refused: int, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue(target))
    execute_sql(url, ["CREATE TABLE refused (id bigint PRIMARY KEY, name varchar(20))"])
    applier, changes, table, _ = text_change_applier(url, "refused")
    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None  # makes the control tables
    missing = [Change(Op.DELETE, table.id, ("id", "name"), (str(i), None), None, position=None) for i in range(refused)]
    last = Change(Op.INSERT, table.id, ("id", "name"), None, ("-1", "lands"), position=None)
    result = changes.apply("cdc", lease, [Transaction(1, None, None, [*missing, last])], {"lsn": 1}, net=False)
    assert (len(result.failed), result.inserts) == (refused, 1)
    assert changes.read_position("cdc") == {"lsn": 1}
    applier.close()
