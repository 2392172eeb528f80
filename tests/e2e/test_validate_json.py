"""JSON between MariaDB and PostgreSQL: MariaDB's documents go to PostgreSQL joined per bucket (or row by row
where a text holds the separator) and are hashed there as jsonb; every planted difference is found, key
order and spacing are not differences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas import execute_sql
from tasks import run_task, task_doc

from conveyor.runner.task import task_from_document
from conveyor.validate.compare import MISSING_TARGET, RECORD_DIFF
from conveyor.validate.run import Validation

SOURCE = [
    "CREATE TABLE docs (id int PRIMARY KEY, doc json, note text, at datetime(6), amount decimal(10, 2))",
    "INSERT INTO docs SELECT seq, JSON_OBJECT('n', seq, 'tags', JSON_ARRAY(JSON_ARRAY(1, 2), 'x')), "
    "CONCAT('note ', seq), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 4 FROM seq_1_to_3000",
    "UPDATE docs SET doc = NULL WHERE id = 7",
    # a text key holding the separator of joined texts: that bucket's documents are sent row by row
    "CREATE TABLE named (code varchar(20) PRIMARY KEY, doc json)",
    "INSERT INTO named SELECT CONCAT('k', seq), JSON_OBJECT('n', seq) FROM seq_1_to_200",
    "INSERT INTO named VALUES (CONCAT('a', CHAR(30), 'b'), '{\"n\": 0}')",
]
PLANT = [
    "UPDATE docs SET doc = jsonb_set(doc, '{n}', '0') WHERE id = 10",
    # the same scalars in the same order, arrays ending elsewhere
    """UPDATE docs SET doc = '{"n": 20, "tags": [[1], 2, "x"]}' WHERE id = 20""",
    "UPDATE docs SET doc = NULL WHERE id = 30",
    """UPDATE docs SET doc = '{}' WHERE id = 7""",
    "DELETE FROM docs WHERE id = 40",
    # not differences: key order and spacing, a number spelled with a zero fraction
    """UPDATE docs SET doc = '{"tags": [[1, 2], "x"],   "n": 50.0}' WHERE id = 50""",
    "UPDATE named SET doc = '{\"n\": 1}' WHERE code = chr(97) || chr(30) || 'b'",
    """UPDATE named SET doc = '{"n": 6}' WHERE code = 'k5'""",
]
EXPECTED = {
    ("docs", RECORD_DIFF, ("10",), ("doc",)),
    ("docs", RECORD_DIFF, ("20",), ("doc",)),
    ("docs", RECORD_DIFF, ("30",), ("doc",)),
    ("docs", RECORD_DIFF, ("7",), ("doc",)),
    ("docs", MISSING_TARGET, ("40",), ()),
    ("named", RECORD_DIFF, ("a\x1eb",), ("doc",)),
    ("named", RECORD_DIFF, ("k5",), ("doc",)),
}


def test_json_differences_mariadb_to_postgresql(mysql_source_url: str, pg_url: str, tmp_path: Path) -> None:
    execute_sql(mysql_source_url, SOURCE)
    doc = task_doc(mysql_source_url, pg_url, name="validate-json")
    load = run_task(doc, tmp_path / "state")
    assert not load.rejected_rows and load.complete

    def found() -> tuple[set[tuple[str, str, tuple[Any, ...], tuple[str, ...]]], bool]:
        result = Validation(task_from_document(doc), recheck_delay=0).run()
        assert not any(t.error for t in result.tables), [t.error for t in result.tables]
        return {
            (t.plan.target.id.name, f.kind, tuple(v for _, v in f.key), tuple(c for c, _, _ in f.columns))
            for t in result.tables
            for f in t.failures
        }, result.equal

    assert found() == (set(), True)
    execute_sql(pg_url, PLANT)
    assert found() == (EXPECTED, False)
