"""Tables of a PostgreSQL database, from pg_catalog.

pg_catalog rather than information_schema: it is much faster on big catalogs and shows what
information_schema hides (identity kinds, partitions, index details, tables the user may not read).
The session's search_path is pg_catalog only, so ``format_type`` and ``pg_get_expr`` qualify every
user type and object with its schema: a native type then means the same thing on any target.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import sql

from conveyor.endpoints.config import PostgresConfig
from conveyor.endpoints.postgres.connect import run
from conveyor.endpoints.postgres.types import ENGINE, PgType, to_logical
from conveyor.errors import UserActionError
from conveyor.model.schema import (
    Check,
    Column,
    EnumType,
    ExpressionIndex,
    ForeignKey,
    GeneratedColumn,
    Index,
    Key,
    Routine,
    SchemaObjects,
    SequenceDef,
    Table,
    TableId,
    View,
)
from conveyor.model.types import ColumnType

#: pg_constraint.confdeltype / confupdtype -> SQL action
FK_ACTIONS: dict[str, str] = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}

SCHEMAS_SQL = """
SELECT n.nspname FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY n.nspname
"""

# Partitions are read through their partitioned parent, so they are not tables of their own here.
TABLES_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname !~ '^conveyor_'
ORDER BY c.relname
"""

TABLE_SQL = """
SELECT c.oid, c.relkind, has_schema_privilege(n.oid, 'USAGE'),
       has_table_privilege(c.oid, 'SELECT') OR NOT EXISTS (
           SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')),
       current_user, obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""

# The last column: the last value of the sequence an identity or serial column owns (NULL when it was
# never used, or the user may not read it).
COLUMNS_SQL = """
SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, col_description(a.attrelid, a.attnum),
       (SELECT CASE WHEN has_sequence_privilege(dep.objid, 'SELECT') THEN pg_sequence_last_value(dep.objid) END
        FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
        WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
          AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i')
        LIMIT 1),
       CASE WHEN a.atthasmissing THEN (
         SELECT CASE WHEN m.v IS NULL THEN 'NULL'
                     WHEN t.typcategory = 'B' THEN CASE WHEN m.v = 't' THEN 'true' ELSE 'false' END
                     WHEN t.typcategory = 'N' AND m.v ~ '^-?[0-9]+([.][0-9]+)?$' THEN m.v
                     ELSE quote_literal(m.v) || '::' || format_type(a.atttypid, a.atttypmod) END
         FROM pg_type t, LATERAL (SELECT (a.attmissingval::text::text[])[1] AS v) m WHERE t.oid = a.atttypid)
       END
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

TYPE_SQL = """
SELECT t.oid, n.nspname, t.typname, t.typtype, t.typcategory, t.typelem, t.typbasetype, t.typtypmod,
       format_type(t.oid, %s::int4),
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = %s::oid
"""

_COLUMN_NAMES = """ARRAY(SELECT a.attname::text FROM unnest({keys}) WITH ORDINALITY k(num, ord)
       JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.num ORDER BY k.ord)"""

CONSTRAINTS_SQL = f"""
SELECT con.contype, con.conname, {_COLUMN_NAMES.format(keys="con.conkey", rel="con.conrelid")},
       rn.nspname, rc.relname, {_COLUMN_NAMES.format(keys="con.confkey", rel="con.confrelid")},
       con.confdeltype, con.confupdtype
FROM pg_constraint con
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.conrelid = %s::oid AND con.contype IN ('p', 'u', 'f')
ORDER BY con.contype, con.conname
"""

# Plain, valid b-tree indexes that no constraint owns; expression and partial indexes belong to
# schema conversion. INCLUDE columns are left out (only the first indnkeyatts are keys).
INDEXES_SQL = """
SELECT ic.relname, i.indisunique,
       ARRAY(SELECT k.num FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord),
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord),
       i.indexprs IS NULL AND i.indpred IS NULL
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = %s::oid AND NOT i.indisprimary AND i.indisvalid AND am.amname = 'btree'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid)
ORDER BY ic.relname
"""

CHECKS_SQL = """
SELECT conname, pg_get_expr(conbin, conrelid, true) FROM pg_constraint
WHERE conrelid = %s::oid AND contype = 'c' ORDER BY conname
"""

