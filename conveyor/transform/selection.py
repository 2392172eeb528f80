"""AWS DMS table mappings: the document, and its selection rules (include / exclude / explicit,
with DMS's wildcards, and their source filters).

``%`` matches any run of characters, ``_`` any one character and ``[_]`` a literal underscore.
A table is selected when an include or explicit rule matches it and no exclude rule does.
Transformation rules are in ``transformation``, table-settings rules in ``table_settings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigError
from conveyor.model.schema import TableId
from conveyor.model.segments import SourceFilter
from conveyor.transform.filters import parse_filters
from conveyor.transform.lobs import LobPolicy, LobRule
from conveyor.transform.table_settings import ParallelLoad, parse_table_settings
from conveyor.transform.transformation import TransformRule, parse_transformation, rule_order
from conveyor.transform.wildcards import wildcard

_RULE_KEYS = {
    "rule-type",
    "rule-id",
    "rule-name",
    "rule-action",
    "object-locator",
    "load-order",
    "filters",
    "description",
}
_LOCATOR_KEYS = {"schema-name", "table-name", "table-type"}
#: rule types DMS defines that Conveyor does not carry out, with the reason given to the user
_NOT_YET = {
    "post-processing": "post-processing rules are not supported",
}


@dataclass(frozen=True, slots=True)
class SelectionRule:
    rule_id: str
    action: str  # include | exclude | explicit
    schema: re.Pattern[str]
    table: re.Pattern[str]
    load_order: int = 0
    filters: tuple[SourceFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class TableMappings:
    rules: tuple[SelectionRule, ...]
    transformations: tuple[TransformRule, ...] = ()
    parallel_loads: tuple[ParallelLoad, ...] = ()
    lob_rules: tuple[LobRule, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.rules

    def select(self, tables: list[TableId]) -> list[tuple[TableId, int]]:
        """Selected tables with their load order, highest load order first (DMS loads those first)."""
        chosen: list[tuple[TableId, int]] = []
        for tid in tables:
            if self.empty:
                chosen.append((tid, 0))
                continue
            matching = [r for r in self.rules if r.schema.fullmatch(tid.schema) and r.table.fullmatch(tid.name)]
            if not matching or any(r.action == "exclude" for r in matching):
                continue
            chosen.append((tid, max(r.load_order for r in matching)))
        return sorted(chosen, key=lambda item: (-item[1], item[0]))

    def schema_patterns(self) -> list[re.Pattern[str]]:
        return [r.schema for r in self.rules if r.action != "exclude"]

    def filters(self, tid: TableId) -> list[tuple[str, SourceFilter]]:
        """The source filters of the include rules selecting ``tid``, with their rule-ids."""
        return [
            (r.rule_id, f)
            for r in self.rules
            if r.action != "exclude" and r.schema.fullmatch(tid.schema) and r.table.fullmatch(tid.name)
            for f in r.filters
        ]

    def parallel_load(self, tid: TableId) -> ParallelLoad | None:
        """The table-settings parallel-load rule for ``tid`` (the lowest rule-id where several match)."""
        matching = [p for p in self.parallel_loads if p.schema.fullmatch(tid.schema) and p.table.fullmatch(tid.name)]
        return min(matching, key=lambda p: rule_order(p.rule_id), default=None)

    def lob_policy(self, tid: TableId, task: LobPolicy) -> LobPolicy:
        """``task``'s LOB handling, unless a lob-settings rule (the lowest rule-id) sets the table's own."""
        rule = min(
            (r for r in self.lob_rules if r.matches(tid.schema, tid.name)),
            key=lambda r: rule_order(r.rule_id),
            default=None,
        )
        return task if rule is None or rule.policy is None else rule.policy


def parse_mappings(doc: Any, path: str = "table_mappings") -> TableMappings:
    if doc is None:
        return TableMappings(())
    if not isinstance(doc, dict):
        raise ConfigError("table mappings are a JSON object with a 'rules' list", path)
    unknown = set(doc) - {"rules"}
    if unknown:
        raise ConfigError("unknown key", f"{path}.{sorted(unknown)[0]}")
    rules_doc = doc.get("rules", [])
    if not isinstance(rules_doc, list):
        raise ConfigError("must be a list of rules", f"{path}.rules")
    rules: list[SelectionRule] = []
    transformations: list[TransformRule] = []
    parallel: list[ParallelLoad] = []
    lobs: list[LobRule] = []
    for i, rule in enumerate(rules_doc):
        here = f"{path}.rules[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError("a rule is a JSON object", here)
        rule_id = str(rule.get("rule-id", "?"))
        rule_type = rule.get("rule-type")
        if rule_type in _NOT_YET:
            raise ConfigError(f"rule-id {rule_id}: {_NOT_YET[rule_type]}", here)
        if rule_type == "transformation":
            transformations.append(parse_transformation(rule, rule_id, here))
        elif rule_type == "table-settings":
            load, lob = parse_table_settings(rule, rule_id, here)
            parallel.extend([load] if load else [])
            lobs.extend([lob] if lob else [])
        elif rule_type == "selection":
            rules.append(_parse_rule(rule, rule_id, here))
        else:
            raise ConfigError(f"rule-id {rule_id}: unknown rule-type {rule_type!r}", f"{here}.rule-type")
    return TableMappings(tuple(rules), tuple(transformations), tuple(parallel), tuple(lobs))


def _parse_rule(rule: dict[str, Any], rule_id: str, path: str) -> SelectionRule:
    for key in rule:
        if key not in _RULE_KEYS:
            raise ConfigError("unknown key", f"{path}.{key}")
    action = rule.get("rule-action")
    if action not in ("include", "exclude", "explicit"):
        raise ConfigError(f"rule-id {rule_id}: rule-action must be include, exclude or explicit", f"{path}.rule-action")
    locator = rule.get("object-locator")
    if not isinstance(locator, dict):
        raise ConfigError(
            f"rule-id {rule_id}: object-locator with schema-name and table-name is required", f"{path}.object-locator"
        )
    for key in locator:
        if key not in _LOCATOR_KEYS:
            raise ConfigError("unknown key", f"{path}.object-locator.{key}")
    if locator.get("table-type", "table") not in ("table", "all"):
        raise ConfigError(
            f"rule-id {rule_id}: only tables are migrated (views come with schema conversion)",
            f"{path}.object-locator.table-type",
        )
    schema, table = locator.get("schema-name"), locator.get("table-name")
    if not isinstance(schema, str) or not isinstance(table, str):
        raise ConfigError(
            f"rule-id {rule_id}: schema-name and table-name are required strings", f"{path}.object-locator"
        )
    if action == "explicit":
        schema_re, table_re = re.compile(re.escape(schema)), re.compile(re.escape(table))
    else:
        schema_re, table_re = wildcard(schema), wildcard(table)
    try:
        load_order = int(rule.get("load-order", 0))
    except (TypeError, ValueError):
        raise ConfigError(f"rule-id {rule_id}: load-order must be an integer", f"{path}.load-order") from None
    filters = parse_filters(rule["filters"], rule_id, f"{path}.filters") if rule.get("filters") else ()
    if filters and action == "exclude":
        raise ConfigError(f"rule-id {rule_id}: filters apply to include rules only (DMS)", f"{path}.filters")
    return SelectionRule(rule_id, action, schema_re, table_re, load_order, filters)
