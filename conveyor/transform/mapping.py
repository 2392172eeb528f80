"""One table's row mapping: source rows and changes -> target rows, as the table mapping says.

Both the full load (``batches``) and change processing (``change``) go through it, so the same
source row always becomes the same target row. Values that change type (change-data-type, an
add-column expression's result) are converted by the target column's encoder (``encoders``), where
a value that does not convert rejects its row by the task's error policy, like any other.
Limited LOB mode truncates here too (``lobs``; ``transform.lobs``), counting each truncation.
A table without transformation rules, filters or LOB limits has no ``RowMapping``: nothing runs per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.endpoints.base import Encoder
from conveyor.errors import RowRejected
from conveyor.model.changes import UNCHANGED, Change, Op, Transaction
from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import Table, TableId
from conveyor.model.segments import SourceFilter
from conveyor.model.types import ColumnType
from conveyor.transform.expressions import Expression
from conveyor.transform.filters import passes
from conveyor.transform.lobs import LobLimit, clip_row, too_long
from conveyor.transform.masking import Mask, mask_row
from conveyor.transform.values import sqlite_value, to_canonical


@dataclass(frozen=True)
class Added:
    """A target column the source does not have: add-column (``expression``, NULL without one) or a
    before image (``image``: the source column whose old value it holds)."""

    name: str
    type: ColumnType
    expression: Expression | None = None
    image: str | None = None


@dataclass(frozen=True)
class _Layout:
    """Where a change's columns are, for one ``Change.columns`` tuple."""

    keep: tuple[int, ...]
    filters: tuple[tuple[int, SourceFilter], ...]
    params: tuple[tuple[str, int], ...]
    images: tuple[int | None, ...]


