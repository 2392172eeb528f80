"""Applying source transactions to a SQL target, exactly once.

A batch of whole source transactions is applied in one target transaction that ends with the lease
check and the stream position in ``conveyor_cdc_state``; the source may discard its log only after
that commit. So after any crash the target holds every transaction up to the stored position and
none after it, and a restart continues from there.

Fast path: consecutive changes with the same statement run as one ``executemany``. When the target
rejects a change, or an UPDATE/DELETE finds fewer rows than it should (a row missing on the target),
the batch is rolled back and applied again change by change under savepoints, so each failing change
is found, recorded by the apply-error policy, and every other change still lands.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, TypeVar

from conveyor.endpoints.base import Encoder, ErrorPolicy, RejectedRow
from conveyor.endpoints.sql.applier import BulkLoadRefused, SqlApplier, first_line, written_bytes
from conveyor.endpoints.sql.netting import Key, NetChanges, net_changes
from conveyor.errors import RowRejected, StopTask, TerminalError
from conveyor.model.changes import UNCHANGED, Change, Op, Transaction
from conveyor.model.rows import Row
from conveyor.model.schema import Table, TableId
from conveyor.model.types import LogicalType

CDC_STATE_TABLE = "conveyor_cdc_state"
#: tables a task no longer applies changes to (``ChangeApplier.suspensions``), until they are reloaded
SUSPENDED_TABLE = "conveyor_cdc_suspended"
#: the target column names of each table's source columns as the task last planned them
#: (``ChangeApplier.save_columns``): on resume only those may be dropped, never a column the user added
COLUMNS_TABLE = "conveyor_cdc_columns"
#: large parts many of a task's positions share (MySQL's table definitions, which change only with the schema),
#: once per digest: a position value ``shared_part(digest, value)`` is stored as ``{"sha256": digest}`` and read
#: back whole. A part is written in the transaction of the first position that refers to it, and the task's
#: other parts are removed there: its one stored position no longer refers to them.
PARTS_TABLE = "conveyor_cdc_position_parts"
_DIGEST = "sha256"
#: batch apply's multi-row statements: at most this many rows, and bound parameters (every engine
#: accepts 32k+: PostgreSQL and MySQL 65535, SQLite 32766)
BULK_ROWS = 1000
BULK_PARAMS = 30000
#: statements of the ordered path sent as one call at most (where a driver sends an ``executemany`` one
#: round trip per row, a call of many rows is long without any server being silent: ``on_progress``)
PROGRESS_STATEMENTS = 500
T = TypeVar("T")


def shared_part(digest: str, value: Any) -> dict[str, Any]:
    """A position value the target stores once per ``digest`` (``PARTS_TABLE``), the position only the digest."""
    return {_DIGEST: digest, "value": value}


def _in_key_order(updates: list[tuple[Key, tuple[int, ...], tuple[Any, ...]]]) -> None:
    """Net updates of a table keyed by integers, sorted by key (numbers, or the source's text for them): the
    target then walks its key index and table in order, not in the stream's. bench/cdc.py's orders (updates
    scattered over 1M rows, 3,333 per statement): ~11% less of the target's CPU per updated row, ~5% less time.
    Order matters to nothing else (one row per key): a key that is no number leaves them as they came."""
    with contextlib.suppress(TypeError, ValueError):  # the sort keys are all made before anything moves
        if updates and len(updates[0][0]) == 1:
            updates.sort(key=lambda update: int(update[0][0]))
        else:
            updates.sort(key=lambda update: tuple(map(int, update[0])))


def _digest(value: Any) -> str | None:
    """The digest of a shared part (``shared_part``, or as the state table holds it); None for other values."""
    return value.get(_DIGEST) if isinstance(value, dict) else None


@dataclass(frozen=True)
class ChangeTarget:
    """A target table as the apply path needs it: its description and one encoder per column."""

    table: Table
    encoders: list[Encoder | None]
    #: the target's native column types (batch apply's array statements cast to them); may be empty
    natives: Sequence[str] = ()
    by_name: dict[str, Encoder | None] = field(init=False, repr=False)
    native_by_name: dict[str, str] = field(init=False, repr=False)
    #: every column of the row key holds integers (batch apply sends its updates in key order)
    integer_key: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.table.columns]
        object.__setattr__(self, "by_name", dict(zip(names, self.encoders, strict=True)))
        object.__setattr__(self, "native_by_name", dict(zip(names, self.natives, strict=False)))
        key = self.table.row_key()
        integers = all(self.table.column(k).type.logical is LogicalType.INTEGER for k in key)
        object.__setattr__(self, "integer_key", bool(key) and integers)


@dataclass
class ApplyResult:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    truncates: int = 0
    failed: list[RejectedRow] = field(default_factory=list)
    #: applied changes per (source table, kind)
    by_table: Counter[tuple[TableId, Op]] = field(default_factory=Counter)


#: batch apply's ready statement: (SQL, parameters, rows it must touch or None), or a bulk load's call
_NetStatement = tuple[str, list[Any], int | None] | Callable[[], None]


@dataclass
class NetPlan:
    """A batch's net changes, folded and turned into bulk statements ahead of the target's turn
    (``ChangeApplier.prepare_net``), so the Python work for one batch overlaps the target's for the one
    before. ``folds`` false: some table's changes do not fold (the batch goes the ordered way)."""

    folds: bool
    #: per table: ready statements (SQL, parameters, rows it must touch or None; or a bulk load's call,
    #: ``SqlApplier.copy_rows``), or the net changes to write at the target's turn (engines without array
    #: parameters)
    writes: list[list[_NetStatement] | tuple[ChangeTarget, NetChanges]] = field(default_factory=list)
    result: ApplyResult = field(default_factory=ApplyResult)


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: tuple[Any, ...]
    change: Change
    #: rows the statement must touch (1 for UPDATE/DELETE, None when any count is right)
    expect: int | None


class ChangeApplier:
    """Applies transactions through a ``SqlApplier`` (its connection, quoting and engine hooks)."""

    def __init__(
        self,
        applier: SqlApplier,
        targets: dict[TableId, ChangeTarget],
        suspensions: dict[TableId, str] | None = None,
        on_reject: ErrorPolicy = ErrorPolicy.LOG_ERROR,
    ) -> None:
        self.applier = applier
        self.targets = targets
        #: DataErrorPolicy for the changes the target rejects: LOG_ERROR records each in the exceptions
        #: table; IGNORE_RECORD only leaves it out; SUSPEND_TABLE suspends its table in the same commit;
        #: STOP_TASK commits nothing of the window and stops the task (the run again meets the change)
        self.on_reject = on_reject
        #: SUSPEND_TABLE: the tables that rejected a change; nothing more of theirs is applied, in the window
        #: that rejected it or after (those the stream had already read when they were suspended)
        self.refused: set[TableId] = set()
        #: source table -> why it was suspended, not stored yet: written in the next commit, with the
        #: position (which may be past the change that suspended it), then removed from here. The caller
        #: may share the dict and add to it between commits.
        self.suspensions = suspensions if suspensions is not None else {}
        #: the open target transaction holds parts of a source transaction (``apply_part``)
        self._parts = False
        #: changes the open target transaction could not apply, recorded when it commits
        self._part_failed: list[RejectedRow] = []
        #: the digests of the shared parts of the position this applier last committed (None: none yet)
        self._shared: frozenset[str] | None = None
        #: called whenever the target answered a group of statements (a watchdog's ``pet``): applying a
        #: long run of changes one round trip each is progress, not a silent server
        self.on_progress: Callable[[], None] | None = None

    # ------------------------------------------------------------------ checkpoint
    def state_ddl(self) -> str:
        a = self.applier
        return (
            f"CREATE TABLE IF NOT EXISTS {a.control(CDC_STATE_TABLE)} (task_name VARCHAR(200) NOT NULL PRIMARY KEY, "
            f"position {a.text_type} NOT NULL, lease {a.bigint_type} NOT NULL, updated_at {a.timestamp_type} NOT NULL)"
        )

    def suspended_ddl(self) -> str:
        a = self.applier
        return (
            f"CREATE TABLE IF NOT EXISTS {a.control(SUSPENDED_TABLE)} (task_name VARCHAR(200) NOT NULL, "
            f"table_schema VARCHAR(200) NOT NULL, table_name VARCHAR(200) NOT NULL, reason {a.text_type} NOT NULL, "
            f"suspended_at {a.timestamp_type} NOT NULL, PRIMARY KEY (task_name, table_schema, table_name))"
        )

    def columns_ddl(self) -> str:
        a = self.applier
        return (
            f"CREATE TABLE IF NOT EXISTS {a.control(COLUMNS_TABLE)} (task_name VARCHAR(200) NOT NULL, "
            f"table_schema VARCHAR(200) NOT NULL, table_name VARCHAR(200) NOT NULL, "
            f"column_names {a.text_type} NOT NULL, PRIMARY KEY (task_name, table_schema, table_name))"
        )

    def parts_ddl(self) -> str:
        a = self.applier
        return (
            f"CREATE TABLE IF NOT EXISTS {a.control(PARTS_TABLE)} (task_name VARCHAR(200) NOT NULL, "
            f"digest VARCHAR(64) NOT NULL, part {a.text_type} NOT NULL, PRIMARY KEY (task_name, digest))"
        )

    def read_position(self, task_name: str) -> dict[str, Any] | None:
        """The position committed with the last applied batch, or None before the first one."""
        a = self.applier
        a.execute(self.state_ddl())
        a.execute(self.suspended_ddl())
        a.execute(self.columns_ddl())
        a.execute(self.parts_ddl())
        row = a.execute(
            f"SELECT position FROM {a.control(CDC_STATE_TABLE)} WHERE task_name = {a.param}", (task_name,)
        ).fetchone()
        if row is None:
            a.commit()
            return None
        position: dict[str, Any] = json.loads(row[0])
        for key, value in position.items():
            if (digest := _digest(value)) is None:
                continue
            part = a.execute(
                f"SELECT part FROM {a.control(PARTS_TABLE)} WHERE task_name = {a.param} AND digest = {a.param}",
                (task_name, digest),
            ).fetchone()
            if part is None:
                a.rollback()
                raise TerminalError(
                    f"task {task_name!r}'s stored position refers to its {key} by digest {digest}, which "
                    f"{PARTS_TABLE} on the target does not hold (removed by hand?); run `conveyor cleanup` and "
                    "reload the tables"
                )
            position[key] = shared_part(digest, json.loads(part[0]))
        a.commit()
        return position

    def read_suspended(self, task_name: str) -> dict[TableId, str]:
        """The task's stored suspensions: source table -> why (``read_position`` made the table)."""
        a = self.applier
        rows = a.execute(
            f"SELECT table_schema, table_name, reason FROM {a.control(SUSPENDED_TABLE)} WHERE task_name = {a.param}",
            (task_name,),
        ).fetchall()
        a.commit()
        return {TableId(schema, name): reason for schema, name, reason in rows}

    def read_columns(self, task_name: str, commit: bool = True) -> dict[TableId, list[str]]:
        """The task's recorded columns per source table (``save_columns``; ``read_position`` made the
        table). A table without a record was last planned before records were kept."""
        a = self.applier
        rows = a.execute(
            f"SELECT table_schema, table_name, column_names FROM {a.control(COLUMNS_TABLE)} "
            f"WHERE task_name = {a.param}",
            (task_name,),
        ).fetchall()
        if commit:
            a.commit()
        return {TableId(schema, name): json.loads(columns) for schema, name, columns in rows}

    def save_columns(
        self, task_name: str, columns: Mapping[TableId, Sequence[str]], tables: Collection[TableId] | None = None
    ) -> None:
        """Record each source table's columns as the target names them, in a transaction of its own.
        ``tables``: all the task's tables now; the records of others (no longer selected) go, so that a table
        selected again later counts as new (its changes in between were not followed)."""
        a = self.applier
        try:
            for source, names in columns.items():
                self._put_table_row(COLUMNS_TABLE, task_name, source, {"column_names": json.dumps(list(names))})
            gone = set(self.read_columns(task_name, commit=False)) - set(tables) if tables is not None else set()
            for source in gone:
                a.execute(
                    f"DELETE FROM {a.control(COLUMNS_TABLE)} WHERE task_name = {a.param} AND table_schema = {a.param} "
                    f"AND table_name = {a.param}",
                    (task_name, source.schema, source.name),
                )
            a.commit()
        except Exception:
            a.rollback()
            raise

    def forget(self, task_name: str) -> bool:
        """Remove the task's stored position (and its parts), suspensions and recorded columns (``conveyor
        cleanup``): its next run starts over. True when there was a position."""
        a = self.applier
        a.execute(self.state_ddl())
        a.execute(self.suspended_ddl())
        a.execute(self.columns_ddl())
        a.execute(self.parts_ddl())
        cur = a.execute(f"DELETE FROM {a.control(CDC_STATE_TABLE)} WHERE task_name = {a.param}", (task_name,))
        found = bool(cur.rowcount)
        for control in (SUSPENDED_TABLE, COLUMNS_TABLE, PARTS_TABLE):
            a.execute(f"DELETE FROM {a.control(control)} WHERE task_name = {a.param}", (task_name,))
        a.commit()
        return found

    def _save_suspensions(self, task_name: str, suspensions: dict[TableId, str]) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        for source, reason in suspensions.items():
            self._put_table_row(SUSPENDED_TABLE, task_name, source, {"reason": reason, "suspended_at": now})

    def _put_table_row(self, control: str, task_name: str, source: TableId, values: dict[str, Any]) -> None:
        """Replace the task's row for ``source`` in a control table keyed by (task, source table)."""
        a = self.applier
        table = a.control(control)
        key = (task_name, source.schema, source.name)
        a.execute(
            f"DELETE FROM {table} WHERE task_name = {a.param} AND table_schema = {a.param} AND table_name = {a.param}",
            key,
        )
        names = ["task_name", "table_schema", "table_name", *values]
        a.execute(
            f"INSERT INTO {table} ({a.column_list(names)}) VALUES ({a.params(len(names))})", (*key, *values.values())
        )

    def _send_stamp(self, task_name: str, lease: int, position: dict[str, Any]) -> Callable[[], frozenset[str]]:
        """What every target commit carries besides its changes: the lease check (fencing) and the source
        position. The statements go now, into an open ``pipeline`` with the changes (one round trip for
        all); the returned call verifies them once their results are in and gives the stored shared parts."""
        verify_lease = self.applier.send_lease_check(task_name, lease)
        verify_position = self._send_position(task_name, lease, position)

        def verify() -> frozenset[str]:
            verify_lease()
            return verify_position()

        return verify

    def _send_position(self, task_name: str, lease: int, position: dict[str, Any]) -> Callable[[], frozenset[str]]:
        """Store ``position`` (its shared parts by digest); the returned call, once the statements'
        results are in, inserts the task's row the first time and gives those digests."""
        a = self.applier
        now = datetime.now(UTC).replace(tzinfo=None)
        stored: dict[str, Any] = {}
        parts: dict[str, Any] = {}
        for key, value in position.items():
            if (digest := _digest(value)) is None:
                stored[key] = value
            else:
                stored[key], parts[digest] = {_DIGEST: digest}, value["value"]
        if parts.keys() != self._shared:
            self._save_parts(task_name, parts)
        text = json.dumps(stored, sort_keys=True)
        table = a.control(CDC_STATE_TABLE)
        cur = a.execute(
            f"UPDATE {table} SET position = {a.param}, lease = {a.param}, updated_at = {a.param} "
            f"WHERE task_name = {a.param}",
            (text, lease, now, task_name),
        )

        def verify() -> frozenset[str]:
            if cur.rowcount == 0:
                a.execute(
                    f"INSERT INTO {table} (task_name, position, lease, updated_at) VALUES ({a.params(4)})",
                    (task_name, text, lease, now),
                )
            return frozenset(parts)

        return verify

    def _save_parts(self, task_name: str, parts: dict[str, Any]) -> None:
        """Into the open transaction: the parts the target does not hold yet, and the removal of the task's
        others (the position stored with them replaces the one that referred to those)."""
        a = self.applier
        table, p = a.control(PARTS_TABLE), a.param
        for digest, value in parts.items():
            found = a.execute(
                f"SELECT 1 FROM {table} WHERE task_name = {p} AND digest = {p}", (task_name, digest)
            ).fetchone()
            if found is None:
                a.execute(
                    f"INSERT INTO {table} (task_name, digest, part) VALUES ({a.params(3)})",
                    (task_name, digest, json.dumps(value, sort_keys=True)),
                )
        kept = f" AND digest NOT IN ({a.params(len(parts))})" if parts else ""
        a.execute(f"DELETE FROM {table} WHERE task_name = {p}{kept}", (task_name, *parts))

    # ------------------------------------------------------------------ applying
    def apply(
        self,
        task_name: str,
        lease: int,
        transactions: Sequence[Transaction],
        position: dict[str, Any],
        net: bool = False,
        prepared: NetPlan | None = None,
    ) -> ApplyResult:
        """Apply ``transactions`` and store ``position`` in one target transaction (which also holds
        the parts ``apply_part`` sent before: the last transaction is then the end of that one).
        ``net`` (batch apply): each table's net changes in bulk statements, where they fold
        (``netting``); in source order otherwise, and whenever the bulk path meets a row it cannot place.
        ``prepared``: ``prepare_net(transactions)``, done earlier."""
        a = self.applier
        if self.refused:
            transactions, prepared = self._without_refused(transactions), None
        if net and not self._parts:
            try:
                plan = prepared if prepared is not None else self.prepare_net(transactions)
                ran = self._run_net(plan, lambda: self._send_stamp(task_name, lease, position))
                if ran is not None:
                    return self._commit(task_name, lease, position, *ran)
            except (_NeedsCareful, RowRejected, BulkLoadRefused):
                a.rollback()
            except Exception as exc:
                a.rollback()
                if not a.is_data_error(exc):
                    raise
        return self._commit(task_name, lease, position, self._run_ordered(transactions))

    def apply_part(self, transaction: Transaction) -> ApplyResult:
        """Apply the first parts of a big source transaction (``Transaction.partial``) into the open
        target transaction, uncommitted: the ``apply`` of its last part commits them all, with the
        position, so the target never shows the source transaction half done."""
        self._parts = True
        return self._run_ordered(self._without_refused([transaction]) if self.refused else [transaction])

    def _without_refused(self, transactions: Sequence[Transaction]) -> list[Transaction]:
        refused = self.refused
        return [replace(t, changes=[c for c in t.changes if c.table not in refused]) for t in transactions]

    def _refuse(self, table: TableId) -> None:
        """A change of ``table`` was rejected: under SUSPEND_TABLE nothing more of it is applied."""
        if self.on_reject is ErrorPolicy.SUSPEND_TABLE:
            self.refused.add(table)

    def _run_ordered(self, transactions: Sequence[Transaction]) -> ApplyResult:
        """Source order; the fast path first, then change by change where it failed. Inside a
        transaction that already holds parts, a failed attempt is undone to a savepoint, not rolled back."""
        a = self.applier
        statements, failed = self._statements(transactions)
        if self._parts:
            a.savepoint("conveyor_part")
        try:
            result = self._run_fast(statements)
            if self._parts:
                a.release("conveyor_part")
        except Exception as exc:
            if self._parts:
                a.rollback_to("conveyor_part")
            else:
                a.rollback()
            if not isinstance(exc, _NeedsCareful) and not a.is_data_error(exc):
                raise
            result = self._run_careful(statements)
        result.failed[:0] = failed
        self._part_failed += result.failed
        return result

    def _commit(
        self,
        task_name: str,
        lease: int,
        position: dict[str, Any],
        result: ApplyResult,
        stamped: Callable[[], frozenset[str]] | None = None,
    ) -> ApplyResult:
        """Commit what the open transaction holds, with ``position``; ``stamped``: the verification
        ``_send_stamp`` returned where its statements were already sent with the changes."""
        a = self.applier
        suspended = dict(self.suspensions)
        failed = self._part_failed
        try:
            if failed and self.on_reject is ErrorPolicy.STOP_TASK:
                raise StopTask(
                    f"{failed[0].table}: {rejected_change(failed[0])} (DataErrorPolicy STOP_TASK: nothing after the "
                    "last commit is applied; the task meets the change again when it runs again)"
                )
            if self.on_reject is ErrorPolicy.SUSPEND_TABLE:
                for bad in failed:
                    suspended.setdefault(bad.table, rejected_change(bad))
            shared = (stamped or self._send_stamp(task_name, lease, position))()
            self._save_suspensions(task_name, suspended)
            if failed and self.on_reject is not ErrorPolicy.IGNORE_RECORD:
                # recorded under the target's table, as the full load records its rejects
                targets = self.targets
                on_target = [replace(r, table=targets[r.table].table.id) if r.table in targets else r for r in failed]
                a.record_rejects(task_name, on_target)
            a.commit()
            self._shared = shared
        except Exception:
            a.rollback()
            raise
        finally:
            self._parts = False
            self._part_failed = []
        for source in suspended:
            self.suspensions.pop(source, None)
        return result

    def _run_fast(self, statements: list[_Statement]) -> ApplyResult:
        """Consecutive statements with the same SQL run as one ``executemany``; all of them are sent
        without waiting for each other where the driver pipelines (PostgreSQL), and the row counts are
        checked once they are all in."""
        a = self.applier
        result = ApplyResult()
        checks: list[tuple[Any, int]] = []
        with a.pipeline():
            i = 0
            while i < len(statements):
                j = i + 1
                while j < len(statements) and statements[j].sql == statements[i].sql:
                    j += 1
                j = min(j, i + PROGRESS_STATEMENTS)
                group = statements[i:j]
                if len(group) == 1:
                    cur = a.execute(group[0].sql, group[0].params)
                else:
                    cur = a.executemany(group[0].sql, [s.params for s in group])
                if group[0].expect is not None:
                    checks.append((cur, sum(s.expect for s in group if s.expect is not None)))
                if self.on_progress is not None:
                    self.on_progress()
                i = j
        if any(cur.rowcount != expected for cur, expected in checks):
            raise _NeedsCareful
        for s in statements:
            _count(result, s.change)
        return result

    def prepare_net(self, transactions: Sequence[Transaction]) -> NetPlan:
        """Batch apply's first half, without the target: each table's net changes (``netting``), as bulk
        statements where the engine takes array parameters. Uses no connection, so it may run on another
        thread than the one applying (the stream's, while the target commits the batch before)."""
        by_table: dict[TableId, list[Change]] = {}
        table: TableId | None = None
        bucket: list[Change] = []
        for txn in transactions:
            for change in txn.changes:
                if change.table is not table:  # runs of one table (the same object) skip the lookup
                    table = change.table
                    bucket = by_table.setdefault(table, [])
                bucket.append(change)
        plan = NetPlan(True)
        for table_id, changes in by_table.items():
            target = self.targets[table_id]
            net = net_changes(changes, target.table.row_key())
            if net is None:
                return NetPlan(False)
            if target.integer_key:
                _in_key_order(net.updates)
            statements = self._net_array_statements(target, net)
            plan.writes.append(statements if statements is not None else (target, net))
        for table_id, changes in by_table.items():
            _count_table(plan.result, table_id, changes)
        return plan

    def _run_net(
        self, plan: NetPlan, then: Callable[[], Callable[[], frozenset[str]]]
    ) -> tuple[ApplyResult, Callable[[], frozenset[str]]] | None:
        """Batch apply's second half: per table, deletes, then inserts, then updates, each as few
        statements as the driver allows, then ``then()`` (the commit's stamp, in the same round trip);
        its result with what ``then`` returned. None when some table's changes do not fold (nothing was
        written then). A bulk load (``copy_rows``) ends the pipeline and runs between two."""
        if not plan.folds:
            return None
        a = self.applier
        checks: list[tuple[Any, int]] = []
        with contextlib.ExitStack() as pipeline:
            pipeline.enter_context(a.pipeline())
            for write in plan.writes:
                if isinstance(write, tuple):
                    checks += self._write_net(*write)
                    continue
                for statement in write:
                    if callable(statement):
                        pipeline.close()
                        statement()
                        pipeline.enter_context(a.pipeline())
                        continue
                    sql, params, expected = statement
                    cur = a.execute(sql, params)
                    if expected is not None:
                        checks.append((cur, expected))
            stamped = then()
        if any(cur.rowcount != expected for cur, expected in checks):
            raise _NeedsCareful
        return plan.result, stamped

    def _write_net(self, target: ChangeTarget, net: NetChanges) -> list[tuple[Any, int]]:
        """Send one table's net changes as multi-row statements (engines without array parameters);
        returns (cursor, rows it must touch) to check afterwards."""
        a = self.applier
        name = a.qualified(target.table.id)
        encoders = [target.by_name[c] for c in net.columns]
        key_encoders = [target.by_name[k] for k in net.key]
        checks: list[tuple[Any, int]] = []
        width = len(net.key)
        key_sql = a.quote(net.key[0]) if width == 1 else f"({a.column_list(net.key)})"
        one_key = a.param if width == 1 else f"({a.params(width)})"
        limit = a.statement_bytes

        def deleted(keys: list[Any]) -> list[Any]:
            return [v for k in keys for v in _encode(key_encoders, k)]

        def inserted(rows: list[Any]) -> list[Any]:
            return [v for row in rows for v in _encode(encoders, row)]

        def updated(rows: list[tuple[Any, ...]]) -> list[Any]:
            return [v for row in rows for v in row]

        for chunk in _chunks(net.deletes, max(1, BULK_PARAMS // width)):
            for keys, params in _fitted(chunk, deleted, limit):
                cur = a.execute(f"DELETE FROM {name} WHERE {key_sql} IN ({', '.join([one_key] * len(keys))})", params)
                checks.append((cur, len(keys)))
        row_sql = f"({a.params(len(net.columns))})"
        head = f"INSERT INTO {name} ({a.column_list(net.columns)}) VALUES "
        for chunk in _chunks(net.inserts, max(1, min(BULK_ROWS, BULK_PARAMS // len(net.columns)))):
            for rows, params in _fitted(chunk, inserted, limit):
                a.execute(head + ", ".join([row_sql] * len(rows)), params)
        where = " AND ".join(f"{a.quote(k)} = {a.param}" for k in net.key)
        groups: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        for key, indexes, values in net.updates:
            encoded = _encode([encoders[i] for i in indexes], values)
            groups.setdefault(indexes, []).append((*encoded, *_encode(key_encoders, key)))
        for indexes, rows in groups.items():
            names = [net.columns[i] for i in indexes]
            sets = ", ".join(f"{a.quote(c)} = {a.param}" for c in names)
            for chunk in _chunks(rows, max(1, min(BULK_ROWS, BULK_PARAMS // (len(names) + width)))):
                for part, params in _fitted(chunk, updated, limit):
                    sql = a.update_rows_sql(name, net.key, names, len(part))
                    if sql is None:
                        cur = a.executemany(f"UPDATE {name} SET {sets} WHERE {where}", part)
                    else:
                        cur = a.execute(sql, params)
                    checks.append((cur, len(part)))
        return checks

    def _net_array_statements(self, target: ChangeTarget, net: NetChanges) -> list[_NetStatement] | None:
        """Net changes as one statement per kind (and per updated column set), each column's values in
        one array parameter: a handful of parameters however many rows, so the driver parses nothing
        per row and the server plans once. Each with the rows it must touch (None: unchecked). The
        inserts as the engine's bulk load where it takes them (``copy_rows``). None where the engine
        (or a column's type) takes no arrays."""
        a = self.applier
        natives = [target.native_by_name.get(c, "") for c in net.columns]
        if not all(natives) or not a.takes_arrays(natives):
            return None
        encoders = [target.by_name[c] for c in net.columns]
        name = a.qualified(target.table.id)
        index = {c: i for i, c in enumerate(net.columns)}
        key_at = [index[k] for k in net.key]
        statements: list[_NetStatement] = []

        def column_array(i: int, column: Sequence[Any]) -> tuple[str, str, Any]:
            """Column ``i``'s ``column`` of values as ``array_param`` sends it."""
            encode = encoders[i]
            items = list(column) if encode is None else [v if v is None else encode(v) for v in column]
            return a.array_param(items, natives[i])

        def rows_of(
            rows: Sequence[Sequence[Any]], columns: Sequence[int], alias: str
        ) -> tuple[str, dict[int, str], list[Any]]:
            """``rows`` (never empty) as the table expression ``alias``, one array parameter per column: its
            SQL, each column's value as the statement reads it (column index -> SQL), and the parameters.
            ``zip(*rows)`` transposes them in C, and only the columns with an encoder are walked value by value."""
            arrays: list[str] = []
            values: dict[int, str] = {}
            params: list[Any] = []
            for i, column in zip(columns, zip(*rows, strict=True), strict=True):
                array, cast, param = column_array(i, column)
                arrays.append(array)
                values[i] = f"{alias}.{a.quote(net.columns[i])}{cast}"
                params.append(param)
            return (
                f"{a.array_rows(arrays)} AS {alias}({a.column_list(net.columns[i] for i in columns)})",
                values,
                params,
            )

        def match(values: dict[int, str]) -> str:
            return " AND ".join(f"t.{a.quote(net.columns[i])} = {values[i]}" for i in key_at)

        if (net.deletes or net.updates) and a.index_joins_sql:
            statements.append((a.index_joins_sql, [], None))
        if net.deletes and len(key_at) == 1:
            # one key column: its array whole, which the index scan walks in key order (no join): the
            # target's CPU per row ~4.6 -> ~3.5 us on bench/cdc.py's orders
            (at,) = key_at
            array, cast, param = column_array(at, [k for (k,) in net.deletes])
            where = a.any_of(a.quote(net.key[0]), array, cast)
            statements.append((f"DELETE FROM {name} WHERE {where}", [param], len(net.deletes)))
        elif net.deletes:
            source, values, params = rows_of(net.deletes, key_at, "d")
            statements.append(
                (f"DELETE FROM {name} AS t USING {source} WHERE {match(values)}", params, len(net.deletes))
            )
        copied = None
        if net.inserts and all(e is None for e in encoders):
            copied = a.copy_rows(name, net.columns, net.inserts)
        if copied is not None:
            statements.append(copied)
        elif net.inserts:
            every = range(len(net.columns))
            source, values, params = rows_of(net.inserts, every, "i")
            select = ", ".join(values[i] for i in every)
            statements.append(
                (f"INSERT INTO {name} ({a.column_list(net.columns)}) SELECT {select} FROM {source}", params, None)
            )
        groups: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        for key, indexes, changed in net.updates:
            groups.setdefault(indexes, []).append(key + changed)
        for indexes, updated in groups.items():
            source, values, params = rows_of(updated, [*key_at, *indexes], "u")
            sets = ", ".join(f"{a.quote(net.columns[i])} = {values[i]}" for i in indexes)
            statements.append(
                (f"UPDATE {name} AS t SET {sets} FROM {source} WHERE {match(values)}", params, len(updated))
            )
        return statements

    def _run_careful(self, statements: list[_Statement]) -> ApplyResult:
        a = self.applier
        result = ApplyResult()
        for s in statements:
            if self.refused and s.change.table in self.refused:
                continue
            a.savepoint("conveyor_change")
            try:
                cur = a.execute(s.sql, s.params)
                if s.expect is not None and cur.rowcount != s.expect:
                    a.rollback_to("conveyor_change")
                    result.failed.append(self._failure(s.change, f"{s.change.op} matched {cur.rowcount} target rows"))
                    self._refuse(s.change.table)
                    continue
                a.release("conveyor_change")
                _count(result, s.change)
            except Exception as exc:
                a.rollback_to("conveyor_change")
                if not a.is_data_error(exc):
                    raise
                result.failed.append(self._failure(s.change, first_line(exc)))
                self._refuse(s.change.table)
        return result

    # ------------------------------------------------------------------ statements
    def _statements(self, transactions: Sequence[Transaction]) -> tuple[list[_Statement], list[RejectedRow]]:
        out: list[_Statement] = []
        failed: list[RejectedRow] = []
        refused = self.refused
        for txn in transactions:
            for change in txn.changes:
                if refused and change.table in refused:
                    continue
                try:
                    out.append(self._statement(change))
                except RowRejected as exc:
                    failed.append(self._failure(change, str(exc), exc.column))
                    self._refuse(change.table)
        return out, failed

    def _statement(self, change: Change) -> _Statement:
        a = self.applier
        target = self.targets[change.table]
        table = target.table
        name = a.qualified(table.id)
        if change.op is Op.TRUNCATE:
            return _Statement(a.truncate_sql(table), (), change, None)
        if change.op is Op.INSERT:
            assert change.after is not None
            cols, values = self._present(target, change.columns, change.after)
            sql = f"INSERT INTO {name} ({a.column_list(cols)}) VALUES ({a.params(len(cols))})"
            return _Statement(sql, tuple(values), change, None)
        where_sql, where_params = self._where(target, change)
        if change.op is Op.DELETE:
            return _Statement(a.limit_one_sql(table, f"DELETE FROM {name}", where_sql), where_params, change, 1)
        assert change.after is not None
        cols, values = self._present(target, change.columns, change.after)
        assignments = ", ".join(f"{a.quote(c)} = {a.param}" for c in cols)
        sql = a.limit_one_sql(table, f"UPDATE {name} SET {assignments}", where_sql)
        return _Statement(sql, (*values, *where_params), change, 1)

    def _present(self, target: ChangeTarget, columns: tuple[str, ...], row: Row) -> tuple[list[str], list[Any]]:
        """Columns the source sent (not UNCHANGED), with their values encoded for the target."""
        cols: list[str] = []
        values: list[Any] = []
        encoders = target.by_name
        for col, value in zip(columns, row, strict=True):
            if value is UNCHANGED:
                continue
            encode = encoders[col]
            if value is not None and encode is not None:
                try:
                    value = encode(value)
                except RowRejected as exc:
                    raise RowRejected(exc.reason, col) from None
            cols.append(col)
            values.append(value)
        return cols, values

    def _where(self, target: ChangeTarget, change: Change) -> tuple[str, tuple[Any, ...]]:
        """The old row's identity: its key, or every column sent (a table without a key)."""
        a = self.applier
        key = target.table.row_key()
        image = change.before if change.before is not None else change.after
        assert image is not None
        index = {c: i for i, c in enumerate(change.columns)}
        if key and all(image[index[k]] is not UNCHANGED for k in key):
            # key columns are NOT NULL: plain equality, which an index serves (PostgreSQL cannot use one
            # for IS NOT DISTINCT FROM)
            names, equals = list(key), "="
        else:
            names = [c for c in change.columns if image[index[c]] is not UNCHANGED]
            equals = a.null_safe_equals
        _, values = self._present(target, tuple(names), tuple(image[index[c]] for c in names))
        clause = " AND ".join(f"{a.quote(c)} {equals} {a.param}" for c in names)
        return clause, tuple(values)

    def _failure(self, change: Change, reason: str, column: str | None = None) -> RejectedRow:
        image = change.after if change.after is not None else change.before
        row = dict(zip(change.columns, image or (), strict=False))
        table = self.targets[change.table].table if change.table in self.targets else None
        key_cols = table.row_key() if table else ()
        key = {k: row.get(k) for k in key_cols} if key_cols else row
        return RejectedRow(change.table, key, column, f"{change.op}: {reason}", row)


def rejected_change(bad: RejectedRow) -> str:
    """A change the target rejected, for people (a suspension's or a stop's reason)."""
    return f"the target rejected a change (key {bad.key}): {(bad.column + ': ') if bad.column else ''}{bad.reason}"


def _encode(encoders: Sequence[Encoder | None], values: Sequence[Any]) -> list[Any]:
    """Canonical values -> the driver's; a value the target cannot hold raises ``RowRejected`` (the
    batch then goes the careful way, which records the change it belongs to)."""
    return [v if v is None or e is None else e(v) for e, v in zip(encoders, values, strict=True)]


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _fitted(
    rows: list[T], params_of: Callable[[list[T]], list[Any]], limit: int | None
) -> Iterator[tuple[list[T], list[Any]]]:
    """``rows`` with their statement's parameters, halved until each part's statement stays within
    ``limit`` bytes on the server (``SqlApplier.statement_bytes``; a lone row goes as it is)."""
    params = params_of(rows)
    if limit is None or len(rows) == 1 or written_bytes(params) <= limit:
        yield rows, params
        return
    half = len(rows) // 2
    yield from _fitted(rows[:half], params_of, limit)
    yield from _fitted(rows[half:], params_of, limit)


class _NeedsCareful(Exception):
    """An UPDATE or DELETE touched a different number of rows than expected."""


def _count_table(result: ApplyResult, table: TableId, changes: Sequence[Change]) -> None:
    """Count ``changes`` (all to ``table``) in ``result``, by ``list.count`` in C."""
    ops = list(map(itemgetter(0), changes))
    inserts, updates, deletes = ops.count(Op.INSERT), ops.count(Op.UPDATE), ops.count(Op.DELETE)
    truncates = len(ops) - inserts - updates - deletes
    for op, count in ((Op.INSERT, inserts), (Op.UPDATE, updates), (Op.DELETE, deletes), (Op.TRUNCATE, truncates)):
        if count:
            result.by_table[table, op] += count
    result.inserts += inserts
    result.updates += updates
    result.deletes += deletes
    result.truncates += truncates


def _count(result: ApplyResult, change: Change) -> None:
    _count_table(result, change.table, (change,))
