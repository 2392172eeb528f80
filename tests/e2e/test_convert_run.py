"""Schema conversion inside ``conveyor run``: type-mapping overrides create the chosen target types and
the values land in them; identities go on after the source's last value once the full load is in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from cdc_support import Running, postgres_source, wait_until
from oracle import fetch
from schemas import execute_sql
from servers import PostgresServer
from tasks import run_task, task_doc
from test_convert_schema import urls

from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.registry import engine_for
from conveyor.model.schema import TableId
from conveyor.runner import stats as st
from conveyor.runner.conversion import convert_task
from conveyor.runner.task import task_from_document

SOURCES = {
    "postgresql": [
        "CREATE TABLE amounts (id integer PRIMARY KEY, price numeric(14,4), flag smallint)",
        "INSERT INTO amounts VALUES (1, 12.3456, 1), (2, -0.0001, 0), (3, NULL, NULL), (4, 9999999999.9999, -1), "
        "(5, 0, 127)",
    ],
    "mysql": [
        "CREATE TABLE amounts (id int PRIMARY KEY, price decimal(14,4), flag tinyint(1))",
        "INSERT INTO amounts VALUES (1, 12.3456, 1), (2, -0.0001, 0), (3, NULL, NULL), (4, 9999999999.9999, -128), "
        "(5, 0, 127)",
    ],
}
PRICE_AS_TEXT = [{"source_type": "numeric", "target_type": "text"}]
FLAG_AS_SMALLINT = [{"table_name": "amounts", "column_name": "flag", "target_type": "smallint"}]
FLAG_AS_INTEGER = [{"table_name": "amounts", "column_name": "flag", "target_type": "integer"}]
#: (source, target, type_mappings, column, the target's type as its catalog names it, value as the target holds it)
OVERRIDES: list[tuple[str, str, list[dict[str, str]], str, str, Any]] = [
    ("postgresql", "postgresql", PRICE_AS_TEXT, "price", "text", str),
    ("postgresql", "mysql", PRICE_AS_TEXT, "price", "text", str),
    ("mysql", "mysql", FLAG_AS_SMALLINT, "flag", "smallint", int),
    ("mysql", "postgresql", FLAG_AS_INTEGER, "flag", "integer", int),
]


def declared_type(url: str, table: str, column: str) -> str:
    config = parse_endpoint(url, "target")
    spec = engine_for(config)
    intro = spec.open_introspector(config)
    try:
        native = intro.table(TableId(spec.default_schema(config), table)).column(column).type.native
    finally:
        intro.close()
    return native.split("(")[0]


@pytest.mark.parametrize(
    ("src", "dst", "mappings", "column", "native", "as_target"),
    OVERRIDES,
    ids=[f"{a}2{b}-{c}" for a, b, _, c, _, _ in OVERRIDES],
)
def test_run_honours_type_mappings(
    src: str,
    dst: str,
    mappings: list[dict[str, str]],
    column: str,
    native: str,
    as_target: Any,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    source_url, target_url = urls(src, dst, request, tmp_path)
    execute_sql(source_url, SOURCES[src])
    doc = task_doc(source_url, target_url, name=f"override-{src}-{dst}")
    doc["type_mappings"] = mappings
    result = run_task(doc, tmp_path / "state")
    assert all(t.state == st.COMPLETED for t in result.tables), [t.error for t in result.tables]
    assert sum(t.full_load_error_rows for t in result.tables) == 0, result.warnings
    assert declared_type(target_url, "amounts", column) == native

    schema = "public" if dst == "postgresql" else None
    columns = ["id", "price", "flag"]
    source_rows = sorted(fetch(source_url, "amounts", columns))
    target_rows = sorted(fetch(target_url, "amounts", columns, schema=schema))
    assert len(source_rows) == len(target_rows) == 5
    at = columns.index(column)
    for source_row, target_row in zip(source_rows, target_rows, strict=True):
        expected = None if source_row[at] is None else as_target(source_row[at])
        assert target_row[at] == expected, (source_row, target_row)
        other = [i for i in range(len(columns)) if i != at]
        assert [_plain(source_row[i]) for i in other] == [_plain(target_row[i]) for i in other]


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


IDENTITY = {
    "postgresql": ["CREATE TABLE tickets (id serial PRIMARY KEY, label text NOT NULL)"],
    "mysql": ["CREATE TABLE tickets (id int AUTO_INCREMENT PRIMARY KEY, label varchar(20) NOT NULL)"],
    "sqlite": ["CREATE TABLE tickets (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL)"],
}
#: 7 values handed out, the last two rows gone: the target's next one is 8, not 6
TICKETS = [
    *(f"INSERT INTO tickets (label) VALUES ('t{i}')" for i in range(1, 8)),
    "DELETE FROM tickets WHERE id > 5",
]
IDENTITY_PAIRS = [
    ("postgresql", "postgresql"),
    ("postgresql", "mysql"),
    ("postgresql", "sqlite"),
    ("mysql", "postgresql"),
    ("mysql", "mysql"),
    ("mysql", "sqlite"),
    ("sqlite", "postgresql"),
    ("sqlite", "mysql"),
    ("sqlite", "sqlite"),
]


@pytest.mark.parametrize(("src", "dst"), IDENTITY_PAIRS, ids=[f"{a}2{b}" for a, b in IDENTITY_PAIRS])
def test_identity_goes_on_after_the_source(src: str, dst: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    source_url, target_url = urls(src, dst, request, tmp_path)
    if src == dst == "sqlite":
        source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    execute_sql(source_url, IDENTITY[src] + TICKETS)
    result = run_task(task_doc(source_url, target_url, name=f"identity-{src}-{dst}"), tmp_path / "state")
    assert all(t.state == st.COMPLETED for t in result.tables), [t.error for t in result.tables]
    schema = "public" if dst == "postgresql" else None
    assert sorted(fetch(target_url, "tickets", ["id", "label"], schema=schema)) == sorted(
        fetch(source_url, "tickets", ["id", "label"])
    )
    execute_sql(target_url, ["INSERT INTO tickets (label) VALUES ('new')"])
    (new,) = [r[0] for r in fetch(target_url, "tickets", ["id", "label"], schema=schema) if r[1] == "new"]
    assert new == 8


def test_mariadb_sequence_to_postgres_after_use(mysql_source_url: str, pg_url: str, tmp_path: Path) -> None:
    """A MariaDB sequence used with its default cache: the target goes on after every value a session
    may have taken (the uncached bound), so no value is handed out twice."""
    execute_sql(
        mysql_source_url,
        [
            "CREATE TABLE t (id int PRIMARY KEY)",
            "CREATE SEQUENCE seq_cached INCREMENT BY 5",
            "SELECT NEXTVAL(seq_cached)",
        ],
    )
    conversion = convert_task(task_from_document(task_doc(mysql_source_url, pg_url)), lambda _: None, apply=True)
    assert not [i for i in conversion.report.items if i.issues], conversion.script()
    (taken,) = fetch(mysql_source_url, "seq_cached", ["next_not_cached_value"])
    execute_sql(pg_url, ["CREATE TABLE next_value AS SELECT nextval('seq_cached') AS v"])
    ((value,),) = fetch(pg_url, "next_value", ["v"])
    assert value == taken[0] and value > 1 + 5, (value, taken)


@pytest.fixture
def cdc_source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "convcdc_" + request.node.name, "override-cdc", SOURCES["postgresql"][0])


def test_cdc_honours_type_mappings(cdc_source: str, mysql_url: str, tmp_path: Path) -> None:
    """Changes to a column whose type an override chose arrive converted, as the full load's rows do."""
    execute_sql(cdc_source, SOURCES["postgresql"][1:])
    doc = {**task_doc(cdc_source, mysql_url, name="override-cdc"), "migration_type": "full-load-and-cdc"}
    doc["type_mappings"] = PRICE_AS_TEXT
    task = Running(doc, tmp_path / "state")

    def arrived() -> bool:
        source = {r[0]: None if r[1] is None else str(r[1]) for r in fetch(cdc_source, "amounts", ["id", "price"])}
        try:
            return source == dict(fetch(mysql_url, "amounts", ["id", "price"]))
        except pymysql.err.ProgrammingError:  # the full load has not created the table yet
            return False

    try:
        wait_until(task, arrived)  # the full load
        execute_sql(
            cdc_source,
            [
                "INSERT INTO amounts VALUES (6, 1.5, 2), (7, NULL, 3)",
                "UPDATE amounts SET price = 42.4200 WHERE id = 1",
                "DELETE FROM amounts WHERE id = 2",
            ],
        )
        wait_until(task, arrived)  # the changes
    finally:
        task.finish()
    assert dict(fetch(mysql_url, "amounts", ["id", "price"]))[1] == "42.4200"
