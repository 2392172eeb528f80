"""LOB settings: the task's TargetMetadata keys, the lob-settings table-settings rule, which columns they
act on, and limited LOB mode's truncation (bytes, characters cut whole, counted) in rows and changes."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import ConfigError, RowRejected
from conveyor.model.changes import UNCHANGED, Change, Op
from conveyor.model.rows import RowBatch
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.types import ColumnType, LogicalType
from conveyor.runner.settings import parse_settings
from conveyor.transform.lobs import LobLimit, LobMode, LobPolicy, clip, clip_row
from conveyor.transform.selection import parse_mappings
from conveyor.transform.tables import map_table

L = LogicalType
TID = TableId("s", "docs")


def table(*, key: str = "id") -> Table:
    columns = (
        Column("id", ColumnType(L.INTEGER, bits=32), nullable=False),
        Column("title", ColumnType(L.VARCHAR, length=50)),
        Column("body", ColumnType(L.TEXT, native="text")),
        Column("data", ColumnType(L.BLOB, native="bytea")),
        Column("doc", ColumnType(L.JSON, native="jsonb")),
        Column("code", ColumnType(L.TEXT, native="text"), nullable=False),
    )
    return Table(TID, columns, primary_key=Key("pk", (key,)))


def mappings(*rules: dict[str, Any]) -> Any:
    include = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "all",
        "object-locator": {"schema-name": "%", "table-name": "%"},
        "rule-action": "include",
    }
    return parse_mappings({"rules": [include, *rules]})


def lob_rule(rule_id: str, settings: dict[str, Any], name: str = "docs") -> dict[str, Any]:
    return {
        "rule-type": "table-settings",
        "rule-id": rule_id,
        "rule-name": f"lob{rule_id}",
        "object-locator": {"schema-name": "s", "table-name": name},
        "lob-settings": settings,
    }


# ------------------------------------------------------------------------------------------ settings
def policy(meta: dict[str, Any]) -> LobPolicy:
    settings, warnings = parse_settings({"TargetMetadata": meta})
    assert not warnings
    return settings.TargetMetadata.lob_policy()


def test_task_settings_choose_the_mode() -> None:
    assert policy({}) == LobPolicy(LobMode.FULL)
    assert policy({"SupportLobs": True, "FullLobMode": True, "LobChunkSize": 64}) == LobPolicy(LobMode.FULL)
    limited = {"SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 8}
    assert policy(limited) == LobPolicy(LobMode.LIMITED, 8 * 1024)
    assert policy({"SupportLobs": False, "LimitedSizeLobMode": True}) == LobPolicy(LobMode.NONE)
    assert policy({"InlineLobMaxSize": 16, "FullLobMode": True}) == LobPolicy(LobMode.FULL)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"FullLobMode": True, "LimitedSizeLobMode": True}, "set one of them"),
        ({"LimitedSizeLobMode": True, "LobMaxSize": 0}, "LobMaxSize"),
        ({"LobMaxSize": 102401}, "LobMaxSize"),
    ],
)
def test_task_settings_refuse_contradictions(meta: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings({"TargetMetadata": meta})


# ------------------------------------------------------------------------------------------ the rule
def test_lob_settings_rule_overrides_the_task_lowest_rule_id_wins() -> None:
    m = mappings(lob_rule("20", {"mode": "unlimited"}), lob_rule("10", {"mode": "limited", "bulk-max-size": "4"}))
    task = LobPolicy(LobMode.NONE)
    assert m.lob_policy(TID, task) == LobPolicy(LobMode.LIMITED, 4096)
    assert m.lob_policy(TableId("s", "other"), task) == task
    assert mappings(lob_rule("5", {"mode": "none"})).lob_policy(TID, task) == task  # none: the task's settings
    assert mappings(lob_rule("5", {"mode": "unlimited", "bulk-max-size": 0})).lob_policy(TID, task).mode is LobMode.FULL


def test_a_rule_may_hold_parallel_load_and_lob_settings() -> None:
    rule = {**lob_rule("5", {"mode": "limited", "bulk-max-size": 1}), "parallel-load": {"type": "none"}}
    m = mappings(rule)
    assert m.parallel_load(TID) is not None and m.lob_policy(TID, LobPolicy()).max_bytes == 1024


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "partial"}, "rule-id 7: mode is one of"),
        ({"mode": "limited"}, "rule-id 7: mode limited needs bulk-max-size"),
        ({"mode": "limited", "bulk-max-size": "x"}, "rule-id 7: bulk-max-size is a size in KB"),
        ({"mode": "limited", "bulk-max-size": 1, "lob-chunk": 1}, "unknown key"),
    ],
)
def test_bad_lob_settings_name_the_rule(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mappings(lob_rule("7", settings))


# ------------------------------------------------------------------------------------------ columns
def test_support_lobs_false_leaves_lob_columns_out_but_keys_whole() -> None:
    mapped = map_table(mappings(), table(key="code"), TID, {}, LobPolicy(LobMode.NONE))
    assert mapped.target.column_names == ("id", "title", "code")
    assert mapped.mapping is not None and mapped.mapping.read.column_names == ("id", "title", "code")
    assert any("body, data, doc are not migrated" in w for w in mapped.warnings)
    assert any("code is a LOB in the table's key" in w for w in mapped.warnings)


def test_limited_mode_checks_the_lob_columns_only() -> None:
    mapped = map_table(mappings(), table(), TID, {}, LobPolicy(LobMode.LIMITED, 10))
    assert mapped.mapping is not None and not mapped.mapping.raw
    limits = {(lim.position, lim.column, lim.structured) for lim in mapped.mapping.lobs}
    assert limits == {(2, "body", False), (3, "data", False), (4, "doc", True), (5, "code", False)}
    # full LOB mode, no rules: no per-row work at all
    assert map_table(mappings(), table(), TID, {}, LobPolicy()).mapping is None


# ------------------------------------------------------------------------------------------ truncation
def test_clip_counts_bytes_and_cuts_text_on_a_character_boundary() -> None:
    assert clip("é" * 5, 10) == "é" * 5  # 10 bytes: fits
    assert clip("é" * 6, 10) == "é" * 5
    assert clip("aé", 2) == "a"  # é's 2 bytes do not fit in the one left: it goes whole
    assert clip("€€", 5) == "€"
    assert clip("😀x", 3) == ""
    assert clip(b"\x00" * 12, 10) == b"\x00" * 10
    assert clip(memoryview(b"abc"), 2) == b"ab"
    value = "short"
    assert clip(value, 10) is value


def test_clip_row_counts_each_truncation() -> None:
    limits = [LobLimit(1, "body", 3, False), LobLimit(2, "data", 3, False)]
    counts: dict[str, int] = {}
    row = (1, "abcdef", b"ab")
    assert clip_row(row, limits, counts) == (1, "abc", b"ab")
    assert clip_row((2, None, UNCHANGED), limits, counts) == (2, None, UNCHANGED)
    same = (3, "ab", b"ab")
    assert clip_row(same, limits, counts) is same
    assert counts == {"body": 1}


def test_full_load_rows_and_changes_are_truncated_and_counted() -> None:
    mapped = map_table(mappings(), table(), TID, {}, LobPolicy(LobMode.LIMITED, 4))
    mapping = mapped.mapping
    assert mapping is not None
    names = mapping.columns
    rows = [(1, "t", "body-long", b"12345", '{"a": 1}', "k"), (2, "t", "ok", None, None, "k")]
    counts: dict[str, int] = {}
    (batch,) = mapping.batches([RowBatch(names, rows)], counts)
    assert batch.rows == [(1, "t", "body", b"1234", '{"a": 1}', "k"), rows[1]]
    assert counts == {"body": 1, "data": 1}

    before = (5, "t", "old-long", b"x", None, "k")
    after = (5, "t", "new-long", UNCHANGED, None, "k")
    change = mapping.change(Change(Op.UPDATE, TID, names, before, after, None))
    assert change is not None and change.after == (5, "t", "new-", UNCHANGED, None, "k")
    assert change.before == (5, "t", "old-", b"x", None, "k")
    assert mapping.take_truncations() == {"body": 1}
    assert mapping.take_truncations() == {}


def test_json_too_long_is_a_rejected_row() -> None:
    mapping = map_table(mappings(), table(), TID, {}, LobPolicy(LobMode.LIMITED, 4)).mapping
    assert mapping is not None
    encoders = mapping.encoders(lambda _type, _native: None, ["int", "varchar", "text", "bytea", "jsonb", "text"])
    encode = encoders[4]
    assert encode is not None and encode("[1]") == "[1]"
    with pytest.raises(RowRejected, match="LOB limit"):
        encode('{"a": 1}')
