"""Validation inside tasks (EnableValidation after the full load and during CDC, ValidationOnly), a time-zone
representation that is no difference, and repair on a key that is not an integer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_until
from oracle import fetch
from schemas import execute_sql
from servers import PostgresServer
from tasks import cli, run_task, task_doc, write_task

from conveyor.model.schema import TableId
from conveyor.runner import cdc
from conveyor.runner.task import task_from_document
from conveyor.validate.compare import MISSING_SOURCE, RECORD_DIFF
from conveyor.validate.intask import ChangedRows
from conveyor.validate.repair import repair_table
from conveyor.validate.run import MISMATCHED, VALIDATED, Validation
from conveyor.validate.side import Scope

ITEMS = [
    "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(40), at timestamptz, note text)",
    "INSERT INTO items SELECT g, 'item ' || g, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', "
    "'note ' || g FROM generate_series(1, 500) g",
]
#: a target trigger that changes what is written for id 5 (fires in COPY and in replica sessions)
TAMPER = [
    "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN IF NEW.id = 5 THEN NEW.name := 'tampered'; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER tamper BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION tamper()",
    "ALTER TABLE items ENABLE ALWAYS TRIGGER tamper",
]


def failures_found(url: str) -> list[tuple[str, list[str | None], str]]:
    rows = fetch(url, "awsdms_validation_failures_v1", ["TABLE_NAME", "KEY", "FAILURE_TYPE"])
    return sorted((r[0], json.loads(r[1])["key"], r[2]) for r in rows)


def test_full_load_validates_each_table_after_its_load(pg_server: Any, pg_url: str, tmp_path: Path) -> None:
    dst = pg_server.create_database(f"intask_load_{id(tmp_path)}")
    execute_sql(pg_url, ITEMS)
    execute_sql(dst, [ITEMS[0], *TAMPER])
    validation = {"EnableValidation": True}
    doc = task_doc(
        pg_url,
        dst,
        "intask-load",
        ValidationSettings=validation,
        FullLoadSettings={"TargetTablePrepMode": "DO_NOTHING"},
    )
    result = run_task(doc, tmp_path / "state")
    assert result.complete
    (stats,) = result.tables
    assert (stats.validation_state, stats.validation_failed, stats.validation_pending) == (MISMATCHED, 1, 0)
    assert stats.dms()["ValidationState"] == MISMATCHED
    assert failures_found(dst) == [("items", ["5"], RECORD_DIFF)]

    # without the trigger's difference every table ends Validated
    execute_sql(dst, ["DROP TRIGGER tamper ON items", "TRUNCATE items"])
    (stats,) = run_task(doc, tmp_path / "state2").tables
    assert (stats.validation_state, stats.validation_failed) == (VALIDATED, 0)


def test_validation_only_task_compares_and_loads_nothing(pg_server: Any, pg_url: str, tmp_path: Path) -> None:
    dst = pg_server.create_database(f"intask_only_{id(tmp_path)}")
    execute_sql(pg_url, ITEMS)
    doc = task_doc(pg_url, dst, "intask-only")
    assert run_task(doc, tmp_path / "state").complete
    execute_sql(dst, ["INSERT INTO items (id, name) VALUES (9999, 'extra')"])
    execute_sql(pg_url, ["INSERT INTO items (id, name) VALUES (10000, 'not loaded')"])
    only = write_task({**doc, "settings": {"ValidationSettings": {"ValidationOnly": True}}}, tmp_path / "only.yaml")
    proc = cli("run", str(only), "--json", "--no-progress", "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    (table,) = json.loads(proc.stdout)["TableStatistics"]
    assert (table["ValidationState"], table["ValidationFailedRecords"]) == (MISMATCHED, 2)
    # nothing was loaded: the source's new row is still missing on the target
    assert 10000 not in {r[0] for r in fetch(dst, "items", ["id"], schema="public")}
    assert sorted(k for _, k, _ in failures_found(dst)) == [["10000"], ["9999"]]


@pytest.fixture
def cdc_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "intask_" + request.node.name, "intask-cdc", ";\n".join(ITEMS))


def validating_cdc(source: str, dst: str, name: str, tmp_path: Path) -> tuple[Running, ChangedRows]:
    """A full-load-and-cdc task with EnableValidation, running once its CDC re-validation has started."""
    doc = {
        **task_doc(source, dst, name=name, ValidationSettings={"EnableValidation": True}),
        "migration_type": "full-load-and-cdc",
    }
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.validating is not None)
    assert task.runner.validating is not None
    return task, task.runner.validating


def test_cdc_validates_changed_rows_after_they_are_applied(
    pg_server: PostgresServer, cdc_source: str, tmp_path: Path
) -> None:
    dst = pg_server.create_database(f"intask_cdc_{id(tmp_path)}")
    task, validating = validating_cdc(cdc_source, dst, "intask-cdc", tmp_path)
    items = TableId("public", "items")
    assert task.runner.stats.tables["public.items"].validation_state == VALIDATED  # after the full load
    execute_sql(dst, TAMPER)
    execute_sql(cdc_source, ["UPDATE items SET note = 'changed' WHERE id IN (5, 6)", "DELETE FROM items WHERE id = 7"])
    recheck = validating.tables[items]
    wait_until(task, lambda: bool(recheck.failures) and recheck.pending == 0, timeout=30)
    result = task.finish()
    (stats,) = result.tables
    assert (stats.validation_state, stats.validation_failed, stats.validation_pending) == (MISMATCHED, 1, 0)
    (failure,) = recheck.failures.values()
    assert failure.kind == RECORD_DIFF and failure.columns == (("name", "item 5", "tampered"),)
    assert failures_found(dst) == [("items", ["5"], RECORD_DIFF)]


KEYED = [
    "CREATE TABLE codes (code varchar(10) PRIMARY KEY, n int)",
    "INSERT INTO codes SELECT 'k' || g, g FROM generate_series(1, 50) g",
    "CREATE TABLE pairs (a int, b varchar(5), v text, PRIMARY KEY (a, b))",
    "INSERT INTO pairs SELECT g / 3, 'b' || g % 3, 'v' || g FROM generate_series(0, 59) g",
]
#: target triggers that change what is written for code 'k5' and pair (2, 'b2')
TAMPER_KEYED = [
    "CREATE FUNCTION tamper_code() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN IF NEW.code = 'k5' THEN NEW.n := -1; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER tamper BEFORE INSERT OR UPDATE ON codes FOR EACH ROW EXECUTE FUNCTION tamper_code()",
    "ALTER TABLE codes ENABLE ALWAYS TRIGGER tamper",
    "CREATE FUNCTION tamper_pair() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN IF NEW.a = 2 AND NEW.b = 'b2' THEN NEW.v := 'tampered'; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER tamper BEFORE INSERT OR UPDATE ON pairs FOR EACH ROW EXECUTE FUNCTION tamper_pair()",
    "ALTER TABLE pairs ENABLE ALWAYS TRIGGER tamper",
]


@pytest.fixture
def keyed_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "intask_" + request.node.name, "intask-keyed", ";\n".join(KEYED))


def test_cdc_validates_text_and_composite_keys_and_transactions_in_parts(
    pg_server: PostgresServer, keyed_source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cdc, "PART_CHANGES", 5)  # the second transaction below comes in parts
    parts: list[int] = []
    part = ChangedRows.part

    def counted(self: ChangedRows, txn: Any) -> Any:
        parts.append(len(txn.changes))
        return part(self, txn)

    monkeypatch.setattr(ChangedRows, "part", counted)
    dst = pg_server.create_database(f"intask_keyed_{id(tmp_path)}")
    task, validating = validating_cdc(keyed_source, dst, "intask-keyed", tmp_path)
    assert not [w for w in task.runner.warnings if "not validated during CDC" in w]
    execute_sql(dst, TAMPER_KEYED)
    execute_sql(keyed_source, ["UPDATE codes SET n = n + 100 WHERE code IN ('k5', 'k6')"])
    execute_sql(keyed_source, ["BEGIN", "UPDATE pairs SET v = v || '!' WHERE a < 10", "COMMIT"])
    codes, pairs = (validating.tables[TableId("public", t)] for t in ("codes", "pairs"))
    wait_until(
        task,
        lambda: bool(codes.failures and pairs.failures) and codes.pending == pairs.pending == 0,
        timeout=30,
    )
    task.finish()
    assert parts  # its keys were held until it committed
    assert [(f.key, f.columns) for f in codes.failures.values()] == [((("code", "k5"),), (("n", "105", "-1"),))]
    assert [(f.key, f.columns) for f in pairs.failures.values()] == [
        ((("a", "2"), ("b", "b2")), (("v", "v8!", "tampered"),))
    ]
    assert failures_found(dst) == [("codes", ["k5"], RECORD_DIFF), ("pairs", ["2", "b2"], RECORD_DIFF)]


MYSQL_ITEMS = [
    "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(40), at timestamp(6) NULL, note text)",
    "INSERT INTO items SELECT seq, CONCAT('item ', seq), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE, "
    "CONCAT('note ', seq) FROM seq_1_to_500",
]


#: (id, hour at +02:00): 60 is the instant it had (01:00 UTC), 61 moves from 01:01 to 02:00 UTC
RAW = ((60, 3), (61, 4))


@pytest.mark.parametrize("source", ["postgresql", "mysql"])
def test_same_instant_in_another_time_zone_is_no_difference(
    source: str, pg_server: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dst = pg_server.create_database(f"intask_tz_{id(tmp_path)}")
    if source == "postgresql":
        src = request.getfixturevalue("pg_url")
        execute_sql(src, ITEMS)
        # on the target: id 60 the same instant (01:00 UTC) written at +02, id 61 an hour later
        changed, changes = dst, [f"UPDATE items SET at = '2024-01-01 0{h}:00:00+02' WHERE id = {i}" for i, h in RAW]
        expected = ("2024-01-01 01:01:00.000000", "2024-01-01 02:00:00.000000")
    else:
        src = request.getfixturevalue("mysql_source_url")
        execute_sql(src, MYSQL_ITEMS)
        # on the source, a TIMESTAMP column written in a session two hours east of UTC
        changed = src
        changes = ["SET time_zone = '+02:00'"] + [
            f"UPDATE items SET at = '2024-01-01 0{h}:00:00' WHERE id = {i}" for i, h in RAW
        ]
        expected = ("2024-01-01 02:00:00.000000", "2024-01-01 01:01:00.000000")
    doc = task_doc(src, dst, f"intask-tz-{source}")
    assert run_task(doc, tmp_path / "state").complete
    execute_sql(changed, changes)
    result = Validation(task_from_document(doc), recheck_delay=0).run()
    found = [(f.kind, f.key, f.columns) for t in result.tables for f in t.failures]
    assert found == [(RECORD_DIFF, (("id", "61"),), (("at", *expected),))]


def test_repair_on_a_text_key_reads_only_the_failing_keys(pg_server: Any, pg_url: str, tmp_path: Path) -> None:
    dst = pg_server.create_database(f"intask_repair_{id(tmp_path)}")
    execute_sql(
        pg_url,
        [
            "CREATE TABLE codes (code varchar(10) PRIMARY KEY, n int)",
            "INSERT INTO codes SELECT 'k' || g, g FROM generate_series(1, 20000) g",
            "ANALYZE codes",
        ],
    )
    doc = task_doc(pg_url, dst, "intask-repair")
    assert run_task(doc, tmp_path / "state").complete
    execute_sql(
        dst,
        [
            "UPDATE codes SET n = -1 WHERE code = 'k7'",
            "DELETE FROM codes WHERE code = 'k8'",
            "INSERT INTO codes VALUES ('x', 0)",
        ],
    )
    task = task_from_document(doc)
    (table,) = Validation(task, recheck_delay=0).run().tables
    scanned = _rows_scanned(pg_url)
    assert {(f.kind, f.key) for f in table.failures} == {
        (RECORD_DIFF, (("code", "k7"),)),
        ("MISSING_TARGET", (("code", "k8"),)),
        (MISSING_SOURCE, (("code", "x"),)),
    }
    assert repair_table(task, table.plan, table.failures) == 3
    # the source was read by its key index, never scanned (statistics arrive when the reading session ends)
    wait_for = time.monotonic() + 10
    while _rows_scanned(pg_url)[1] == scanned[1] and time.monotonic() < wait_for:
        time.sleep(0.1)
    after = _rows_scanned(pg_url)
    assert after[0] == scanned[0] and after[1] > scanned[1]
    assert Validation(task, recheck_delay=0).run().equal


def _rows_scanned(url: str) -> tuple[int, int]:
    """The source table's (sequential scans, index scans) so far."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'codes'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


