"""The snapshot-reader skeleton: SELECT a segment, stream it in batches, decode to canonical values."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from conveyor.model.rows import Row, RowBatch
from conveyor.model.schema import Column, Table
from conveyor.model.segments import Segment
from conveyor.transform.filters import bounds_sql, filter_sql

Decoder = Callable[[Any], Any]


class SqlSnapshotReader:
    """Shared reader for DB-API sources; engines provide quoting, decoders and a streaming cursor."""

    param = "%s"

    def __init__(self, connection: Any) -> None:
        self.conn = connection

    # hooks
    def quote(self, name: str) -> str:
        raise NotImplementedError

    def decoder(self, column: Column) -> Decoder | None:
        """Driver value -> canonical value, or None when the driver already gives canonical values."""
        raise NotImplementedError

    def select_expression(self, column: Column) -> str:
        """How to select a column (engines cast types their driver cannot load exactly)."""
        return self.quote(column.name)

    def stream_cursor(self) -> Any:
        """A cursor that streams results instead of buffering the whole result set."""
        return self.conn.cursor()

    def estimate_rows(self, table: Table) -> int:
        raise NotImplementedError

    def page_count(self, table: Table) -> int:
        return 0

    # shared
    def qualified(self, table: Table) -> str:
        return f"{self.quote(table.id.schema)}.{self.quote(table.id.name)}"

    def key_bounds(self, table: Table, column: str) -> tuple[int, int] | None:
        col = self.quote(column)
        cur = self.conn.cursor()
        cur.execute(f"SELECT MIN({col}), MAX({col}) FROM {self.qualified(table)}")
        lo, hi = cur.fetchone()
        cur.close()
        if lo is None or not isinstance(lo, int) or not isinstance(hi, int):
            return None
        return lo, hi

    def segment_filter(self, segment: Segment) -> tuple[str, list[Any]]:
        if segment.kind == "all" or segment.column is None:
            return "", []
        col = self.quote(segment.column)
        clauses, params = [], []
        if segment.lo is not None:
            clauses.append(f"{col} >= {self.param}")
            params.append(segment.lo)
        if segment.hi is not None:
            clauses.append(f"{col} < {self.param}")
            params.append(segment.hi)
        return (" WHERE " + " AND ".join(clauses), params) if clauses else ("", [])

    def bind_value(self, value: Any) -> Any:
        """A canonical value (a filter's or a boundary's) as the driver binds it."""
        return value

    def where(self, table: Table, segment: Segment) -> tuple[str, list[Any]]:
        """The segment's WHERE clause: its range, DMS parallel-load bounds and source filters."""
        sql, params = self.segment_filter(segment)
        clauses = [sql.removeprefix(" WHERE ")] if sql else []
        if segment.kind == "bounds":
            sql, values = bounds_sql(
                table, segment.columns, segment.lo, segment.hi, self.quote, self.param, self.bind_value
            )
            clauses.append(sql)
            params = [*params, *values]
        if segment.filters:
            sql, values = filter_sql(table, segment.filters, self.quote, self.param, self.bind_value)
            clauses.append(sql)
            params = [*params, *values]
        clauses = [c for c in clauses if c]
        return (" WHERE " + " AND ".join(clauses), params) if clauses else ("", params)

    def select_sql(self, table: Table, segment: Segment, decode: bool = True) -> tuple[str, list[Any]]:
        columns = ", ".join(self.select_expression(c) if decode else self.quote(c.name) for c in table.columns)
        where, params = self.where(table, segment)
        return f"SELECT {columns} FROM {self.relation(table, segment)}{where}", params

    def relation(self, table: Table, segment: Segment) -> str:
        """What the segment reads from: the table (engines with partitions read a ``partitions`` segment's)."""
        return self.qualified(table)

    def read(self, table: Table, segment: Segment, batch_rows: int, decode: bool = True) -> Iterator[RowBatch]:
        sql, params = self.select_sql(table, segment, decode)
        active = [(i, fn) for i, c in enumerate(table.columns) if decode and (fn := self.decoder(c)) is not None]
        names = table.column_names
        cur = self.stream_cursor()
        try:
            cur.execute(sql, params) if params else cur.execute(sql)
            while True:
                rows = cur.fetchmany(batch_rows)
                if not rows:
                    break
                yield RowBatch(names, decode_rows(rows, active))
        finally:
            cur.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def decode_rows(rows: Sequence[Row], active: list[tuple[int, Decoder]]) -> list[Row]:
    if not active:
        return rows if isinstance(rows, list) else list(rows)
    out: list[Row] = []
    for row in rows:
        values = list(row)
        for i, fn in active:
            v = values[i]
            if v is not None:
                values[i] = fn(v)
        out.append(tuple(values))
    return out
