"""Schema conversion: source tables and schema objects -> the target's DDL and an assessment report.

Tables are converted into target ``Table``s (``converted=True``: defaults, CHECKs, generated columns,
expression indexes and comments in the target's SQL), which the target's applier renders with the
same ``create_table_sql`` / ``finish_sql`` a full load uses. Types go hub and spoke through
``Applier.map_type`` (or the task's type-mapping overrides). Whatever cannot be converted is left out
of the target and reported with its reason, source, fix and effort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from conveyor.convert.engines import SQLGLOT, NotConvertible
from conveyor.convert.overrides import TypeOverride, native_types
from conveyor.convert.report import Effort, Item, Report
from conveyor.endpoints.sql.applier import SqlApplier
from conveyor.model.schema import (
    Check,
    Column,
    ExpressionIndex,
    GeneratedColumn,
    SchemaObjects,
    Table,
    TableId,
)
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

#: targets whose DDL goes through psycopg with parameters, so a ``%`` in SQL text is written ``%%``
PERCENT_DOUBLED = frozenset({"postgresql"})
#: targets with partial indexes / expression index elements / virtual generated columns
PARTIAL_INDEXES = frozenset({"postgresql", "sqlite"})
EXPRESSION_INDEXES = frozenset({"postgresql", "sqlite"})  # MariaDB has none; MySQL 8 only in ((...))
VIRTUAL_COLUMNS = frozenset({"mysql", "sqlite"})  # PostgreSQL before 18 computes generated columns STORED
COMMENTS = frozenset({"postgresql", "mysql"})
ROUTINE_EFFORT = {"trigger": Effort.MEDIUM, "procedure": Effort.SIGNIFICANT, "function": Effort.SIGNIFICANT}


@dataclass(frozen=True, slots=True)
class Statement:
    phase: str  # schemas, types, tables, indexes, foreign keys, sequences, views
    sql: str  # as the applier executes it (PostgreSQL: ``%`` doubled)
    item: Item | None  # the report's object (None: a schema)


@dataclass(slots=True)
class Conversion:
    report: Report
    tables: list[tuple[Table, list[str]]] = field(default_factory=list)  # target table, native types
    statements: list[Statement] = field(default_factory=list)

    def script(self) -> str:
        """The DDL as a SQL file a user can read and run."""
        undo = self.report.target in PERCENT_DOUBLED
        parts = []
        phase = ""
        for s in self.statements:
            if s.phase != phase:
                phase = s.phase
                parts.append(f"-- {phase}")
            parts.append((s.sql.replace("%%", "%") if undo else s.sql) + ";\n")
        return "\n".join(parts)


class Converter:
    """Converts one source's tables and objects for one target applier."""

    def __init__(self, applier: SqlApplier, source: str, target: str, override: TypeOverride | None = None) -> None:
        self.applier = applier
        self.source = source
        self.target = target
        self.override = override
        #: the source's own functions (lower case): not converted, so nothing on the target may call them
        self.routines: set[str] = set()

    # ----------------------------------------------------------------- expressions
    def sql(self, text: str) -> str:
        """Target SQL text as the applier executes it."""
        return text.replace("%", "%%") if self.target in PERCENT_DOUBLED else text

    def expression(self, text: str, table: Table) -> str:
        """``text``, an expression over ``table``'s columns, as the target's SQL."""
        from conveyor.convert.dialects import transpile

        self.check_calls(text, table)
        return self.sql(transpile(text, self.source, self.target))

    def check_calls(self, text: str, table: Table | None = None) -> None:
        """Raise ``NotConvertible`` when ``text`` calls one of the source's own functions (known ones, or
        any schema-qualified call: PostgreSQL qualifies every user function), or reads a column the
        target ``table`` does not have (a table mapping renamed or removed it)."""
        from sqlglot import exp

        from conveyor.convert.dialects import parse

        try:
            tree = parse(text, self.source)
        except NotConvertible:
            return  # said by the transpiling, between engines; kept verbatim on the same engine
        called = {f.name.lower() for f in tree.find_all(exp.Anonymous)} & self.routines
        called |= {d.expression.name for d in tree.find_all(exp.Dot) if isinstance(d.expression, exp.Anonymous)}
        if called:
            names = ", ".join(sorted(called))
            raise NotConvertible(f"it calls {names}, a function of the source that is not converted")
        if table is not None:
            known = {*table.column_names, *(g.name for g in table.generated_columns)}
            missing = sorted({c.name for c in tree.find_all(exp.Column)} - known)
            if missing:
                raise NotConvertible(f"it reads {', '.join(missing)}, not a column of the target table")

    # ----------------------------------------------------------------- tables
    def natives(self, table: Table) -> list[str]:
        return native_types(table, self.applier.map_type, self.override)

    def table(self, source: Table, known: set[TableId], item: Item) -> Table:
        """The target table of ``source`` (named and shaped for the target, as a run plans it, but with
        the source's SQL); what is left out is an issue of ``item``. ``known``: the target's tables."""
        natives = self.natives(source)
        columns = [self.column(source, c, n, item) for c, n in zip(source.columns, natives, strict=True)]
        checks = [c for c in (self.check(source, c, item) for c in source.checks) if c is not None]
        checks += self.enum_checks(source, natives, item)
        generated = [g for g in (self.generated(source, g, item) for g in source.generated_columns) if g is not None]
        fks = []
        for fk in source.foreign_keys:
            if fk.ref_table in known:
                fks.append(fk)
            else:
                item.add(
                    f"foreign key {fk.name} references {fk.ref_table}, which is not converted",
                    f"FOREIGN KEY ({', '.join(fk.columns)}) REFERENCES {fk.ref_table}",
                    "select the referenced table too, or add the foreign key by hand",
                )
        if source.extra.get("unparsed"):
            item.add("the definition could not be read", source.extra["unparsed"], "create it by hand", Effort.MEDIUM)
        if source.comment and self.target not in COMMENTS:
            item.add(f"{self.target} has no table comments", source.comment, "keep it in documentation", action=False)
        return replace(
            source,
            columns=tuple(columns),
            foreign_keys=tuple(fks),
            checks=tuple(checks),
            generated_columns=tuple(generated),
            expression_indexes=(),
            dialect=self.target,
            converted=True,
        )

    def column(self, table: Table, column: Column, native: str, item: Item) -> Column:
        identity = column.identity and column.type.logical is L.INTEGER
        try:
            default = None
            if column.default is not None:  # sqlglot is imported for a default only
                from conveyor.convert.defaults import convert_default

                if not identity:
                    self.check_calls(column.default)
                default = convert_default(column, native, self.source, self.target)
        except NotConvertible as exc:
            default = None
            item.add(
                f"the default of column {column.name} is not converted: {exc}",
                str(column.default),
                "set the value in the application, or write the default by hand",
            )
        comment = column.comment if self.target in COMMENTS else None
        if column.comment and comment is None:
            item.add(f"{self.target} has no column comments", column.comment, "keep it in documentation", action=False)
        default = self.sql(default) if default is not None else None
        return replace(column, identity=identity, default=default, comment=comment)

    def check(self, table: Table, check: Check, item: Item) -> Check | None:
        try:
            return Check(check.name, self.expression(check.expression, table))
        except NotConvertible as exc:
            item.add(
                f"CHECK {check.name} is not converted: {exc}",
                check.expression,
                "rewrite the condition in the target's SQL and add it with ALTER TABLE",
                Effort.MEDIUM,
            )
            return None

    def enum_checks(self, table: Table, natives: list[str], item: Item) -> list[Check]:
        """An enum that is not an enum type on the target (text on SQLite, a MySQL ENUM on PostgreSQL)
        keeps its values with a CHECK."""
        checks = []
        for column, native in zip(table.columns, natives, strict=True):
            t = column.type
            if t.logical is not L.ENUM or not t.values or self.native_enum(t, native):
                continue
            from sqlglot import exp

            allowed = exp.In(
                this=exp.column(column.name, quoted=True), expressions=[exp.Literal.string(v) for v in t.values]
            )
            sql = allowed.sql(dialect=SQLGLOT[self.target], identify=True)
            checks.append(Check(f"{table.id.name}_{column.name}_enum", self.sql(sql)))
            item.add(
                f"enum column {column.name} became {native} with a CHECK of its values",
                t.native or t.describe(),
                "nothing to do",
                action=False,
            )
        return checks

    def native_enum(self, t: ColumnType, native: str) -> bool:
        """Whether the target type keeps an enum's values itself (a MySQL ENUM, the source's own enum type)."""
        return native.lower().startswith("enum(") or (t.engine == self.target and native == t.native)

    def generated(self, table: Table, column: GeneratedColumn, item: Item) -> GeneratedColumn | None:
        try:
            expression = self.expression(column.expression, table)
        except NotConvertible as exc:
            item.add(
                f"generated column {column.name} is not converted: {exc}",
                column.expression,
                "rewrite the expression in the target's SQL and add the column by hand",
                Effort.MEDIUM,
            )
            return None
        stored = column.stored
        if not stored and self.target not in VIRTUAL_COLUMNS:
            stored = True
            item.add(
                f"virtual generated column {column.name} is STORED on {self.target}",
                column.expression,
                "nothing to do (it takes disk space)",
                action=False,
            )
        return replace(column, expression=expression, stored=stored)

    def expression_indexes(self, source: Table, target: Table, report: Report, source_id: TableId) -> Table:
        """The target's expression and partial indexes, one report item each (named by ``source_id``)."""
        kept = []
        for index in source.expression_indexes:
            item = report.item("index", f"{source_id}.{index.name}")
            converted = self.expression_index(source, index, item)
            if converted is not None:
                kept.append(converted)
                item.target = f"{target.id}.{self.applier.object_name(target, index.name)}"
        return replace(target, expression_indexes=tuple(kept))

    def not_copied(self, source: Table, item: Item, report: Report, source_id: TableId) -> None:
        """What the introspector could not describe (a run warns about these through ``plan.NOT_COPIED``)."""
        if source.extra.get("unsupported_columns"):
            item.add(
                "columns of unsupported types are not converted",
                source.extra["unsupported_columns"],
                "add them by hand with a type the target has",
                Effort.MEDIUM,
            )
        for skipped in filter(None, source.extra.get("skipped_indexes", "").split(", ")):
            name, _, kind = skipped.partition(" (")
            item = report.item("index", f"{source_id}.{name}")
            item.add(
                f"{kind.rstrip(')')} indexes are not converted",
                skipped,
                "create an equivalent index on the target by hand (e.g. full-text search with a GIN index)",
                Effort.MEDIUM,
            )

    def expression_index(self, table: Table, index: ExpressionIndex, item: Item) -> ExpressionIndex | None:
        source_sql = index.definition or ", ".join(index.elements)
        if index.method != "btree" and self.source != self.target:
            item.add(
                f"{index.method} indexes have no equivalent on {self.target}",
                source_sql,
                "choose an index the target has for these queries",
                Effort.MEDIUM,
            )
            return None
        if index.predicate and self.target not in PARTIAL_INDEXES:
            item.add(
                f"{self.target} has no partial indexes",
                source_sql,
                "index the whole table, or a generated column holding the condition",
                Effort.MEDIUM,
            )
            return None
        try:
            elements = tuple(self.expression(e, table) for e in index.elements)
            predicate = self.expression(index.predicate, table) if index.predicate else None
        except NotConvertible as exc:
            item.add(f"index is not converted: {exc}", source_sql, "write the index by hand", Effort.MEDIUM)
            return None
        if self.target not in EXPRESSION_INDEXES and any(not _is_column(e, self.target) for e in elements):
            item.add(
                f"{self.target} indexes columns, not expressions",
                source_sql,
                "add a generated column computing the expression and index it",
                Effort.MEDIUM,
            )
            return None
        return replace(index, elements=elements, predicate=predicate)

    # ----------------------------------------------------------------- schema objects
    def objects(
        self, objects: SchemaObjects, schema_of: Callable[[str], str], names: dict[TableId, TableId], report: Report
    ) -> Iterable[Statement]:
        for enum in objects.enums:
            item = report.item("enum", str(enum.id))
            target = TableId(schema_of(enum.id.schema), enum.id.name)
            create = self.applier.create_enum_sql(target, enum.values)
            if create is None:
                item.add(
                    f"{self.target} has no enum types; its columns keep their values with a CHECK or an ENUM",
                    ", ".join(enum.values),
                    "nothing to do",
                    action=False,
                )
                continue
            item.target = str(target)
            yield Statement("types", create, item)
        for seq in objects.sequences:
            item = report.item("sequence", str(seq.id))
            target = TableId(schema_of(seq.id.schema), seq.id.name)
            statements = self.applier.create_sequence_sql(seq, target)
            if statements is None:
                item.add(
                    f"{self.target} has no sequences",
                    f"sequence {seq.id} at {seq.last_value}",
                    "use an auto-increment column, or a one-row counter table",
                    Effort.MEDIUM,
                )
                continue
            item.target = str(target)
            yield from (Statement("sequences", s, item) for s in statements)
        for view in objects.views:
            item = report.item("materialized view" if view.materialized else "view", str(view.id))
            target = TableId(schema_of(view.id.schema), view.id.name)
            schemas = self.target != "sqlite"
            from conveyor.convert.views import convert_view_query

            try:
                query = convert_view_query(view.definition, self.source, self.target, view.id.schema, names, schemas)
            except NotConvertible as exc:
                item.add(
                    f"the view is not converted: {exc}", view.definition, "rewrite the view by hand", Effort.MEDIUM
                )
                continue
            kind = "VIEW"
            if view.materialized:
                if self.target == "postgresql":
                    kind = "MATERIALIZED VIEW"
                else:
                    item.add(
                        f"{self.target} has no materialized views; it is a plain view",
                        view.definition,
                        "if reading it is too slow, keep its rows in a table refreshed by a job",
                        Effort.MEDIUM,
                        action=False,
                    )
            item.target = str(target)
            yield Statement("views", f"CREATE {kind} {self.applier.qualified(target)} AS {self.sql(query)}", item)
        for routine in objects.routines:
            item = report.item(routine.kind, str(routine.id))
            item.add(
                f"{routine.kind}s are not converted",
                routine.source,
                f"rewrite the {routine.kind} for {self.target}"
                + (" (or move its logic into the application)" if routine.kind != "trigger" else ""),
                ROUTINE_EFFORT.get(routine.kind, Effort.SIGNIFICANT),
            )