# What INDEXES_SQL leaves out: expression, partial and non-b-tree indexes (schema conversion's part).
EXPRESSION_INDEXES_SQL = """
SELECT ic.relname, i.indisunique, am.amname,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       pg_get_expr(i.indpred, i.indrelid, true), pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = %s::oid AND NOT i.indisprimary AND i.indisvalid
  AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL OR am.amname <> 'btree')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid)
ORDER BY ic.relname
"""

VIEWS_SQL = """
SELECT c.relname, c.relkind = 'm', pg_get_viewdef(c.oid, true), obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('v', 'm') ORDER BY c.relname
"""

# Sequences an identity or serial column owns go with that column.
SEQUENCES_SQL = """
SELECT c.relname, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle, ps.last_value
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_sequences ps ON ps.schemaname = n.nspname AND ps.sequencename = c.relname
WHERE n.nspname = %s AND NOT EXISTS (
    SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
ORDER BY c.relname
"""

ENUMS_SQL = """
SELECT t.typname, ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = %s AND t.typtype = 'e' ORDER BY t.typname
"""

# Functions and procedures of the schema, not those an extension brought; then user triggers.
ROUTINES_SQL = """
SELECT p.proname, CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END, pg_get_functiondef(p.oid), NULL, NULL
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %s AND p.prokind IN ('f', 'p') AND NOT EXISTS (
    SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT t.tgname, 'trigger', pg_get_triggerdef(t.oid, true), n.nspname, c.relname
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND NOT t.tgisinternal
ORDER BY 2, 1
"""

#: Rows in a table and its partitions: the planner's own estimate (tuple density from the last
#: ANALYZE times today's size); the second column says whether some part was never analyzed.
ESTIMATE_SQL = """
SELECT coalesce(sum(CASE WHEN c.relpages > 0
                         THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int)
                         ELSE greatest(c.reltuples, 0) END), 0)::int8,
       coalesce(bool_or(c.reltuples < 0 OR (c.relpages = 0 AND pg_relation_size(c.oid) > 0)), false)
FROM pg_class c
WHERE c.relkind = 'r' AND (c.oid = %s::oid OR c.oid IN (SELECT relid FROM pg_partition_tree(%s::oid::regclass)))
"""


