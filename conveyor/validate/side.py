"""One side (source or target) of a compared table: checksums and rows of a scope, computed in its database.

A scope is a key range ``[lo, hi)`` of an integer key column (index range scans), or a set of hash
buckets of the row key (``hash60(key text) % buckets``) for other keys and for tables without a key,
whose "key" is then the whole row. Checksums are (row count, SUM of 60-bit row hashes) per bucket: one
aggregate query per scope in SQL, or the same numbers from streamed rows where Python finishes values.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.endpoints.postgres.arrays import NULL, SEPARATOR, joined_texts
from conveyor.validate.canonical import hash60, row_text
from conveyor.validate.dialects import Column, Dialect, PostgresDialect

Checksums = dict[int, tuple[int, int]]
Texts = tuple[str | None, ...]
#: bytes of one ``GROUP_CONCAT`` row a side reads at most (its texts share them), below MariaDB's and
#: MySQL's default ``max_allowed_packet`` (16 MB and 64 MB)
JOINED_BYTES = 8 << 20


def _uncut(joined: str, limit: int) -> bool:
    """Whether a ``GROUP_CONCAT`` value stayed under its byte ``limit`` (the server cuts it there, on a
    character boundary, with only a warning)."""
    return len(joined) * 4 < limit - 4 or len(joined.encode()) < limit - 4


def _splits(joined: str, count: int, nulls: int) -> bool:
    """Whether ``joined`` (``GROUP_CONCAT`` of ``count`` texts, ``nulls`` of them NULL as ``NULL``) gives
    them back when split on ``SEPARATOR``."""
    return joined.count(SEPARATOR) == count - 1 and joined.count(NULL) == nulls and (count > 1 or joined != "")


@dataclass(frozen=True)
class Scope:
    lo: int | None = None
    hi: int | None = None
    #: hash-bucket scopes: the bucket count and the buckets in scope (empty: all)
    buckets: int = 0
    members: tuple[int, ...] = ()
    #: rows by key: value tuples of the key columns (``TableSide.key_columns``), read by the key's index
    keys: tuple[tuple[Any, ...], ...] = ()


@dataclass
class TableSide:
    """``columns`` in the plan's order (the same on both sides); ``key`` their positions of the row key
    (all of them for a table without one); ``range_column`` the quoted integer key column ranges use."""

    dialect: Dialect
    #: opens a reading connection (``connections.readers``); one per query running at once
    connect: Callable[[], Any]
    engine: str
    table: str
    columns: list[Column]
    key: tuple[int, ...]
    range_column: str | None
    #: the row hash checksums sum, when both sides are one engine with the same column types: the
    #: engine's own (``Dialect.native_hash``), cheaper than hashing canonical texts; the rows of a
    #: mismatching range are still compared by their canonical texts
    native_hash: str | None = None
    #: where this side is not PostgreSQL and the other is: the other side's ``jsonb_mismatches``, to which
    #: this side sends its keys and ``Column.jsonb`` texts
    send_jsonb: Callable[[Scope, str, Sequence[str] | Sequence[list[str | None]]], dict[int, int] | None] | None = None
    #: the quoted key columns (a keyed table), for ``Scope.keys``
    key_columns: tuple[str, ...] = ()
    python: bool = field(init=False)
    _idle: list[Any] = field(init=False, default_factory=list)
    _opened: list[Any] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.python = any(c.finish is not None and c.checksum is None and c.jsonb is None for c in self.columns)

    # ------------------------------------------------------------------ SQL pieces
    def _row_sql(self, positions: Sequence[int]) -> str:
        d = self.dialect
        columns = [self.columns[i] for i in positions]
        return d.concat(
            [
                d.token(c.concat or c.sql, c.delimited, c.utf8) if c.checksum is None else d.token_once(c.checksum)
                for c in columns
            ]
        )

    def without_jsonb(self) -> None:
        """JSON hashed by the texts of both sides (no PostgreSQL side computes the ``jsonb`` texts)."""
        self.columns = [replace(c, jsonb=None) for c in self.columns]
        self.__post_init__()

    def agree(self, other: TableSide) -> None:
        """Both sides build the same row texts: a column is delimited only where it is on both."""
        both = [a.delimited and b.delimited for a, b in zip(self.columns, other.columns, strict=True)]
        for side in (self, other):
            side.columns = [replace(c, delimited=d) for c, d in zip(side.columns, both, strict=True)]

    def mark_utf8(self) -> None:
        """Mark the columns whose SQL text the engine types as UTF-8 (``Column.utf8``): one query, which
        returns a row from an empty table too (a character set is the expression's, not a value's), and
        reads no row (MariaDB scans a whole table joined ``ON FALSE``); the dialect becomes the one of this
        side's database (``Dialect.for_session``)."""
        with self._connection() as conn:
            self.dialect = d = self.dialect.for_session(conn)
        probes = [(i, d.charset(c.sql)) for i, c in enumerate(self.columns) if c.finish is None]
        asked = [(i, sql) for i, sql in probes if sql is not None]
        if not asked:
            return
        names = self._fetchone(
            f"SELECT {', '.join(sql for _, sql in asked)} FROM (SELECT 1) AS one "
            f"LEFT JOIN (SELECT * FROM {self.table} LIMIT 0) AS t ON TRUE"
        )
        utf8 = {i for (i, _), name in zip(asked, names, strict=True) if str(name).lower() in d.utf8_charsets}
        self.columns = [replace(c, utf8=i in utf8) for i, c in enumerate(self.columns)]

    def without_checksums(self) -> None:
        """Checksums over the canonical texts (the other side cannot compute the columns' ``checksum``)."""
        self.columns = [replace(c, checksum=None) for c in self.columns]
        self.__post_init__()

    def _where(self, scope: Scope) -> tuple[str, list[Any]]:
        clauses, params = self._conditions(scope)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _conditions(self, scope: Scope) -> tuple[list[str], list[Any]]:
        p = self.dialect.param
        clauses: list[str] = []
        params: list[Any] = []
        if self.range_column is not None and scope.lo is not None:
            clauses.append(f"{self.range_column} >= {p}")
            params.append(scope.lo)
        if self.range_column is not None and scope.hi is not None:
            clauses.append(f"{self.range_column} < {p}")
            params.append(scope.hi)
        if scope.keys:
            clauses.append(self._keys_sql(len(scope.keys)))
            params.extend(v for key in scope.keys for v in key)
        if scope.members and not self.python:
            clauses.append(f"{self._bucket_sql(scope.buckets)} IN ({', '.join([p] * len(scope.members))})")
            params.extend(scope.members)
        return clauses, params

    def _keys_sql(self, count: int) -> str:
        """Rows equal to one of ``count`` keys: ``k IN (...)``, or an OR of each key's equalities."""
        p = self.dialect.param
        if len(self.key_columns) == 1:
            return f"{self.key_columns[0]} IN ({', '.join([p] * count)})"
        one = "(" + " AND ".join(f"{c} = {p}" for c in self.key_columns) + ")"
        return "(" + " OR ".join([one] * count) + ")"

    def _bucket_sql(self, buckets: int) -> str:
        return f"MOD({self.dialect.hash60(self._row_sql(self.key))}, {int(buckets)})"

    # ------------------------------------------------------------------ queries
    def bounds(self) -> tuple[int, int] | None:
        assert self.range_column is not None
        row = self._fetchone(f"SELECT MIN({self.range_column}), MAX({self.range_column}) FROM {self.table}")
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def evaluates(self, expr: str) -> bool:
        """Whether the database computes ``expr`` on this table's rows (a column type may lack a hash
        function; an older server the function)."""
        try:
            self._fetchall(f"SELECT {expr} FROM {self.table} LIMIT 1")
        except self.dialect.error:
            return False
        return True

    def count(self) -> int:
        return int(self._fetchone(f"SELECT COUNT(*) FROM {self.table}")[0])

    def checksums(self, scope: Scope, split: int = 1) -> Checksums:
        """(rows, hash sum) per bucket: per ``split`` equal sub-ranges of a range scope, per hash bucket
        of a bucket scope."""
        if self.python:
            return self._python_checksums(scope, split)
        d = self.dialect
        where, params = self._where(scope)
        if scope.buckets:
            bucket = self._bucket_sql(scope.buckets)
        elif split > 1:
            assert scope.lo is not None and scope.hi is not None and self.range_column is not None
            width = -(-(scope.hi - scope.lo) // split)
            bucket = d.range_bucket(self.range_column, scope.lo, scope.hi, width)
        else:
            bucket = "0"
        # JSON compared with another engine is left out here: the PostgreSQL side compares the documents
        # the other side sends (``jsonb_mismatches``)
        jsonb = [c.jsonb for c in self.columns if c.jsonb is not None]
        hashed = self.native_hash or d.hash60(self._row_sql([i for i, c in enumerate(self.columns) if c.jsonb is None]))
        total = d.sum_text(hashed)
        if jsonb and not isinstance(d, PostgresDialect):
            return self._with_sent_jsonb(scope, bucket, total, where, params, jsonb)
        # one bucket: no GROUP BY (~5% of a query), and no bucket where no row is in scope
        grouped = " GROUP BY 1" if bucket != "0" else ""
        sql = f"SELECT {bucket}, COUNT(*), {total} FROM {self.table}{where}{grouped}"
        return {int(b): (int(n), int(s)) for b, n, s in self._fetchall(sql, params) if n}

    def _with_sent_jsonb(
        self, scope: Scope, bucket: str, total: str, where: str, params: list[Any], jsonb: list[str]
    ) -> Checksums:
        """Checksums of the rest of the row (``total``) where the PostgreSQL side found every document of the
        bucket equal to its own, a sum no hash sum has (-1) where it did not: the same query reads each
        bucket's key texts and documents joined by the database (``GROUP_CONCAT``: one value per bucket,
        not one row per row, about 20x less client CPU); row by row where a group does not come back whole.
        (MariaDB/MySQL SQL: the only engine sending JSON texts to PostgreSQL.)"""
        assert self.send_jsonb is not None
        texts = [self._row_sql(self.key), *(f"COALESCE({doc}, CHAR(31 USING utf8mb4))" for doc in jsonb)]
        joined = ", ".join(f"GROUP_CONCAT({t} SEPARATOR 0x1e)" for t in texts)
        counts = ", ".join(f"COUNT({doc})" for doc in jsonb)
        limit = JOINED_BYTES // len(texts)
        with self._connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(f"SET SESSION group_concat_max_len = {limit}")
                sql = f"SELECT {bucket}, COUNT(*), {total}, {joined}, {counts} FROM {self.table}{where}"
                cur.execute(f"{sql} GROUP BY 1", tuple(params))
                groups = list(cur.fetchall())
            finally:
                cur.close()
        sums = {int(g[0]): (int(g[1]), int(g[2])) for g in groups}
        n = len(texts)
        buckets: list[str] = []
        columns: list[list[str]] = [[] for _ in texts]
        whole = True
        for g in groups:
            rows, values = int(g[1]), g[3 : 3 + n]
            nulls = [0, *(rows - int(p) for p in g[3 + n :])]
            whole = whole and all(_uncut(v, limit) and _splits(v, rows, k) for v, k in zip(values, nulls, strict=True))
            buckets.append(",".join([str(int(g[0]))] * rows))
            for column, v in zip(columns, values, strict=True):
                column.append(v)
        if not groups:
            return sums
        differing = (
            self.send_jsonb(scope, ",".join(buckets), [SEPARATOR.join(c) for c in columns])
            if whole
            else self._sent_rows(scope, bucket, where, params, jsonb)
        )
        # differing documents, or unreadable texts: the bucket's sums do not match, its rows are compared
        return {b: (n, -1 if differing is None or differing.get(b, 0) else s) for b, (n, s) in sums.items()}

    def _sent_rows(
        self, scope: Scope, bucket: str, where: str, params: list[Any], jsonb: list[str]
    ) -> dict[int, int] | None:
        """``_with_sent_jsonb`` row by row."""
        assert self.send_jsonb is not None
        sql = f"SELECT {bucket}, {self._row_sql(self.key)}, {', '.join(jsonb)} FROM {self.table}{where}"
        rows = self._fetchall(sql, params)
        return self.send_jsonb(
            scope, ",".join(str(int(r[0])) for r in rows), [[r[1 + j] for r in rows] for j in range(1 + len(jsonb))]
        )

    def jsonb_mismatches(
        self, scope: Scope, buckets: str, columns: Sequence[str] | Sequence[list[str | None]]
    ) -> dict[int, int] | None:
        """Per bucket, how many of the other side's rows of ``scope`` have a document that is not equal, as
        ``jsonb``, to this PostgreSQL side's row of the same key (or no such row): jsonb's own equality,
        exact at any depth, where hashing texts would need both sides' documents printed. ``buckets``: each
        sent row's, comma-separated; ``columns``: the key texts, then each JSON column's texts, as lists or
        joined (``SEPARATOR`` between texts, ``NULL`` for NULL, checked by ``_splits``). None when a text is
        not one PostgreSQL reads as jsonb (not JSON, a ``\\u0000``). Joined texts are split in PostgreSQL
        (about 2x cheaper than binary arrays), sent as arrays when a text holds a separator or is the only one
        and empty (``joined_texts``)."""
        d = self.dialect
        assert isinstance(d, PostgresDialect)
        if not buckets:
            return {}
        names = [f"j{j}" for j in range(len(columns) - 1)]
        docs = [c.jsonb for c in self.columns if c.jsonb is not None]
        joined = [c if isinstance(c, str) else joined_texts(c) for c in columns]
        if all(j is not None for j in joined):  # (texts joined by ``_with_sent_jsonb`` are checked there)
            split = "unnest(string_to_array(%s, %s, %s))"
            source = f"ROWS FROM (unnest(string_to_array(%s, ',')), {', '.join([split] * len(columns))})"
            params: list[Any] = [buckets]
            for text in joined:
                params += [text, SEPARATOR, NULL]
            bucket = "(s.b)::bigint"
        else:
            arrays = [c for c in columns if not isinstance(c, str)]
            source = f"unnest({', '.join(['%b::bigint[]'] + ['%b::text[]'] * len(columns))})"
            params, bucket = [[int(b) for b in buckets.split(",")], *arrays], "s.b"
        where, scoped = self._where(scope)
        mine = ", ".join(f"{doc} AS {n}" for doc, n in zip(docs, names, strict=True))
        differs = " OR ".join(f"t.{n} IS DISTINCT FROM (s.{n})::jsonb" for n in names)
        sql = (
            f"SELECT {bucket}, count(*) FILTER (WHERE t.k IS NULL OR {differs}) "
            f"FROM {source} AS s(b, k, {', '.join(names)}) "
            f"LEFT JOIN (SELECT {self._row_sql(self.key)} AS k, {mine} FROM {self.table}{where}) t ON t.k = s.k "
            "GROUP BY 1"
        )
        try:
            return {int(b): int(n) for b, n in self._fetchall(sql, [*params, *scoped])}
        except d.error:
            return None

    def _python_checksums(self, scope: Scope, split: int) -> Checksums:
        out: dict[int, list[int]] = {}
        width = -(-(scope.hi - scope.lo) // split) if split > 1 and scope.lo is not None and scope.hi is not None else 0
        for k, texts in self._texts(scope):
            if scope.buckets:
                bucket = self.bucket_of(texts, scope.buckets)
            else:
                bucket = (int(k) - int(scope.lo or 0)) // width if width else 0
            entry = out.setdefault(bucket, [0, 0])
            entry[0] += 1
            entry[1] += hash60(row_text(texts, [c.delimited for c in self.columns]))
        return {b: (n, s) for b, (n, s) in out.items()}

    def bucket_of(self, texts: Texts, buckets: int) -> int:
        return hash60(row_text([texts[i] for i in self.key], [self.columns[i].delimited for i in self.key])) % buckets

    def rows(self, scope: Scope) -> Iterator[Texts]:
        """Every row of the scope as canonical texts."""
        for _, texts in self._texts(scope):
            yield texts

    def rows_of(self, scopes: Sequence[Scope]) -> list[Texts]:
        """Every row of the scopes as canonical texts: key ranges in one query (their conditions ORed: one
        round trip for many differing sub-ranges), other scopes one by one."""
        if len(scopes) < 2 or self.python or any(s.buckets or s.keys for s in scopes):
            return [t for scope in scopes for t in self.rows(scope)]
        conditions = [self._conditions(scope) for scope in scopes]
        if not all(clauses for clauses, _ in conditions):  # a scope of the whole table
            return list(self.rows(Scope()))
        where = " WHERE " + " OR ".join("(" + " AND ".join(clauses) + ")" for clauses, _ in conditions)
        params = [v for _, values in conditions for v in values]
        # fetched whole (a few sub-ranges of at most LEAF_ROWS rows: ~3x cheaper than streaming row by row),
        # in key order (an OR of ranges may come in the table's order)
        rows = sorted(self._fetchall(self._texts_sql(where), params), key=lambda row: row[0])
        finish = self._finisher()
        return [finish(row[1:]) for row in rows]

    def _texts_sql(self, where: str) -> str:
        first = self.range_column or "NULL"
        return f"SELECT {first}, {', '.join(c.sql for c in self.columns)} FROM {self.table}{where}"

    def _finisher(self) -> Callable[[Sequence[Any]], Texts]:
        """The canonical texts of a row's selected values (``Column.finish`` where Python finishes them)."""
        finishes = [c.finish for c in self.columns]

        def finish(values: Sequence[Any]) -> Texts:
            return tuple(v if f is None else f(v) for f, v in zip(finishes, values, strict=True))

        return finish

    def _texts(self, scope: Scope) -> Iterator[tuple[Any, Texts]]:
        """(range column value, canonical texts) of the scope's rows, streamed."""
        where, params = self._where(scope)
        finish = self._finisher()
        members = set(scope.members) if scope.members and self.python else None
        for row in self._stream(self._texts_sql(where), params):
            texts = finish(row[1:])
            if members is not None and self.bucket_of(texts, scope.buckets) not in members:
                continue
            yield row[0], texts

    # ------------------------------------------------------------------ driver
    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """An idle connection of this side, opened when every one is busy (parallel chunks)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.connect()
            with self._lock:
                self._opened.append(conn)
        try:
            yield conn
        finally:
            with self._lock:
                self._idle.append(conn)

    def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._fetchall(sql, params)
        return rows[0]

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
            finally:
                cur.close()

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        with self._connection() as conn:
            if self.engine == "postgresql":
                yield from conn.cursor().stream(sql, tuple(params))
            elif self.engine == "mysql":
                import pymysql

                cur = conn.cursor(pymysql.cursors.SSCursor)
                try:
                    cur.execute(sql, tuple(params))
                    yield from cur
                finally:
                    cur.close()
            else:
                cur = conn.execute(sql, tuple(params))
                try:
                    yield from cur
                finally:
                    cur.close()

    def close(self) -> None:
        for conn in self._opened:
            with contextlib.suppress(Exception):
                conn.close()
