"""One selected table under the table mapping: its target name, its target columns and keys, and the
``RowMapping`` that carries rows there (None when rows go as they are)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from conveyor.errors import ConfigError
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.segments import SourceFilter
from conveyor.transform.expressions import Expression
from conveyor.transform.filters import resolve_filters
from conveyor.transform.lobs import FULL_LOBS, LobLimit, LobMode, LobPolicy, structured
from conveyor.transform.mapping import Added, RowMapping
from conveyor.transform.masking import ACTIONS as MASK_ACTIONS
from conveyor.transform.masking import Mask, check_mask
from conveyor.transform.selection import TableMappings
from conveyor.transform.table_settings import ParallelLoad
from conveyor.transform.transformation import NAME_ACTIONS, TransformRule, winner


@dataclass
class MappedTable:
    target: Table
    mapping: RowMapping | None
    parallel: ParallelLoad | None
    #: the source filters as written (the full load's segments carry them)
    filters: tuple[SourceFilter, ...] = ()
    warnings: list[str] = field(default_factory=list)


def _rules(mappings: TableMappings, target: str, actions: set[str]) -> list[TransformRule]:
    return [r for r in mappings.transformations if r.target == target and r.action in actions]


def target_schema(mappings: TableMappings, source_schema: str, default: str) -> str:
    """The schema-target name rule for ``source_schema`` applied to ``default`` (the planned schema)."""
    rule = winner([r for r in _rules(mappings, "schema", NAME_ACTIONS) if r.matches(source_schema)])
    return rule.rename(default) if rule else default


def target_table(mappings: TableMappings, tid: TableId) -> str:
    rule = winner([r for r in _rules(mappings, "table", NAME_ACTIONS) if r.matches(tid.schema, tid.name)])
    return rule.rename(tid.name) if rule else tid.name


def column_names(mappings: TableMappings, source: Table) -> dict[str, str | None]:
    """Source column -> target column name (None: removed)."""
    return {c.name: name for c, name in _columns(mappings, source)}


def _columns(mappings: TableMappings, source: Table) -> list[tuple[Column, str | None]]:
    sid = source.id
    names = [r for r in _rules(mappings, "column", NAME_ACTIONS) if r.matches(sid.schema, sid.name)]
    presence = [
        r for r in _rules(mappings, "column", {"remove-column", "include-column"}) if r.matches(sid.schema, sid.name)
    ]
    includes = any(r.action == "include-column" for r in presence)
    out: list[tuple[Column, str | None]] = []
    for c in source.columns:
        present = winner([r for r in presence if r.matches(sid.schema, sid.name, c)])
        if (present is not None and present.action == "remove-column") or (includes and present is None):
            out.append((c, None))
            continue
        rule = winner([r for r in names if r.matches(sid.schema, sid.name, c)])
        out.append((c, rule.rename(c.name) if rule else c.name))
    return out


def map_table(
    mappings: TableMappings,
    source: Table,
    target_id: TableId,
    ref_names: dict[TableId, dict[str, str | None]],
    lobs: LobPolicy = FULL_LOBS,
) -> MappedTable:
    """``source`` planned onto ``target_id`` under the rules. ``ref_names``: every selected table's
    column names (``column_names``), for foreign keys into renamed columns. ``lobs``: the task's LOB
    handling (a lob-settings rule may override it for the table)."""
    sid = source.id
    warnings: list[str] = []
    filters = mappings.filters(sid)
    resolved = tuple(resolve_filters([f], source, rule_id)[0] for rule_id, f in filters)
    parallel = mappings.parallel_load(sid)
    if parallel is not None:
        parallel.check(source)
    pairs = _columns(mappings, source)
    policy = mappings.lob_policy(sid, lobs)
    lob_columns = _lob_columns(source, pairs, policy, warnings)
    if policy.mode is LobMode.NONE and lob_columns:
        pairs = [(c, None if c.name in lob_columns else name) for c, name in pairs]
        names = ", ".join(lob_columns)
        warnings.append(f"{sid}: LOB columns {names} are not migrated (SupportLobs false, or lob-settings)")
    types = [r for r in _rules(mappings, "column", {"change-data-type"}) if r.matches(sid.schema, sid.name)]
    kept: list[Column] = []
    keep_sources: list[str] = []
    for c, name in pairs:
        if name is None:
            continue
        rule = winner([r for r in types if r.matches(sid.schema, sid.name, c)])
        column = replace(c, name=name)
        if rule is not None and rule.new_type is not None:
            column = replace(column, type=rule.new_type, identity=False, default=None)
        kept.append(column)
        keep_sources.append(c.name)
    if not kept:
        raise ConfigError(f"{sid}: the transformation rules remove every column")
    added: list[Added] = []
    adds = sorted(
        (r for r in _rules(mappings, "column", {"add-column"}) if r.matches(sid.schema, sid.name)),
        key=lambda r: r.order,
    )
    for r in adds:
        assert r.value is not None and r.new_type is not None
        expression = Expression(r.expression) if r.expression else None
        for name in expression.names if expression else ():
            if not name.startswith(("AR_H_", "AR_M_")) and name not in source.column_names:
                raise ConfigError(
                    f"rule-id {r.rule_id}: {sid} has no column {name!r} for ${name} (names are case-sensitive)"
                )
        added.append(Added(r.value, r.new_type, expression))
    image_rule = winner(
        [r for r in _rules(mappings, "column", {"add-before-image-columns"}) if r.matches(sid.schema, sid.name)]
    )
    if image_rule is not None:
        pk = set(source.row_key())
        for c, name in pairs:
            f = image_rule.image_filter
            if name is None or (f == "pk-only" and c.name not in pk) or (f == "non-lob" and c.type.lob):
                continue
            added.append(Added(image_rule.image_prefix + name + image_rule.image_suffix, replace(c.type), image=c.name))
    target_columns = [*kept, *(Column(a.name, a.type, nullable=True) for a in added)]
    seen: set[str] = set()
    for c in target_columns:
        if c.name in seen:
            raise ConfigError(f"{sid}: the transformation rules give two target columns the name {c.name!r}")
        seen.add(c.name)
    renames = {c.name: name for c, name in pairs}
    target = _keys(source, target_id, tuple(target_columns), renames, ref_names, warnings)
    key_rule = winner([r for r in _rules(mappings, "table", {"define-primary-key"}) if r.matches(sid.schema, sid.name)])
    if key_rule is not None:
        missing = [c for c in key_rule.key_columns if c not in seen]
        if missing:
            raise ConfigError(
                f"rule-id {key_rule.rule_id}: {target.id} has no target column {missing[0]!r} for the key"
            )
        key = Key(key_rule.key_name or "", key_rule.key_columns)
        if key_rule.key_unique_index:
            target = replace(target, unique_keys=(*target.unique_keys, key))
        else:
            not_null = tuple(replace(c, nullable=False) if c.name in key.columns else c for c in target.columns)
            target = replace(target, primary_key=key, columns=not_null)
    elif source.primary_key and target.primary_key is None:
        raise ConfigError(
            f"{sid}: the transformation rules remove primary-key columns; keep them or define-primary-key"
        )
    masks = _masks(mappings, source, target, keep_sources)
    identity = (
        not added
        and not masks
        and [c.name for c in kept] == list(source.column_names)
        and all(k.type == c.type for k, c in zip(kept, source.columns, strict=False))
    )
    limits: tuple[LobLimit, ...] = ()
    if policy.mode is LobMode.LIMITED:
        limits = tuple(
            LobLimit(i, c.name, policy.max_bytes, structured(c.type))
            for i, (c, source_name) in enumerate(zip(kept, keep_sources, strict=True))
            if source_name in lob_columns
        )
    if identity and not resolved and not limits:
        return MappedTable(target, None, parallel, warnings=warnings)
    # the full load reads what it writes, and what expressions, filters and range boundaries use
    needed = set(keep_sources) | {n for a in added if a.expression for n in a.expression.names}
    needed |= {f.column for f in resolved} | set(parallel.columns if parallel else ())
    read_columns = tuple(c for c in source.columns if c.name in needed)
    read = replace(source, columns=read_columns)
    read_names = read.column_names
    mapping = RowMapping(
        sid,
        read,
        tuple(read_names.index(n) for n in keep_sources),
        tuple(c.name for c in kept),
        tuple(c.type for c in kept),
        tuple(added),
        resolved,
        limits,
        masks,
    )
    return MappedTable(target, mapping, parallel, tuple(f for _, f in filters), warnings)


def _masks(mappings: TableMappings, source: Table, target: Table, keep_sources: list[str]) -> tuple[Mask, ...]:
    """The data-masking rules' masks on the kept columns (``keep_sources``: their source names, in target order)."""
    sid = source.id
    rules = [r for r in _rules(mappings, "column", set(MASK_ACTIONS)) if r.matches(sid.schema, sid.name)]
    if not rules:
        return ()
    key = set(target.row_key()) or set(target.column_names)
    masks = []
    for position, name in enumerate(keep_sources):
        rule = winner([r for r in rules if r.matches(sid.schema, sid.name, source.column(name))])
        if rule is None:
            continue
        column = target.columns[position]
        check_mask(rule.rule_id, rule.action, str(target.id), column.name, column.type, column.name in key)
        masks.append(Mask(position, rule.action, rule.value or "#"))
    return tuple(masks)


