"""A concurrent, reproducible write workload for change-data-capture tests (PostgreSQL, MariaDB).

``Workload(url, seed=...)`` writes random multi-row transactions into two tables: ``cdc_items`` (a
primary key, a TOAST-sized ``big`` column) and ``cdc_bag`` (no key, duplicate rows). Each transaction
mixes inserts, updates (some change the primary key, some rewrite ``big`` with ~10 KB, some leave a
large ``big`` untouched), deletes (some keys are inserted again later, or in the same transaction)
and inserts, deletes and updates of one of several identical ``cdc_bag`` rows; some transactions
roll back. ``run()`` returns the committed row changes, counted from the servers' row counts, so a
test can hold a capture to them.

One thread is reproducible: the same seed on the same starting tables writes the same rows. Several
threads share the ``cdc_items`` keys (so transactions contend and their commit order matters), and
each owns its ``cdc_bag`` keys. A transaction locks the existing rows it will touch in key order
first, so threads rarely deadlock; a deadlock or lock timeout is rolled back and the transaction
retried as planned.
"""

from __future__ import annotations

import base64
import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from oracle import mysql_connect
from schemas import execute_sql

BIG_CHARS = 10_000  # > 2 KB and incompressible: PostgreSQL stores it out of line (TOAST)
BASE_TIME = datetime(2024, 1, 1)
ROLLBACK_SHARE = 0.08
MAX_RETRIES = 20

_INSERT = "INSERT INTO {t} (id, grp, name, qty, big, updated_at) VALUES (%s, %s, %s, %s, %s, %s)"
_COMMON = {
    "insert": _INSERT,
    "update": "UPDATE {t} SET name = %s, qty = %s, updated_at = %s WHERE id = %s",
    "update_big": "UPDATE {t} SET big = %s, updated_at = %s WHERE id = %s",
    "update_key": "UPDATE {t} SET id = %s, grp = %s, updated_at = %s WHERE id = %s",
    "delete": "DELETE FROM {t} WHERE id = %s",
    "bag_insert": "INSERT INTO {bag} (k, v) VALUES (%s, %s), (%s, %s)",
}
#: per engine: the statements, the DDL, and how to pick one of several identical rows
_SQL: dict[str, dict[str, str]] = {
    "postgresql": {
        **_COMMON,
        "reinsert": _INSERT + " ON CONFLICT (id) DO NOTHING",
        "bag_delete": "DELETE FROM {bag} WHERE ctid = (SELECT ctid FROM {bag} WHERE k = %s AND v = %s LIMIT 1)",
        "bag_update": "UPDATE {bag} SET v = %s WHERE ctid = (SELECT ctid FROM {bag} WHERE k = %s AND v = %s LIMIT 1)",
        "create_items": "CREATE TABLE {t} (id bigint PRIMARY KEY, grp int, name varchar(100), qty int, big text, "
        "updated_at timestamp(6))",
        # without a key, PostgreSQL logs an old row only with REPLICA IDENTITY FULL
        "create_bag": "CREATE TABLE {bag} (k int, v varchar(20)); ALTER TABLE {bag} REPLICA IDENTITY FULL; "
        "CREATE INDEX {bag_k} ON {bag} (k)",
    },
    "mysql": {
        **_COMMON,
        "reinsert": _INSERT.replace("INSERT", "INSERT IGNORE", 1),
        "bag_delete": "DELETE FROM {bag} WHERE k = %s AND v = %s LIMIT 1",
        "bag_update": "UPDATE {bag} SET v = %s WHERE k = %s AND v = %s LIMIT 1",
        # NULL DEFAULT NULL: no automatic CURRENT_TIMESTAMP / ON UPDATE, so every value comes from the seed
        "create_items": "CREATE TABLE {t} (id bigint PRIMARY KEY, grp int, name varchar(100), qty int, big text, "
        "updated_at timestamp(6) NULL DEFAULT NULL)",
        # the index keeps a thread's DELETE ... LIMIT 1 from locking the other threads' rows
        "create_bag": "CREATE TABLE {bag} (k int, v varchar(20), KEY {bag_k} (k))",
    },
}
_OP = {
    "insert": "inserts",
    "reinsert": "inserts",
    "bag_insert": "inserts",
    "update": "updates",
    "update_big": "updates",
    "update_key": "updates",
    "bag_update": "updates",
    "delete": "deletes",
    "bag_delete": "deletes",
}


