"""Schema conversion's pure parts: defaults, expressions, type-mapping overrides, the report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conveyor.convert.defaults import convert_default
from conveyor.convert.dialects import transpile
from conveyor.convert.engines import NotConvertible
from conveyor.convert.overrides import override_for, parse_type_mappings
from conveyor.convert.report import Effort, Report, Status
from conveyor.convert.views import convert_view_query
from conveyor.errors import ConfigError
from conveyor.model.schema import Column, Table, TableId
from conveyor.model.types import ColumnType, LogicalType

L = LogicalType

DEFAULTS = [
    # (default, logical type, source, target, target native, expected)
    ("now()", L.TIMESTAMPTZ, "postgresql", "mysql", "datetime(6)", "CURRENT_TIMESTAMP(6)"),
    ("now()", L.TIMESTAMPTZ, "postgresql", "sqlite", "TEXT", "CURRENT_TIMESTAMP"),
    ("current_timestamp()", L.TIMESTAMP, "mysql", "postgresql", "timestamp", "CURRENT_TIMESTAMP"),
    ("'new'::public.status", L.ENUM, "postgresql", "mysql", "enum('new')", "'new'"),
    ("'anon'::text", L.TEXT, "postgresql", "mysql", "longtext", "('anon')"),
    ("(0)::numeric", L.DECIMAL, "postgresql", "mysql", "decimal(10,2)", "0"),
    ("gen_random_uuid()", L.UUID, "postgresql", "mysql", "char(36)", "(UUID())"),
    ("uuid()", L.UUID, "mysql", "postgresql", "uuid", "(GEN_RANDOM_UUID())"),
    ("1", L.BOOLEAN, "mysql", "postgresql", "boolean", "TRUE"),
    ("true", L.BOOLEAN, "postgresql", "sqlite", "INTEGER", "1"),
    ("NULL", L.TEXT, "mysql", "postgresql", "text", None),
    (
        "nextval('t_id_seq'::regclass)",
        L.INTEGER,
        "postgresql",
        "postgresql",
        "integer",
        "nextval('t_id_seq'::regclass)",
    ),
]


@pytest.mark.parametrize(("default", "logical", "source", "target", "native", "expected"), DEFAULTS)
def test_defaults(default: str, logical: LogicalType, source: str, target: str, native: str, expected: str) -> None:
    assert convert_default(Column("c", ColumnType(logical), default=default), native, source, target) == expected


def test_identity_default_is_the_identity() -> None:
    column = Column("id", ColumnType(L.INTEGER), default="nextval('t_id_seq'::regclass)", identity=True)
    assert convert_default(column, "bigint", "postgresql", "mysql") is None


@pytest.mark.parametrize(
    ("default", "target", "reason"),
    [("gen_random_uuid()", "sqlite", "UUID"), ("my_fn()", "mysql", "my_fn"), ("'a' +* 2", "mysql", "read")],
)
def test_defaults_that_do_not_convert(default: str, target: str, reason: str) -> None:
    with pytest.raises(NotConvertible, match=reason):
        convert_default(Column("c", ColumnType(L.TEXT), default=default), "text", "postgresql", target)


def test_numeric_casts_do_not_cut_fractions_on_mysql() -> None:
    assert transpile("((qty)::numeric * price)", "postgresql", "mysql") == "((`qty`) * `price`)"


def test_view_query_reads_the_target_tables() -> None:
    names = {TableId("shop", "orders"): TableId("public", "orders")}
    query = "select `shop`.`orders`.`id` AS `id` from `shop`.`orders` where `shop`.`orders`.`qty` > 10"
    assert convert_view_query(query, "mysql", "postgresql", "shop", names, True) == (
        'SELECT "orders"."id" AS "id" FROM "public"."orders" WHERE "orders"."qty" > 10'
    )


def test_type_mapping_overrides() -> None:
    rules = parse_type_mappings(
        [
            {"source_type": "numeric", "target_type": "decimal(38,10)"},
            {"table_name": "orders", "column_name": "total", "target_type": "numeric(20,4)"},
        ]
    )
    override = override_for(rules)
    assert override is not None
    numeric = ColumnType(L.DECIMAL, native="numeric(12,2)")
    table = Table(TableId("public", "orders"), (Column("total", numeric), Column("tax", numeric)))
    assert override(table, table.columns[0]) == "numeric(20,4)"  # the column's rule wins
    assert override(table, table.columns[1]) == "decimal(38,10)"
    assert override_for([]) is None


@pytest.mark.parametrize(
    "doc",
    [
        [{"target_type": "int"}],
        [{"column_name": "c", "target_type": "int"}],
        [{"source_type": "int", "target_type": "int; DROP TABLE t"}],
        [{"source_type": "int", "target_type": "bigint", "colour": "red"}],
        {"source_type": "int"},
    ],
)
def test_bad_type_mappings_name_the_key(doc: object) -> None:
    with pytest.raises(ConfigError, match="type_mappings"):
        parse_type_mappings(doc)


def test_report_statuses_json_and_html(tmp_path: Path) -> None:
    report = Report("postgresql", "sqlite")
    report.item("table", "public.a", "main.a")
    warned = report.item("table", "public.b", "main.b")
    warned.add("SQLite has no comments", "people", "keep it in documentation", action=False)
    action = report.item("trigger", "public.<t>")
    action.add("triggers are not converted", "CREATE TRIGGER <t> ...", "rewrite it", Effort.MEDIUM)
    assert [i.status for i in report.items] == [Status.CONVERTED, Status.WARNINGS, Status.ACTION]
    as_json, as_html = report.write(tmp_path)
    doc = json.loads(as_json.read_text())
    assert doc["summary"] == {"converted": 1, "converted with warnings": 1, "needs action": 1}
    assert doc["objects"][2]["issues"][0]["effort"] == "medium"
    page = as_html.read_text()
    assert "public.&lt;t&gt;" in page and "<t>" not in page  # source names are escaped


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
def test_a_mysql_default_that_reads_another_column_does_not_convert(target: str) -> None:
    column = Column("d2", ColumnType(L.INTEGER), default="(`a` + 100)")
    with pytest.raises(NotConvertible, match=r"reads other columns"):
        convert_default(column, "integer", "mysql", target)
    assert convert_default(replace(column, default="(1 + 100)"), "integer", "mysql", target) == "(1 + 100)"
