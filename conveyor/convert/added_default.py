"""The target's DEFAULT for a column the source added with one while change capture follows it.

The source filled its existing rows with the default when the column was added, and the change stream
never carries those values. Adding the column on the target, at the stream's place, with the same
default fills the target's rows (the source's rows as they were at that place) with the same value:
exact, when the default is a constant whose value both engines read alike. A default the source
computed when the column was added (``now()``, ``gen_random_uuid()``, any expression) filled rows with
values nothing can know, so it is refused (``NotConvertible``) and the caller suspends the table.
"""

from __future__ import annotations

from sqlglot import exp

from conveyor.convert.ddl import PERCENT_DOUBLED
from conveyor.convert.defaults import convert_default
from conveyor.convert.dialects import parse, strip_literal_casts
from conveyor.convert.engines import SQLGLOT, NotConvertible
from conveyor.model.schema import Column
from conveyor.model.types import LogicalType as L

#: logical types whose constants mean the same value on every engine; others (time zones, arrays,
#: JSON, binary literals ...) are followed only between two servers of the same engine
PORTABLE = frozenset({L.BOOLEAN, L.INTEGER, L.DECIMAL, L.FLOAT, L.CHAR, L.VARCHAR, L.TEXT, L.DATE})


def added_default(column: Column, native: str, source: str, target: str) -> str | None:
    """``column``'s default (in the ``source`` engine's SQL) for the ``target`` engine's ADD COLUMN on a
    column of type ``native``, as the target's applier executes it; None when it has none. Raises
    ``NotConvertible`` with the reason when the target would not fill the existing rows as the source did."""
    if column.default is None:
        return None
    if source not in SQLGLOT or target not in SQLGLOT:
        raise NotConvertible(f"defaults are not converted from {source or 'this source'} to {target or 'this target'}")
    tree = strip_literal_casts(parse(column.default, source))
    if isinstance(tree, exp.Null):
        return None
    if not _constant(tree):
        raise NotConvertible(
            f"its default {column.default} is not a constant: the source computed the value its existing rows took"
        )
    if source != target and column.type.logical not in PORTABLE:
        raise NotConvertible(
            f"a {column.type.describe()} default is followed only between two {source} servers: its literal "
            f"may not mean the same value on {target}"
        )
    text = convert_default(column, native, source, target)
    if text is None:
        return None
    return text.replace("%", "%%") if target in PERCENT_DOUBLED else text


def _constant(tree: exp.Expression) -> bool:
    """A literal (its casts stripped), a signed number or TRUE / FALSE, maybe in parentheses."""
    while isinstance(tree, exp.Paren):
        tree = tree.this
    if isinstance(tree, exp.Neg):
        tree = tree.this
    return isinstance(tree, exp.Literal | exp.Boolean)
