"""Binlog reading speed: Conveyor's MySQL capture side by side with python-mysql-replication.

    .venv/bin/python bench/binlog_decode.py [--changes 200000] [--workload bulk|single] [--url mysql://...]

Writes ``--changes`` row changes on a throwaway MariaDB (tests/servers.py) or on ``--url``, then reads
them back from the binlog and reports changes/s: Conveyor's ``MySQLCapture.stream`` (whole transactions
of ``Change``s, values as the snapshot reads them) and, when it is installed, python-mysql-replication's
``BinLogStreamReader`` (rows as dicts). Both read over the network from the same server.

* ``bulk``: an ``orders`` table (bigint key, int, decimal(12,2), varchar, datetime, ~100-byte text,
  boolean, ~60-byte JSON); inserts in 1,000-row transactions, then updates of a quarter of the rows
  (few, big rows events).
* ``single``: bench/cdc.py's mysql2pg workload: its ``orders`` table with ``--changes`` rows, then its
  single-row inserts, updates and deletes in transactions of 100 (a TABLE_MAP and a rows event per change).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import MariaDBServer  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import cdc  # noqa: E402

from conveyor.endpoints.config import MySQLConfig, parse_endpoint  # noqa: E402
from conveyor.endpoints.mysql.capture import BinlogPosition, MySQLCapture  # noqa: E402
from conveyor.endpoints.mysql.engine import ENGINE  # noqa: E402
from conveyor.model.changes import Idle, Transaction  # noqa: E402

DATABASE = "bench_binlog"
TABLE = (
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount decimal(12,2), status varchar(20), "
    "created datetime, note text, paid boolean, details json)"
)
INSERT = (
    "INSERT INTO orders SELECT seq, seq % 1000, (seq % 100000) / 100.0, ELT(seq % 3 + 1, 'new', 'paid', 'shipped'), "
    "'2021-01-01' + INTERVAL seq SECOND, REPEAT(MD5(seq), 3), seq % 2 = 0, "
    "JSON_OBJECT('sku', CONCAT('SKU-', seq), 'qty', seq % 7) FROM seq_{lo}_to_{hi}"
)
UPDATE = "UPDATE orders SET amount = amount + 1, status = 'changed' WHERE id BETWEEN {lo} AND {hi}"


def _config(url: str, database: str) -> MySQLConfig:
    # without TLS, as python-mysql-replication reads here (and as bench/cdc.py runs)
    config = parse_endpoint(url.rstrip("/") + "/" + database + "?ssl-mode=DISABLED", "source")
    assert isinstance(config, MySQLConfig), "a mysql:// URL"
    return config


def generate(url: str, changes: int, workload: str) -> tuple[MySQLCapture, BinlogPosition]:
    """Writes the changes; returns the capture and the position before them."""
    import pymysql

    config = _config(url, "mysql")
    admin = pymysql.connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password.get_secret_value() if config.password else "",
        autocommit=True,
    )
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cur.execute(f"CREATE DATABASE {DATABASE}")
        cur.execute(f"USE {DATABASE}")
        if workload == "single":  # bench/cdc.py's table, rows and generator
            for stmt in cdc.MYSQL_ORDERS:
                cur.execute(stmt.format(orders=changes, customers=max(1, changes // 10)))
            cur.execute(cdc.MYSQL_GENERATOR)
        else:
            cur.execute(TABLE)
    config = _config(url, DATABASE)
    introspector = ENGINE.open_introspector(config)
    tables = [introspector.table(t) for t in introspector.table_ids(DATABASE)]
    capture = MySQLCapture(config, "bench", tables, idle_seconds=0.5)
    start = capture.begin()
    inserts = changes * 4 // 5
    with admin.cursor() as cur:
        if workload == "single":
            cur.execute("CALL bench_changes(0, %s, 100, %s, -1)", (changes, changes))
            admin.close()
            return capture, start
        for lo in range(1, inserts + 1, 1000):
            cur.execute("BEGIN")
            cur.execute(INSERT.format(lo=lo, hi=min(lo + 999, inserts)))
            cur.execute("COMMIT")
        for lo in range(1, changes - inserts + 1, 1000):
            cur.execute(UPDATE.format(lo=lo, hi=min(lo + 999, changes - inserts)))
    admin.close()
    return capture, start


def conveyor_rate(capture: MySQLCapture, start: BinlogPosition) -> tuple[int, float]:
    count = 0
    began = time.perf_counter()
    finished = began
    for event in capture.stream(start):
        if isinstance(event, Transaction):
            count += len(event.changes)
            finished = time.perf_counter()
        elif isinstance(event, Idle) and count:
            break
    return count, finished - began


def replication_rate(url: str, start: BinlogPosition, expected: int) -> tuple[int, float] | None:
    try:
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
    except ImportError:
        return None
    config = _config(url, "mysql")
    stream = BinLogStreamReader(
        connection_settings={
            "host": config.host,
            "port": config.port,
            "user": config.user,
            "passwd": config.password.get_secret_value() if config.password else "",
        },
        server_id=0x5FFFFFF0,
        log_file=start.file,
        log_pos=start.pos,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        is_mariadb=True,
        only_schemas=[DATABASE],
    )
    count = 0
    began = time.perf_counter()
    for event in stream:
        count += len(event.rows)
        if count >= expected:
            break
    elapsed = time.perf_counter() - began
    stream.close()
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--workload", choices=("bulk", "single"), default="bulk")
    parser.add_argument(
        "--url", help="an existing server, without a database (user with REPLICATION SLAVE); default: a throwaway one"
    )
    args = parser.parse_args()
    server = None if args.url else MariaDBServer.launch()
    url = args.url or (server.url() if server else "")
    try:
        capture, start = generate(url, args.changes, args.workload)
        count, seconds = conveyor_rate(capture, start)
        print(f"conveyor MySQLCapture.stream: {count:,} changes in {seconds:.2f} s = {count / seconds:,.0f} changes/s")
        other = replication_rate(url, start, count)
        if other is None:
            print("python-mysql-replication is not installed (pip install mysql-replication) to compare with")
        else:
            n, s = other
            print(f"python-mysql-replication:     {n:,} rows in {s:.2f} s = {n / s:,.0f} rows/s")
        capture.close()
    finally:
        if server is not None:
            server.destroy()


if __name__ == "__main__":
    main()
