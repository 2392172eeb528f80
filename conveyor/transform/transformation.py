"""AWS DMS transformation rules: parsing, and which rule applies to which schema, table and column.

Rules match source names (``object-locator``, with selection's wildcards). Where several rules of one
kind match the same object, the lowest rule-id wins. The kinds: the name (rename, convert-lowercase /
-uppercase, add- / remove- / replace-prefix and -suffix), presence (remove-column, include-column),
the type (change-data-type), the key (define-primary-key) and the mask (data-masking-*, which applies
besides the others, as in DMS); add-column rules all apply, in rule-id order, and so do nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigError
from conveyor.model.schema import Column
from conveyor.model.types import ColumnType, LogicalType
from conveyor.transform import expressions, masking
from conveyor.transform.wildcards import wildcard

NAME_ACTIONS = {
    "rename",
    "convert-lowercase",
    "convert-uppercase",
    "add-prefix",
    "remove-prefix",
    "replace-prefix",
    "add-suffix",
    "remove-suffix",
    "replace-suffix",
}
_ACTIONS = {
    "schema": NAME_ACTIONS,
    "table": NAME_ACTIONS | {"define-primary-key"},
    "column": NAME_ACTIONS
    | {"remove-column", "include-column", "change-data-type", "add-column", "add-before-image-columns"}
    | set(masking.ACTIONS),
}
#: rule targets and actions DMS has that Conveyor refuses, with the reason
_REFUSED_TARGETS = {
    "table-tablespace": "tablespaces are Oracle's; Conveyor does not place tables in tablespaces",
    "index-tablespace": "tablespaces are Oracle's; Conveyor does not place indexes in tablespaces",
}
_REFUSED_ACTIONS = {
    "add-table": "add-table is not supported",
}
_KEYS = {
    "rule-type",
    "rule-id",
    "rule-name",
    "rule-action",
    "rule-target",
    "object-locator",
    "value",
    "old-value",
    "expression",
    "data-type",
    "primary-key-def",
    "before-image-def",
    "description",
}
_LOCATOR_KEYS = {"schema-name", "table-name", "column-name", "data-type"}
#: DMS data types -> (logical type, bits, unsigned)
_DMS_TYPES: dict[str, tuple[LogicalType, int | None, bool]] = {
    "string": (LogicalType.VARCHAR, None, False),
    "wstring": (LogicalType.VARCHAR, None, False),
    "clob": (LogicalType.TEXT, None, False),
    "nclob": (LogicalType.TEXT, None, False),
    "int1": (LogicalType.INTEGER, 8, False),
    "int2": (LogicalType.INTEGER, 16, False),
    "int4": (LogicalType.INTEGER, 32, False),
    "int8": (LogicalType.INTEGER, 64, False),
    "uint1": (LogicalType.INTEGER, 8, True),
    "uint2": (LogicalType.INTEGER, 16, True),
    "uint4": (LogicalType.INTEGER, 32, True),
    "uint8": (LogicalType.INTEGER, 64, True),
    "numeric": (LogicalType.DECIMAL, None, False),
    "real4": (LogicalType.FLOAT, 32, False),
    "real8": (LogicalType.FLOAT, 64, False),
    "date": (LogicalType.DATE, None, False),
    "time": (LogicalType.TIME, None, False),
    "datetime": (LogicalType.TIMESTAMP, None, False),
    "boolean": (LogicalType.BOOLEAN, None, False),
    "bytes": (LogicalType.VARBINARY, None, False),
    "blob": (LogicalType.BLOB, None, False),
}
_COLUMN_FILTERS = ("pk-only", "non-lob", "all")


@dataclass(frozen=True)
class TransformRule:
    rule_id: str
    target: str  # schema | table | column
    action: str
    schema: re.Pattern[str]
    table: re.Pattern[str] | None
    column: re.Pattern[str] | None
    data_type: str | None  # locator: columns of this DMS type only
    value: str | None = None
    old_value: str | None = None
    expression: str | None = None
    new_type: ColumnType | None = None
    key_name: str | None = None
    key_columns: tuple[str, ...] = ()
    key_unique_index: bool = False
    image_prefix: str = "BI_"
    image_suffix: str = ""
    image_filter: str = "pk-only"

    @property
    def order(self) -> tuple[int, str]:
        return rule_order(self.rule_id)

    def matches(self, schema: str, table: str | None = None, column: Column | None = None) -> bool:
        if not self.schema.fullmatch(schema):
            return False
        if table is not None and self.table is not None and not self.table.fullmatch(table):
            return False
        if column is not None:
            if self.column is not None and not self.column.fullmatch(column.name):
                return False
            if self.data_type is not None and dms_type(column.type) != self.data_type:
                return False
        return True

    def rename(self, name: str) -> str:
        """The name this rule gives ``name`` (a name action)."""
        action, value, old = self.action, self.value or "", self.old_value or ""
        if action == "rename":
            return value
        if action == "convert-lowercase":
            return name.lower()
        if action == "convert-uppercase":
            return name.upper()
        if action == "add-prefix":
            return value + name
        if action == "add-suffix":
            return name + value
        if action == "remove-prefix":
            return name[len(value) :] if value and name.startswith(value) else name
        if action == "remove-suffix":
            return name[: -len(value)] if value and name.endswith(value) else name
        if action == "replace-prefix":
            return value + name[len(old) :] if name.startswith(old) else name
        if action == "replace-suffix":
            return name[: len(name) - len(old)] + value if old and name.endswith(old) else name
        raise AssertionError(action)


def rule_order(rule_id: str) -> tuple[int, str]:
    """Rule-ids compare as numbers (DMS's are numeric); others after them, by text."""
    return (int(rule_id), "") if rule_id.isdigit() else (1 << 62, rule_id)


def dms_type(ctype: ColumnType) -> str:
    """The DMS data type a column type is matched as (``object-locator.data-type``)."""
    for name, (logical, bits, unsigned) in _DMS_TYPES.items():
        if logical is ctype.logical and (bits is None or (bits == (ctype.bits or 64) and unsigned == ctype.unsigned)):
            return name
    return {"char": "string", "text": "clob", "timestamptz": "datetime", "binary": "bytes"}.get(
        ctype.logical.value, ctype.logical.value
    )


def winner(rules: list[TransformRule]) -> TransformRule | None:
    """The lowest rule-id among rules of one kind matching one object."""
    return min(rules, key=lambda r: r.order) if rules else None


def parse_transformation(rule: dict[str, Any], rule_id: str, path: str) -> TransformRule:
    for key in rule:
        if key not in _KEYS:
            raise ConfigError("unknown key", f"{path}.{key}")
    target = rule.get("rule-target")
    if target in _REFUSED_TARGETS:
        raise ConfigError(f"rule-id {rule_id}: {_REFUSED_TARGETS[target]}", f"{path}.rule-target")
    if target not in _ACTIONS:
        raise ConfigError(f"rule-id {rule_id}: rule-target is schema, table or column", f"{path}.rule-target")
    action = rule.get("rule-action")
    if action in _REFUSED_ACTIONS:
        raise ConfigError(f"rule-id {rule_id}: {_REFUSED_ACTIONS[action]}", f"{path}.rule-action")
    if action not in _ACTIONS[target]:
        raise ConfigError(
            f"rule-id {rule_id}: rule-action {action!r} does not apply to rule-target {target} "
            f"(it takes {', '.join(sorted(_ACTIONS[target]))})",
            f"{path}.rule-action",
        )
    locator = rule.get("object-locator")
    if not isinstance(locator, dict) or not isinstance(locator.get("schema-name"), str):
        raise ConfigError(f"rule-id {rule_id}: object-locator with schema-name is required", f"{path}.object-locator")
    for key in locator:
        if key not in _LOCATOR_KEYS:
            raise ConfigError("unknown key", f"{path}.object-locator.{key}")

    def pattern(key: str, needed: bool) -> re.Pattern[str] | None:
        value = locator.get(key)
        if value is None:
            if needed:
                raise ConfigError(f"rule-id {rule_id}: {key} is required", f"{path}.object-locator.{key}")
            return None
        if not isinstance(value, str):
            raise ConfigError(f"rule-id {rule_id}: {key} is a string", f"{path}.object-locator.{key}")
        return wildcard(value)

    schema = pattern("schema-name", True)
    assert schema is not None
    table = pattern("table-name", target != "schema")
    column = pattern("column-name", target == "column" and action not in ("add-column", "add-before-image-columns"))
    data_type = locator.get("data-type")
    if data_type is not None and data_type not in _DMS_TYPES:
        raise ConfigError(
            f"rule-id {rule_id}: data-type is one of {', '.join(_DMS_TYPES)}", f"{path}.object-locator.data-type"
        )
    fields: dict[str, Any] = {}
    value, old_value = rule.get("value"), rule.get("old-value")
    if action in (
        "rename",
        "add-prefix",
        "add-suffix",
        "remove-prefix",
        "remove-suffix",
        "replace-prefix",
        "replace-suffix",
        "add-column",
    ):
        if not isinstance(value, str) or (not value and action in ("rename", "add-column")):
            raise ConfigError(f"rule-id {rule_id}: {action} needs a value (a string)", f"{path}.value")
        fields["value"] = value
    if action in ("replace-prefix", "replace-suffix"):
        if not isinstance(old_value, str) or not old_value:
            raise ConfigError(f"rule-id {rule_id}: {action} needs old-value (a string)", f"{path}.old-value")
        fields["old_value"] = old_value
    if action == masking.DIGITS_MASK:
        fields["value"] = masking.mask_character(value, rule_id, f"{path}.value")
    if action in ("change-data-type", "add-column"):
        fields["new_type"] = _data_type(rule.get("data-type"), rule_id, f"{path}.data-type")
    if action == "add-column":
        fields["expression"] = _expression(rule.get("expression"), rule_id, f"{path}.expression")
    if action == "define-primary-key":
        fields.update(_key_def(rule.get("primary-key-def"), rule_id, f"{path}.primary-key-def"))
    if action == "add-before-image-columns":
        fields.update(_image_def(rule.get("before-image-def"), rule_id, f"{path}.before-image-def"))
    return TransformRule(rule_id, target, action, schema, table, column, data_type, **fields)


def _data_type(doc: Any, rule_id: str, path: str) -> ColumnType:
    if not isinstance(doc, dict) or doc.get("type") not in _DMS_TYPES:
        raise ConfigError(f"rule-id {rule_id}: data-type needs a type, one of {', '.join(_DMS_TYPES)}", path)
    for key in doc:
        if key not in ("type", "length", "precision", "scale"):
            raise ConfigError("unknown key", f"{path}.{key}")
    numbers = {}
    for key in ("length", "precision", "scale"):
        raw = doc.get(key)
        if raw is None:
            continue
        try:
            numbers[key] = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"rule-id {rule_id}: {key} is an integer", f"{path}.{key}") from None
    logical, bits, unsigned = _DMS_TYPES[doc["type"]]
    if logical is LogicalType.VARCHAR and "length" not in numbers:
        logical = LogicalType.TEXT
    if logical is LogicalType.TIMESTAMP:
        return ColumnType(logical, precision=numbers.get("scale", numbers.get("precision")))
    if logical is LogicalType.DECIMAL:
        return ColumnType(logical, precision=numbers.get("precision"), scale=numbers.get("scale"))
    return ColumnType(logical, length=numbers.get("length"), bits=bits, unsigned=unsigned)


