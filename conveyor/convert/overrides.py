"""Type-mapping overrides: the task file's ``type_mappings`` list, per source type or per column.

```yaml
type_mappings:
  - source_type: numeric          # every column of this type: the source's native type name, without
    target_type: decimal(38,10)   # parameters, or a logical type (docs/type-mappings.md)
  - table_name: orders            # one column (schema_name optional): wins over a per-type rule
    column_name: total
    target_type: numeric(20,4)
```
``target_type`` is written into the target's DDL as it is: it is the user's own target SQL. A column is
named as on the target (after the table mapping's rename rules). ``conveyor convert`` and ``conveyor run``
both apply the rules; a run converts the values to the chosen type (``convert.plan.encoder_for``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from conveyor.endpoints.config import describe_validation_error
from conveyor.errors import ConfigError
from conveyor.model.schema import Column, Table
from conveyor.model.types import ColumnType

#: (table, column) -> the target type chosen for it, or None for the usual mapping
TypeOverride = Callable[[Table, Column], str | None]
_TYPE_NAME = re.compile(r"^\s*([^(]*?)\s*(\(.*)?$")


class TypeMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_type: str | None = Field(
        None, description="Source type name (native, without parameters) or logical type; every such column."
    )
    schema_name: str | None = Field(None, description="Target schema of the column's table (default: any).")
    table_name: str | None = Field(None, description="Table of the column, as named on the target.")
    column_name: str | None = Field(None, description="The one column this rule maps, as named on the target.")
    target_type: str = Field(description="The target's type, written into the DDL as it is.")

    @model_validator(mode="after")
    def one_kind(self) -> TypeMapping:
        by_column = self.column_name is not None
        if by_column == (self.source_type is not None):
            raise ValueError("give source_type, or table_name and column_name")
        if by_column and self.table_name is None:
            raise ValueError("column_name needs table_name")
        if not self.target_type.strip() or ";" in self.target_type:
            raise ValueError("target_type is one type, e.g. numeric(20,4)")
        return self

    def matches(self, table: Table, column: Column) -> bool:
        if self.column_name is not None:
            return (
                column.name == self.column_name
                and table.id.name == self.table_name
                and self.schema_name in (None, table.id.schema)
            )
        wanted = (self.source_type or "").lower()
        return wanted in (type_name(column.type.native), column.type.logical.value)


def type_name(native: str) -> str:
    """``numeric(12,2)`` -> ``numeric``; ``int unsigned`` -> ``int unsigned``."""
    match = _TYPE_NAME.match(native.lower())
    return match.group(1) if match else native.lower()


_RULES = TypeAdapter(list[TypeMapping])


def parse_type_mappings(doc: Any) -> list[TypeMapping]:
    if doc is None:
        return []
    try:
        return _RULES.validate_python(doc)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc), "type_mappings") from None


def override_for(rules: list[TypeMapping]) -> TypeOverride | None:
    """The ``TypeOverride`` for ``convert.ddl``: a per-column rule first, then a per-type rule."""
    ordered = sorted(rules, key=lambda r: r.column_name is None)

    def override(table: Table, column: Column) -> str | None:
        for rule in ordered:
            if rule.matches(table, column):
                return rule.target_type
        return None

    return override if rules else None


def native_types(table: Table, map_type: Callable[[ColumnType], str], override: TypeOverride | None) -> list[str]:
    """The target type of each of ``table``'s columns: its override, else the target's usual mapping."""
    return [(override(table, c) if override else None) or map_type(c.type) for c in table.columns]
