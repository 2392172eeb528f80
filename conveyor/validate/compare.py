"""Comparing one table: chunk checksums on both sides at once, bisection of mismatching chunks, rows.

Ranged tables (an integer first key column) are walked in key ranges whose width adapts so one checksum
query takes about ``time_target`` seconds (pt-table-checksum's model: gentle on a busy server). One
checksum per range until a range differs; from then on each range's query returns one checksum per
``LEAF_KEYS`` keys, so a mismatch is located without scanning the range again. A mismatching sub-range
with more than ``LEAF_ROWS`` rows (a composite key's first column) is split into ``SPLIT`` with one
grouped query per side, recursively. The rows of the located sub-ranges are then read as canonical
texts, ``LEAVES_PER_READ`` sub-ranges per query, and compared. Other tables are compared per hash bucket
of their key (the whole row for a table without one: a multiset).
"""

from __future__ import annotations

import functools
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

from conveyor.validate.side import Checksums, Scope, TableSide, Texts

RECORD_DIFF = "RECORD_DIFF"
MISSING_SOURCE = "MISSING_SOURCE"  # on the target only
MISSING_TARGET = "MISSING_TARGET"  # on the source only
SPLIT = 16
LEAF_ROWS = 2000
#: ``LEAF_ROWS`` where Python finishes a column's texts (JSON against another engine: ~25 us a row per
#: side, read twice with the recheck) and the databases compute the checksums: one more grouped query per
#: side costs less than reading all of a first-pass sub-range's rows
FINISHED_LEAF_ROWS = 16
#: keys per checksum in the first pass over a ranged table once a chunk has differed (at most this many
#: rows are read per mismatch); before that one checksum per chunk (grouping the rows costs ~8% of a query)
LEAF_KEYS = 250
BUCKET_ROWS = 1000
MAX_BUCKETS = 65536
#: keys per chunk at most where JSON texts travel to the PostgreSQL side: a lane holds a chunk's documents
#: a few times over (as read, joined, as the parameter), so memory grows with the chunk. bench/validate.py
#: mysql2pg, identical / planted: chunks aimed at the time target alone 5.3 / 5.7 s and ~290 MB; at most
#: 20,000 keys 5.1 / 5.3 s, 190 MB; 8,000 4.8 / 5.1 s, 140 MB; 4,000 5.1 / 5.4 s, 117 MB
JSON_CHUNK_KEYS = 8_000
#: chunks per lane checksummed ahead of the one whose results are read next
READ_AHEAD = 4
#: bucket scopes fetched per query when reading rows
BUCKETS_PER_QUERY = 64
#: differing key ranges of a ranged table whose rows are read together (one query per side), once the
#: first pass has found this many or ended: a mismatch costs no round trip of its own on the coordinating
#: thread (bench/validate.py mysql2pg planted: 95 ranges read one by one took ~1 s of it)
LEAVES_PER_READ = 64
T = TypeVar("T")


@dataclass(frozen=True)
class RowFailure:
    """A row that differs: its key (column -> canonical text), what kind of difference, and for a
    RECORD_DIFF the differing columns as (column, source text, target text)."""

    kind: str
    key: tuple[tuple[str, str | None], ...]
    columns: tuple[tuple[str, str | None, str | None], ...] = ()
    #: the whole row as canonical texts on each side (None where it is missing)
    source: Texts | None = None
    target: Texts | None = None

    @property
    def identity(self) -> tuple[str, tuple[tuple[str, str | None], ...]]:
        return self.kind, self.key


@dataclass
class TableDiff:
    failures: list[RowFailure] = field(default_factory=list)
    #: scopes whose rows were read and differed (rechecked before anything is reported)
    scopes: list[Scope] = field(default_factory=list)
    source_rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    truncated: bool = False
    #: rows left unread once the failures reached ``max_failures``: of differing groups, and differing
    #: rows over the limit
    unchecked: int = 0


