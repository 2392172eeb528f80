"""SQL expressions from one engine's dialect to another's, through sqlglot.

Defaults, CHECKs, generated columns, index expressions and view queries are written in the source's
SQL. Between engines they are parsed with the source's sqlglot dialect and written in the target's;
whatever sqlglot cannot carry over cleanly (a parse error, a construct the target lacks, a function
sqlglot does not know) raises ``NotConvertible`` so that it is reported, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

from conveyor.convert.engines import SQLGLOT, NotConvertible


def parse(text: str, engine: str) -> exp.Expression:
    try:
        parsed = sqlglot.parse_one(text, read=SQLGLOT[engine])
    except sqlglot.errors.SqlglotError as exc:
        raise NotConvertible(f"sqlglot cannot read it: {str(exc).splitlines()[0]}") from None
    if not isinstance(parsed, exp.Expression):
        raise NotConvertible("it is empty")
    return parsed


def unknown_functions(tree: exp.Expression) -> list[str]:
    """Functions sqlglot does not know: it would copy their names unchanged, which is a guess."""
    return sorted({f.name for f in tree.find_all(exp.Anonymous)})


def strip_literal_casts(tree: exp.Expression) -> exp.Expression:
    """``'x'::character varying``, ``(0)::numeric``, ``'a'::public.mood``: PostgreSQL's casts of literals
    are the literal on any target (the column's type does the rest)."""

    def bare(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Cast):
            inner = node.this.unnest() if isinstance(node.this, exp.Paren) else node.this
            if isinstance(inner, exp.Literal | exp.Boolean | exp.Null):
                return inner.copy()
            if isinstance(inner, exp.Neg) and isinstance(inner.this, exp.Literal):
                return inner.copy()
        return node

    return tree.transform(bare)


def _bare_decimal_casts(tree: exp.Expression) -> exp.Expression:
    """MySQL's DECIMAL without precision is DECIMAL(10,0): a PostgreSQL ``::numeric`` (any precision,
    there mostly a promotion in arithmetic) would cut the fraction, so the cast goes."""

    def bare(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.DECIMAL and not node.to.expressions:
            return node.this.copy()
        return node

    return tree.transform(bare)


def write(tree: exp.Expression, engine: str) -> str:
    if engine == "mysql":
        tree = _bare_decimal_casts(tree)
    try:
        return tree.sql(dialect=SQLGLOT[engine], identify=True, unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as exc:
        raise NotConvertible(f"the target has no equivalent: {str(exc).splitlines()[0]}") from None


def transpile(
    text: str,
    source: str,
    target: str,
    rewrite: Callable[[exp.Expression], exp.Expression] | None = None,
) -> str:
    """``text`` in the target's SQL; verbatim between the same engines unless ``rewrite`` must run."""
    if source == target and rewrite is None:
        return text
    tree = parse(text, source)
    if source != target:
        unknown = unknown_functions(tree)
        if unknown:
            raise NotConvertible(f"function {', '.join(unknown)} has no known equivalent on {target}")
        tree = strip_literal_casts(tree)
    if rewrite is not None:
        tree = rewrite(tree)
    return write(tree, target)