def _lob_columns(
    source: Table, pairs: list[tuple[Column, str | None]], policy: LobPolicy, warnings: list[str]
) -> list[str]:
    """The kept LOB columns the LOB settings act on (none in full LOB mode); key columns are copied whole."""
    if policy.mode is LobMode.FULL:
        return []
    key = set(source.row_key())
    lobs = [c.name for c, name in pairs if name is not None and c.type.lob]
    for name in (n for n in lobs if n in key):
        warnings.append(f"{source.id}: {name} is a LOB in the table's key: copied whole ({policy.describe()} LOBs)")
    return [n for n in lobs if n not in key]


def _keys(
    source: Table,
    target_id: TableId,
    columns: tuple[Column, ...],
    renames: dict[str, str | None],
    ref_names: dict[TableId, dict[str, str | None]],
    warnings: list[str],
) -> Table:
    """Keys, indexes and foreign keys on the target's column names; those on removed columns are
    dropped (with a warning), as are checks, generated columns and expression indexes once any column
    is renamed or removed (their SQL names the source's columns)."""

    def mapped(names: tuple[str, ...], table: dict[str, str | None] = renames) -> tuple[str, ...] | None:
        out = tuple(table.get(n, n) for n in names)
        return None if any(n is None for n in out) else out  # type: ignore[return-value]

    def dropped(what: str) -> None:
        warnings.append(f"{source.id}: {what} is not created: the transformation rules remove a column it uses")

    primary = None
    if source.primary_key:
        cols = mapped(source.primary_key.columns)
        primary = replace(source.primary_key, columns=cols) if cols else None
    uniques = []
    for uk in source.unique_keys:
        cols = mapped(uk.columns)
        uniques.append(replace(uk, columns=cols)) if cols else dropped(f"unique key {uk.name}")
    indexes = []
    for ix in source.indexes:
        cols = mapped(ix.columns)
        indexes.append(replace(ix, columns=cols)) if cols else dropped(f"index {ix.name}")
    fks = []
    for fk in source.foreign_keys:
        cols = mapped(fk.columns)
        ref = mapped(fk.ref_columns, ref_names.get(fk.ref_table, {}))
        fks.append(replace(fk, columns=cols, ref_columns=ref)) if cols and ref else dropped(f"foreign key {fk.name}")
    table = replace(
        source,
        id=target_id,
        columns=columns,
        primary_key=primary,
        unique_keys=tuple(uniques),
        indexes=tuple(indexes),
        foreign_keys=tuple(fks),
    )
    if any(renames.get(n, n) != n for n in source.column_names):
        parts = [*source.checks, *source.generated_columns, *source.expression_indexes]
        if parts:
            warnings.append(
                f"{source.id}: checks, generated columns and expression indexes are not created on a table whose "
                "columns the transformation rules rename or remove"
            )
            table = replace(table, checks=(), generated_columns=(), expression_indexes=())
    return table