def _is_column(element: str, target: str) -> bool:
    """An index element that is a column (``"c"`` or ``"c" DESC``), as the target quotes it."""
    quote = {"mysql": "`"}.get(target, '"')
    head = element.removesuffix(" DESC")
    return head.startswith(quote) and head.endswith(quote) and head.count(quote) == 2


def convert_schema(
    applier: SqlApplier,
    source: str,
    target: str,
    tables: list[tuple[Table, TableId]],
    objects: list[SchemaObjects],
    schema_of: Callable[[str], str],
    override: TypeOverride | None = None,
) -> Conversion:
    """Convert the tables (each as a run plans it for the target, with its source name) and the
    schemas' objects; the statements come in the order they can run: schemas, types, tables,
    indexes, foreign keys, sequences, views."""
    converter = Converter(applier, source, target, override)
    converter.routines = {r.id.name.lower() for group in objects for r in group.routines if r.kind == "function"}
    report = Report(source, target)
    conversion = Conversion(report)
    names = {source_id: table.id for table, source_id in tables}
    object_statements = list(_objects(converter, objects, schema_of, names, report))
    table_items: list[Item] = []
    for table, source_id in tables:
        item = report.item("table", str(source_id), str(table.id))
        converted = converter.table(table, set(names.values()), item)
        converted = converter.expression_indexes(table, converted, report, source_id)
        converter.not_copied(table, item, report, source_id)
        conversion.tables.append((converted, converter.natives(table)))
        table_items.append(item)
        parts = [("unique key", k.name) for k in table.unique_keys] + [("index", i.name) for i in table.indexes]
        parts += [("foreign key", fk.name) for fk in converted.foreign_keys]
        for kind, name in parts:  # created with the table's statements: a refusal is reported on the table
            report.item(kind, f"{source_id}.{name}", f"{table.id}.{applier.object_name(table, name)}")
    schemas = sorted({t.id.schema for t, _ in conversion.tables} | {schema_of(o) for o in _schemas(objects)})
    for schema in schemas:
        create = applier.create_schema_sql(schema)
        if create:
            conversion.statements.append(Statement("schemas", create, None))
    conversion.statements += [s for s in object_statements if s.phase == "types"]
    for (table, natives), item in zip(conversion.tables, table_items, strict=True):
        conversion.statements.append(Statement("tables", applier.create_table_sql(table, natives), item))
    for (table, _), item in zip(conversion.tables, table_items, strict=True):
        conversion.statements += [Statement("indexes", s, item) for s in applier.finish_sql(table, after_load=False)]
    if applier.alter_constraints:
        for (table, _), item in zip(conversion.tables, table_items, strict=True):
            conversion.statements += [
                Statement("foreign keys", applier.add_foreign_key_sql(table, fk), item) for fk in table.foreign_keys
            ]
    conversion.statements += [s for s in object_statements if s.phase != "types"]
    return conversion