@dataclass
class Counts:
    """Committed row changes (what a capture must deliver) and transactions.

    ``kinds`` counts rows per statement kind (``insert``, ``reinsert``, ``update``, ``update_big``,
    ``update_key``, ``delete``, ``bag_insert``, ``bag_delete``, ``bag_update``) and, besides,
    ``update_kept_big``: plain updates of rows whose ``big`` is TOAST-sized (left untouched)."""

    transactions: int = 0
    rolled_back: int = 0
    retries: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def changes(self) -> int:
        return self.inserts + self.updates + self.deletes

    def add(self, other: Counts) -> None:
        for f in fields(self):
            if f.name != "kinds":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.kinds.update(other.kinds)

    def copy(self) -> Counts:
        return replace(self, kinds=Counter(self.kinds))


@dataclass(frozen=True)
class _Step:
    kind: str  # a key of _SQL
    params: tuple[Any, ...]
    lock: int | None = None  # an existing cdc_items row to lock first
    toasted: bool = False  # insert/update_big: big is TOAST-sized; update: the row's big is (kept)


class _Session:
    """One connection; the engine's quirks are set once here."""

    def __init__(self, url: str, engine: str) -> None:
        self.engine = engine
        self.conn: Any
        if engine == "postgresql":
            import psycopg

            self.conn = psycopg.connect(url, autocommit=False)
        else:
            self.conn = mysql_connect(url, autocommit=False)
            with self.conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = '+00:00'")  # TIMESTAMP values stored as written
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")  # no gap locks
                cur.execute("SET SESSION innodb_lock_wait_timeout = 20")
        self.cur = self.conn.cursor()

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        self.cur.execute(sql, params)
        return int(self.cur.rowcount)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(sql, params)
        return list(self.cur.fetchall())

    def retryable(self, exc: BaseException) -> bool:
        """A deadlock, lock timeout or serialization failure: run the transaction again."""
        if self.engine == "postgresql":
            return getattr(exc, "sqlstate", None) in ("40P01", "40001", "55P03")
        import pymysql

        # 1213 deadlock, 1205 lock wait timeout, 1020 record changed (MariaDB snapshot isolation)
        return isinstance(exc, pymysql.err.OperationalError) and exc.args[0] in (1213, 1205, 1020)

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