class PostgresIntrospector:
    def __init__(self, conn: psycopg.Connection[Any], config: PostgresConfig) -> None:
        self.conn = conn
        self.config = config
        self._types: dict[tuple[int, int], ColumnType] = {}
        run(conn, "SELECT set_config('search_path', 'pg_catalog', false)")

    def schemas(self) -> list[str]:
        return [r[0] for r in run(self.conn, SCHEMAS_SQL).fetchall()]

    def table_ids(self, schema: str) -> list[TableId]:
        return [TableId(schema, r[0]) for r in run(self.conn, TABLES_SQL, (schema,)).fetchall()]

    def table(self, table_id: TableId) -> Table:
        row = run(self.conn, TABLE_SQL, (table_id.schema, table_id.name)).fetchone()
        if row is None:
            raise UserActionError(
                f"table {table_id} does not exist in the PostgreSQL source "
                f"{self.config.display()}; check the table mappings"
            )
        oid, relkind, schema_usage, readable, user, comment = row
        if not schema_usage or not readable:
            raise UserActionError(self.grant_message(table_id, user, schema_usage))
        columns, generated = self.columns(oid)
        primary_key, unique_keys, foreign_keys = self.constraints(oid)
        estimate = run(self.conn, ESTIMATE_SQL, (oid, oid)).fetchone()
        return Table(
            table_id,
            tuple(columns),
            primary_key=primary_key,
            unique_keys=tuple(unique_keys),
            indexes=tuple(self.indexes(oid)),
            foreign_keys=tuple(foreign_keys),
            estimated_rows=int(estimate[0]) if estimate else 0,
            extra={"relkind": relkind, "oid": str(oid)},
            checks=tuple(Check(n, e) for n, e in run(self.conn, CHECKS_SQL, (oid,)).fetchall()),
            generated_columns=tuple(generated),
            expression_indexes=tuple(self.expression_indexes(oid)),
            comment=comment,
            dialect=ENGINE,
        )

    def grant_message(self, table_id: TableId, user: str, schema_usage: bool) -> str:
        ident = sql.Identifier
        table = sql.SQL("{}.{}").format(ident(table_id.schema), ident(table_id.name)).as_string(self.conn)
        grantee = ident(user).as_string(self.conn)
        if not schema_usage:
            schema = ident(table_id.schema).as_string(self.conn)
            return (
                f"user {user} may not use schema {table_id.schema}; run GRANT USAGE ON SCHEMA {schema} TO {grantee}; "
                f"GRANT SELECT ON {table} TO {grantee}"
            )
        return f"user {user} may not read table {table_id}; run GRANT SELECT ON {table} TO {grantee}"

    def columns(self, oid: int) -> tuple[list[Column], list[GeneratedColumn]]:
        """The columns to copy, and the generated ones (computed by the target's schema, not copied)."""
        columns, generated_columns = [], []
        for name, typid, typmod, native, notnull, default, identity, generated, comment, last, filled in run(
            self.conn, COLUMNS_SQL, (oid,)
        ).fetchall():
            ctype = self.column_type(typid, typmod, native)
            if generated:
                generated_columns.append(GeneratedColumn(name, ctype, default or "", generated == "s", not notnull))
                continue
            columns.append(
                Column(
                    name,
                    ctype,
                    nullable=not notnull,
                    default=default,
                    identity=identity in ("a", "d") or (default or "").startswith("nextval("),
                    comment=comment,
                    identity_last=last,
                    filled=filled,
                )
            )
        return columns, generated_columns

    def column_type(self, typid: int, typmod: int, native: str | None = None) -> ColumnType:
        """The ColumnType of a type oid with a typmod, cached (domains and arrays resolve recursively)."""
        key = (typid, typmod)
        cached = self._types.get(key)
        if cached is not None and native is None:
            return cached
        if cached is None:
            row = run(self.conn, TYPE_SQL, (typmod, typid)).fetchone()
            if row is None:
                raise UserActionError(f"type oid {typid} vanished from the PostgreSQL source during introspection")
            oid, schema, name, typtype, category, elem, base, base_typmod, formatted, labels = row
            info = PgType(oid, schema, name, typtype, category, elem, base, base_typmod, tuple(labels or ()))
            cached = to_logical(info, typmod, formatted, self.column_type)
            self._types[key] = cached
        return cached

    def constraints(self, oid: int) -> tuple[Key | None, list[Key], list[ForeignKey]]:
        primary_key: Key | None = None
        uniques: list[Key] = []
        fks: list[ForeignKey] = []
        for kind, name, cols, ref_schema, ref_name, ref_cols, on_delete, on_update in run(
            self.conn, CONSTRAINTS_SQL, (oid,)
        ).fetchall():
            if kind == "p":
                primary_key = Key(name, tuple(cols))
            elif kind == "u":
                uniques.append(Key(name, tuple(cols)))
            else:
                fks.append(
                    ForeignKey(
                        name,
                        tuple(cols),
                        TableId(ref_schema, ref_name),
                        tuple(ref_cols),
                        FK_ACTIONS.get(on_delete, "NO ACTION"),
                        FK_ACTIONS.get(on_update, "NO ACTION"),
                    )
                )
        return primary_key, uniques, fks

    def indexes(self, oid: int) -> list[Index]:
        out = []
        for name, unique, nums, cols, plain in run(self.conn, INDEXES_SQL, (oid,)).fetchall():
            if plain and 0 not in nums and len(cols) == len(nums):
                out.append(Index(name, tuple(cols), bool(unique)))
        return out

    def expression_indexes(self, oid: int) -> list[ExpressionIndex]:
        return [
            ExpressionIndex(name, tuple(elements), bool(unique), predicate, method, definition)
            for name, unique, method, elements, predicate, definition in run(
                self.conn, EXPRESSION_INDEXES_SQL, (oid,)
            ).fetchall()
        ]

    def objects(self, schema: str) -> SchemaObjects:
        views = tuple(
            View(TableId(schema, name), definition.strip().rstrip(";"), bool(materialized), comment)
            for name, materialized, definition, comment in run(self.conn, VIEWS_SQL, (schema,)).fetchall()
        )
        sequences = tuple(
            SequenceDef(TableId(schema, r[0]), r[1], r[2], r[3], r[4], bool(r[5]), r[6])
            for r in run(self.conn, SEQUENCES_SQL, (schema,)).fetchall()
        )
        enums = tuple(
            EnumType(TableId(schema, name), tuple(labels))
            for name, labels in run(self.conn, ENUMS_SQL, (schema,)).fetchall()
        )
        routines = tuple(
            Routine(TableId(schema, name), kind, source, TableId(ts, tn) if tn else None)
            for name, kind, source, ts, tn in run(self.conn, ROUTINES_SQL, (schema, schema)).fetchall()
        )
        return SchemaObjects(ENGINE, views, sequences, enums, routines)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
