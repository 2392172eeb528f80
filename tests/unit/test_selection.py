import pytest

from conveyor.errors import ConfigError
from conveyor.model.schema import TableId
from conveyor.transform.selection import parse_mappings, wildcard


def rule(rid: int, action: str, schema: str, table: str, **extra: object) -> dict[str, object]:
    return {
        "rule-type": "selection",
        "rule-id": str(rid),
        "rule-name": str(rid),
        "rule-action": action,
        "object-locator": {"schema-name": schema, "table-name": table},
        **extra,
    }


TABLES = [TableId("s", n) for n in ("orders", "order_items", "orderXitems", "tmp_1", "tmpX1", "Users")]


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("%", ["", "abc"], []),
        ("order_items", ["order_items", "orderXitems"], ["order__items"]),
        ("order[_]items", ["order_items"], ["orderXitems"]),
        ("tmp%", ["tmp", "tmp_1"], ["xtmp"]),
        ("a.b", ["a.b"], ["axb"]),
    ],
)
def test_wildcards(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = wildcard(pattern)
    assert all(regex.fullmatch(m) for m in matches)
    assert not any(regex.fullmatch(m) for m in misses)


def test_include_exclude_and_load_order() -> None:
    mappings = parse_mappings(
        {
            "rules": [
                rule(1, "include", "s", "%"),
                rule(2, "exclude", "s", "tmp[_]%"),
                rule(3, "include", "s", "orders", **{"load-order": 5}),
            ]
        }
    )
    selected = mappings.select(TABLES)
    names = [t.name for t, _ in selected]
    assert names[0] == "orders"  # highest load-order first
    assert "tmp_1" not in names and "tmpX1" in names
    assert set(names) == {"orders", "order_items", "orderXitems", "tmpX1", "Users"}


def test_explicit_takes_name_literally() -> None:
    mappings = parse_mappings({"rules": [rule(1, "explicit", "s", "order_items")]})
    assert [t.name for t, _ in mappings.select(TABLES)] == ["order_items"]


def test_no_rules_selects_everything() -> None:
    assert len(parse_mappings(None).select(TABLES)) == len(TABLES)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"rule-type": "transformation", "rule-id": "7"}], "rule-id 7"),
        ([rule(1, "sideways", "s", "%")], "rule-action"),
        ([{**rule(1, "include", "s", "%"), "bogus": 1}], "table_mappings.rules[0].bogus"),
        ([rule(1, "include", "s", "%", **{"load-order": "x"})], "load-order"),
    ],
)
def test_bad_rules_name_the_rule(rules: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_mappings({"rules": rules})
