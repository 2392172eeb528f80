"""DMS parallel-load by source partition (partitions-auto, subpartitions-auto, partitions-list) on real
partitioned tables, PostgreSQL and MariaDB to SQLite, checked row by row; refused where it cannot apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from oracle import canonical_rows, compare, fetch
from schemas import execute_sql
from servers import PostgresServer, unique_db_name
from tasks import run_task, task_doc

from conveyor.errors import ConfigError

PG_SCHEMA = [
    "CREATE SCHEMA arch",
    "CREATE TABLE events (id int, kind text, v text, PRIMARY KEY (id, kind)) PARTITION BY LIST (kind)",
    "CREATE TABLE ev_a PARTITION OF events FOR VALUES IN ('a') PARTITION BY RANGE (id)",
    "CREATE TABLE ev_a_lo PARTITION OF ev_a FOR VALUES FROM (MINVALUE) TO (50)",
    "CREATE TABLE ev_a_hi PARTITION OF ev_a FOR VALUES FROM (50) TO (MAXVALUE)",
    "CREATE TABLE ev_b PARTITION OF events FOR VALUES IN ('b')",
    "CREATE TABLE arch.ev_rest PARTITION OF events DEFAULT",  # a partition in another schema
    "INSERT INTO events SELECT i, (ARRAY['a', 'b', 'c', 'd'])[i % 4 + 1], CASE WHEN i % 7 = 0 THEN NULL "
    "ELSE 'v' || i END FROM generate_series(1, 400) i",
]
MARIADB_SCHEMA = [
    "CREATE TABLE orders (id int, region int, v varchar(20), PRIMARY KEY (id, region)) "
    "PARTITION BY RANGE (region) SUBPARTITION BY HASH (id) SUBPARTITIONS 2 "
    "(PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN (20), PARTITION p2 VALUES LESS THAN MAXVALUE)",
    "INSERT INTO orders WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
    "SELECT i, i % 30, IF(i % 7 = 0, NULL, CONCAT('v', i)) FROM n",
]


def mapping(schema: str, table: str, parallel: dict[str, Any], filters: list[Any] | None = None) -> dict[str, Any]:
    locator = {"schema-name": schema, "table-name": table}
    selection: dict[str, Any] = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "1",
        "object-locator": locator,
        "rule-action": "include",
    }
    if filters:
        selection["filters"] = filters
    settings = {"rule-type": "table-settings", "rule-id": "2", "rule-name": "2", "object-locator": locator}
    return {"rules": [selection, {**settings, "parallel-load": parallel}]}


def load(source: str, target: str, mappings: dict[str, Any], state: Path) -> int:
    doc = task_doc(source, target, name="parts")
    doc["table_mappings"] = mappings
    result = run_task(doc, state)
    assert result.complete, result.failed
    (table,) = result.tables
    return table.segments


def same_rows(source: list[tuple[Any, ...]], target: list[tuple[Any, ...]]) -> None:
    diff = compare(canonical_rows(source), canonical_rows(target), key=(0, 1))
    assert not (diff.lost or diff.extra or diff.mismatched), diff
    assert len(target) == len(source)


NOT_NULL = [
    {"filter-type": "source", "column-name": "v", "filter-conditions": [{"filter-operator": "notnull"}]},
    {"filter-type": "source", "column-name": "id", "filter-conditions": [{"filter-operator": "gte", "value": "20"}]},
]


@pytest.mark.parametrize(
    ("parallel", "segments"),
    [
        ({"type": "partitions-auto"}, 3),  # ev_a (both levels), ev_b, arch.ev_rest
        ({"type": "subpartitions-auto"}, 4),  # ev_a_lo, ev_a_hi, ev_b, arch.ev_rest
        ({"type": "partitions-list", "partitions": ["ev_a_hi", "ev_b"]}, 3),  # + ev_a_lo and arch.ev_rest
        ({"type": "partitions-list", "partitions": ["ev_rest"]}, 2),
    ],
    ids=["auto", "sub", "list", "list-other-schema"],
)
def test_postgres_partitions(parallel: dict[str, Any], segments: int, pg_url: str, tmp_path: Path) -> None:
    execute_sql(pg_url, PG_SCHEMA)
    columns = ["id", "kind", "v"]
    for filtered in (False, True):
        target = f"sqlite:///{tmp_path / f'{filtered}.db'}"
        rules = mapping("public", "events", parallel, NOT_NULL if filtered else None)
        assert load(pg_url, target, rules, tmp_path / f"state{filtered}") == segments
        want = fetch(pg_url, "events", columns)
        if filtered:
            want = [r for r in want if r[2] is not None and r[0] >= 20]
        same_rows(want, fetch(target, "events", columns))


@pytest.mark.parametrize(
    ("parallel", "segments"),
    [
        ({"type": "partitions-auto"}, 3),
        ({"type": "subpartitions-auto"}, 6),
        ({"type": "partitions-list", "partitions": ["p1", "p2sp1"]}, 3),  # + p0sp0, p0sp1, p2sp0
    ],
    ids=["auto", "sub", "list"],
)
def test_mariadb_partitions(
    parallel: dict[str, Any], segments: int, mysql_source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    execute_sql(mysql_source_url, MARIADB_SCHEMA)
    schema = mysql_source_url.rsplit("/", 1)[1].split("?")[0]
    rules = mapping(schema, "orders", parallel, NOT_NULL)
    assert load(mysql_source_url, sqlite_url, rules, tmp_path / "state") == segments
    want = [r for r in fetch(mysql_source_url, "orders", ["id", "region", "v"]) if r[2] is not None and r[0] >= 20]
    same_rows(want, fetch(sqlite_url, "orders", ["id", "region", "v"]))


@pytest.mark.parametrize(
    ("parallel", "message"),
    [
        ({"type": "partitions-list", "partitions": ["ev_b", "nope"]}, "no partition nope (the table's partitions:"),
        ({"type": "partitions-list", "partitions": ["ev_a", "ev_a_lo"]}, "inside listed partitions: ev_a_lo (in ev_a)"),
    ],
)
def test_postgres_partition_lists_that_cannot_work(
    parallel: dict[str, Any], message: str, pg_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    execute_sql(pg_url, PG_SCHEMA)
    with pytest.raises(ConfigError, match=r"rule-id 2: parallel-load partitions-list on public\.events") as err:
        load(pg_url, sqlite_url, mapping("public", "events", parallel), tmp_path / "state")
    assert message in str(err.value)


def test_tables_without_partitions(pg_url: str, sqlite_url: str, tmp_path: Path) -> None:
    execute_sql(pg_url, ["CREATE TABLE plain (id int PRIMARY KEY)", "INSERT INTO plain VALUES (1), (2)"])
    # partitions-auto on a table without partitions: Conveyor's own split, as before
    assert load(pg_url, sqlite_url, mapping("public", "plain", {"type": "partitions-auto"}), tmp_path / "a") == 1
    with pytest.raises(ConfigError, match="the table is not partitioned"):
        load(pg_url, sqlite_url, mapping("public", "plain", {"type": "subpartitions-auto"}), tmp_path / "b")
    source = f"sqlite:///{tmp_path / 'source.db'}"
    execute_sql(source, ["CREATE TABLE t (id integer PRIMARY KEY)", "INSERT INTO t VALUES (1)"])
    with pytest.raises(ConfigError, match="the source engine has no table partitions; use ranges or none"):
        load(source, sqlite_url, mapping("main", "t", {"type": "partitions-auto"}), tmp_path / "c")


def test_postgres_partitions_to_postgres(pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    """Same engine: the partitions travel as COPY of one UNION ALL query, unparsed."""
    execute_sql(pg_url, PG_SCHEMA)
    target = pg_server.create_database(unique_db_name("parts_target"))
    try:
        parallel = {"type": "partitions-list", "partitions": ["ev_a_hi", "ev_b"]}
        assert load(pg_url, target, mapping("public", "events", parallel, NOT_NULL), tmp_path / "state") == 3
        want = [r for r in fetch(pg_url, "events", ["id", "kind", "v"]) if r[2] is not None and r[0] >= 20]
        same_rows(want, fetch(target, "events", ["id", "kind", "v"]))
    finally:
        pg_server.drop_database(target)
