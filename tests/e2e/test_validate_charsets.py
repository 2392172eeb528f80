"""Validation of MariaDB texts in other character sets than utf8mb4.

A row text length-prefixes each text with its UTF-8 byte length: MariaDB reads it from a utf8mb4 or
utf8mb3 value as it is, and converts a text of another character set (latin1 here) to utf8mb4 first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from schemas import execute_sql
from tasks import run_task, task_doc

from conveyor.runner.task import task_from_document
from conveyor.validate.compare import RECORD_DIFF
from conveyor.validate.run import Validation, ValidationResult
from conveyor.validate.side import Scope

SOURCE = [
    "CREATE TABLE words (id int PRIMARY KEY, l1 varchar(20) CHARACTER SET latin1, m3 varchar(20) CHARACTER SET "
    "utf8mb3, m4 text CHARACTER SET utf8mb4, c3 char(4) CHARACTER SET utf8mb3, e enum('ä', 'b')) "
    "DEFAULT CHARSET=utf8mb4",
    "INSERT INTO words VALUES (1, 'café', 'naïve €', 'emoji 😀', 'ñ', 'ä'), (2, 'abc', 'x', 'y', 'z', 'b'), "
    "(3, NULL, '', 'ü', NULL, NULL), (4, 'Ærø €', 'ß', '€😀é', 'ab', 'ä')",
    # a text key: hash buckets of each key's row text
    "CREATE TABLE names (name varchar(20) CHARACTER SET latin1 PRIMARY KEY, nick varchar(20) CHARACTER SET utf8mb3, "
    "n int) DEFAULT CHARSET=utf8mb4",
    "INSERT INTO names VALUES ('José', 'Pepé', 1), ('Zoë', 'zö', 2), ('plain', 'p', 3)",
    # JSON against PostgreSQL: the key texts are joined with PostgreSQL's own
    "CREATE TABLE docs (k varchar(10) CHARACTER SET utf8mb3 PRIMARY KEY, doc json) DEFAULT CHARSET=utf8mb4",
    """INSERT INTO docs VALUES ('ä1', '{"a": "é"}'), ('b2', '{"b": 1}')""",
]
PLANT = [
    "UPDATE words SET l1 = 'cafe' WHERE id = 1",
    "UPDATE words SET m3 = 'ß ' WHERE id = 4",
    "UPDATE names SET nick = 'zo' WHERE n = 2",
    """UPDATE docs SET doc = '{"b": 2}' WHERE k = 'b2'""",
]
EXPECTED = {
    ("words", ("1",), ("l1",)),
    ("words", ("4",), ("m3",)),
    ("names", ("Zoë",), ("nick",)),
    ("docs", ("b2",), ("doc",)),
}
TARGETS = {"postgresql": "pg_url", "sqlite": "sqlite_url", "mysql": "mysql_url"}


def _validate(doc: dict[str, Any]) -> ValidationResult:
    return Validation(task_from_document(doc), recheck_delay=0).run()


@pytest.mark.parametrize("dst", list(TARGETS))
def test_mariadb_texts_of_every_character_set_compare_equal_and_differences_are_found(
    dst: str, mysql_source_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dst_url = request.getfixturevalue(TARGETS[dst])
    execute_sql(mysql_source_url, SOURCE)
    doc = task_doc(mysql_source_url, dst_url, name=f"validate-charsets-{dst}")
    load = run_task(doc, tmp_path / "state")
    assert not load.rejected_rows and load.complete

    identical = _validate(doc)
    assert identical.equal, [(t.plan.key, t.error, t.failures) for t in identical.tables]
    # equal rows hash alike on both sides (a row whose hashes differ passes only once its texts are read)
    validation = Validation(task_from_document(doc), recheck_delay=0)
    for plan in validation.plans():
        comparer = validation.table_comparer(plan)
        try:
            scope = Scope(buckets=3)
            assert comparer.source.checksums(scope) == comparer.target.checksums(scope), plan.key
        finally:
            comparer.close()

    execute_sql(dst_url, PLANT)
    result = _validate(doc)
    found = {
        (t.plan.target.id.name, tuple(v for _, v in f.key), tuple(c for c, _, _ in f.columns))
        for t in result.tables
        for f in t.failures
        if f.kind == RECORD_DIFF
    }
    assert found == EXPECTED, [(t.plan.key, t.error) for t in result.tables]
    assert sum(len(t.failures) for t in result.tables) == len(EXPECTED)
