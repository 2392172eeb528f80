"""MySQL / MariaDB change data capture across stops and hangs, with the task run as a subprocess
(``conveyor run``): a restart after schema changes the stream had not reached decodes every row by the
definition it was written under (the definitions travel with the position stored in the target), and a
source that stops answering catalog queries is noticed by their timeouts and retried."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cdc_support import wait_equal
from proxy import FaultProxy
from schemas import execute_sql
from servers import MariaDBServer
from tasks import task_doc, write_task
from test_cdc_faults import NOTICE_WITHIN, no_task_outlives_its_test, streaming  # noqa: F401  (kills leftover runs)

from conveyor.endpoints.config import MySQLConfig, parse_endpoint
from conveyor.endpoints.mysql.capture import MySQLCapture
from conveyor.errors import TransientError

ITEMS = [("items", (0,))]


@pytest.mark.parametrize("stop", ["sigterm", "kill-9"])
def test_a_restart_after_schema_changes_made_while_stopped(
    mysql_source_url: str, pg_url: str, stop: str, tmp_path: Path
) -> None:
    """Rows, an ALTER of their table and more rows while the task is stopped: the restart applies the
    rows before the ALTER by the old definition and those after it by the new one, exactly."""
    source = mysql_source_url
    execute_sql(
        source,
        [
            "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(100) NOT NULL, qty int)",
            "INSERT INTO items SELECT seq, CONCAT('item ', seq), seq % 17 FROM seq_1_to_500",
        ],
    )
    doc = {**task_doc(source, pg_url, name="mysqlalter"), "migration_type": "full-load-and-cdc"}
    task_file = write_task(doc, tmp_path / "task.yaml")
    state = tmp_path / "state"
    run = streaming(task_file, state)
    execute_sql(source, ["INSERT INTO items VALUES (-1, 'streamed', 1)", "UPDATE items SET qty = 0 WHERE id = 1"])
    wait_equal(run, source, pg_url, tables=ITEMS)
    if stop == "sigterm":
        assert run.stop() == 0, run.output()
    else:
        execute_sql(source, ["UPDATE items SET qty = qty + 1 WHERE id <= 50"])  # in flight, maybe
        run.kill()
    execute_sql(
        source,
        [
            "INSERT INTO items VALUES (-2, 'before the alter', 2)",
            "UPDATE items SET qty = 99, name = 'updated before' WHERE id = 2",
            "DELETE FROM items WHERE id = 3",
            "ALTER TABLE items ADD COLUMN note varchar(20)",
            "INSERT INTO items VALUES (-3, 'after the alter', 3, 'noted')",
            "UPDATE items SET note = 'set after', qty = -3 WHERE id IN (2, 4)",
            "DELETE FROM items WHERE id = 5",
        ],
    )
    again = streaming(task_file, state)
    wait_equal(again, source, pg_url, tables=ITEMS)
    assert again.stop() == 0, again.output()
    assert "NEEDS_RESYNC" not in again.output() and "retrying" not in again.output(), again.output()


# --------------------------------------------------------------------------- hangs
def proxied_config(url: str, proxy: FaultProxy) -> MySQLConfig:
    config = parse_endpoint(proxy.url(url), "source")
    assert isinstance(config, MySQLConfig)
    return MySQLConfig.model_validate({**config.model_dump(), "connect_timeout": 2})


def test_a_hung_catalog_query_is_transient(mysql_source_url: str, mysql_server: MariaDBServer) -> None:
    """A server that takes a catalog query and never answers: a TransientError once the catalog timeout
    has passed (not a second wait on a new connection), and the next query works once the network does."""
    with FaultProxy(mysql_server.host, mysql_server.port) as proxy:
        capture = MySQLCapture(proxied_config(mysql_source_url, proxy), "hung", catalog_timeout=2.0)
        try:
            capture.binlog_end()
            proxy.blackhole(True)
            started = time.monotonic()
            with pytest.raises(TransientError, match="did not answer a catalog query within 2 s"):
                capture.clock()
            assert time.monotonic() - started < 4
            proxy.blackhole(False)
            capture.clock()
        finally:
            capture.close()


@pytest.mark.soak
def test_a_blackhole_mid_stream_is_noticed_and_retried(
    mysql_source_url: str, mysql_server: MariaDBServer, pg_url: str, tmp_path: Path
) -> None:
    """Everything between the task and its MariaDB source is dropped while it streams: the task notices
    by its own timeouts within 60 s (the statistics' lag query gives up after the catalog timeout, so the
    loop gets back to the binlog, whose silence timeout has passed), retries, and ends exact."""
    source = mysql_source_url
    execute_sql(source, ["CREATE TABLE items (id bigint PRIMARY KEY, name varchar(100) NOT NULL, qty int)"])
    with FaultProxy(mysql_server.host, mysql_server.port) as proxy:
        doc = {**task_doc(proxy.url(source), pg_url, name="mysqlhole"), "migration_type": "full-load-and-cdc"}
        run = streaming(write_task(doc, tmp_path / "task.yaml"), tmp_path / "state")
        execute_sql(source, ["INSERT INTO items VALUES (1, 'before', 1)"])
        wait_equal(run, source, pg_url, tables=ITEMS)
        proxy.blackhole(True)
        started = time.monotonic()
        try:
            execute_sql(source, ["INSERT INTO items VALUES (2, 'during', 2)"])
            while "retrying in" not in run.output() and time.monotonic() - started < NOTICE_WITHIN:
                run.check()
                time.sleep(0.2)
        finally:
            proxy.blackhole(False)
        assert "retrying in" in run.output(), run.output()
        execute_sql(source, ["INSERT INTO items VALUES (3, 'after', 3)"])
        wait_equal(run, source, pg_url, timeout=120, tables=ITEMS)
        assert run.stop() == 0, run.output()
