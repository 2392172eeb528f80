"""Tables of a SQLite database, from its PRAGMAs.

SQLite keeps CHECK constraints, generated columns' expressions and index expressions only in the
CREATE statements it stores; sqlglot parses those (a statement it cannot parse is recorded in
``Table.extra["unparsed"]`` and reported by schema conversion, never dropped silently).
"""

from __future__ import annotations

import sqlite3

import sqlglot
from sqlglot import exp

from conveyor.endpoints.sqlite.connect import quote
from conveyor.endpoints.sqlite.types import ENGINE, to_logical
from conveyor.errors import UserActionError
from conveyor.model.schema import (
    Check,
    Column,
    ExpressionIndex,
    ForeignKey,
    GeneratedColumn,
    Index,
    Key,
    Routine,
    SchemaObjects,
    Table,
    TableId,
    View,
)
from conveyor.model.types import LogicalType

SCHEMA = "main"
DIALECT = "sqlite"  # sqlglot's


class SQLiteIntrospector:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def schemas(self) -> list[str]:
        return [SCHEMA]

    def close(self) -> None:
        self.conn.close()

    def table_ids(self, schema: str) -> list[TableId]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'conveyor\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        return [TableId(SCHEMA, r[0]) for r in rows]

    def table(self, table_id: TableId) -> Table:
        q = quote(table_id.name)
        info = self.conn.execute(f"PRAGMA table_xinfo({q})").fetchall()
        if not info:
            raise UserActionError(f"table {table_id} does not exist in the SQLite source")
        pk_cols = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        create_sql = (
            self.conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table_id.name,)
            ).fetchone()[0]
            or ""
        )
        parsed = _parse(create_sql)
        expressions = _generated_expressions(parsed)
        columns, generated = [], []
        last = self._autoincrement_last(table_id)
        for _cid, name, declared, notnull, default, pk, hidden in info:
            if hidden in (2, 3) and name in expressions:  # virtual, stored
                generated.append(
                    GeneratedColumn(name, to_logical(declared), expressions[name], hidden == 3, not notnull)
                )
            if hidden not in (0,):  # generated and hidden columns are not data to copy
                continue
            ctype = to_logical(declared)
            rowid_alias = len(pk_cols) == 1 and pk == 1 and (declared or "").upper() == "INTEGER"
            identity = rowid_alias and ctype.logical is LogicalType.INTEGER
            columns.append(
                Column(
                    name,
                    ctype,
                    nullable=not notnull and not rowid_alias,
                    default=default,
                    identity=identity,
                    identity_last=last if identity else None,
                )
            )
        uniques, indexes, special = [], [], []
        for _seq, name, unique, origin, partial in self.conn.execute(f"PRAGMA index_list({q})").fetchall():
            cols = tuple(r[2] for r in self.conn.execute(f"PRAGMA index_info({quote(name)})").fetchall())
            if origin == "pk":
                continue
            if partial or any(c is None for c in cols):
                special.append(self._expression_index(name, bool(unique)))
                continue
            if origin == "u":
                if name.startswith("sqlite_autoindex_"):  # SQLite's own name; reserved elsewhere too
                    name = f"{table_id.name}_{'_'.join(cols)}_key"
                uniques.append(Key(name, cols))
            else:
                indexes.append(Index(name, cols, bool(unique)))
        fks: dict[int, list[tuple[str, str, str, str, str]]] = {}
        for fid, _seq, ref, frm, to, on_update, on_delete, _match in self.conn.execute(
            f"PRAGMA foreign_key_list({q})"
        ).fetchall():
            fks.setdefault(fid, []).append((ref, frm, to, on_update, on_delete))
        foreign_keys = []
        for fid, parts in sorted(fks.items()):
            ref = parts[0][0]
            ref_cols = tuple(p[2] for p in parts)
            if any(c is None for c in ref_cols):  # REFERENCES t without columns means its primary key
                ref_cols = tuple(self.table(TableId(SCHEMA, ref)).row_key())
            foreign_keys.append(
                ForeignKey(
                    f"fk_{table_id.name}_{fid}",
                    tuple(p[1] for p in parts),
                    TableId(SCHEMA, ref),
                    ref_cols,
                    parts[0][4],
                    parts[0][3],
                )
            )
        extra = {"without_rowid": str("WITHOUT ROWID" in create_sql.upper())}
        if parsed is None and create_sql:
            extra["unparsed"] = create_sql
        return Table(
            table_id,
            tuple(columns),
            primary_key=Key("PRIMARY", tuple(pk_cols)) if pk_cols else None,
            unique_keys=tuple(uniques),
            indexes=tuple(indexes),
            foreign_keys=tuple(foreign_keys),
            extra=extra,
            checks=tuple(_checks(parsed, table_id.name)),
            generated_columns=tuple(generated),
            expression_indexes=tuple(i for i in special if i is not None),
            dialect=ENGINE,
        )

    def _autoincrement_last(self, table_id: TableId) -> int | None:
        """An AUTOINCREMENT table's largest rowid ever handed out (``sqlite_sequence`` exists once a
        table of the database has AUTOINCREMENT, and holds a row for the table once it had one)."""
        if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            return None
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table_id.name,)).fetchone()
        return int(row[0]) if row else None

    def _expression_index(self, name: str, unique: bool) -> ExpressionIndex | None:
        row = self.conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
        statement = _parse(row[0] if row else "")
        index = statement.this if statement is not None else None
        if not isinstance(index, exp.Index) or index.args.get("params") is None:
            return None
        params = index.args["params"]
        where = params.args.get("where")
        elements = tuple(_element(o) for o in params.args.get("columns") or ())
        predicate = where.this.sql(DIALECT, identify=True) if where is not None else None
        return ExpressionIndex(name, elements, unique, predicate, "btree", row[0])

    def objects(self, schema: str) -> SchemaObjects:
        views, routines = [], []
        for kind, name, table, text in self.conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY name"
        ).fetchall():
            if kind == "trigger":
                routines.append(Routine(TableId(SCHEMA, name), "trigger", text, TableId(SCHEMA, table)))
                continue
            statement = _parse(text)
            select = statement.expression if isinstance(statement, exp.Create) else None
            # a view sqlglot cannot read keeps its whole statement: conversion reports it
            views.append(View(TableId(SCHEMA, name), select.sql(DIALECT) if select is not None else text))
        return SchemaObjects(ENGINE, tuple(views), routines=tuple(routines))