def convert_for_target(table: Table, applier: object, override: TypeOverride | None = None) -> tuple[Table, list[str]]:
    """A run's target table (as ``plan_table`` shapes it, in the source's SQL) converted for ``applier``,
    as ``conveyor convert`` converts it; the issues come back as warnings. Unchanged where either side
    is not a SQL engine Conveyor converts between."""
    if not isinstance(applier, SqlApplier) or not applier.engine or table.dialect not in SQLGLOT:
        return table, []
    converter = Converter(applier, table.dialect, applier.engine, override)
    report = Report(table.dialect, applier.engine)
    item = report.item("table", str(table.id))
    converted = converter.table(table, {fk.ref_table for fk in table.foreign_keys}, item)
    converted = converter.expression_indexes(table, converted, report, table.id)
    warnings = [f"{table.id}: {i.kind} {i.name}: {x.reason}" for i in report.items for x in i.issues]
    return converted, warnings


def _objects(
    converter: Converter,
    objects: list[SchemaObjects],
    schema_of: Callable[[str], str],
    names: dict[TableId, TableId],
    report: Report,
) -> Iterable[Statement]:
    for group in objects:
        yield from converter.objects(group, schema_of, names, report)


def _schemas(objects: list[SchemaObjects]) -> set[str]:
    return {o.schema for group in objects for o in (*(v.id for v in group.views), *(s.id for s in group.sequences))}
