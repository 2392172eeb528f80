"""DMS source filters (``filters`` in a selection rule) and parallel-load range boundaries.

Filters are ANDed, a filter's conditions ORed. Full load pushes them into the source query as a
WHERE with bound values; change processing evaluates them on each change (``RowMapping``), with
Python's comparison of canonical values (binary string order, where a source's case-insensitive
collation would match more).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from conveyor.errors import ConfigError
from conveyor.model.changes import UNCHANGED
from conveyor.model.schema import Table
from conveyor.model.segments import Condition, SourceFilter
from conveyor.transform.values import to_canonical

#: operator -> how many values it takes (``ste`` is DMS's alias of ``lte``)
OPERATORS = {"eq": 1, "noteq": 1, "lte": 1, "ste": 1, "gte": 1, "between": 2, "notbetween": 2, "null": 0, "notnull": 0}
_FILTER_KEYS = {"filter-type", "column-name", "filter-conditions"}
_CONDITION_KEYS = {"filter-operator", "value", "start-value", "end-value"}

Quote = Callable[[str], str]
Bind = Callable[[Any], Any]


def parse_filters(doc: Any, rule_id: str, path: str) -> tuple[SourceFilter, ...]:
    if not isinstance(doc, list):
        raise ConfigError(f"rule-id {rule_id}: filters is a list of filter objects", path)
    out = []
    for i, item in enumerate(doc):
        here = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"rule-id {rule_id}: a filter is a JSON object", here)
        for key in item:
            if key not in _FILTER_KEYS:
                raise ConfigError("unknown key", f"{here}.{key}")
        if item.get("filter-type", "source") != "source":
            raise ConfigError(
                f"rule-id {rule_id}: only source filters exist (filter-type source)", f"{here}.filter-type"
            )
        column = item.get("column-name")
        if not isinstance(column, str) or not column:
            raise ConfigError(f"rule-id {rule_id}: column-name is required", f"{here}.column-name")
        conditions = item.get("filter-conditions")
        if not isinstance(conditions, list) or not conditions:
            raise ConfigError(f"rule-id {rule_id}: filter-conditions is a non-empty list", f"{here}.filter-conditions")
        parsed = tuple(_condition(c, rule_id, f"{here}.filter-conditions[{j}]") for j, c in enumerate(conditions))
        out.append(SourceFilter(column, parsed))
    return tuple(out)


def _condition(doc: Any, rule_id: str, path: str) -> Condition:
    if not isinstance(doc, dict):
        raise ConfigError(f"rule-id {rule_id}: a filter condition is a JSON object", path)
    for key in doc:
        if key not in _CONDITION_KEYS:
            raise ConfigError("unknown key", f"{path}.{key}")
    op = doc.get("filter-operator")
    if op not in OPERATORS:
        raise ConfigError(
            f"rule-id {rule_id}: filter-operator is one of {', '.join(OPERATORS)}", f"{path}.filter-operator"
        )
    op = "lte" if op == "ste" else op
    wanted = OPERATORS[op]
    if wanted == 0:
        values: tuple[Any, ...] = ()
        stray = [k for k in ("value", "start-value", "end-value") if k in doc]
    elif wanted == 1:
        values = (doc.get("value"),)
        stray = [k for k in ("start-value", "end-value") if k in doc]
    else:
        values = (doc.get("start-value"), doc.get("end-value"))
        stray = ["value"] if "value" in doc else []
    if stray:
        raise ConfigError(f"rule-id {rule_id}: {op} takes no {stray[0]}", f"{path}.{stray[0]}")
    if any(v is None or isinstance(v, dict | list | bool) for v in values):
        need = "value" if wanted == 1 else "start-value and end-value"
        raise ConfigError(f"rule-id {rule_id}: {op} needs {need} (a string or a number)", path)
    return Condition(op, values)


def resolve_filters(filters: Sequence[SourceFilter], table: Table, rule_id: str) -> tuple[SourceFilter, ...]:
    """The filters with their values as canonical values of their columns' types (checked here, so
    a bad value fails the task before anything moves)."""
    out = []
    for f in filters:
        try:
            column = table.column(f.column)
        except KeyError:
            raise ConfigError(
                f"rule-id {rule_id}: {table.id} has no column {f.column!r} to filter on (names are case-sensitive)"
            ) from None
        conditions = []
        for c in f.conditions:
            try:
                conditions.append(Condition(c.op, tuple(to_canonical(v, column.type) for v in c.values)))
            except ValueError as exc:
                raise ConfigError(f"rule-id {rule_id}: filter on {table.id}.{f.column}: {exc}") from None
        out.append(SourceFilter(f.column, tuple(conditions)))
    return tuple(out)


# --------------------------------------------------------------------------- SQL (full load)
def filter_sql(
    table: Table, filters: Sequence[SourceFilter], quote: Quote, param: str, bind: Bind
) -> tuple[str, list[Any]]:
    """``(c = ? OR c BETWEEN ? AND ?) AND (...)`` with the values bound, read as the columns' types."""
    clauses: list[str] = []
    params: list[Any] = []
    for f in resolve_filters(filters, table, "?"):
        col = quote(f.column)
        parts = []
        for c in f.conditions:
            parts.append(_CONDITION_SQL[c.op].format(c=col, p=param))
            params.extend(bind(v) for v in c.values)
        clauses.append(f"({' OR '.join(parts)})")
    return " AND ".join(clauses), params


