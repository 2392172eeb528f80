"""The table-mapping matrix on pure logic: every transformation action, every filter operator,
wildcards and escapes, conflicting rules, refusals naming the rule."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from conveyor.errors import ConfigError, RowRejected
from conveyor.model.changes import UNCHANGED, Change, Op
from conveyor.model.rows import RowBatch
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.segments import Segment
from conveyor.model.types import ColumnType, LogicalType
from conveyor.transform.filters import filter_sql, passes, resolve_filters
from conveyor.transform.selection import parse_mappings
from conveyor.transform.tables import map_table, target_schema, target_table

L = LogicalType
TABLE = Table(
    TableId("s", "my_table"),
    (
        Column("id", ColumnType(L.INTEGER, bits=32), nullable=False),
        Column("Name", ColumnType(L.VARCHAR, length=20)),
        Column("price", ColumnType(L.DECIMAL, precision=6, scale=2)),
        Column("born", ColumnType(L.DATE)),
    ),
    primary_key=Key("pk", ("id",)),
)


def sel(**extra: Any) -> dict[str, Any]:
    return {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "1",
        "rule-action": "include",
        "object-locator": {"schema-name": "s", "table-name": "%"},
        **extra,
    }


def tr(rid: int, target: str, action: str, **extra: Any) -> dict[str, Any]:
    locator = {"schema-name": "s"}
    if target != "schema":
        locator["table-name"] = "my_table"
    locator.update(extra.pop("locator", {}))
    return {
        "rule-type": "transformation",
        "rule-id": str(rid),
        "rule-name": str(rid),
        "rule-target": target,
        "rule-action": action,
        "object-locator": locator,
        **extra,
    }


def mapped(*rules: dict[str, Any]) -> Any:
    mappings = parse_mappings({"rules": [sel(), *rules]})
    return map_table(mappings, TABLE, TableId("s", target_table(mappings, TABLE.id)), {})


@pytest.mark.parametrize(
    ("rule", "name"),
    [
        (tr(2, "table", "rename", value="t2"), "t2"),
        (tr(2, "table", "convert-uppercase"), "MY_TABLE"),
        (tr(2, "table", "convert-lowercase"), "my_table"),
        (tr(2, "table", "add-prefix", value="p_"), "p_my_table"),
        (tr(2, "table", "remove-prefix", value="my_"), "table"),
        (tr(2, "table", "replace-prefix", value="your_", **{"old-value": "my_"}), "your_table"),
        (tr(2, "table", "add-suffix", value="_x"), "my_table_x"),
        (tr(2, "table", "remove-suffix", value="_table"), "my"),
        (tr(2, "table", "replace-suffix", value="_tab", **{"old-value": "_table"}), "my_tab"),
    ],
)
def test_table_name_actions(rule: dict[str, Any], name: str) -> None:
    assert target_table(parse_mappings({"rules": [sel(), rule]}), TABLE.id) == name


def test_schema_rules_and_the_lower_rule_id_wins() -> None:
    mappings = parse_mappings(
        {"rules": [sel(), tr(9, "schema", "add-prefix", value="late_"), tr(3, "schema", "rename", value="early")]}
    )
    assert target_schema(mappings, "s", "s") == "early"
    assert target_schema(mappings, "other", "other") == "other"


def test_column_actions_shape_the_target() -> None:
    m = mapped(
        tr(8, "column", "convert-lowercase", locator={"column-name": "%"}),
        tr(3, "column", "rename", value="cost", locator={"column-name": "price"}),
        tr(4, "column", "remove-column", locator={"column-name": "born"}),
        tr(
            5,
            "column",
            "change-data-type",
            locator={"column-name": "price"},
            **{"data-type": {"type": "string", "length": 12}},
        ),
        tr(
            6,
            "column",
            "add-column",
            value="label",
            expression="$Name || ':' || $id",
            **{"data-type": {"type": "string", "length": 40}},
        ),
    )
    target = m.target
    assert [c.name for c in target.columns] == ["id", "name", "cost", "label"]  # rule 8 loses to 3 on price
    assert target.column("cost").type.logical is L.VARCHAR and target.primary_key.columns == ("id",)
    assert m.mapping.read.column_names == ("id", "Name", "price")  # born is not read
    batch = next(m.mapping.batches([RowBatch(("id", "Name", "price"), [(1, "ann", Decimal("2.50"))])]))
    assert batch.columns == ("id", "name", "cost", "label") and batch.rows == [(1, "ann", Decimal("2.50"), "ann:1")]
    encoders = m.mapping.encoders(lambda t, n: None, ["int", "text", "text", "text"])
    assert encoders[0] is None and encoders[2](Decimal("2.50")) == "2.50"


def test_include_column_keeps_only_included_columns_and_remove_wins_by_rule_id() -> None:
    m = mapped(
        tr(2, "column", "include-column", locator={"column-name": "%"}),
        tr(1, "column", "remove-column", locator={"column-name": "born"}),
    )
    assert [c.name for c in m.target.columns] == ["id", "Name", "price"]
    m = mapped(tr(2, "column", "include-column", locator={"column-name": "id"}))
    assert [c.name for c in m.target.columns] == ["id"]


def test_wildcards_escapes_and_data_type_locator() -> None:
    m = mapped(tr(2, "column", "add-suffix", value="_x", locator={"column-name": "%"}))
    assert [c.name for c in m.target.columns] == ["id_x", "Name_x", "price_x", "born_x"]
    m = mapped(tr(2, "column", "add-suffix", value="_x", locator={"column-name": "%", "data-type": "int4"}))
    assert [c.name for c in m.target.columns] == ["id_x", "Name", "price", "born"]
    mappings = parse_mappings(
        {
            "rules": [
                sel(),
                {
                    **tr(2, "table", "rename", value="hit"),
                    "object-locator": {"schema-name": "s", "table-name": "my[_]table"},
                },
            ]
        }
    )
    assert target_table(mappings, TABLE.id) == "hit"
    assert target_table(mappings, TableId("s", "myXtable")) == "myXtable"


def test_define_primary_key_and_before_images() -> None:
    m = mapped(
        tr(2, "table", "define-primary-key", **{"primary-key-def": {"name": "pk2", "columns": ["id", "Name"]}}),
        tr(
            3,
            "column",
            "add-before-image-columns",
            **{"before-image-def": {"column-prefix": "BI_", "column-filter": "all"}},
        ),
    )
    assert m.target.primary_key == Key("pk2", ("id", "Name")) and not m.target.column("Name").nullable
    assert [c.name for c in m.target.columns][4:] == ["BI_id", "BI_Name", "BI_price", "BI_born"]
    change = Change(Op.UPDATE, TABLE.id, TABLE.column_names, (1, "a", UNCHANGED, UNCHANGED), (1, "b", None, None), 0)
    out = m.mapping.change(change)
    assert out.after == (1, "b", None, None, 1, "a", None, None)
    assert out.before == (1, "a", UNCHANGED, UNCHANGED, *([UNCHANGED] * 4))


def test_expression_headers_in_change_processing() -> None:
    m = mapped(
        tr(
            2,
            "column",
            "add-column",
            value="op",
            expression="$AR_H_OPERATION || '@' || $AR_M_SOURCE_TABLE_NAME",
            **{"data-type": {"type": "string", "length": 40}},
        )
    )
    change = Change(Op.DELETE, TABLE.id, TABLE.column_names, (1, "a", None, None), None, 0)
    assert m.mapping.change(change).before[-1] is UNCHANGED
    change = Change(Op.INSERT, TABLE.id, TABLE.column_names, None, (1, "a", None, None), 0)
    assert m.mapping.change(change).after[-1] == "INSERT@my_table"


OPS = [
    ({"filter-operator": "eq", "value": "5"}, [5], [4, None]),
    ({"filter-operator": "noteq", "value": "5"}, [4], [5, None]),
    ({"filter-operator": "lte", "value": "5"}, [5, 4], [6]),
    ({"filter-operator": "ste", "value": "5"}, [5, 4], [6]),
    ({"filter-operator": "gte", "value": "5"}, [5, 6], [4]),
    ({"filter-operator": "between", "start-value": "2", "end-value": "4"}, [2, 3, 4], [1, 5]),
    ({"filter-operator": "notbetween", "start-value": "2", "end-value": "4"}, [1, 5], [2, 4, None]),
    ({"filter-operator": "null"}, [None], [1]),
    ({"filter-operator": "notnull"}, [1], [None]),
]


@pytest.mark.parametrize(("condition", "hits", "misses"), OPS)
def test_filter_operators_in_python_and_sql(condition: dict[str, Any], hits: list[Any], misses: list[Any]) -> None:
    mappings = parse_mappings(
        {"rules": [sel(filters=[{"filter-type": "source", "column-name": "id", "filter-conditions": [condition]}])]}
    )
    (raw,) = [f for _, f in mappings.filters(TABLE.id)]
    resolved = resolve_filters([raw], TABLE, "1")
    for value in hits:
        assert passes([(0, resolved[0])], (value,)), value
    for value in misses:
        assert not passes([(0, resolved[0])], (value,)), value
    sql, params = filter_sql(TABLE, [raw], lambda n: f'"{n}"', "?", lambda v: v)
    assert sql.startswith("(") and '"id"' in sql and all(isinstance(p, int) for p in params)


def test_filters_and_across_or_within_and_typed_values() -> None:
    filters = [
        {
            "filter-type": "source",
            "column-name": "id",
            "filter-conditions": [{"filter-operator": "eq", "value": "1"}, {"filter-operator": "eq", "value": "3"}],
        },
        {
            "filter-type": "source",
            "column-name": "born",
            "filter-conditions": [{"filter-operator": "gte", "value": "2020-01-01"}],
        },
    ]
    m = mapped({**sel(filters=filters), "rule-id": "0"})
    rows = {1: date(2021, 1, 1), 3: date(2019, 1, 1), 2: date(2022, 1, 1)}
    kept = [
        i
        for i, d in rows.items()
        if m.mapping.change(Change(Op.INSERT, TABLE.id, TABLE.column_names, None, (i, "", None, d), 0))
    ]
    assert kept == [1]
    assert m.filters and Segment.from_json(Segment(TABLE.id, 0, filters=m.filters).to_json()).filters == m.filters


def test_change_data_type_rejects_a_value_by_row() -> None:
    m = mapped(tr(2, "column", "change-data-type", locator={"column-name": "Name"}, **{"data-type": {"type": "int4"}}))
    encode = m.mapping.encoders(lambda t, n: None, ["int", "int", "numeric", "date"])[1]
    assert encode("42") == 42
    with pytest.raises(RowRejected, match="Name"):
        encode("forty-two")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (tr(7, "table-tablespace", "rename", value="x"), "rule-id 7: tablespaces"),
        (tr(7, "index-tablespace", "rename", value="x"), "rule-id 7: tablespaces"),
        (tr(7, "table", "add-table"), "rule-id 7: add-table"),
        ({"rule-type": "post-processing", "rule-id": "7"}, "rule-id 7: post-processing"),
        (
            tr(7, "column", "data-masking-digits-mask", locator={"column-name": "Name"}, value="  "),
            "rule-id 7: data-masking-digits-mask needs a value",
        ),
        (tr(7, "schema", "remove-column"), "rule-id 7: rule-action 'remove-column' does not apply"),
        (
            tr(7, "column", "add-column", value="x", expression="1 +", **{"data-type": {"type": "int4"}}),
            "rule-id 7: SQLite cannot",
        ),
        (
            tr(7, "column", "add-column", value="x", expression="$AR_H_USER", **{"data-type": {"type": "string"}}),
            "rule-id 7: \\$AR_H_USER cannot be known",
        ),
        (
            tr(7, "column", "change-data-type", locator={"column-name": "id"}, **{"data-type": {"type": "map"}}),
            "rule-id 7: data-type",
        ),
        (
            {
                "rule-type": "table-settings",
                "rule-id": "7",
                "object-locator": {"schema-name": "s", "table-name": "t"},
                "lob-settings": {},
            },
            "rule-id 7: mode limited needs bulk-max-size",
        ),
        (
            {
                "rule-type": "table-settings",
                "rule-id": "7",
                "object-locator": {"schema-name": "s", "table-name": "t"},
                "parallel-load": {"type": "partitions-list"},
            },
            "rule-id 7: partitions-list",
        ),
        (
            sel(
                filters=[
                    {
                        "filter-type": "source",
                        "column-name": "id",
                        "filter-conditions": [{"filter-operator": "like", "value": "1"}],
                    }
                ]
            ),
            "rule-id 1: filter-operator",
        ),
        (
            {
                **sel(filters=[{"column-name": "id", "filter-conditions": [{"filter-operator": "null"}]}]),
                "rule-action": "exclude",
            },
            "rule-id 1: filters apply to include",
        ),
    ],
)
def test_refusals_name_the_rule(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mappings({"rules": [rule]})


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([tr(2, "column", "remove-column", locator={"column-name": "id"})], "remove primary-key columns"),
        ([tr(2, "column", "rename", value="id", locator={"column-name": "Name"})], "two target columns"),
        (
            [sel(filters=[{"column-name": "nope", "filter-conditions": [{"filter-operator": "null"}]}])],
            "no column 'nope'",
        ),
        (
            [sel(filters=[{"column-name": "id", "filter-conditions": [{"filter-operator": "eq", "value": "x"}]}])],
            "not an integer",
        ),
        (
            [tr(2, "column", "add-column", value="x", expression="$missing", **{"data-type": {"type": "int4"}})],
            "rule-id 2: .* no column 'missing'",
        ),
    ],
)
def test_refusals_against_the_table(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mapped(*rules)


def test_parallel_load_ranges_checks_boundaries() -> None:
    rule = {
        "rule-type": "table-settings",
        "rule-id": "5",
        "object-locator": {"schema-name": "s", "table-name": "my_table"},
        "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [["10"], ["5"]]},
    }
    with pytest.raises(ConfigError, match="rule-id 5: boundaries must increase"):
        mapped(rule)
