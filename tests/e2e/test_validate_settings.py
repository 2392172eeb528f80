"""The rest of DMS's ValidationSettings on real servers, with planted differences: masked columns and LOBs
truncated in limited LOB mode compared as the task wrote them (every engine pair's SQL and SQLite's
Python cut the same prefix), SkipLobColumns, ValidationPartialLobSize, TableFailureMaxCount,
MaxKeyColumnSize, and during CDC ValidationQueryCdcDelaySeconds and the table's suspension."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdc_support import Running, postgres_source, wait_until
from oracle import fetch
from schemas import execute_sql
from servers import PostgresServer
from tasks import run_task, task_doc
from test_validate import found, urls, validate

from conveyor.model.schema import TableId
from conveyor.runner.task import task_from_document
from conveyor.validate.compare import RECORD_DIFF
from conveyor.validate.repair import repair_table
from conveyor.validate.run import MISMATCHED, SUSPENDED, VALIDATED, Validation

ROWS = 200
#: ``bio``: texts over 1 KB whose cut at 1,024 bytes falls inside 2-, 3- and 4-byte characters by the row;
#: ``pic``: 1,500 bytes
SOURCE_SQL = {
    "postgresql": [
        "CREATE TABLE people (id bigint PRIMARY KEY, ssn varchar(20), phone varchar(20), secret varchar(80), "
        "code char(6), bio text, pic bytea)",
        "INSERT INTO people SELECT g, 'SSN-' || g || '-77', '+1 555 ' || g, 'secret ' || g, 'C' || g, "
        "repeat('x', g % 4) || repeat(CASE g % 3 WHEN 0 THEN 'é' WHEN 1 THEN '€' ELSE '😀' END, 600), "
        f"decode(repeat(lpad(to_hex(g % 256), 2, '0'), 1500), 'hex') FROM generate_series(1, {ROWS}) g",
        "UPDATE people SET bio = 'short ' || id, pic = NULL WHERE id % 10 = 0",
    ],
    "mysql": [
        "CREATE TABLE people (id bigint PRIMARY KEY, ssn varchar(20), phone varchar(20), secret varchar(80), "
        "code char(6), bio text, pic blob) DEFAULT CHARSET=utf8mb4",
        "INSERT INTO people SELECT seq, CONCAT('SSN-', seq, '-77'), CONCAT('+1 555 ', seq), CONCAT('secret ', seq), "
        "CONCAT('C', seq), CONCAT(REPEAT('x', seq % 4), REPEAT(ELT(seq % 3 + 1, 'é', '€', '😀'), 600)), "
        f"UNHEX(REPEAT(LPAD(HEX(seq % 256), 2, '0'), 1500)) FROM seq_1_to_{ROWS}",
        "UPDATE people SET bio = CONCAT('short ', id), pic = NULL WHERE id % 10 = 0",
    ],
    "sqlite": [
        "CREATE TABLE people (id INTEGER PRIMARY KEY, ssn VARCHAR(20), phone VARCHAR(20), secret VARCHAR(80), "
        "code CHAR(6), bio TEXT, pic BLOB)",
        f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) "
        "INSERT INTO people SELECT g, 'SSN-' || g || '-77', '+1 555 ' || g, 'secret ' || g, 'C' || g, "
        "substr('xxx', 1, g % 4) || replace(hex(zeroblob(600)), '00', CASE g % 3 WHEN 0 THEN 'é' "
        "WHEN 1 THEN '€' ELSE '😀' END), zeroblob(1500) FROM s",
        "UPDATE people SET bio = 'short ' || id, pic = NULL WHERE id % 10 = 0",
    ],
}
#: on the target: row 5's ssn unmasked, the hash of row 6, row 7's bio inside the kept prefix, and the
#: randomized phone of row 8 (not compared); on the source: row 9's bio after the prefix (not compared)
PLANT_TARGET = [
    "UPDATE people SET ssn = 'SSN-5-77' WHERE id = 5",
    "UPDATE people SET secret = 'AB' WHERE id = 6",
    "UPDATE people SET bio = 'changed' WHERE id = 7",
    "UPDATE people SET phone = 'nobody' WHERE id = 8",
]
PLANT_SOURCE = {
    "postgresql": "UPDATE people SET bio = bio || 'more' WHERE id = 9",
    "mysql": "UPDATE people SET bio = CONCAT(bio, 'more') WHERE id = 9",
    "sqlite": "UPDATE people SET bio = bio || 'more' WHERE id = 9",
}
PAIRS = [
    ("postgresql", "postgresql"),
    ("mysql", "postgresql"),
    ("postgresql", "mysql"),
    ("sqlite", "postgresql"),
    ("postgresql", "sqlite"),
    ("mysql", "mysql"),
]


def rule(rule_id: int, column: str, action: str, **extra: Any) -> dict[str, Any]:
    return {
        "rule-type": "transformation",
        "rule-id": str(rule_id),
        "rule-name": f"r{rule_id}",
        "rule-target": "column",
        "object-locator": {"schema-name": "%", "table-name": "people", "column-name": column},
        "rule-action": action,
        **extra,
    }


MASKS = {
    "rules": [
        {
            "rule-type": "selection",
            "rule-id": "1",
            "rule-name": "all",
            "object-locator": {"schema-name": "%", "table-name": "%"},
            "rule-action": "include",
        },
        rule(2, "ssn", "data-masking-digits-mask", value="#"),
        rule(3, "phone", "data-masking-digits-randomize"),
        rule(4, "secret", "data-masking-hash-mask"),
        rule(5, "code", "change-data-type", **{"data-type": {"type": "string", "length": 64}}),
        rule(6, "code", "data-masking-hash-mask"),
    ]
}


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a}2{b}" for a, b in PAIRS])
def test_masked_and_truncated_columns_compare_as_written(
    src: str, dst: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src_url, dst_url = urls(src, dst, request, tmp_path)
    execute_sql(src_url, SOURCE_SQL[src])
    lobs = {"LimitedSizeLobMode": True, "LobMaxSize": 1}
    doc = {**task_doc(src_url, dst_url, name=f"valset-{src}-{dst}", TargetMetadata=lobs), "table_mappings": MASKS}
    load = run_task(doc, tmp_path / "state")
    assert load.complete and not load.rejected_rows
    # the load did truncate and mask (else this test proves nothing)
    bio, secret, ssn = next(r[1:] for r in fetch(dst_url, "people", ["id", "bio", "secret", "ssn"]) if r[0] == 4)
    assert len(bio.encode()) <= 1024 < len(bio.encode()) + 4 and len(secret) == 64 and ssn == "SSN-#-##"

    identical = validate(doc)
    assert found(identical) == set() and identical.equal, [(t.plan.key, t.error) for t in identical.tables]
    assert any("phone (data-masking-digits-randomize" in w for w in identical.warnings), identical.warnings

    execute_sql(dst_url, PLANT_TARGET)
    execute_sql(src_url, [PLANT_SOURCE[src]])
    result = validate(doc)
    assert found(result) == {
        ("people", RECORD_DIFF, ("5",), ("ssn",)),
        ("people", RECORD_DIFF, ("6",), ("secret",)),
        ("people", RECORD_DIFF, ("7",), ("bio",)),
    }
    # repair writes the rows as the task does: masked and cut, never the source's values
    (table,) = result.tables
    assert repair_table(task_from_document(doc), table.plan, table.failures) == 3
    assert validate(doc).equal
    repaired = {r[0]: r[1:] for r in fetch(dst_url, "people", ["id", "ssn", "secret", "bio"])}
    assert repaired[5][0] == "SSN-#-##" and len(repaired[6][1]) == 64 and len(repaired[7][2].encode()) <= 1024


LOBS_SQL = {
    "postgresql": [
        "CREATE TABLE notes (id int PRIMARY KEY, title varchar(20), body text, data bytea)",
        "INSERT INTO notes SELECT g, 't' || g, repeat('ü', 1000), decode(repeat('ab', 2000), 'hex') "
        "FROM generate_series(1, 100) g",
    ],
    "mysql": [
        "CREATE TABLE notes (id int PRIMARY KEY, title varchar(20), body text, data blob) DEFAULT CHARSET=utf8mb4",
        "INSERT INTO notes SELECT seq, CONCAT('t', seq), REPEAT('ü', 1000), UNHEX(REPEAT('ab', 2000)) "
        "FROM seq_1_to_100",
    ],
}
#: target rows: 2 after the first KB (text), 3 after it (binary), 4 inside it, 5 a non-LOB column
PLANT_LOBS = {
    "postgresql": [
        "UPDATE notes SET body = body || 'x' WHERE id = 2",
        "UPDATE notes SET data = data || '\\x00'::bytea WHERE id = 3",
        "UPDATE notes SET body = 'x' || body WHERE id = 4",
        "UPDATE notes SET title = 'changed' WHERE id = 5",
    ],
    "mysql": [
        "UPDATE notes SET body = CONCAT(body, 'x') WHERE id = 2",
        "UPDATE notes SET data = CONCAT(data, X'00') WHERE id = 3",
        "UPDATE notes SET body = CONCAT('x', body) WHERE id = 4",
        "UPDATE notes SET title = 'changed' WHERE id = 5",
    ],
}
LOB_PAIRS = [("postgresql", "postgresql"), ("mysql", "postgresql"), ("postgresql", "mysql")]


@pytest.mark.parametrize(("src", "dst"), LOB_PAIRS, ids=[f"{a}2{b}" for a, b in LOB_PAIRS])
def test_partial_lob_size_and_skip_lob_columns(
    src: str, dst: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src_url, dst_url = urls(src, dst, request, tmp_path)
    execute_sql(src_url, LOBS_SQL[src])
    doc = task_doc(src_url, dst_url, name=f"valset-lobs-{src}-{dst}")
    assert run_task(doc, tmp_path / "state").complete
    assert validate(doc).equal
    execute_sql(dst_url, PLANT_LOBS[dst])
    whole = {
        ("notes", RECORD_DIFF, ("2",), ("body",)),
        ("notes", RECORD_DIFF, ("3",), ("data",)),
        ("notes", RECORD_DIFF, ("4",), ("body",)),
        ("notes", RECORD_DIFF, ("5",), ("title",)),
    }
    assert found(validate(doc)) == whole
    partial = {**doc, "settings": {"ValidationSettings": {"ValidationPartialLobSize": 1}}}
    assert found(validate(partial)) == whole - {
        ("notes", RECORD_DIFF, ("2",), ("body",)),
        ("notes", RECORD_DIFF, ("3",), ("data",)),
    }
    skipped = validate({**doc, "settings": {"ValidationSettings": {"SkipLobColumns": True}}})
    assert found(skipped) == {("notes", RECORD_DIFF, ("5",), ("title",))}
    assert any("body (SkipLobColumns)" in w and "data (SkipLobColumns)" in w for w in skipped.warnings)


def test_table_failure_max_count_and_max_key_column_size(pg_server: Any, pg_url: str, tmp_path: Path) -> None:
    dst = pg_server.create_database(f"valset_limits_{id(tmp_path)}")
    execute_sql(
        pg_url,
        [
            "CREATE TABLE many (id int PRIMARY KEY, v int)",
            "INSERT INTO many SELECT g, g FROM generate_series(1, 5000) g",
            "CREATE TABLE few (id int PRIMARY KEY, v int)",
            "INSERT INTO few SELECT g, g FROM generate_series(1, 100) g",
            "CREATE TABLE named (name text PRIMARY KEY, v int)",
            "INSERT INTO named VALUES ('short', 1), (repeat('k', 60), 2), ('other', 3)",
        ],
    )
    settings = {"TableFailureMaxCount": 10, "MaxKeyColumnSize": 50}
    doc = task_doc(pg_url, dst, name="valset-limits", ValidationSettings=settings)
    assert run_task(doc, tmp_path / "state").complete
    execute_sql(
        dst,
        [
            "UPDATE many SET v = -v WHERE id % 100 = 0",  # 50 failures, over the table's 10
            "UPDATE few SET v = -v WHERE id IN (1, 2)",
            "UPDATE named SET v = -v WHERE name <> 'other'",  # one key of 60 bytes
        ],
    )
    validation = Validation(task_from_document(doc), recheck_delay=0)
    result = validation.run()
    tables = {t.plan.target.id.name: t for t in result.tables}
    many, few, named = tables["many"], tables["few"], tables["named"]
    assert (many.state, len(many.failures)) == (SUSPENDED, 10)
    # every differing row not recorded is in a group left unread (or over the limit): at least 50 - 10
    assert many.suspended >= 40 and many.stats().dms()["ValidationSuspendedRecords"] == many.suspended
    assert (few.state, len(few.failures)) == (MISMATCHED, 2)
    assert (named.state, [f.key for f in named.failures], named.suspended) == (
        MISMATCHED,
        [(("name", "short"),)],
        1,
    )
    assert any("TableFailureMaxCount" in w for w in result.warnings)
    validation.record(result)
    rows = fetch(dst, "awsdms_validation_failures_v1", ["TABLE_NAME"])
    assert sorted(r[0] for r in rows) == ["few"] * 2 + ["many"] * 10 + ["named"]


ITEMS = [
    "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(40), note text)",
    "INSERT INTO items SELECT g, 'item ' || g, 'note ' || g FROM generate_series(1, 200) g",
]
#: a target trigger that changes what is written for ids 5 and 6 (fires in replica sessions)
TAMPER = [
    "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN IF NEW.id IN (5, 6) THEN NEW.name := 'tampered'; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER tamper BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION tamper()",
    "ALTER TABLE items ENABLE ALWAYS TRIGGER tamper",
]


@pytest.fixture
def cdc_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "valset_" + request.node.name, "valset-cdc", ";\n".join(ITEMS))


def test_cdc_query_delay_and_table_suspension(pg_server: PostgresServer, cdc_source: str, tmp_path: Path) -> None:
    dst = pg_server.create_database(f"valset_cdc_{id(tmp_path)}")
    settings = {
        "EnableValidation": True,
        "ValidationQueryCdcDelaySeconds": 3,
        "TableFailureMaxCount": 1,
        "RecordSuspendDelayInMinutes": 0,
    }
    doc = {
        **task_doc(cdc_source, dst, name="valset-cdc", ValidationSettings=settings),
        "migration_type": "full-load-and-cdc",
    }
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.validating is not None)
    validating = task.runner.validating
    assert validating is not None
    stats = task.runner.stats.tables["public.items"]
    assert stats.validation_state == VALIDATED
    recheck = validating.tables[TableId("public", "items")]
    execute_sql(dst, TAMPER)
    changed = time.monotonic()
    execute_sql(cdc_source, ["UPDATE items SET note = 'changed' WHERE id IN (5, 6)"])
    wait_until(task, lambda: recheck.stopped, timeout=40)
    # no read before the delay: the two reads that found the failures came 3 s after the change at least
    assert time.monotonic() - changed >= 3
    assert len(recheck.failures) == 2 and recheck.pending == 0
    # suspended: later changes are counted, not read
    execute_sql(cdc_source, ["UPDATE items SET note = 'again' WHERE id IN (7, 8)"])
    wait_until(task, lambda: stats.validation_suspended >= 2, timeout=20)
    result = task.finish()
    (table,) = result.tables
    assert (table.validation_state, table.validation_failed) == (SUSPENDED, 2)
    assert table.validation_suspended >= 2
    assert any("CDC validation suspended" in w for w in result.warnings)