@dataclass(frozen=True)
class RowMapping:
    source: TableId
    #: the columns the full load reads (kept ones, and removed ones an expression needs), source order
    read: Table
    #: positions in ``read`` of the kept columns, with their target names and types
    keep: tuple[int, ...]
    names: tuple[str, ...]
    types: tuple[ColumnType, ...]
    added: tuple[Added, ...] = ()
    #: resolved (values canonical): evaluated on each change; the full load's segments carry them
    filters: tuple[SourceFilter, ...] = ()
    #: limited LOB mode: the target columns whose values are truncated (or, JSON / XML, rejected)
    lobs: tuple[LobLimit, ...] = ()
    #: data masking on kept columns (``transform.masking``), on full-load rows and on both images of a change
    masks: tuple[Mask, ...] = ()
    _layouts: dict[tuple[str, ...], _Layout] = field(default_factory=dict, compare=False, repr=False)
    #: change processing's truncations by target column, until ``take_truncations``
    _truncated: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """The target row's columns."""
        return (*self.names, *(a.name for a in self.added))

    @property
    def reshapes(self) -> bool:
        """Whether rows change shape (else only names and filters differ)."""
        return bool(self.added) or self.keep != tuple(range(len(self.read.columns)))

    @property
    def raw(self) -> bool:
        """Whether a same-engine copy can move the source's own bytes (no value is computed or converted)."""
        source_types = [self.read.columns[i].type for i in self.keep]
        return not self.reshapes and not self.lobs and not self.masks and list(self.types) == source_types

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_layouts"] = {}
        state["_truncated"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # ------------------------------------------------------------------ encoders
    def encoders(self, encoder: Any, natives: Sequence[str]) -> list[Encoder | None]:
        """One per target column: ``encoder(type, native)`` (the applier's), after a conversion where
        the value is another type's (change-data-type, expression results)."""
        kept = [(self.read.columns[i].type, t) for i, t in zip(self.keep, self.types, strict=True)]
        images = {c.name: c.type for c in self.read.columns}
        pairs: list[tuple[ColumnType | None, ColumnType]] = [
            *kept,
            *((None if a.image is None else images.get(a.image), a.type) for a in self.added),
        ]
        out: list[Encoder | None] = []
        for (was, now), native, name in zip(pairs, natives, self.columns, strict=True):
            encode = encoder(now, native)
            out.append(encode if was == now else converting(now, encode, name))
        for limit in self.lobs:
            if limit.structured:
                out[limit.position] = too_long(limit, out[limit.position])
        return out

    # ------------------------------------------------------------------ full load
    def batches(self, batches: Iterable[RowBatch], truncated: dict[str, int] | None = None) -> Iterator[RowBatch]:
        """The target's rows; limited LOB mode's truncations are counted in ``truncated`` (by column)."""
        columns = self.columns
        reshapes = self.reshapes
        lobs = self.lobs
        masks = self.masks
        for batch in batches:
            if batch.raw is not None or not (reshapes or lobs or masks):
                yield RowBatch(columns, batch.rows, batch.raw, batch.row_count, batch.byte_count)
                continue
            rows = self._rows(batch.rows) if reshapes else batch.rows
            if masks:
                rows = [mask_row(row, masks) for row in rows]
            if lobs:
                rows = [clip_row(row, lobs, truncated) for row in rows]
            yield RowBatch(columns, rows, byte_count=batch.byte_count)

    def _rows(self, rows: list[Row]) -> list[Row]:
        keep = self.keep
        expressions = [(a.expression, _names(a.expression, self.read.column_names)) for a in self.added]
        headers = self._headers("INSERT", None, None, datetime.now(UTC))
        out = []
        for row in rows:
            values = [row[i] for i in keep]
            for expression, params in expressions:
                if expression is None:
                    values.append(None)
                else:
                    values.append(expression.evaluate({**headers, **{n: sqlite_value(row[i]) for n, i in params}}))
            out.append(tuple(values))
        return out

    def _headers(self, op: str, txid: Any, position: Any, at: datetime | None) -> dict[str, Any]:
        stamp = at.astimezone(UTC).replace(tzinfo=None).isoformat(" ") if at is not None else None
        return {
            "AR_H_OPERATION": op,
            "AR_H_TIMESTAMP": stamp,
            "AR_H_COMMIT_TIMESTAMP": stamp,
            "AR_H_TRANSACTION_ID": None if txid is None else str(txid),
            "AR_H_STREAM_POSITION": None if position is None else str(position),
            "AR_M_SOURCE_SCHEMA": self.source.schema,
            "AR_M_SOURCE_TABLE_NAME": self.source.name,
        }

    # ------------------------------------------------------------------ change processing
    def change(self, change: Change, transaction: Transaction | None = None) -> Change | None:
        """The change as the target table takes it, or None when its row does not pass the filters
        (inserts and updates: the new row; deletes: the old row, where it holds the filter columns).
        ``transaction``: the source transaction it belongs to (its id, commit position and time fill the
        ``AR_H_*`` headers; without one, the change's own position)."""
        if change.op is Op.TRUNCATE:
            return change
        layout = self._layouts.get(change.columns) or self._layout(change.columns)
        if layout.filters:
            image = change.after if change.after is not None else change.before
            if image is not None and not passes(layout.filters, image):
                return None
        if not self.reshapes and self.names == change.columns:
            if not self.lobs and not self.masks:
                return change
            after, before = change.after, change.before
        else:
            after = self._target(change.after, layout, change, transaction) if change.after is not None else None
            before = None
            if change.before is not None:
                before = (*(change.before[i] for i in layout.keep), *([UNCHANGED] * len(self.added)))
        if self.masks:
            # the old row masked too: the target holds (and finds) rows by their masked values
            after = None if after is None else mask_row(after, self.masks)
            before = None if before is None else mask_row(before, self.masks)
        if self.lobs:
            # the old row as the target holds it, so that a keyless table's row is found by it
            after = None if after is None else clip_row(after, self.lobs, self._truncated)
            before = None if before is None else clip_row(before, self.lobs, None)
        return Change(change.op, change.table, self.columns, before, after, change.position)

    def take_truncations(self) -> dict[str, int]:
        """Change processing's truncations (by target column) since the last call."""
        taken = dict(self._truncated)
        self._truncated.clear()
        return taken

    def _target(self, row: Row, layout: _Layout, change: Change, transaction: Transaction | None) -> Row:
        values = [row[i] for i in layout.keep]
        headers: dict[str, Any] | None = None
        for added, image in zip(self.added, layout.images, strict=True):
            if added.image is not None:
                old = change.before[image] if change.before is not None and image is not None else None
                values.append(None if old is UNCHANGED or change.op is not Op.UPDATE else old)
            elif added.expression is None:
                values.append(None)
            else:
                params = [(n, row[i]) for n, i in layout.params if n in added.expression.names]
                if any(v is UNCHANGED for _, v in params):
                    values.append(UNCHANGED)  # a value the source did not send: the target keeps its own
                    continue
                if headers is None:
                    t = transaction
                    headers = self._headers(
                        change.op.value.upper(),
                        t.txid if t else None,
                        (t.commit_position if t else None) or change.position,
                        t.commit_ts if t else None,
                    )
                values.append(added.expression.evaluate({**headers, **{n: sqlite_value(v) for n, v in params}}))
        return tuple(values)

    def _layout(self, columns: tuple[str, ...]) -> _Layout:
        index = {c: i for i, c in enumerate(columns)}
        read = self.read.column_names
        try:
            keep = tuple(index[read[i]] for i in self.keep)
        except KeyError as exc:
            raise RowRejected(f"the change has no column {exc.args[0]!r}") from None
        filters = tuple((index[f.column], f) for f in self.filters if f.column in index)
        names = {n for a in self.added if a.expression is not None for n in a.expression.names}
        params = tuple((n, index[n]) for n in names if n in index)
        images = tuple(index.get(a.image) if a.image is not None else None for a in self.added)
        layout = self._layouts[columns] = _Layout(keep, filters, params, images)
        return layout


def _names(expression: Expression | None, columns: tuple[str, ...]) -> list[tuple[str, int]]:
    if expression is None:
        return []
    return [(n, columns.index(n)) for n in expression.names if n in columns]


def converting(target: ColumnType, encode: Encoder | None, column: str) -> Encoder:
    """An encoder that first converts a value to ``target``'s canonical form (change-data-type, type
    overrides): a value that does not convert is a rejected row naming ``column``, never a failed load."""

    def convert(value: Any) -> Any:
        try:
            value = to_canonical(value, target)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise RowRejected(f"cannot be {target.describe()}: {exc}", column) from None
        return value if encode is None or value is None else encode(value)

    return convert
