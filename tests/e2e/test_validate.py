"""`conveyor validate`: planted differences of every kind, in every engine pair, found exactly; repair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from oracle import fetch
from schemas import execute_sql
from tasks import cli, run_task, task_doc, write_task

from conveyor.runner.task import task_from_document
from conveyor.validate.compare import LEAF_KEYS, LEAVES_PER_READ, MISSING_SOURCE, MISSING_TARGET, RECORD_DIFF
from conveyor.validate.repair import repair_table
from conveyor.validate.run import PENDING, VALIDATED, Validation, ValidationResult

ROWS = 3000
SOURCE_SQL = {
    "postgresql": [
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(40), code char(8), price numeric(12,2), "
        "ratio double precision, at timestamptz, doc jsonb, flag boolean, note text)",
        f"INSERT INTO items SELECT g, 'item ' || g, 'C' || g, g / 7.0, g / 3.0, "
        "'2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', jsonb_build_object('a', g, 'b', 'x'), "
        f"g % 2 = 0, 'note ' || g FROM generate_series(1, {ROWS}) g",
        "CREATE TABLE tags (label varchar(20), weight int)",
        "CREATE TABLE codes (code varchar(10) PRIMARY KEY, n int)",
        "INSERT INTO codes SELECT 'k' || g, g FROM generate_series(1, 50) g",
    ],
    "mysql": [
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(40), code char(8), price decimal(12,2), "
        "ratio double, at timestamp(6) NULL, doc json, flag boolean, note text)",
        "INSERT INTO items SELECT seq, CONCAT('item ', seq), CONCAT('C', seq), seq / 7.0, seq / 3e0, "
        "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE, JSON_OBJECT('a', seq, 'b', 'x'), seq % 2 = 0, "
        f"CONCAT('note ', seq) FROM seq_1_to_{ROWS}",
        "CREATE TABLE tags (label varchar(20), weight int)",
        "CREATE TABLE codes (code varchar(10) PRIMARY KEY, n int)",
        "INSERT INTO codes SELECT CONCAT('k', seq), seq FROM seq_1_to_50",
    ],
    "sqlite": [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40), code CHAR(8), price DECIMAL(12,2), "
        "ratio REAL, at TIMESTAMPTZ, doc JSON_TEXT, flag BOOLEAN, note TEXT)",
        f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) "
        "INSERT INTO items SELECT g, 'item ' || g, 'C' || g, round(g / 7.0, 2), g / 3.0, "
        "strftime('%Y-%m-%d %H:%M:%S', '2024-01-01 00:00:00', '+' || g || ' minutes'), "
        "json_object('a', g, 'b', 'x'), g % 2 = 0, 'note ' || g FROM s",
        "CREATE TABLE tags (label VARCHAR(20), weight INTEGER)",
        "CREATE TABLE codes (code VARCHAR(10) PRIMARY KEY, n INTEGER)",
        "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 50) "
        "INSERT INTO codes SELECT 'k' || g, g FROM s",
    ],
}
COMMON_SOURCE = ["UPDATE items SET note = NULL WHERE id = 60", "INSERT INTO tags VALUES ('a', 1), ('a', 1), ('b', 2)"]
PLANT_COMMON = [
    "DELETE FROM items WHERE id = 10",
    "INSERT INTO items (id, name) VALUES (100000, 'extra')",
    "UPDATE items SET name = 'changed' WHERE id = 20",
    "UPDATE items SET ratio = ratio * (1 + 1e-12) WHERE id = 30",
    "UPDATE items SET note = '' WHERE id = 60",
    # not a difference: JSON key order and spacing
    """UPDATE items SET doc = '{"b": "x",   "a": 70}' WHERE id = 70""",
    "UPDATE codes SET n = -1 WHERE code = 'k7'",
]
PLANT = {
    "postgresql": [
        "UPDATE items SET name = name || ' ' WHERE id = 40",
        "UPDATE items SET at = at + interval '1 hour' WHERE id = 50",
        "DELETE FROM tags WHERE ctid = (SELECT ctid FROM tags WHERE label = 'a' LIMIT 1)",
    ],
    "mysql": [
        "UPDATE items SET name = CONCAT(name, ' ') WHERE id = 40",
        "UPDATE items SET at = at + INTERVAL 1 HOUR WHERE id = 50",
        "DELETE FROM tags WHERE label = 'a' LIMIT 1",
    ],
    "sqlite": [
        "UPDATE items SET name = name || ' ' WHERE id = 40",
        "UPDATE items SET at = '2024-01-01 01:50:00' WHERE id = 50",
        "DELETE FROM tags WHERE rowid = (SELECT rowid FROM tags WHERE label = 'a' LIMIT 1)",
    ],
}
EXPECTED = {
    ("items", MISSING_TARGET, ("10",), ()),
    ("items", MISSING_SOURCE, ("100000",), ()),
    ("items", RECORD_DIFF, ("20",), ("name",)),
    ("items", RECORD_DIFF, ("30",), ("ratio",)),
    ("items", RECORD_DIFF, ("40",), ("name",)),
    ("items", RECORD_DIFF, ("50",), ("at",)),
    ("items", RECORD_DIFF, ("60",), ("note",)),
    ("codes", RECORD_DIFF, ("k7",), ("n",)),
    ("tags", MISSING_TARGET, ("a", "1"), ()),
}
PAIRS = [
    ("postgresql", "postgresql"),
    ("mysql", "postgresql"),
    ("postgresql", "mysql"),
    ("sqlite", "sqlite"),
    ("sqlite", "postgresql"),
    ("mysql", "mysql"),
    ("mysql", "sqlite"),
    ("postgresql", "sqlite"),
    ("sqlite", "mysql"),
]
FIXTURE = {"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}


def urls(src: str, dst: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if src == dst == "postgresql":
        server = request.getfixturevalue("pg_server")
        return request.getfixturevalue("pg_url"), server.create_database(f"validate_dst_{id(tmp_path)}")
    if src == dst == "sqlite":
        return f"sqlite:///{tmp_path / 'src.sqlite'}", f"sqlite:///{tmp_path / 'dst.sqlite'}"
    if src == "mysql":
        return request.getfixturevalue("mysql_source_url"), request.getfixturevalue(FIXTURE[dst])
    return request.getfixturevalue(FIXTURE[src]), request.getfixturevalue(FIXTURE[dst])


def found(result: ValidationResult) -> set[tuple[str, str, tuple[Any, ...], tuple[str, ...]]]:
    return {
        (t.plan.target.id.name, f.kind, tuple(v for _, v in f.key), tuple(c for c, _, _ in f.columns))
        for t in result.tables
        for f in t.failures
    }


def validate(doc: dict[str, Any], **kwargs: Any) -> ValidationResult:
    return Validation(task_from_document(doc), recheck_delay=0, **kwargs).run()


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a}2{b}" for a, b in PAIRS])
def test_planted_differences_found_exactly(src: str, dst: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src_url, dst_url = urls(src, dst, request, tmp_path)
    execute_sql(src_url, SOURCE_SQL[src] + COMMON_SOURCE)
    doc = task_doc(src_url, dst_url, name=f"validate-{src}-{dst}")
    load = run_task(doc, tmp_path / "state")
    assert not load.rejected_rows and load.complete

    identical = validate(doc)
    assert found(identical) == set() and identical.equal, [(t.plan.key, t.error) for t in identical.tables]

    execute_sql(dst_url, PLANT_COMMON + PLANT[dst])
    result = validate(doc)
    assert found(result) == EXPECTED
    assert not result.equal
    diff = next(f for t in result.tables for f in t.failures if f.kind == RECORD_DIFF and f.key[0][1] == "60")
    assert diff.columns == (("note", None, ""),)

    # repair rewrites every failing row of the keyed tables from the source; the multiset stays as it is
    task = task_from_document(doc)
    for table in result.tables:
        if table.failures and table.plan.source.row_key():
            assert repair_table(task, table.plan, table.failures) == len(table.failures)
    after = validate(doc)
    assert found(after) == {("tags", MISSING_TARGET, ("a", "1"), ())}


def test_row_changing_during_validation_is_pending(
    pg_server: Any, pg_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dst_url = pg_server.create_database(f"validate_moving_{id(tmp_path)}")
    execute_sql(pg_url, SOURCE_SQL["postgresql"][:2])
    doc = task_doc(pg_url, dst_url, name="validate-moving")
    assert run_task(doc, tmp_path / "state").complete
    execute_sql(dst_url, ["UPDATE items SET name = 'stale' WHERE id IN (5, 6)"])

    # between the two reads, row 5 changes on the source again and row 6 is caught up on the target
    def between_passes() -> None:
        execute_sql(pg_url, ["UPDATE items SET name = 'moving' WHERE id = 5"])
        execute_sql(dst_url, ["UPDATE items SET name = 'item 6' WHERE id = 6"])

    result = validate(doc, between_passes=between_passes)
    (table,) = result.tables
    assert table.failures == [] and table.pending == 1 and table.state == PENDING


def test_cli_exit_codes_and_failures_table(pg_server: Any, pg_url: str, tmp_path: Path) -> None:
    dst_url = pg_server.create_database(f"validate_cli_{id(tmp_path)}")
    execute_sql(pg_url, SOURCE_SQL["postgresql"][:2])
    doc = task_doc(pg_url, dst_url, name="validate-cli")
    assert run_task(doc, tmp_path / "state").complete
    path = write_task(doc, tmp_path / "task.yaml")
    proc = cli("validate", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["TableStatistics"][0]["ValidationState"] == VALIDATED

    execute_sql(dst_url, ["DELETE FROM items WHERE id = 3", "UPDATE items SET price = 1.5 WHERE id = 4"])
    proc = cli("validate", str(path), "--json", "--recheck-delay", "0")
    assert proc.returncode == 4, proc.stderr
    report = json.loads(proc.stdout)
    assert report["TableStatistics"][0]["ValidationFailedRecords"] == 2
    rows = fetch(dst_url, "awsdms_validation_failures_v1", ["TABLE_NAME", "KEY", "FAILURE_TYPE", "DETAILS"])
    assert sorted((r[0], json.loads(r[1])["key"], r[2]) for r in rows) == [
        ("items", ["3"], MISSING_TARGET),
        ("items", ["4"], RECORD_DIFF),
    ]
    assert {"column": "price", "source": "0.57", "target": "1.5"} in [
        c for r in rows if r[2] == RECORD_DIFF for c in json.loads(r[3])["columns"]
    ]

    proc = cli("validate", str(path), "--repair", "--recheck-delay", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fetch(dst_url, "awsdms_validation_failures_v1") == []


def test_differences_in_many_sub_ranges_are_read_together_and_found_exactly(
    mysql_source_url: str, pg_url: str, tmp_path: Path
) -> None:
    """Over LEAVES_PER_READ differing sub-ranges, read a batch at a time (ORed key ranges): every difference
    found once, changed rows in key order; the recheck reads the failing keys only."""
    rows = 160 * LEAF_KEYS
    execute_sql(
        mysql_source_url,
        ["CREATE TABLE nums (id int PRIMARY KEY, v int)", f"INSERT INTO nums SELECT seq, seq FROM seq_1_to_{rows}"],
    )
    # chunks of 1,000 keys until one differed, then per LEAF_KEYS keys: over 140 differing sub-ranges
    doc = task_doc(mysql_source_url, pg_url, name="validate-many-ranges", ValidationSettings={"PartitionSize": 1000})
    assert run_task(doc, tmp_path / "state").complete
    changed = list(range(7, rows, LEAF_KEYS // 2))  # two per sub-range of LEAF_KEYS keys
    assert (rows - 5 * 1000) // LEAF_KEYS > 2 * LEAVES_PER_READ
    deleted, extra = [LEAF_KEYS * 3 + 1, rows], [rows + 5, rows + 700]
    execute_sql(
        pg_url,
        [
            f"UPDATE nums SET v = -v WHERE id IN ({', '.join(map(str, changed))})",
            f"DELETE FROM nums WHERE id IN ({', '.join(map(str, deleted))})",
            f"INSERT INTO nums VALUES ({extra[0]}, 0), ({extra[1]}, 0)",
        ],
    )
    result = validate(doc)
    (table,) = result.tables
    kinds = [(f.kind, int(f.key[0][1] or 0)) for f in table.failures]
    assert sorted(kinds) == sorted(
        [(RECORD_DIFF, k) for k in changed]
        + [(MISSING_TARGET, k) for k in deleted]
        + [(MISSING_SOURCE, k) for k in extra]
    )
    assert [k for kind, k in kinds if kind == RECORD_DIFF] == changed