class TableComparer:
    """``names``: the target's column names in the sides' order; ``keyed``: the sides' ``key`` is a real key
    (else the table is a multiset)."""

    def __init__(
        self,
        source: TableSide,
        target: TableSide,
        names: list[str],
        keyed: bool,
        partition_rows: int = 10000,
        time_target: float = 0.5,
        max_failures: int | None = None,
        lanes: int = 1,
        range_texts: bool = False,
    ) -> None:
        self.source = source
        self.target = target
        source.agree(target)
        self.names = names
        self.keyed = keyed
        self.partition_rows = partition_rows
        self.time_target = time_target
        self.max_failures = max_failures
        finished = any(c.finish is not None for side in (source, target) for c in side.columns)
        self.leaf_rows = FINISHED_LEAF_ROWS if finished and not (source.python or target.python) else LEAF_ROWS
        #: chunks checksummed at once (each on its own connection per side)
        self.lanes = max(1, lanes)
        #: the range column's texts are its values (no value rule masks them): failing rows are read again by key
        self.range_texts = range_texts
        self.pool = ThreadPoolExecutor(2 * self.lanes)
        self.chunks = ThreadPoolExecutor(self.lanes)

    def close(self) -> None:
        self.chunks.shutdown(cancel_futures=True)
        self.pool.shutdown()
        self.source.close()
        self.target.close()

    def _both(self, fn: Callable[[TableSide], T]) -> tuple[T, T]:
        a = self.pool.submit(fn, self.source)
        b = self.pool.submit(fn, self.target)
        return a.result(), b.result()

    # ------------------------------------------------------------------ whole table
    def compare(self) -> TableDiff:
        diff = TableDiff()
        if self.source.range_column is not None and self.target.range_column is not None:
            self._ranged(diff)
        else:
            self._bucketed(diff)
        return diff

    def _full(self, diff: TableDiff) -> bool:
        if self.max_failures is not None and len(diff.failures) >= self.max_failures:
            diff.truncated = True
            return True
        return False

    def _skipped(self, diff: TableDiff, src: tuple[int, int] | None, tgt: tuple[int, int] | None) -> bool:
        """Whether a differing group is left unread (the failures are full); its rows are counted."""
        if not self._full(diff):
            return False
        diff.unchecked += max((src or (0, 0))[0], (tgt or (0, 0))[0])
        return True

    def _ranged(self, diff: TableDiff) -> None:
        bounds = self._both(lambda s: s.bounds())
        present = [b for b in bounds if b is not None]
        if not present:
            return
        lo = min(b[0] for b in present)
        hi = max(b[1] for b in present) + 1
        width = max(1, self.partition_rows)
        # JSON sent to the PostgreSQL side goes per LEAF_KEYS group from the start (each group's texts
        # joined under ``JOINED_BYTES``; a whole chunk's would go row by row)
        sends = leaves = any(side.send_jsonb is not None for side in (self.source, self.target))
        inflight: deque[tuple[Scope, int, Future[tuple[Checksums, Checksums, float]]]] = deque()
        differing: list[Scope] = []  # located sub-ranges whose rows are read LEAVES_PER_READ at a time
        while (lo < hi or inflight) and not self._full(diff):
            # every lane kept busy: a chunk starts whenever one ends, the results are read in key order (a
            # slow chunk at the head holds up no lane; at most READ_AHEAD chunks per lane wait to be read).
            # Until the first result is read, one chunk per lane: whether chunks differ is not known yet, and
            # a differing chunk of one checksum is scanned again to be split
            ahead = READ_AHEAD * self.lanes if diff.chunks else self.lanes
            while lo < hi and _running(inflight) < self.lanes and len(inflight) < ahead:
                # near the end a chunk takes at most a lane's share of what is left (down to the partition
                # size), so the lanes finish together instead of one lane's last wide chunk running alone
                end = min(hi, lo + min(width, max(self.partition_rows, -(-(hi - lo) // self.lanes))))
                scope = Scope(lo, end)
                # once a chunk differed, one pass: checksums per sub-range of LEAF_KEYS keys, so a mismatch
                # needs no rescan (a differing chunk of one checksum is split by ``_descend``)
                split = -(-(end - lo) // LEAF_KEYS) if leaves else 1
                inflight.append((scope, split, self.chunks.submit(self._timed_checksums, scope, split)))
                lo = end
            if lo < hi and not inflight[0][2].done() and len(inflight) < ahead:
                wait([f for _, _, f in inflight if not f.done()], return_when=FIRST_COMPLETED)
                continue
            scope, split, future = inflight.popleft()
            assert scope.lo is not None and scope.hi is not None
            src, tgt, elapsed = future.result()
            diff.chunks += 1
            diff.source_rows += _rows(src)
            diff.target_rows += _rows(tgt)
            step = -(-(scope.hi - scope.lo) // split)
            for b in sorted(set(src) | set(tgt)):
                if src.get(b) != tgt.get(b) and not self._skipped(diff, src.get(b), tgt.get(b)):
                    leaves = True
                    sub = Scope(scope.lo + b * step, min(scope.hi, scope.lo + (b + 1) * step))
                    self._descend(sub, {0: src.get(b, (0, 0))}, {0: tgt.get(b, (0, 0))}, diff, differing)
            # (each located sub-range holds a differing row: no more are read than the failures have room for)
            room = LEAVES_PER_READ if self.max_failures is None else self.max_failures - len(diff.failures)
            if differing and len(differing) >= min(LEAVES_PER_READ, room):
                self._leaf(differing, diff)
                differing = []
            # aim the next chunks at the time target: this chunk's width, changed at most 4x
            factor = min(4.0, max(0.25, self.time_target / max(elapsed, 1e-3)))
            width = max(1, int((scope.hi - scope.lo) * factor))
            if sends:
                width = min(width, JSON_CHUNK_KEYS)
        for _, _, future in inflight:
            future.cancel()
        if differing:
            self._leaf(differing, diff)

    def _timed_checksums(self, scope: Scope, split: int) -> tuple[Checksums, Checksums, float]:
        started = time.monotonic()
        src, tgt = self._both(functools.partial(TableSide.checksums, scope=scope, split=split))
        return src, tgt, time.monotonic() - started

    def _descend(self, scope: Scope, src: Checksums, tgt: Checksums, diff: TableDiff, leaves: list[Scope]) -> None:
        """Locate the differing sub-ranges of ``scope`` (grouped checksums, recursively) into ``leaves``."""
        assert scope.lo is not None and scope.hi is not None
        if max(_rows(src), _rows(tgt)) <= self.leaf_rows or scope.hi - scope.lo <= SPLIT:
            leaves.append(scope)
            return
        sub_src, sub_tgt = self._both(lambda s: s.checksums(scope, SPLIT))
        width = -(-(scope.hi - scope.lo) // SPLIT)
        for b in sorted(set(sub_src) | set(sub_tgt)):
            if sub_src.get(b) != sub_tgt.get(b) and not self._skipped(diff, sub_src.get(b), sub_tgt.get(b)):
                sub = Scope(scope.lo + b * width, min(scope.hi, scope.lo + (b + 1) * width))
                self._descend(sub, {0: sub_src.get(b, (0, 0))}, {0: sub_tgt.get(b, (0, 0))}, diff, leaves)

    def _bucketed(self, diff: TableDiff) -> None:
        estimate = max(self._both(lambda s: s.count()))
        buckets = max(1, min(MAX_BUCKETS, estimate // BUCKET_ROWS + 1))
        top = Scope(buckets=buckets)
        src, tgt = self._both(lambda s: s.checksums(top))
        diff.chunks += 1
        diff.source_rows, diff.target_rows = _rows(src), _rows(tgt)
        bad = sorted(b for b in set(src) | set(tgt) if src.get(b) != tgt.get(b))
        scopes = [
            Scope(buckets=buckets, members=tuple(bad[i : i + BUCKETS_PER_QUERY]))
            for i in range(0, len(bad), BUCKETS_PER_QUERY)
        ]
        for scope in scopes:
            if self._full(diff):
                diff.unchecked += sum(max(src.get(b, (0, 0))[0], tgt.get(b, (0, 0))[0]) for b in scope.members)
                continue
            self._leaf([scope], diff)

    # ------------------------------------------------------------------ rows
    def _leaf(self, scopes: list[Scope], diff: TableDiff) -> None:
        found = self.rows_diff(scopes)
        if found:
            diff.scopes += scopes
            room = None if self.max_failures is None else max(0, self.max_failures - len(diff.failures))
            diff.failures += found if room is None else found[:room]
            diff.unchecked += 0 if room is None else max(0, len(found) - room)
            self._full(diff)  # truncated once the failures reach the limit

    def rows_diff(self, scopes: Iterable[Scope]) -> list[RowFailure]:
        """Read the scopes' rows on both sides (``LEAVES_PER_READ`` scopes per query) and name every
        difference."""
        scopes = list(scopes)
        found: list[RowFailure] = []
        for i in range(0, len(scopes), LEAVES_PER_READ):
            batch = scopes[i : i + LEAVES_PER_READ]
            src, tgt = self._both(functools.partial(TableSide.rows_of, scopes=batch))
            found += self._keyed(src, tgt) if self.keyed else self._multiset(src, tgt)
        return found

    def failing_scopes(self, diff: TableDiff) -> list[Scope]:
        """Where the failing rows are read again: on a ranged table whose range column's texts are its values,
        the value of each (a key range of one value, read by the index), else the scopes they were found in."""
        ranged = self.source.range_column is not None and self.target.range_column is not None
        if not (ranged and self.range_texts):
            return diff.scopes
        # the range column is the key's first column (``TableSide.range_column``), an integer's text
        values = sorted({int(text) for f in diff.failures if (text := f.key[0][1]) is not None})
        return [Scope(v, v + 1) for v in values]

    def _key(self, texts: Texts) -> tuple[tuple[str, str | None], ...]:
        return tuple((self.names[i], texts[i]) for i in self.source.key)

    def _keyed(self, src: list[Texts], tgt: list[Texts]) -> Iterator[RowFailure]:
        key = self.source.key
        right = {tuple(t[i] for i in key): t for t in tgt}
        for row in src:
            k = tuple(row[i] for i in key)
            other = right.pop(k, None)
            if other is None:
                yield RowFailure(MISSING_TARGET, self._key(row), source=row)
            elif other != row:
                cols = tuple((n, a, b) for n, a, b in zip(self.names, row, other, strict=True) if a != b)
                yield RowFailure(RECORD_DIFF, self._key(row), cols, source=row, target=other)
        for row in right.values():
            yield RowFailure(MISSING_SOURCE, self._key(row), target=row)

    def _multiset(self, src: list[Texts], tgt: list[Texts]) -> Iterator[RowFailure]:
        a, b = Counter(src), Counter(tgt)
        for row in (a - b).elements():
            yield RowFailure(MISSING_TARGET, self._key(row), source=row)
        for row in (b - a).elements():
            yield RowFailure(MISSING_SOURCE, self._key(row), target=row)


def _running(inflight: Iterable[tuple[Scope, int, Future[T]]]) -> int:
    return sum(1 for _, _, f in inflight if not f.done())


def _rows(sums: Checksums) -> int:
    return sum(n for n, _ in sums.values())