def _expression(doc: Any, rule_id: str, path: str) -> str | None:
    if doc is None:
        return None
    if not isinstance(doc, str) or not doc.strip():
        raise ConfigError(f"rule-id {rule_id}: expression is a SQLite expression (a string)", path)
    problem = expressions.check(doc)
    if problem is not None:
        raise ConfigError(f"rule-id {rule_id}: SQLite cannot evaluate the expression: {problem}", path)
    for name in expressions.parameters(doc):
        if name in expressions.UNKNOWN_HEADERS:
            raise ConfigError(f"rule-id {rule_id}: ${name} cannot be known: {expressions.UNKNOWN_HEADERS[name]}", path)
        if name.startswith(("AR_H_", "AR_M_")) and name not in expressions.HEADERS:
            raise ConfigError(
                f"rule-id {rule_id}: header ${name} has no meaning here; Conveyor fills "
                f"{', '.join('$' + h for h in expressions.HEADERS)}",
                path,
            )
    return doc


def _key_def(doc: Any, rule_id: str, path: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ConfigError(f"rule-id {rule_id}: primary-key-def needs a name and columns", path)
    for key in doc:
        if key not in ("name", "origin", "columns"):
            raise ConfigError("unknown key", f"{path}.{key}")
    origin = doc.get("origin", "primary-key")
    if origin not in ("primary-key", "unique-index"):
        raise ConfigError(f"rule-id {rule_id}: origin is primary-key or unique-index", f"{path}.origin")
    columns = doc.get("columns")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise ConfigError(f"rule-id {rule_id}: columns is a list of column names", f"{path}.columns")
    return {"key_name": doc["name"], "key_columns": tuple(columns), "key_unique_index": origin == "unique-index"}


def _image_def(doc: Any, rule_id: str, path: str) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"rule-id {rule_id}: before-image-def is a JSON object", path)
    for key in doc:
        if key not in ("column-prefix", "column-suffix", "column-filter"):
            raise ConfigError("unknown key", f"{path}.{key}")
    prefix, suffix = doc.get("column-prefix", "BI_"), doc.get("column-suffix", "")
    if not isinstance(prefix, str) or not isinstance(suffix, str) or not (prefix or suffix):
        raise ConfigError(f"rule-id {rule_id}: column-prefix and column-suffix are strings, not both empty", path)
    column_filter = doc.get("column-filter", "pk-only")
    if column_filter not in _COLUMN_FILTERS:
        raise ConfigError(
            f"rule-id {rule_id}: column-filter is one of {', '.join(_COLUMN_FILTERS)}", f"{path}.column-filter"
        )
    return {"image_prefix": prefix, "image_suffix": suffix, "image_filter": column_filter}
