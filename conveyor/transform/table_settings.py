"""AWS DMS table-settings rules: ``parallel-load`` (how a table's full load is split into segments) and
``lob-settings`` (the table's LOB handling, ``transform.lobs``).

* ``ranges``: ``columns`` and ``boundaries`` (each a list of one value per column, in increasing
  order); n boundaries make n + 1 segments, DMS's: the first holds rows up to and including the
  first boundary, the last the rows above the last one (row-value order over the columns);
* ``partitions-auto``: one segment per top-level source partition (a table without partitions: Conveyor's
  automatic split, primary-key ranges or heap pages);
* ``subpartitions-auto``: one segment per partition that holds rows itself (the lowest level);
* ``partitions-list``: one segment per partition in ``partitions`` (any level), and one more for the rows
  of the partitions not listed, so no row is left out;
* ``none``: one segment.

Partitions are the source's (PostgreSQL declarative partitioning, MySQL / MariaDB); ``runner.segments``
refuses the partition types on a source without them (SQLite).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigError
from conveyor.model.schema import Table
from conveyor.transform.lobs import LobRule, parse_lob_settings
from conveyor.transform.values import to_canonical
from conveyor.transform.wildcards import wildcard

_KEYS = {"rule-type", "rule-id", "rule-name", "object-locator", "parallel-load", "lob-settings", "description"}
_PARALLEL_KEYS = {"type", "columns", "boundaries", "partitions"}
_TYPES = ("ranges", "partitions-auto", "subpartitions-auto", "partitions-list", "none")
#: the types that split a table by its source partitions
PARTITION_TYPES = ("partitions-auto", "subpartitions-auto", "partitions-list")


@dataclass(frozen=True)
class ParallelLoad:
    rule_id: str
    schema: re.Pattern[str]
    table: re.Pattern[str]
    type: str
    columns: tuple[str, ...] = ()
    boundaries: tuple[tuple[Any, ...], ...] = ()
    #: partitions-list: the partitions' names
    partitions: tuple[str, ...] = ()

    def check(self, table: Table) -> None:
        """The range columns exist and the boundaries are values of their types, in increasing order."""
        if self.type != "ranges":
            return
        try:
            types = [table.column(c).type for c in self.columns]
        except KeyError as exc:
            raise ConfigError(f"rule-id {self.rule_id}: {table.id} has no column {exc.args[0]!r}") from None
        previous: tuple[Any, ...] | None = None
        for bound in self.boundaries:
            try:
                values = tuple(to_canonical(v, t) for v, t in zip(bound, types, strict=True))
            except ValueError as exc:
                raise ConfigError(f"rule-id {self.rule_id}: boundary {list(bound)} on {table.id}: {exc}") from None
            try:
                if previous is not None and not previous < values:
                    raise ConfigError(f"rule-id {self.rule_id}: boundaries must increase ({list(bound)} does not)")
            except TypeError:
                pass  # values of a type without an order in Python (the source orders them)
            previous = values


def parse_table_settings(rule: dict[str, Any], rule_id: str, path: str) -> tuple[ParallelLoad | None, LobRule | None]:
    """A table-settings rule: its ``parallel-load`` and its ``lob-settings`` (either may be absent)."""
    for key in rule:
        if key not in _KEYS:
            raise ConfigError("unknown key", f"{path}.{key}")
    locator = rule.get("object-locator")
    if not isinstance(locator, dict) or not all(isinstance(locator.get(k), str) for k in ("schema-name", "table-name")):
        raise ConfigError(
            f"rule-id {rule_id}: object-locator with schema-name and table-name is required", f"{path}.object-locator"
        )
    if "parallel-load" not in rule and "lob-settings" not in rule:
        raise ConfigError(f"rule-id {rule_id}: parallel-load or lob-settings is required", path)
    lob = None
    if "lob-settings" in rule:
        lob = parse_lob_settings(rule["lob-settings"], locator, rule_id, f"{path}.lob-settings")
    if "parallel-load" not in rule:
        return None, lob
    return _parallel_load(rule.get("parallel-load"), locator, rule_id, path), lob


def _parallel_load(parallel: Any, locator: dict[str, str], rule_id: str, path: str) -> ParallelLoad:
    if not isinstance(parallel, dict):
        raise ConfigError(f"rule-id {rule_id}: parallel-load is an object with a type", f"{path}.parallel-load")
    here = f"{path}.parallel-load"
    for key in parallel:
        if key not in _PARALLEL_KEYS:
            hint = ""
            if key == "subpartitions":
                hint = " (DMS lists subpartitions for Oracle only; list any level under partitions)"
            raise ConfigError(f"unknown key{hint}", f"{here}.{key}")
    kind = parallel.get("type")
    if kind not in _TYPES:
        raise ConfigError(f"rule-id {rule_id}: type is one of {', '.join(_TYPES)}", f"{here}.type")
    columns: tuple[str, ...] = ()
    boundaries: tuple[tuple[Any, ...], ...] = ()
    if kind == "ranges":
        cols = parallel.get("columns")
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise ConfigError(f"rule-id {rule_id}: ranges needs columns (a list of column names)", f"{here}.columns")
        bounds = parallel.get("boundaries")
        if not isinstance(bounds, list) or not bounds:
            raise ConfigError(
                f"rule-id {rule_id}: ranges needs boundaries (a list of value lists)", f"{here}.boundaries"
            )
        for i, bound in enumerate(bounds):
            if not isinstance(bound, list) or len(bound) != len(cols) or any(v is None for v in bound):
                raise ConfigError(
                    f"rule-id {rule_id}: each boundary lists one value per column ({len(cols)})",
                    f"{here}.boundaries[{i}]",
                )
        columns, boundaries = tuple(cols), tuple(tuple(b) for b in bounds)
    elif "columns" in parallel or "boundaries" in parallel:
        raise ConfigError(f"rule-id {rule_id}: columns and boundaries belong to type ranges", here)
    partitions = parallel.get("partitions")
    if kind == "partitions-list":
        if not isinstance(partitions, list) or not partitions or not all(isinstance(p, str) for p in partitions):
            raise ConfigError(
                f"rule-id {rule_id}: partitions-list needs partitions (a list of partition names)",
                f"{here}.partitions",
            )
    elif partitions is not None:
        raise ConfigError(f"rule-id {rule_id}: partitions belongs to type partitions-list", here)
    return ParallelLoad(
        rule_id,
        wildcard(locator["schema-name"]),
        wildcard(locator["table-name"]),
        kind,
        columns,
        boundaries,
        tuple(dict.fromkeys(partitions or ())),
    )
