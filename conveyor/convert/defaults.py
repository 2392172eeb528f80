"""Column defaults in the target's SQL: literals, the current time, UUID generation, other expressions.

Identity defaults (``nextval(...)`` of a serial, AUTO_INCREMENT) are not defaults on the target: the
column becomes the target's identity instead (``Applier.identity_clause``).
"""

from __future__ import annotations

import re

from sqlglot import exp

from conveyor.convert.dialects import parse, strip_literal_casts, transpile, write
from conveyor.convert.engines import NotConvertible
from conveyor.model.schema import Column
from conveyor.model.types import LogicalType as L

#: a default MySQL accepts without parentheses (a literal) or CURRENT_TIMESTAMP on a date-time column
_TIME_FUNCTIONS = (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime)
_FRACTION = re.compile(r"\((\d)\)")
#: MySQL types that take a default only as an expression in parentheses (MySQL 8.0.13+, MariaDB)
_LOB = re.compile(r"text|blob|json|geometry", re.IGNORECASE)


def convert_default(column: Column, native: str, source: str, target: str) -> str | None:
    """The default of ``column`` (target type ``native``) in the target's SQL; None when it has none.
    Raises ``NotConvertible`` when the target cannot have it."""
    if column.default is None or column.identity:
        return None
    if source == target:
        return column.default
    tree = strip_literal_casts(parse(column.default, source))
    if isinstance(tree, exp.Null):
        return None
    tree = _boolean(tree, column, target)
    if isinstance(tree, exp.Uuid) and target == "sqlite":
        raise NotConvertible("SQLite has no UUID function for a default")
    if source == "mysql" and any(tree.find_all(exp.Column)):
        # MySQL and MariaDB let a default read the row's other columns; PostgreSQL and SQLite do not
        raise NotConvertible(f"the default {column.default} reads other columns, which a {target} default cannot")
    if isinstance(tree, _TIME_FUNCTIONS):
        return _time_default(tree, native, target)
    text = transpile(column.default, source, target, rewrite=lambda _: tree)
    literal = isinstance(tree, exp.Literal | exp.Boolean) or (
        isinstance(tree, exp.Neg) and isinstance(tree.this, exp.Literal)
    )
    if literal and not (target == "mysql" and _LOB.search(native)):
        return text
    # an expression: SQLite and MySQL take it only in parentheses (PostgreSQL does not mind them)
    return text if text.startswith("(") and text.endswith(")") else f"({text})"


def _boolean(tree: exp.Expression, column: Column, target: str) -> exp.Expression:
    """MySQL and SQLite booleans are 0 and 1; PostgreSQL wants TRUE / FALSE for a boolean column."""
    if column.type.logical is not L.BOOLEAN:
        return tree
    if target == "postgresql" and isinstance(tree, exp.Literal) and tree.this in ("0", "1"):
        return exp.Boolean(this=tree.this == "1")
    if target != "postgresql" and isinstance(tree, exp.Boolean):
        return exp.Literal.number(1 if tree.this else 0)
    return tree


def _time_default(tree: exp.Expression, native: str, target: str) -> str:
    if target == "mysql" and isinstance(tree, exp.CurrentTimestamp):
        # MySQL wants the column's own fractional digits: DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)
        digits = _FRACTION.search(native)
        return f"CURRENT_TIMESTAMP({digits.group(1)})" if digits else "CURRENT_TIMESTAMP"
    text = write(tree, target)
    if target == "mysql" and not isinstance(tree, exp.CurrentTimestamp):
        return f"({text})"  # CURRENT_DATE is an expression default in MySQL
    return text
