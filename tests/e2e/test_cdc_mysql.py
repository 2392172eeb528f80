"""MySQL / MariaDB change data capture end to end, into every target: the full load meets the binlog
stream exactly, the target follows the source under concurrent writes, a user's start position, every
type (TIMESTAMP under non-UTC zones too) converted as the full load converts it, schema changes, and a
purged binlog asking for a resync."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql
import pytest
from alltypes import MYSQL
from cdc_support import WORKLOAD_TABLES, Running, diff_tables, schema_of, wait_equal, wait_until
from oracle import canonical, fetch, mysql_connect
from schemas import execute_sql
from servers import MariaDBServer, PostgresServer, unique_db_name
from tasks import cli, run_task, task_doc, write_task
from workload import Workload

from conveyor.endpoints.sql.applier import StaleLease
from conveyor.errors import NeedsResync, UserActionError
from conveyor.runner.cdc import ChangeProcessing

SOURCE_SQL = [
    "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(100) NOT NULL, qty int, price decimal(10,2), big text)",
    "CREATE TABLE bag (a int, b varchar(20))",
    "INSERT INTO items SELECT seq, CONCAT('item ', seq), seq % 17, seq / 4, IF(seq % 50 = 0, REPEAT(MD5(seq), 400), "
    "NULL) FROM seq_1_to_3000",
    "INSERT INTO bag SELECT seq % 10, CONCAT('v', seq % 3) FROM seq_1_to_200",
]


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def target_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param])
    )


@pytest.fixture
def source_url(mysql_source_url: str) -> str:
    return mysql_source_url


def cdc_doc(source_url: str, target_url: str, migration_type: str, *tables: str, **extra: Any) -> dict[str, Any]:
    """A change-processing task; with ``tables``, only those are selected."""
    return selecting(
        {**task_doc(source_url, target_url, name="cdc"), "migration_type": migration_type, **extra}, tables
    )


def selecting(doc: dict[str, Any], tables: tuple[str, ...]) -> dict[str, Any]:
    """The task with only ``tables`` selected (all when none are named)."""
    if tables:
        rules = [
            {
                "rule-type": "selection",
                "rule-id": str(i),
                "rule-name": table,
                "object-locator": {"schema-name": "%", "table-name": table},
                "rule-action": "include",
            }
            for i, table in enumerate(tables, 1)
        ]
        doc = {**doc, "table_mappings": {"rules": rules}}
    return doc


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def binlog_end(url: str) -> tuple[str, int]:
    file, pos = query(url, "SHOW MASTER STATUS")[0][:2]
    return str(file), int(pos)


def streaming(task: Running) -> None:
    wait_until(task, lambda: task.runner.cdc.started is not None)


@contextlib.contextmanager
def server_time_zone(server: MariaDBServer, zone: str) -> Iterator[None]:
    """The server's global time zone for the block (the server is this xdist worker's own)."""
    admin = server._admin()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.time_zone")
            (old,) = cur.fetchone()
            cur.execute("SET GLOBAL time_zone = %s", (zone,))
        yield
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = %s", (old,))
        admin.close()


# --------------------------------------------------------------------------- under a workload
def test_full_load_and_cdc_follows_the_source_exactly(source_url: str, target_url: str, tmp_path: Path) -> None:
    workload = Workload(source_url, seed=1)
    workload.create()
    workload.run(60)
    doc = cdc_doc(source_url, target_url, "full-load-and-cdc")
    workload.start_background(rate=40)  # writes before, during and after the snapshot
    task = Running(doc, tmp_path / "state")
    streaming(task)
    # and surely some (with rollbacks among them) while streaming
    wait_until(task, lambda: task.runner.cdc.applied_transactions >= 10 and workload.progress().rolled_back > 0)
    workload.stop()
    wait_equal(task, source_url, target_url, tables=WORKLOAD_TABLES)
    result = task.finish()
    assert result.cdc is not None and result.cdc.applied_changes > 0
    stats = {t.table: t for t in result.tables}
    assert stats["cdc_items"].full_load_rows > 0 and stats["cdc_items"].applied_updates > 0
    assert all(t.apply_error_rows == 0 for t in result.tables), result.tables

    # a second run continues from the target's position: every later change arrives, none twice
    later = workload.run(40)
    assert later.kinds["update_key"] and later.kinds["update_big"] and later.kinds["bag_delete"]
    task = Running(doc, tmp_path / "state")
    wait_equal(task, source_url, target_url, tables=WORKLOAD_TABLES)
    wait_until(task, lambda: task.runner.cdc.applied_changes >= later.changes)
    again = task.finish()
    assert again.cdc is not None and again.cdc.applied_changes == later.changes
    assert all(t.full_load_rows == 0 and t.apply_error_rows == 0 for t in again.tables)
    applied = [sum(getattr(t, f"applied_{op}") for t in again.tables) for op in ("inserts", "updates", "deletes")]
    assert applied == [later.inserts, later.updates, later.deletes]


# --------------------------------------------------------------------------- a user's start position
@pytest.mark.parametrize("form", ["file:pos", "checkpoint"])
def test_cdc_from_a_given_binlog_position(source_url: str, target_url: str, tmp_path: Path, form: str) -> None:
    """``cdc_start_position`` as SHOW MASTER STATUS printed it before some writes (or as the checkpoint
    Conveyor prints): exactly the writes after it arrive (across a binlog rotation), none of those before,
    into tables created empty. A binlog file the server does not have is refused, naming those it has."""
    execute_sql(source_url, [*SOURCE_SQL[:2], "INSERT INTO items VALUES (-9, 'before', 1, 1.5, NULL)"])
    file, pos = binlog_end(source_url)
    execute_sql(
        source_url,
        [
            "INSERT INTO items VALUES (-1, 'after start', 1, 2.5, NULL), (-2, 'gone', 1, 2.5, NULL)",
            "UPDATE items SET qty = 99 WHERE id = -1",
            "DELETE FROM items WHERE id = -2",
            "INSERT INTO bag VALUES (1, 'x'), (1, 'x')",
        ],
    )
    execute_sql(source_url, ["FLUSH BINARY LOGS", "INSERT INTO items VALUES (-3, 'next file', NULL, NULL, 'b')"])
    execute_sql(source_url, ["DELETE FROM bag LIMIT 1"])
    doc = cdc_doc(source_url, target_url, "cdc", cdc_start_position="mysql-bin.999999:4")
    with pytest.raises(UserActionError, match="names a binary log the server does not have"):
        Running(doc, tmp_path / "refused").finish()
    start = f"{file}:{pos}" if form == "file:pos" else f"file={file},pos={pos}"
    doc = cdc_doc(source_url, target_url, "cdc", cdc_start_position=start)
    task = Running(doc, tmp_path / "state")
    streaming(task)
    wait_until(task, lambda: task.runner.cdc.applied_changes == 8)
    expected = [(-3, "next file", None), (-1, "after start", 99)]
    rows = sorted(tuple(r) for r in fetch(target_url, "items", ["id", "name", "qty"], schema=schema_of(target_url)))
    assert rows == expected
    assert [tuple(r) for r in fetch(target_url, "bag", schema=schema_of(target_url))] == [(1, "x")]
    time.sleep(0.5)  # nothing more comes
    result = task.finish()
    assert result.cdc is not None and result.cdc.applied_changes == 8
    stats = {t.table: t for t in result.tables}
    items, bag = stats["items"], stats["bag"]
    assert (items.applied_inserts, items.applied_updates, items.applied_deletes) == (3, 1, 1)
    assert (bag.applied_inserts, bag.applied_updates, bag.applied_deletes) == (2, 0, 1)


def test_cdc_from_a_start_time(source_url: str, pg_url: str, tmp_path: Path) -> None:
    """``cdc_start_time``: the first transaction written at or after it, found across binlog files."""
    execute_sql(source_url, [*SOURCE_SQL[:2], "INSERT INTO items VALUES (-9, 'before', 1, 1.5, NULL)"])
    execute_sql(source_url, ["FLUSH BINARY LOGS", "INSERT INTO items VALUES (-8, 'before too', 1, 1.5, NULL)"])
    time.sleep(1.1)  # the binlog's clock has seconds
    (now,) = query(source_url, "SELECT UTC_TIMESTAMP()")[0]
    time.sleep(1.1)
    execute_sql(source_url, ["INSERT INTO items VALUES (-1, 'after', 1, 2.5, NULL)"])
    execute_sql(source_url, ["FLUSH BINARY LOGS", "UPDATE items SET qty = 7 WHERE id = -1"])
    doc = cdc_doc(source_url, pg_url, "cdc", cdc_start_time=now.isoformat())
    task = Running(doc, tmp_path / "state")
    streaming(task)
    wait_until(task, lambda: task.runner.cdc.applied_changes == 2)
    time.sleep(0.3)  # nothing more comes
    task.finish()
    assert [tuple(r) for r in fetch(pg_url, "items", ["id", "qty"], schema="public")] == [(-1, 7)]


# --------------------------------------------------------------------------- every type
@pytest.fixture
def twin_url(target_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Another empty database of the target's engine."""
    if target_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'twin.sqlite'}"
        return
    server: PostgresServer | MariaDBServer = request.getfixturevalue(
        "pg_server" if target_url.startswith("postgres") else "mysql_server"
    )
    name = unique_db_name("twin_" + request.node.name)
    url = server.create_database(name)
    yield url
    server.drop_database(name)