class _Pool:
    """The live ``cdc_items`` keys (O(1) random pick and removal) and fresh keys; shared by threads."""

    def __init__(self, rows: list[tuple[int, bool]]) -> None:
        self.lock = threading.Lock()
        self.ids = [r[0] for r in rows]
        self.index = {id_: i for i, id_ in enumerate(self.ids)}
        self.toasted = {id_ for id_, big in rows if big}
        self.next_id = max(self.ids, default=0) + 1

    def fresh(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def add(self, id_: int, toasted: bool) -> None:
        if id_ not in self.index:
            self.index[id_] = len(self.ids)
            self.ids.append(id_)
        self.set_toasted(id_, toasted)

    def remove(self, id_: int) -> None:
        i = self.index.pop(id_, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != id_:
            self.ids[i] = last
            self.index[last] = i
        self.toasted.discard(id_)

    def set_toasted(self, id_: int, toasted: bool) -> None:
        (self.toasted.add if toasted else self.toasted.discard)(id_)


@dataclass
class _Writer:
    """What one worker thread knows: its own ``cdc_bag`` rows, the keys it freed, its randomness."""

    rng: random.Random
    bag: Counter[tuple[int, str]]
    next_k: int
    stride: int
    freed: list[int] = field(default_factory=list)

    def fresh_k(self) -> int:
        self.next_k += self.stride
        return self.next_k - self.stride


class Workload:
    """Random write transactions on ``table`` and ``bag`` at ``url`` (``postgresql://`` or ``mysql://``)."""

    def __init__(self, url: str, table: str = "cdc_items", seed: int = 0, bag: str = "cdc_bag") -> None:
        scheme = urlsplit(url).scheme
        if scheme.startswith("postgres"):
            self.engine = "postgresql"
        elif scheme.startswith(("mysql", "mariadb")):
            self.engine = "mysql"
        else:
            raise ValueError(f"the workload runs on PostgreSQL or MariaDB/MySQL, not {scheme}")
        self.url, self.table, self.bag, self.seed = url, table, bag, seed
        quote = _pg_ident if self.engine == "postgresql" else _mysql_ident
        self._t, self._bag = quote(table), quote(bag)
        self.sql = {
            kind: text.format(t=self._t, bag=self._bag, bag_k=quote(f"{bag}_k"))
            for kind, text in _SQL[self.engine].items()
        }
        self._runs = 0
        self._lock = threading.Lock()  # guards the counts while threads add to them
        self._background: threading.Thread | None = None
        self._stop = threading.Event()
        self._counts = Counts()
        self._error: BaseException | None = None

    def create(self) -> None:
        """Drop and create both tables, empty."""
        statements = [f"DROP TABLE IF EXISTS {self._t}", f"DROP TABLE IF EXISTS {self._bag}"]
        statements += [s.strip() for k in ("create_items", "create_bag") for s in self.sql[k].split(";")]
        execute_sql(self.url, statements)

    def run(self, transactions: int, rows_per_txn: int = 5, threads: int = 2, rate: float | None = None) -> Counts:
        """Run ``transactions`` transactions of ``rows_per_txn`` statements on ``threads`` threads, at
        most ``rate`` transactions per second in all; return what they committed."""
        counts = Counts()
        self._run(transactions, rows_per_txn, threads, rate, threading.Event(), counts)
        return counts

    def start_background(
        self, transactions: int | None = None, rows_per_txn: int = 5, threads: int = 2, rate: float | None = None
    ) -> None:
        """``run()`` in a background thread until ``stop()`` (or until ``transactions`` are done)."""
        if self._background is not None:
            raise RuntimeError("the workload is already running in the background")
        self._stop.clear()
        self._counts, self._error = Counts(), None

        def main() -> None:
            try:
                self._run(transactions, rows_per_txn, threads, rate, self._stop, self._counts)
            except BaseException as exc:
                self._error = exc

        self._background = threading.Thread(target=main, name="cdc-workload", daemon=True)
        self._background.start()

    def progress(self) -> Counts:
        """What the background run has committed so far."""
        with self._lock:
            return self._counts.copy()

    def stop(self) -> Counts:
        """Stop the background run (the transactions in flight finish) and return what it committed;
        raises the error that ended it early, if one did."""
        if self._background is None:
            raise RuntimeError("the workload is not running in the background")
        self._stop.set()
        self._background.join()
        self._background = None
        if self._error is not None:
            raise self._error
        return self.progress()

    # ----------------------------------------------------------------------- running

    def _run(
        self,
        transactions: int | None,
        rows_per_txn: int,
        threads: int,
        rate: float | None,
        stop: threading.Event,
        counts: Counts,
    ) -> None:
        run = self._runs
        self._runs += 1
        session = _Session(self.url, self.engine)
        try:  # the tables as they are now: a run continues from any earlier run's rows
            items = session.query(
                f"SELECT id, big IS NOT NULL AND char_length(big) >= %s FROM {self._t} ORDER BY id", (BIG_CHARS // 2,)
            )
            bag_rows = session.query(f"SELECT k, v, count(*) FROM {self._bag} GROUP BY k, v ORDER BY k, v")
        finally:
            session.close()
        pool = _Pool([(int(id_), bool(big)) for id_, big in items])
        bag_rows = [(int(k), str(v), int(n)) for k, v, n in bag_rows if k is not None and v is not None]
        top_k = max((k for k, _, _ in bag_rows), default=0) + 1
        errors: list[BaseException] = []
        workers = []
        for i in range(threads):
            # thread i owns the cdc_bag keys k with k % threads == i
            mine = Counter({(k, v): n for k, v, n in bag_rows if k % threads == i})
            state = _Writer(random.Random(f"{self.seed}/{run}/{i}"), mine, top_k + (i - top_k) % threads, threads)
            share = None if transactions is None else transactions // threads + (i < transactions % threads)
            pace = None if rate is None else threads / rate
            args = (state, pool, share, rows_per_txn, pace, stop, counts, errors)
            workers.append(threading.Thread(target=self._worker, args=args, name=f"cdc-workload-{i}", daemon=True))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]

    def _worker(
        self,
        state: _Writer,
        pool: _Pool,
        transactions: int | None,
        rows_per_txn: int,
        pace: float | None,
        stop: threading.Event,
        counts: Counts,
        errors: list[BaseException],
    ) -> None:
        session = None
        try:
            session = _Session(self.url, self.engine)
            started = time.monotonic()
            done = 0
            while (transactions is None or done < transactions) and not stop.is_set():
                if pace is not None and stop.wait(max(0.0, started + done * pace - time.monotonic())):
                    break
                with pool.lock:
                    steps = self._plan(state, pool, rows_per_txn)
                commit = state.rng.random() >= ROLLBACK_SHARE
                result, rows = self._execute(session, steps, commit, stop)
                if commit:
                    with pool.lock:
                        self._apply(state, pool, steps, rows)
                with self._lock:
                    counts.add(result)
                done += 1
        except BaseException as exc:
            errors.append(exc)
            stop.set()  # the other threads stop too
        finally:
            if session is not None:
                with contextlib.suppress(Exception):
                    session.close()

    def _execute(
        self, session: _Session, steps: list[_Step], commit: bool, stop: threading.Event
    ) -> tuple[Counts, list[int]]:
        """Run one planned transaction (again after a deadlock); count what it committed."""
        locked = sorted({s.lock for s in steps if s.lock is not None})
        retries = 0
        while True:
            try:
                if locked:
                    marks = ", ".join(["%s"] * len(locked))
                    session.execute(f"SELECT id FROM {self._t} WHERE id IN ({marks}) ORDER BY id FOR UPDATE", locked)
                rows = [session.execute(self.sql[step.kind], step.params) for step in steps]
                if commit:
                    session.conn.commit()
                else:
                    session.conn.rollback()
                break
            except Exception as exc:
                with contextlib.suppress(Exception):
                    session.conn.rollback()
                if not session.retryable(exc) or retries >= MAX_RETRIES:
                    raise
                retries += 1
                stop.wait(0.005 * retries)
        if not commit:
            return Counts(rolled_back=1, retries=retries), rows
        result = Counts(transactions=1, retries=retries)
        for step, n in zip(steps, rows, strict=True):
            result.kinds[step.kind] += n
            setattr(result, _OP[step.kind], getattr(result, _OP[step.kind]) + n)
            if step.kind == "update" and step.toasted:
                result.kinds["update_kept_big"] += n
        return result, rows

    @staticmethod
    def _apply(state: _Writer, pool: _Pool, steps: list[_Step], rows: list[int]) -> None:
        """Bring the shared keys and the thread's own state up to a committed transaction, in order,
        by what each statement really changed."""
        for step, n in zip(steps, rows, strict=True):
            kind, params = step.kind, step.params
            if kind == "reinsert" and params[0] in state.freed:
                state.freed.remove(params[0])  # inserted now, or by someone else first
            if not n:
                continue
            if kind in ("insert", "reinsert"):
                pool.add(params[0], step.toasted)
            elif kind == "update_big":
                pool.set_toasted(params[-1], step.toasted)
            elif kind == "update_key":
                old, new = params[-1], params[0]
                pool.add(new, old in pool.toasted)
                pool.remove(old)
                state.freed.append(old)
            elif kind == "delete":
                pool.remove(params[0])
                state.freed.append(params[0])
            elif kind == "bag_insert":
                state.bag[params[:2]] += 2
            elif kind == "bag_delete":
                state.bag[params] -= 1
            elif kind == "bag_update":
                state.bag[params[1:]] -= 1
                state.bag[(params[1], params[0])] += 1
        state.bag += Counter()  # drop the keys that reached zero

    # ---------------------------------------------------------------------- planning

    def _plan(self, state: _Writer, pool: _Pool, size: int) -> list[_Step]:
        """The statements of one transaction, drawn from the thread's randomness and the live keys.

        Keys the plan deletes or moves are not picked again, unless it inserts them again (delete and
        insert of one key in one transaction); keys it inserts may be updated by later statements."""
        rng = state.rng
        gone: set[int] = set()
        new_keys: list[int] = []
        toasted: dict[int, bool] = {}  # the plan's own view of which rows have a TOAST-sized big
        freed = list(state.freed)
        bag = Counter(state.bag)
        steps: list[_Step] = []

        def is_toasted(key: int) -> bool:
            return toasted.get(key, key in pool.toasted)

        def pick(want_toasted: bool) -> int | None:
            total = len(pool.ids) + len(new_keys)
            chosen = None
            for _ in range(4 if total else 0):
                n = rng.randrange(total)
                key = pool.ids[n] if n < len(pool.ids) else new_keys[n - len(pool.ids)]
                if key not in gone:
                    chosen = key
                    if not want_toasted or is_toasted(key):
                        break
            return chosen

        def insert(kind: str, key: int) -> None:
            big = _big(rng)
            toasted[key] = big is not None and len(big) == BIG_CHARS
            gone.discard(key)
            new_keys.append(key)
            steps.append(_Step(kind, (key, *_values(rng), big, _when(rng)), toasted=toasted[key]))

        def remove(key: int) -> None:
            gone.add(key)
            freed.append(key)

        for _ in range(size):
            roll = rng.random()
            if roll < 0.25:
                steps.append(self._bag_step(state, bag))
            elif roll < 0.30 and freed:
                insert("reinsert", freed.pop(rng.randrange(len(freed))))
            elif roll < 0.50 or (target := pick(want_toasted=roll < 0.68)) is None:
                insert("insert", pool.fresh())
            else:
                lock = None if target in new_keys else target
                if roll < 0.68:  # big untouched: PostgreSQL logs an unchanged TOAST value as such
                    _, name, qty = _values(rng)
                    steps.append(_Step("update", (name, qty, _when(rng), target), lock, is_toasted(target)))
                elif roll < 0.80:
                    big = _big(rng, share=0.7)
                    toasted[target] = big is not None and len(big) == BIG_CHARS
                    steps.append(_Step("update_big", (big, _when(rng), target), lock, toasted[target]))
                elif roll < 0.88:
                    new = pool.fresh()
                    toasted[new] = is_toasted(target)
                    new_keys.append(new)
                    remove(target)
                    steps.append(_Step("update_key", (new, rng.randrange(10), _when(rng), target), lock))
                else:
                    remove(target)
                    steps.append(_Step("delete", (target,), lock))
        return steps

    @staticmethod
    def _bag_step(state: _Writer, bag: Counter[tuple[int, str]]) -> _Step:
        """Two identical rows in, or one of several identical rows out or changed."""
        rng = state.rng
        dups = sorted(key for key, n in bag.items() if n >= 2)
        roll = rng.random()
        if dups and roll < 0.35:
            k, v = rng.choice(dups)
            bag[(k, v)] -= 1
            return _Step("bag_delete", (k, v))
        if dups and roll < 0.55:
            k, v = rng.choice(dups)
            other = _word(rng)
            other = other if other != v else v + "2"
            bag[(k, v)] -= 1
            bag[(k, other)] += 1
            return _Step("bag_update", (other, k, v))
        present = sorted(key for key, n in bag.items() if n > 0)
        k, v = rng.choice(present) if present and roll < 0.7 else (state.fresh_k(), _word(rng))
        bag[(k, v)] += 2
        return _Step("bag_insert", (k, v, k, v))


# ------------------------------------------------------------------------- values

_NAMES = ("plain", "café", "naïve ✓", "emoji 😀", "tab\tand 'quote'", "")


def _values(rng: random.Random) -> tuple[int, str | None, int | None]:
    """grp, name, qty (with NULLs now and then)."""
    name = None if rng.random() < 0.1 else f"{rng.choice(_NAMES)} {rng.randrange(10**6)}"
    qty = None if rng.random() < 0.1 else rng.randrange(-1000, 100_000)
    return rng.randrange(10), name, qty


def _big(rng: random.Random, share: float = 0.3) -> str | None:
    """A TOAST-sized value (random, so it does not compress) with probability ``share``, else NULL
    or a short one."""
    roll = rng.random()
    if roll < share:
        return base64.b64encode(rng.randbytes(BIG_CHARS * 3 // 4)).decode()
    return None if roll < share + (1 - share) / 2 else f"short {rng.randrange(10**6)}"


def _when(rng: random.Random) -> datetime:
    return BASE_TIME + timedelta(microseconds=rng.randrange(10**13))  # within 2024, to the microsecond


def _word(rng: random.Random) -> str:
    return rng.choice(("dup", "same", "twin", "é", "x y")) + str(rng.randrange(100))


def _pg_ident(name: str) -> str:
    from psycopg import sql

    return sql.Identifier(name).as_string()


def _mysql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
