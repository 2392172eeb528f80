"""The conversion plan for one table: target name, native types and value encoders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from conveyor.convert.ddl import convert_for_target
from conveyor.convert.overrides import TypeOverride, native_types
from conveyor.endpoints.base import Applier, Encoder
from conveyor.model.schema import Table, TableId
from conveyor.model.segments import SourceFilter
from conveyor.model.types import ColumnType, LogicalType
from conveyor.transform.mapping import RowMapping, converting
from conveyor.transform.table_settings import ParallelLoad
from conveyor.transform.tables import MappedTable


@dataclass(frozen=True)
class TablePlan:
    source: Table
    target: Table
    native_types: list[str]
    encoders: list[Encoder | None]
    #: same engine on both sides: values travel in the driver's own form, unconverted
    passthrough: bool
    load_order: int = 0
    #: how rows and changes become target rows (transformation rules, filters); None: unchanged
    mapping: RowMapping | None = None
    #: DMS table-settings parallel-load for the table
    parallel: ParallelLoad | None = None
    #: DMS source filters, as written (every full-load segment carries them)
    filters: tuple[SourceFilter, ...] = ()

    @property
    def key(self) -> str:
        return str(self.target.id)

    @property
    def read(self) -> Table:
        """The source columns the full load reads."""
        return self.mapping.read if self.mapping is not None else self.source


#: what an introspector records in ``Table.extra`` about parts it does not copy -> the warning
NOT_COPIED = {
    "generated_columns": "generated columns are not copied (the target computes its own)",
    "skipped_indexes": "indexes that are not plain column lists are not created",
    "unsupported_columns": "columns of unsupported types are not copied",
}


def plan_table(
    source: Table,
    target_id: TableId,
    applier: Applier,
    same_engine: bool,
    id_map: dict[TableId, TableId],
    load_order: int = 0,
    mapped: MappedTable | None = None,
    override: TypeOverride | None = None,
    convert: bool = True,
) -> tuple[TablePlan, list[str]]:
    """Map one source table onto the target (``mapped``: as the table mapping's rules shape it;
    ``override``: the task's type mappings); returns the plan and warnings. ``convert=False`` leaves
    the target table in the source's SQL, for a caller that converts it with the full report
    (``conveyor convert``)."""
    warnings = [
        f"{source.id}: {text}: {source.extra[key]}" for key, text in NOT_COPIED.items() if source.extra.get(key)
    ]
    base = source if mapped is None else mapped.target
    mapping = None if mapped is None else mapped.mapping
    if mapped is not None:
        warnings += mapped.warnings
    foreign_keys = []
    for fk in base.foreign_keys:
        if fk.ref_table in id_map:
            foreign_keys.append(replace(fk, ref_table=id_map[fk.ref_table]))
        else:
            warnings.append(
                f"{source.id}: foreign key {fk.name} references {fk.ref_table}, "
                "which is not selected; it is not created"
            )
    columns = tuple(replace(c, identity=c.identity and c.type.logical is LogicalType.INTEGER) for c in base.columns)
    target = replace(base, id=target_id, columns=columns, foreign_keys=tuple(foreign_keys))
    usual = [applier.map_type(c.type) for c in target.columns]
    natives = native_types(target, applier.map_type, override)
    overridden = natives != usual
    if convert:
        # schema conversion (convert.ddl): defaults, checks, generated columns, expression indexes, comments
        target, converted = convert_for_target(target, applier, override)
        warnings += converted
    # an overridden type is not the source's: its values are decoded and encoded for it
    passthrough = same_engine and (mapping is None or mapping.raw) and not overridden
    if passthrough:
        encoders: list[Encoder | None] = [None] * len(natives)
    elif mapping is not None:
        encoders = mapping.encoders(encoder_for(applier), natives)
    else:
        encoder = encoder_for(applier)
        encoders = [encoder(c.type, n) for c, n in zip(source.columns, natives, strict=True)]
    parallel, filters = (mapped.parallel, mapped.filters) if mapped is not None else (None, ())
    plan = TablePlan(source, target, natives, encoders, passthrough, load_order, mapping, parallel, filters)
    return plan, warnings


def encoder_for(applier: Applier) -> Callable[[ColumnType, str], Encoder | None]:
    """``applier.encoder``, and for a column whose type a type-mapping override chose (its native type
    is not the usual one), values that first become that type's (as change-data-type converts them) when
    they are of another logical type; a value that cannot be one is a rejected row. Encoders are made
    where rows are written (they do not pickle), so every writer builds them with this."""

    def encoder(column_type: ColumnType, native: str) -> Encoder | None:
        if native != applier.map_type(column_type):
            chosen = applier.logical_type(native)
            if chosen is not None and chosen.logical is not column_type.logical:
                # no column name: the applier names the column a rejected value came from
                return converting(chosen, applier.encoder(chosen, native), "")
        return applier.encoder(column_type, native)

    return encoder