_CONDITION_SQL = {
    "eq": "{c} = {p}",
    "noteq": "{c} <> {p}",
    "lte": "{c} <= {p}",
    "gte": "{c} >= {p}",
    "between": "{c} BETWEEN {p} AND {p}",
    "notbetween": "{c} NOT BETWEEN {p} AND {p}",
    "null": "{c} IS NULL",
    "notnull": "{c} IS NOT NULL",
}


def bounds_sql(
    table: Table,
    columns: Sequence[str],
    lo: Sequence[Any] | None,
    hi: Sequence[Any] | None,
    quote: Quote,
    param: str,
    bind: Bind,
) -> tuple[str, list[Any]]:
    """A DMS parallel-load ``ranges`` segment: the row value of ``columns`` above ``lo`` and at most
    ``hi``. Written as ``above(lo) IS TRUE AND above(hi) IS NOT TRUE``, so a row with NULLs in those
    columns falls in exactly one segment too (the first one its non-NULL prefix does not pass)."""
    types = [table.column(c).type for c in columns]
    clauses: list[str] = []
    params: list[Any] = []
    for bound, test in ((lo, "IS TRUE"), (hi, "IS NOT TRUE")):
        if bound is None:
            continue
        values = [bind(to_canonical(v, t)) for v, t in zip(bound, types, strict=True)]
        sql, args = _above(columns, values, quote, param)
        clauses.append(f"({sql}) {test}")
        params.extend(args)
    return " AND ".join(clauses), params


def _above(columns: Sequence[str], values: Sequence[Any], quote: Quote, param: str) -> tuple[str, list[Any]]:
    """``(c1, c2, ...) > (v1, v2, ...)`` in row-value order, spelled out for every engine."""
    terms, params = [], []
    for i in range(len(columns)):
        equal = [f"{quote(columns[j])} = {param}" for j in range(i)]
        terms.append("(" + " AND ".join([*equal, f"{quote(columns[i])} > {param}"]) + ")")
        params.extend([*values[:i], values[i]])
    return " OR ".join(terms), params


# --------------------------------------------------------------------------- Python (change processing)
def passes(filters: Sequence[tuple[int, SourceFilter]], row: Sequence[Any]) -> bool:
    """Whether a row passes resolved filters; ``filters`` pairs each with its column's index in ``row``.
    A NULL passes only ``null`` (as in SQL); a value the source did not send passes."""
    for index, f in filters:
        value = row[index]
        if value is UNCHANGED:
            continue  # not sent (PostgreSQL TOAST): the row is as it was
        if not any(_holds(c, value) for c in f.conditions):
            return False
    return True


def _holds(c: Condition, value: Any) -> bool:
    op = c.op
    if op == "null":
        return value is None
    if value is None:
        return False
    if op == "notnull":
        return True
    try:
        if op == "eq":
            return bool(value == c.values[0])
        if op == "noteq":
            return bool(value != c.values[0])
        if op == "lte":
            return bool(value <= c.values[0])
        if op == "gte":
            return bool(value >= c.values[0])
        inside = bool(c.values[0] <= value <= c.values[1])
        return inside if op == "between" else not inside
    except TypeError:
        return False
