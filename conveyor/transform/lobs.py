"""LOB handling (DMS's LOB settings): the task's ``TargetMetadata`` LOB settings, overridden per table by
a table-settings ``lob-settings`` rule, and the truncation limited LOB mode does.

* full (``FullLobMode``, ``lob-settings`` mode ``unlimited``): LOBs are copied whole;
* limited (``LimitedSizeLobMode`` + ``LobMaxSize``, mode ``limited`` + ``bulk-max-size``, both in KB):
  values longer than the limit (in bytes; text as UTF-8) are truncated, text on a character boundary,
  and every truncation is counted. JSON and XML cut short are no longer JSON or XML: such a value is
  a rejected row (the task's error policy), never a silently broken document;
* none (``SupportLobs`` false): LOB columns are not migrated.

Key columns are never LOBs here: a key is copied whole, or rows could not be found again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.errors import ConfigError, RowRejected
from conveyor.model.changes import UNCHANGED
from conveyor.model.rows import Row
from conveyor.model.types import ColumnType, LogicalType
from conveyor.transform.wildcards import wildcard

#: DMS's largest LobMaxSize / bulk-max-size, in KB
MAX_KB = 102400
_RULE_KEYS = {"mode", "bulk-max-size"}
_MODES = ("limited", "unlimited", "none")


class LobMode(StrEnum):
    FULL = "full"
    LIMITED = "limited"
    NONE = "none"


@dataclass(frozen=True)
class LobPolicy:
    mode: LobMode = LobMode.FULL
    #: limited mode: the largest value kept, in bytes
    max_bytes: int = 0

    def describe(self) -> str:
        return f"{self.max_bytes // 1024} KB" if self.mode is LobMode.LIMITED else self.mode.value


#: Conveyor's default: LOBs copied whole
FULL_LOBS = LobPolicy()


@dataclass(frozen=True)
class LobRule:
    """A table-settings ``lob-settings`` rule: ``policy`` None for mode ``none`` (the task's settings)."""

    rule_id: str
    schema: re.Pattern[str]
    table: re.Pattern[str]
    policy: LobPolicy | None

    def matches(self, schema: str, table: str) -> bool:
        return bool(self.schema.fullmatch(schema) and self.table.fullmatch(table))


def parse_lob_settings(doc: Any, locator: dict[str, str], rule_id: str, path: str) -> LobRule:
    if not isinstance(doc, dict):
        raise ConfigError(f"rule-id {rule_id}: lob-settings is an object with a mode", path)
    for key in doc:
        if key not in _RULE_KEYS:
            raise ConfigError("unknown key (lob-settings has mode and bulk-max-size)", f"{path}.{key}")
    mode = doc.get("mode", "limited")  # DMS's default mode
    if mode not in _MODES:
        raise ConfigError(f"rule-id {rule_id}: mode is one of {', '.join(_MODES)}", f"{path}.mode")
    size = doc.get("bulk-max-size", 0)
    try:
        kb = int(size)
    except (TypeError, ValueError):
        kb = -1
    if not 0 <= kb <= MAX_KB:
        raise ConfigError(f"rule-id {rule_id}: bulk-max-size is a size in KB, 0 to {MAX_KB}", f"{path}.bulk-max-size")
    policy: LobPolicy | None = None
    if mode == "limited":
        if kb == 0:
            raise ConfigError(
                f"rule-id {rule_id}: mode limited needs bulk-max-size (KB, at least 1)", f"{path}.bulk-max-size"
            )
        policy = LobPolicy(LobMode.LIMITED, kb * 1024)
    elif mode == "unlimited":
        policy = LobPolicy(LobMode.FULL)  # bulk-max-size: DMS's inline size, a speed setting only
    return LobRule(rule_id, wildcard(locator["schema-name"]), wildcard(locator["table-name"]), policy)


# ---------------------------------------------------------------------------------------------- truncation
@dataclass(frozen=True)
class LobLimit:
    """A LOB column limited LOB mode checks: its position in the target row."""

    position: int
    column: str
    max_bytes: int
    #: JSON / XML: too long is a rejected row, not a truncated value
    structured: bool


def structured(ctype: ColumnType) -> bool:
    return ctype.logical is LogicalType.JSON or ctype.native.lower() == "xml"


def clip(value: Any, max_bytes: int) -> Any:
    """``value`` cut to ``max_bytes``, or the value itself when it fits (text: UTF-8 bytes, cut on a
    character boundary)."""
    if isinstance(value, str):
        if len(value) * 4 <= max_bytes:  # fits whatever its characters: no encoding needed
            return value
        data = value.encode()
        if len(data) <= max_bytes:
            return value
        return data[:max_bytes].decode("utf-8", errors="ignore")  # drops only a character cut in two
    if isinstance(value, bytes | bytearray | memoryview) and len(value) > max_bytes:
        return bytes(value[:max_bytes])
    return value


def clip_row(row: Row, limits: Sequence[LobLimit], counts: dict[str, int] | None) -> Row:
    """``row`` with its limited LOBs truncated; each truncation counted in ``counts`` (by column)."""
    values: list[Any] | None = None
    for limit in limits:
        value = row[limit.position]
        if value is None or value is UNCHANGED or limit.structured:
            continue
        cut = clip(value, limit.max_bytes)
        if cut is not value:
            if values is None:
                values = list(row)
            values[limit.position] = cut
            if counts is not None:
                counts[limit.column] = counts.get(limit.column, 0) + 1
    return row if values is None else tuple(values)


def too_long(limit: LobLimit, encode: Any) -> Any:
    """An encoder that rejects a JSON / XML value longer than the limit, then encodes with ``encode``."""

    def check(value: Any) -> Any:
        if clip(value, limit.max_bytes) is not value:
            raise RowRejected(
                f"a value longer than the LOB limit ({limit.max_bytes // 1024} KB) that truncating would make "
                "invalid; raise LobMaxSize / bulk-max-size or use full LOB mode",
                limit.column,
            )
        return value if encode is None else encode(value)

    return check


def truncation_warning(table: object, truncated: dict[str, int], limits: Sequence[LobLimit]) -> str:
    """The warning for LOB values limited LOB mode truncated (``truncated``: by column)."""
    sizes = {limit.column: limit.max_bytes // 1024 for limit in limits}
    counts = ", ".join(f"{column} {count}" for column, count in sorted(truncated.items()))
    limit = " / ".join(sorted({f"{sizes.get(c, '?')} KB" for c in truncated}))
    return f"{table}: {sum(truncated.values())} LOB value(s) longer than {limit} truncated (limited LOB mode): {counts}"