def _parse(statement: str) -> exp.Expression | None:
    if not statement:
        return None
    try:
        parsed = sqlglot.parse_one(statement, read=DIALECT)
    except sqlglot.errors.SqlglotError:
        return None
    return parsed if isinstance(parsed, exp.Expression) else None


def _element(ordered: exp.Expression) -> str:
    """An index element as SQL: the expression (or column), then DESC where it is descending."""
    inner = ordered.this if isinstance(ordered, exp.Ordered) else ordered
    text = inner.sql(DIALECT, identify=True)
    return f"{text} DESC" if isinstance(ordered, exp.Ordered) and ordered.args.get("desc") else text


def _generated_expressions(parsed: exp.Expression | None) -> dict[str, str]:
    if parsed is None:
        return {}
    out = {}
    for column in parsed.find_all(exp.ColumnDef):
        for constraint in column.constraints:
            if isinstance(constraint.kind, exp.ComputedColumnConstraint):
                out[column.name] = constraint.kind.this.sql(DIALECT, identify=True)
    return out


def _checks(parsed: exp.Expression | None, table: str) -> list[Check]:
    """Column and table CHECKs from the CREATE TABLE; unnamed ones get ``<table>_check<n>``."""
    if parsed is None:
        return []
    checks: list[Check] = []
    for node in parsed.find_all(exp.CheckColumnConstraint):
        named = node.parent if isinstance(node.parent, exp.Constraint) else None
        name = named.name if named is not None else f"{table}_check{len(checks) + 1}"
        checks.append(Check(name, node.this.sql(DIALECT, identify=True)))
    return checks
