"""The conversion plan for one table: target name, native types and value encoders."""

from __future__ import annotations

from dataclasses import dataclass, replace

from conveyor.endpoints.base import Applier, Encoder
from conveyor.model.schema import Table, TableId
from conveyor.model.types import LogicalType


@dataclass(frozen=True)
class TablePlan:
    source: Table
    target: Table
    native_types: list[str]
    encoders: list[Encoder | None]
    #: same engine on both sides: values travel in the driver's own form, unconverted
    passthrough: bool
    load_order: int = 0

    @property
    def key(self) -> str:
        return str(self.target.id)


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
) -> tuple[TablePlan, list[str]]:
    """Map one source table onto the target; returns the plan and warnings."""
    warnings = [
        f"{source.id}: {text}: {source.extra[key]}" for key, text in NOT_COPIED.items() if source.extra.get(key)
    ]
    natives = [applier.map_type(c.type) for c in source.columns]
    foreign_keys = []
    for fk in source.foreign_keys:
        if fk.ref_table in id_map:
            foreign_keys.append(replace(fk, ref_table=id_map[fk.ref_table]))
        else:
            warnings.append(
                f"{source.id}: foreign key {fk.name} references {fk.ref_table}, "
                "which is not selected; it is not created"
            )
    columns = tuple(replace(c, identity=c.identity and c.type.logical is LogicalType.INTEGER) for c in source.columns)
    target = replace(source, id=target_id, columns=columns, foreign_keys=tuple(foreign_keys))
    encoders = [
        None if same_engine else applier.encoder(c.type, n) for c, n in zip(source.columns, natives, strict=True)
    ]
    return TablePlan(source, target, natives, encoders, same_engine, load_order), warnings