JSON_DOCS = [
    '{"b": 1, "a": [1, 2.50, -0.0, 12345678901234567890, 0.001, -7.25e3], "c": {"z": null, "y": true, "x": false}}',
    '{"s": "é and \\" quote \\\\ slash / tab\\t newline\\n", "e": {}, "f": [], "B": 3, "aa": 4, "A": {"k": [[]]}}',
    '[{"b": 1, "a": 2}, "x", 3, null, [true, false]]',
    '"just a string"',
    "100",
    "null",
    '{"deep": {"deeper": {"deepest": {"bottom": {"x": 1}}}}}',
]


def test_json_between_mariadb_and_postgresql_is_checksummed_in_the_databases(
    pg_server: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = request.getfixturevalue("mysql_source_url")
    dst = pg_server.create_database(f"intask_json_{id(tmp_path)}")
    execute_sql(src, ["CREATE TABLE docs (id int PRIMARY KEY, doc json)"])
    literal = [d.replace("\\", "\\\\") for d in JSON_DOCS]  # MySQL string literals take backslash escapes
    execute_sql(src, [f"INSERT INTO docs VALUES ({i}, '{d}')" for i, d in enumerate(literal)])
    doc = task_doc(src, dst, "intask-json")
    assert run_task(doc, tmp_path / "state").complete
    validation = Validation(task_from_document(doc), recheck_delay=0)
    (plan,) = validation.plans()
    comparer = validation.table_comparer(plan)
    try:
        assert not comparer.source.python and not comparer.target.python  # no side streams its rows
        scope = Scope(0, len(JSON_DOCS))
        source, target = (
            comparer.source.checksums(scope, len(JSON_DOCS)),
            comparer.target.checksums(scope, len(JSON_DOCS)),
        )
        assert source == target  # the documents are equal as jsonb, at any depth
        # the same leaves in another structure differ: the source's checksum of that bucket no longer matches
        execute_sql(dst, ["""UPDATE docs SET doc = '[{"b": 1, "a": 2}, "x", 3, null, [true], false]' WHERE id = 2"""])
        changed = comparer.source.checksums(scope, len(JSON_DOCS))
        assert {b for b in source if changed[b] != target[b]} == {2}
        execute_sql(dst, [f"UPDATE docs SET doc = '{JSON_DOCS[2]}' WHERE id = 2"])
        everything = Scope(None, None)
        # a text PostgreSQL cannot read as jsonb never matches (its rows are then compared)
        unreadable: list[list[str | None]] = [["0,", "1,"], ['"a\\u0000b"', "{}"]]
        assert comparer.target.jsonb_mismatches(everything, "0,1", unreadable) is None
        # a text holding a separator sends the texts as arrays: the same answers per row
        separated: list[list[str | None]] = [["5:\x1e", "2,", "3,", "4,"], ['{"x": 1}', JSON_DOCS[2], '"other"', "100"]]
        arrays = comparer.target.jsonb_mismatches(everything, "0,1,1,1", separated)
        plain: list[list[str | None]] = [["2,", "3,", "4,"], [JSON_DOCS[2], '"other"', "100"]]
        joined = comparer.target.jsonb_mismatches(everything, "1,1,1", plain)
        # a key the target lacks, a different document: each counted where it was sent
        assert arrays == {0: 1, 1: 1} and joined == {1: 1}
    finally:
        comparer.close()
    assert validation.run().equal
    execute_sql(
        dst, ["""UPDATE docs SET doc = '{"b": 1, "a": [1, 2.5, 0, 12345678901234567891, 0.001, -7250]}' WHERE id = 0"""]
    )
    (table,) = validation.run().tables
    assert [(f.key, [c for c, _, _ in f.columns]) for f in table.failures] == [((("id", "0"),), ["doc"])]