def test_every_type_streams_as_the_full_load_converts_it(
    source_url: str, target_url: str, twin_url: str, mysql_server: MariaDBServer, tmp_path: Path
) -> None:
    """The all-types rows reach the target partly by the full load and partly by inserts and updates
    during CDC, written from a session at +05:30 on a server at +03:00; a full load of the final
    source into another target gives the very same rows (the rows the target cannot hold are
    rejected on both paths)."""
    MYSQL.create(source_url)
    execute_sql(
        source_url,
        [
            "CREATE TABLE staged LIKE all_types",
            "INSERT INTO staged SELECT * FROM all_types WHERE id >= 3",
            "DELETE FROM all_types WHERE id >= 3",
        ],
    )
    engine = "postgresql" if target_url.startswith("postgres") else target_url.split(":", 1)[0]
    rejects = MYSQL.rejects[engine]
    with server_time_zone(mysql_server, "+03:00"):
        task = Running(cdc_doc(source_url, target_url, "full-load-and-cdc", "all_types"), tmp_path / "state")
        streaming(task)
        conn = mysql_connect(source_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', time_zone = '+05:30'")
                for sql in (
                    "INSERT INTO all_types SELECT * FROM staged",
                    "UPDATE all_types SET ts = '2024-06-01 12:00:00.5', dt = '2024-06-01 12:00:00.5', y = 1999, "
                    "vc = 'now set', e = 'blue', st = 'a,b', b64 = 7, tm = '01:02:03.5', js = '{\"k\": [1]}' "
                    "WHERE id = 1",
                    "UPDATE all_types SET ts = '1999-12-31 23:59:59.999999', vc = CONCAT(vc, ' ✓'), dec65 = -dec65, "
                    "f = 0.25, dbl = dbl / 2, b64 = b64 >> 1, lb = CONCAT(lb, 'tail') WHERE id = 3",
                    "UPDATE all_types SET id = 12, ti = NULL, ch = 'moved' WHERE id = 2",
                    "UPDATE all_types SET ts = NULL, bn = 'abcd', bool1 = 0 WHERE id = 5",
                ):
                    cur.execute(sql)
        finally:
            conn.close()
        # a full load of the source as it is now into the twin: what the CDC target must equal
        full = run_task(selecting(task_doc(source_url, twin_url, name="twin"), ("all_types",)), tmp_path / "twin")
        assert [t.full_load_error_rows for t in full.tables if t.table == "all_types"] == [len(rejects)]
        wait_equal(task, twin_url, target_url, tables=[("all_types", (0,))])
        result = task.finish()
    (stats,) = result.tables
    assert stats.apply_error_rows == len(rejects)  # the same rows rejected on the CDC path
    assert stats.applied_updates == 4
    moments = dict(fetch(target_url, "all_types", ["id", "ts"], schema=schema_of(target_url)))
    assert canonical(moments[1]) == canonical(datetime(2024, 6, 1, 6, 30, 0, 500000))  # 12:00:00.5 at +05:30
    assert canonical(moments[3]) == canonical(datetime(1999, 12, 31, 18, 29, 59, 999999))
    assert canonical(moments[12]) == canonical(datetime(1970, 1, 1, 0, 0, 1))
    assert diff_tables(twin_url, target_url, [("all_types", (0,))]) == ""
    # recorded under the target's table, as the full load records its rejects
    owners = [
        set(fetch(url, "conveyor_apply_exceptions", ["table_owner", "table_name"], schema=schema_of(url)))
        for url in (twin_url, target_url)
    ]
    assert owners[0] == owners[1] and {name for _, name in owners[1]} == ({"all_types"} if rejects else set())


def test_a_cdc_task_stopped_before_its_first_change_resumes_where_it_started(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """The binlog keeps no place for a task: the start position is stored on the target at once, so the
    changes made while a run that applied nothing was stopped are not skipped by the next run."""
    execute_sql(source_url, ["CREATE TABLE a (id int PRIMARY KEY, v int)"])
    doc = cdc_doc(source_url, sqlite_url, "cdc", "a")
    first = Running(doc, tmp_path / "state")
    streaming(first)
    first.finish()
    execute_sql(source_url, [f"INSERT INTO a VALUES ({i}, {i})" for i in range(1, 51)])  # while stopped
    again = Running(doc, tmp_path / "state")
    streaming(again)
    execute_sql(source_url, ["INSERT INTO a VALUES (1000, 1)"])
    wait_equal(again, source_url, sqlite_url, tables=[("a", (0,))])
    again.finish()


def test_a_second_run_of_the_task_goes_on_from_what_the_first_committed_last(
    source_url: str, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same task started again while it runs (a binlog admits any number of readers): the new run takes
    the lease, which stops the first at its next commit, and goes on from the position the first stored
    last, even where that moved after the new run first read it; nothing is applied twice (bag has no key)."""
    execute_sql(source_url, SOURCE_SQL)
    doc = cdc_doc(source_url, sqlite_url, "full-load-and-cdc")
    first = Running(doc, tmp_path / "state")
    streaming(first)
    open_capture = ChangeProcessing._open_capture

    def meanwhile(self: ChangeProcessing) -> None:  # the second run has read the position; the first goes on
        execute_sql(
            source_url, ["INSERT INTO bag VALUES (-1, 'once')", "INSERT INTO items (id, name) VALUES (-1, 'x')"]
        )
        wait_until(first, lambda: (-1,) in {tuple(r) for r in fetch(sqlite_url, "items", ["id"])})
        open_capture(self)

    monkeypatch.setattr(ChangeProcessing, "_open_capture", meanwhile)
    second = Running(doc, tmp_path / "state")
    streaming(second)
    execute_sql(source_url, ["INSERT INTO bag VALUES (-2, 'after')"])
    wait_equal(second, source_url, sqlite_url)
    result = second.finish()
    assert not any(t.apply_error_rows for t in result.tables)
    first.thread.join(60)  # stopped: fenced at its next commit, or told by the server that a newer reader came
    assert isinstance(first.error, StaleLease) or "another run of task 'cdc'" in str(first.error), first.error


def test_a_table_left_out_of_a_run_and_selected_again_is_named_not_followed(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """A run that did not select a table skipped its changes: selected again, it is left out with a warning
    (reload it), never streamed on as if nothing were missing."""
    execute_sql(
        source_url, ["CREATE TABLE a (id int PRIMARY KEY, v int)", "CREATE TABLE b (id int PRIMARY KEY, v int)"]
    )
    execute_sql(source_url, ["INSERT INTO a VALUES (1, 1)", "INSERT INTO b VALUES (1, 1)"])
    both, only_a = (
        cdc_doc(source_url, sqlite_url, "full-load-and-cdc", "a", "b"),
        cdc_doc(source_url, sqlite_url, "cdc", "a"),
    )
    for doc, statements in ((both, []), (only_a, ["UPDATE b SET v = 2", "UPDATE a SET v = 2"])):
        run = Running(doc, tmp_path / "state")
        streaming(run)
        execute_sql(source_url, statements)
        wait_equal(run, source_url, sqlite_url, tables=[("a", (0,))])
        run.finish()
    again = Running({**both, "migration_type": "cdc"}, tmp_path / "state")
    streaming(again)
    result = again.finish()
    assert any("b matches the table mappings but is not one of the tables" in w for w in result.warnings), result
    assert "b" not in {t.table for t in result.tables}


def test_a_rename_rule_added_between_runs_suspends_the_table_with_the_reason(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """The target table was loaded under the old mappings: a column the new ones name is not on it. That
    table is suspended (reload it), named, instead of every change failing with the driver's error."""
    execute_sql(source_url, SOURCE_SQL)
    doc = cdc_doc(source_url, sqlite_url, "full-load-and-cdc")
    first = Running(doc, tmp_path / "state")
    streaming(first)
    first.finish()
    rename = {
        "rule-type": "transformation", "rule-id": "9", "rule-name": "title", "rule-target": "column",
        "rule-action": "rename", "value": "title",
        "object-locator": {"schema-name": "%", "table-name": "items", "column-name": "name"},
    }  # fmt: skip
    selection = {
        "rule-type": "selection", "rule-id": "1", "rule-name": "all", "rule-action": "include",
        "object-locator": {"schema-name": "%", "table-name": "%"},
    }  # fmt: skip
    again = Running({**doc, "table_mappings": {"rules": [selection, rename]}}, tmp_path / "state")
    streaming(again)
    execute_sql(source_url, ["INSERT INTO items (id, name) VALUES (-1, 'x')", "INSERT INTO bag VALUES (-1, 'y')"])
    wait_equal(again, source_url, sqlite_url, tables=[("bag", ())])
    result = again.finish()
    assert [t.name for t in again.runner.suspended] == ["items"]
    assert any("has no column title, which the task plans" in w for w in result.warnings), result.warnings
    assert not any(t.apply_error_rows for t in result.tables)


def test_ddl_the_binlog_holds_no_rows_or_keys_for_suspends_its_table(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Partition TRUNCATE / DROP / EXCHANGE remove or bring rows no row event lists; a new primary key makes
    the target's key the wrong one; a dropped table (keyless here) cannot be followed column by column; an
    enum's new values would be refused by the target's CHECK. Each suspends its table, saying why, and the
    others go on exactly."""
    execute_sql(
        source_url,
        [
            "CREATE TABLE parts (id int PRIMARY KEY, v int) PARTITION BY RANGE (id) "
            "(PARTITION p0 VALUES LESS THAN (100), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            "CREATE TABLE swap (id int PRIMARY KEY, v int)",
            "CREATE TABLE rekeyed (id int PRIMARY KEY, code varchar(5) NOT NULL, v int)",
            "CREATE TABLE keyless (a int, b int)",
            "CREATE TABLE en (id int PRIMARY KEY, e enum('a', 'b'))",
            "CREATE TABLE steady (id int PRIMARY KEY, v int)",
            "INSERT INTO parts SELECT seq, seq FROM seq_1_to_150",
            "INSERT INTO swap VALUES (500, 5)",
            "INSERT INTO rekeyed VALUES (1, 'A', 1), (2, 'B', 2)",
            "INSERT INTO keyless VALUES (1, 1), (2, 2)",
        ],
    )
    doc = cdc_doc(source_url, sqlite_url, "full-load-and-cdc")
    task = Running(doc, tmp_path / "state")
    streaming(task)
    execute_sql(
        source_url,
        [
            "ALTER TABLE parts TRUNCATE PARTITION p0",
            "ALTER TABLE rekeyed DROP PRIMARY KEY, ADD PRIMARY KEY (code)",
            "INSERT INTO rekeyed VALUES (2, 'E', 5)",
            "DELETE FROM rekeyed WHERE code = 'B'",
            "DROP TABLE keyless",
            "CREATE TABLE keyless (a int, b int)",
            "ALTER TABLE en MODIFY e enum('a', 'b', 'c')",  # SQLite keeps the values in a CHECK
            "INSERT INTO en VALUES (1, 'c')",
            "INSERT INTO steady VALUES (1, 1)",
        ],
    )
    wait_equal(task, source_url, sqlite_url, tables=[("steady", (0,))])
    wait_until(task, lambda: len(task.runner.suspended) == 4)
    # autocommit: MariaDB's partition check waits on the statement's own transaction otherwise
    query(source_url, "ALTER TABLE parts EXCHANGE PARTITION p1 WITH TABLE swap")
    execute_sql(source_url, ["INSERT INTO steady VALUES (2, 2)"])
    wait_equal(task, source_url, sqlite_url, tables=[("steady", (0,))])
    result = task.finish()
    reasons = {t.name: why for t, why in task.runner.suspended.items()}
    assert set(reasons) == {"parts", "rekeyed", "keyless", "swap", "en"}, reasons
    assert "enum column e gained values" in reasons["en"]
    assert reasons["swap"].startswith("EXCHANGE PARTITION changed rows the binlog does not list")
    assert reasons["parts"].startswith("TRUNCATE PARTITION changed rows the binlog does not list")
    assert reasons["rekeyed"].startswith("the primary key changed from (id) to (code)")
    assert reasons["keyless"].startswith("dropped the table on the source")
    assert not any(t.apply_error_rows for t in result.tables)


def test_foreign_key_actions_the_binlog_leaves_out_are_named(source_url: str, sqlite_url: str, tmp_path: Path) -> None:
    """The binlog holds the parent's DELETE but not the rows its ON DELETE CASCADE removed: the task says at
    its start which tables can keep such rows, rather than leaving the difference unsaid."""
    execute_sql(
        source_url,
        [
            "CREATE TABLE parent (id int PRIMARY KEY)",
            "CREATE TABLE child (id int PRIMARY KEY, p int, FOREIGN KEY fk_parent (p) REFERENCES parent (id) "
            "ON DELETE CASCADE)",
            "CREATE TABLE plain (id int PRIMARY KEY, p int, FOREIGN KEY (p) REFERENCES parent (id))",
        ],
    )
    task = Running(cdc_doc(source_url, sqlite_url, "full-load-and-cdc", "parent", "child", "plain"), tmp_path / "state")
    streaming(task)
    result = task.finish()
    named = [w for w in result.warnings if "leaves out the rows such actions change" in w]
    assert len(named) == 1 and "child: foreign key fk_parent has ON DELETE CASCADE" in named[0], result.warnings


# --------------------------------------------------------------------------- schema changes
#: (the items row whose arrival shows the stream is past them, statements)
SCHEMA_CHANGES: list[tuple[int, list[str]]] = [
    (
        -1,
        [
            "UPDATE items SET qty = 1 WHERE id = 1",
            "ALTER TABLE items ADD COLUMN email varchar(50)",
            "INSERT INTO items (id, name, qty, email) VALUES (-1, 'with email', 3, 'a@b.c')",
        ],
    ),
    (
        -5,
        [
            "ALTER TABLE items RENAME COLUMN qty TO quantity",
            "UPDATE items SET quantity = 42, email = 'x@y.z' WHERE id = 2",
            "INSERT INTO items (id, name, quantity) VALUES (-5, 'renamed', 5)",
        ],
    ),
    (
        -2,
        [
            "ALTER TABLE items MODIFY name varchar(300) NOT NULL",
            f"INSERT INTO items (id, name) VALUES (-2, '{'n' * 250}')",
        ],
    ),
    (
        -3,
        [
            "ALTER TABLE items DROP COLUMN price",
            "DELETE FROM items WHERE id = 3",
            "INSERT INTO items (id, name, quantity) VALUES (-3, 'after drop', 7)",
        ],
    ),
    (
        -6,
        [  # the last column dropped, one of its type added in its place: no rename, its values go
            "ALTER TABLE items DROP COLUMN email, ADD COLUMN tally varchar(50)",
            "INSERT INTO items (id, name, tally) VALUES (-6, 'tally', 'six')",
            "UPDATE items SET tally = 'sixty' WHERE id = 6",
        ],
    ),
    (
        -4,
        [  # not a change Conveyor follows (a narrower type): bag is suspended, items goes on
            "ALTER TABLE bag MODIFY b varchar(5)",
            "INSERT INTO bag VALUES (1, '1')",
            "INSERT INTO items (id, name) VALUES (-4, 'still streaming')",
        ],
    ),
]


def change_schemas(source_url: str, target_url: str, tmp_path: Path, wait_between: bool) -> None:
    """SCHEMA_CHANGES during CDC, each once the stream has passed the one before, or all at once: the
    five changes of items reach the target, bag is suspended alone."""
    execute_sql(source_url, SOURCE_SQL)
    task = Running(cdc_doc(source_url, target_url, "full-load-and-cdc"), tmp_path / "state")
    streaming(task)
    schema = schema_of(target_url)

    def arrived(key: int) -> bool:
        return (key,) in {tuple(r) for r in fetch(target_url, "items", ["id"], schema=schema)}

    if wait_between:
        for marker, statements in SCHEMA_CHANGES:
            execute_sql(source_url, statements)
            wait_until(task, lambda marker=marker: arrived(marker))  # type: ignore[misc]
    else:
        execute_sql(source_url, [sql for _, statements in SCHEMA_CHANGES for sql in statements])
    wait_until(task, lambda: "bag" in str(task.runner.suspended))
    wait_until(task, lambda: arrived(SCHEMA_CHANGES[-1][0]))
    result = task.finish()
    assert not diff_tables(source_url, target_url, [("items", (0,))])
    stats = {t.table: t for t in result.tables}
    assert stats["items"].ddls == 5 and stats["items"].applied_ddls == 5
    assert stats["bag"].state == "Table error" and "suspended" in (stats["bag"].error or "")
    assert len(fetch(target_url, "bag", schema=schema)) == 200  # nothing after the suspension


def test_schema_changes_reach_the_target_and_other_ddl_suspends_one_table(
    source_url: str, target_url: str, tmp_path: Path
) -> None:
    change_schemas(source_url, target_url, tmp_path, wait_between=True)


def test_schema_changes_faster_than_the_stream_reach_the_target(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """The same statements back to back, as a migration script runs them: the stream reads each DDL
    statement after the later ones have changed the catalog, and must still decode the rows written
    between them by the definition they were written under."""
    change_schemas(source_url, sqlite_url, tmp_path, wait_between=False)


def test_a_table_created_after_the_task_started_is_named_and_left_out(
    source_url: str, pg_url: str, mysql_url: str, tmp_path: Path
) -> None:
    """Every table selected: one created while the task streams is named in a warning then, and left out
    (with a warning) when the task runs again, instead of failing it; the others go on. A table created in
    another database of the server (``mysql_url``'s) is none of the task's."""
    execute_sql(source_url, SOURCE_SQL)
    doc = cdc_doc(source_url, pg_url, "full-load-and-cdc")
    task = Running(doc, tmp_path / "state")
    streaming(task)
    execute_sql(source_url, ["CREATE TABLE newt (id int PRIMARY KEY)", "INSERT INTO newt VALUES (1)"])
    execute_sql(mysql_url, ["CREATE TABLE elsewhere (id int PRIMARY KEY)"])
    execute_sql(source_url, ["INSERT INTO items (id, name) VALUES (-1, 'after the create')"])
    wait_until(task, lambda: (-1,) in {tuple(r) for r in fetch(pg_url, "items", ["id"], schema="public")})
    first = task.finish()
    assert any("newt matches the table mappings but is not one of the tables this task" in w for w in first.warnings)
    assert not any("elsewhere" in w for w in first.warnings), first.warnings
    execute_sql(source_url, ["INSERT INTO newt VALUES (2)", "INSERT INTO items (id, name) VALUES (-2, 'again')"])
    again = Running(doc, tmp_path / "state")
    wait_until(again, lambda: (-2,) in {tuple(r) for r in fetch(pg_url, "items", ["id"], schema="public")})
    result = again.finish()
    assert any("newt matches the table mappings but is not one of the tables" in w for w in result.warnings), (
        result.warnings
    )
    assert "newt" not in {t.table for t in result.tables}
    assert not diff_tables(source_url, pg_url, [("items", (0,))])


# --------------------------------------------------------------------------- gaps
def kill_binlog_readers(url: str) -> None:
    """The server keeps the files a dump thread reads; a closed stream's thread ends at its next heartbeat."""
    for (thread,) in query(url, "SELECT id FROM information_schema.PROCESSLIST WHERE command = 'Binlog Dump'"):
        with contextlib.suppress(pymysql.err.MySQLError):
            query(url, f"KILL {int(thread)}")


def test_a_binlog_written_anew_while_stopped_stops_the_task_with_needs_resync(
    source_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """RESET MASTER while the task is stopped: its file name and offset exist again, holding other
    transactions. The GTID state there is not the stored one (here the offset is not even an event's start,
    which used to fail with a confusing server error; where it is one, the stream resumed silently):
    NEEDS_RESYNC."""
    execute_sql(source_url, ["CREATE TABLE a (id int PRIMARY KEY, v int)"])
    doc = cdc_doc(source_url, sqlite_url, "cdc", "a")
    task = Running(doc, tmp_path / "state")
    streaming(task)
    for i in range(1, 6):
        execute_sql(source_url, [f"INSERT INTO a VALUES ({i}, {i})"])
    wait_equal(task, source_url, sqlite_url, tables=[("a", (0,))])
    task.finish()
    kill_binlog_readers(source_url)
    execute_sql(source_url, ["RESET MASTER"])
    execute_sql(source_url, [f"INSERT INTO a VALUES ({i}, {i})" for i in range(101, 400)])  # one transaction
    again = Running(doc, tmp_path / "state")
    again.thread.join(30)
    with pytest.raises(NeedsResync):
        again.finish()


def test_a_purged_binlog_stops_the_task_with_needs_resync(source_url: str, pg_url: str, tmp_path: Path) -> None:
    execute_sql(source_url, SOURCE_SQL)
    doc = cdc_doc(source_url, pg_url, "full-load-and-cdc")
    task = Running(doc, tmp_path / "state")
    streaming(task)
    task.finish()
    stored = str(query(source_url, "SHOW MASTER STATUS")[0][0])  # where the stored position is (nothing since)
    execute_sql(source_url, ["INSERT INTO items VALUES (-1, 'lost', 1, 1, NULL)", "FLUSH BINARY LOGS"])
    execute_sql(source_url, ["INSERT INTO items VALUES (-2, 'lost too', 1, 1, NULL)"])
    newest = binlog_end(source_url)[0]
    kill_binlog_readers(source_url)
    deadline = time.monotonic() + 10
    while str(query(source_url, "SHOW BINARY LOGS")[0][0]) != newest:
        assert time.monotonic() < deadline, "PURGE BINARY LOGS kept the older files"
        execute_sql(source_url, [f"PURGE BINARY LOGS TO '{newest}'"])
        time.sleep(0.2)
    started = time.monotonic()
    task_file = str(write_task(doc, tmp_path / "task.yaml"))
    proc = cli("run", task_file, "--no-progress", "--state-dir", str(tmp_path / "state"), timeout=30)
    assert time.monotonic() - started < 30
    assert proc.returncode == 1, proc.stderr
    assert "NEEDS_RESYNC" in proc.stderr and stored in proc.stderr, proc.stderr
