"""View queries in the target's SQL, reading the target's tables."""

from __future__ import annotations

from sqlglot import exp

from conveyor.convert.dialects import transpile
from conveyor.model.schema import TableId


def convert_view_query(
    query: str, source: str, target: str, default_schema: str, names: dict[TableId, TableId], schemas: bool
) -> str:
    """``query`` transpiled, each table it reads renamed as the conversion renames it (``names``; a
    name without a schema is in ``default_schema``); ``schemas``: the target qualifies names.
    Raises ``NotConvertible``."""

    def rename(tree: exp.Expression) -> exp.Expression:
        ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if not table.name or (not table.db and table.name in ctes):
                continue
            found = names.get(TableId(table.db or default_schema, table.name))
            if found is None:
                continue  # not converted with this schema: left as it is, the target reports it missing
            table.set("this", exp.to_identifier(found.name))
            table.set("db", exp.to_identifier(found.schema) if schemas else None)
            table.set("catalog", None)
        for column in tree.find_all(exp.Column):
            # MySQL qualifies every column with its database: `shop`.`t`.`c`; the table is enough
            if column.args.get("catalog") is not None or (column.db and column.table):
                column.set("db", None)
                column.set("catalog", None)
        return tree

    return transpile(query, source, target, rewrite=rename)
