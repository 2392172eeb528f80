"""Change-data-capture benchmark: Conveyor side by side with PostgreSQL's logical replication, in one run.

    .venv/bin/python bench/cdc.py [--changes 200000] [--rows 1000000] [--runs 3] [--only pg2pg,latency,mysql2pg]

The table is bench/fullload.py's ``orders`` (bigint key, int, numeric(12,2), varchar, timestamp, ~100-byte
text, boolean, ~200-byte JSON), ``--rows`` rows. The workload is ``--changes`` single-row changes in
transactions of ``--txn`` (100): a third inserts, a third updates (amount, status, note) of rows spread
over the table, a third deletes; a server-side procedure writes them, so the generator is never the
bottleneck. Its last change inserts a marker row (key -1): the target has applied everything once the
marker is there (both tools apply whole transactions in commit order).

* ``pg2pg``: apply capacity, draining a backlog. Source and target are two throwaway PostgreSQL servers
  (tests/servers.py) on this machine; each run starts both from the same template databases (the target a
  pg_dump copy of the source); neither tool uses TLS (``TLS_MODE``). Native: CREATE PUBLICATION, CREATE
  SUBSCRIPTION ... WITH (copy_data = false, enabled = false) (its slot exists before the backlog), the
  changes, then ALTER SUBSCRIPTION ENABLE and the clock runs until the marker is on the target. Conveyor
  (``migration_type: cdc``, ``BatchApplyEnabled`` false and true): a first short run creates its slot and is
  stopped (SIGTERM), the changes are written, then ``conveyor run TASK --no-progress --json`` is timed from
  process start until the marker is on the target (startup included; ``stream changes/s`` leaves it out),
  and stopped with SIGTERM. Every run ends with the target compared with the source (row count and a hash of
  every row). A drain still running after ``--drain-timeout`` seconds is stopped and counted with the rate
  it reached (changes it applied / seconds); the table then shows how many runs finished.
* ``latency``: a steady writer at ``--latency-rate`` changes/s (transactions of ``--txn``) for
  ``--latency-seconds`` into ``ticks (id, sent_at = clock_timestamp() at the source, ...)``; the target's
  table has one more column, ``arrived_at DEFAULT clock_timestamp()``, stamped by the target as the row
  lands (same machine, same clock). The writer commits with synchronous_commit = on (the test servers
  default to off, which holds WAL back from both tools for up to 200 ms). p50 / p99 / max of
  arrived_at - sent_at, Conveyor (transactional apply) and native.
* ``mysql2pg``: MariaDB -> PostgreSQL drain, Conveyor only (``full-load-and-cdc``, stopped once streaming,
  then the backlog as above), without TLS to either server as in pg2pg (``MYSQL_TLS``). Skipped when MySQL
  capture is not available.

Medians of ``--runs`` runs; peak memory is PSS summed over Conveyor's whole process tree, sampled every
``PSS_SECONDS`` (bench/fullload.py's ``tree_pss_mb``). Results also go to bench/results/cdc.json. ``--profile``
attaches ``py-spy record`` to each Conveyor drain (collapsed stacks in bench/results/cdc-profile-*.txt;
the figures of a profiled run are slower). ``--conveyor CMD`` runs another build of Conveyor.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
#: both tools' connections to PostgreSQL: without TLS, alike (a native subscription left to libpq's default
#: connected without TLS here while Conveyor's default negotiated it, which cost Conveyor's side ~30% more
#: walsender CPU in libssl and libcrypto: measured with perf)
TLS_MODE = "disable"
#: the same choice for the MariaDB source of ``mysql2pg`` (its URL parameter)
MYSQL_TLS = {"ssl-mode": "DISABLED" if TLS_MODE == "disable" else "REQUIRED"}
sys.path.insert(0, str(ROOT / "bench"))

# bench/fullload.py's helpers (importing it also puts tests/ on the path). Imported by name so that mypy
# checks this file only: fullload.py has type findings of its own.
_fullload = importlib.import_module("fullload")
tree_pss_mb: Callable[[int], int] = _fullload.tree_pss_mb
tree_cpu_s: Callable[[int], float] = _fullload.tree_cpu_s
PG_SCHEMA: str = _fullload.PG_SCHEMA
MYSQL_SCHEMA: list[str] = _fullload.MYSQL_SCHEMA

from servers import MariaDBServer, PostgresServer  # noqa: E402

CONVEYOR = str(Path(sys.executable).parent / "conveyor")
PY_SPY = str(Path(sys.executable).parent / "py-spy")
RESULTS = ROOT / "bench" / "results"
MARKER = -1
NATIVE = "native logical replication"
TXN = "conveyor transactional"
BATCH = "conveyor batch apply"
#: seconds between two samples of Conveyor's memory: reading smaps_rollup over its process tree costs ~1.8 ms
#: of CPU here, which at 20 samples/s took ~4% of a core from the drain it measures (native's runs are not
#: sampled); a CDC process's memory follows its batches, which last longer than this
PSS_SECONDS = 0.25
#: Conveyor variants: DMS's TargetMetadata.BatchApplyEnabled
VARIANTS = {TXN: False, BATCH: True}
TARGETS = {"batch_vs_native": 1.0, "transactional_vs_native": 0.5, "p99_ms": 200.0, "mysql2pg": 30_000, "mem_mb": 300}

# bench/fullload.py's orders table and its rows (the other tables of that benchmark are left out)
PG_ORDERS = [
    s.strip() for s in PG_SCHEMA.split(";") if s.strip().startswith(("CREATE TABLE orders", "INSERT INTO orders"))
]
MYSQL_ORDERS = [s for s in MYSQL_SCHEMA if s.startswith(("CREATE TABLE orders", "INSERT INTO orders"))]

# Change number c (from ``first``): c % 3 == 0 inserts a new row, 1 updates a row whose key is 1 mod 3
# (scattered over the table), 2 deletes the next row whose key is not 1 mod 3 (each existing exactly once,
# so every statement changes exactly one row); the last change inserts the marker.
PG_GENERATOR = """
CREATE PROCEDURE bench_changes(first int, n int, per_txn int, nrows bigint, marker bigint) LANGUAGE plpgsql AS $$
DECLARE j bigint;
BEGIN
  FOR c IN first .. first + n - 1 LOOP
    j := c / 3;
    IF c = first + n - 1 THEN
      INSERT INTO orders VALUES (marker, 0, 0, 'marker', now()::timestamp, 'marker', false, NULL);
    ELSIF c % 3 = 0 THEN
      INSERT INTO orders VALUES (nrows + 1 + j, j % 1000 + 1, (j % 100000) / 100.0, 'new', now()::timestamp,
        repeat(md5(c::text), 3), j % 2 = 0, jsonb_build_object('sku', 'SKU-' || j, 'qty', j % 7));
    ELSIF c % 3 = 1 THEN
      UPDATE orders SET amount = amount + 1, status = 'updated', note = md5(c::text)
        WHERE id = 3 * ((j * 7919) % (nrows / 3)) + 1;
    ELSE
      DELETE FROM orders WHERE id = 3 * (j / 2) + 2 + j % 2;
    END IF;
    IF (c - first + 1) % per_txn = 0 THEN
      COMMIT;
    END IF;
  END LOOP;
  COMMIT;
END $$
"""

MYSQL_GENERATOR = """
CREATE PROCEDURE bench_changes(IN first BIGINT, IN n BIGINT, IN per_txn INT, IN nrows BIGINT, IN marker BIGINT)
BEGIN
  DECLARE c BIGINT DEFAULT first;
  DECLARE j BIGINT;
  START TRANSACTION;
  WHILE c < first + n DO
    SET j = c DIV 3;
    IF c = first + n - 1 THEN
      INSERT INTO orders VALUES (marker, 0, 0, 'marker', NOW(), 'marker', 0, NULL);
    ELSEIF c % 3 = 0 THEN
      INSERT INTO orders VALUES (nrows + 1 + j, j % 1000 + 1, (j % 100000) / 100.0, 'new', NOW(),
        REPEAT(MD5(c), 3), j % 2 = 0, JSON_OBJECT('sku', CONCAT('SKU-', j), 'qty', j % 7));
    ELSEIF c % 3 = 1 THEN
      UPDATE orders SET amount = amount + 1, status = 'updated', note = MD5(c)
        WHERE id = 3 * ((j * 7919) % (nrows DIV 3)) + 1;
    ELSE
      DELETE FROM orders WHERE id = 3 * (j DIV 2) + 2 + j % 2;
    END IF;
    SET c = c + 1;
    IF (c - first) % per_txn = 0 THEN
      COMMIT;
      START TRANSACTION;
    END IF;
  END WHILE;
  COMMIT;
END
"""

#: every row, for PostgreSQL on both sides (same table definition: the target is a pg_dump copy)
PG_FINGERPRINT = "SELECT count(*), coalesce(sum(hashtext(o::text)::bigint), 0) FROM orders o"
#: a few sums that read alike on MariaDB and PostgreSQL
PORTABLE_FINGERPRINT = "SELECT count(*), sum(id), sum(amount), sum(char_length(note)) FROM orders"

TICKS_SOURCE = """
CREATE TABLE ticks (id bigint PRIMARY KEY, sent_at timestamptz NOT NULL, note text);
CREATE FUNCTION bench_tick(first bigint, n int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 0 .. n - 1 LOOP
    INSERT INTO ticks VALUES (first + i, clock_timestamp(), md5((first + i)::text));
  END LOOP;
END $$
"""
TICKS_TARGET = (
    "CREATE TABLE ticks (id bigint PRIMARY KEY, sent_at timestamptz NOT NULL, note text, "
    "arrived_at timestamptz NOT NULL DEFAULT clock_timestamp())"
)
LATENCY_SQL = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms),
       max(ms), count(*)
FROM (SELECT extract(epoch FROM arrived_at - sent_at) * 1000 AS ms FROM ticks WHERE id >= 1) s
"""


# --------------------------------------------------------------------------- helpers
def log(text: str) -> None:
    print(text, flush=True)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, alive: Callable[[], None] | None = None
) -> float:
    """Poll ``condition`` every 20 ms; return the perf_counter time it first held."""
    deadline = time.perf_counter() + timeout
    while True:
        if condition():
            return time.perf_counter()
        if alive is not None:
            alive()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def clone(pg: PostgresServer, name: str, template: str) -> str:
    """A fresh database ``name`` copied from ``template`` (a file copy: seconds, and the same start every run)."""
    pg.drop_database(name)
    with pg.connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return str(pg.url(name, sslmode=TLS_MODE))


def fingerprint(conn: Any, query: str) -> tuple[str, ...]:
    if isinstance(conn, psycopg.Connection):
        row = conn.execute(query).fetchone()
    else:  # PyMySQL
        with conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
    assert row is not None
    return tuple(str(Decimal(str(v)).normalize()) if v is not None else "NULL" for v in row)


def check_equal(source: tuple[str, ...], target: tuple[str, ...], what: str) -> None:
    if source != target:
        raise AssertionError(f"{what}: the target differs from the source: {source} vs {target}")


def marker_present(conn: psycopg.Connection[Any]) -> Callable[[], bool]:
    def present() -> bool:
        return conn.execute("SELECT 1 FROM orders WHERE id = %s", (MARKER,)).fetchone() is not None

    return present


def write_task(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path


def cdc_task(
    name: str, source: str, target: str, batch: bool, migration_type: str, tables: list[str]
) -> dict[str, Any]:
    rules = [
        {
            "rule-type": "selection",
            "rule-id": str(i + 1),
            "rule-name": table,
            "object-locator": {"schema-name": "%", "table-name": table},
            "rule-action": "include",
        }
        for i, table in enumerate(tables)
    ]
    return {
        "name": name,
        "source": source,
        "target": target,
        "migration_type": migration_type,
        "table_mappings": {"rules": rules},
        "settings": {"TargetMetadata": {"BatchApplyEnabled": batch}},
    }


class ConveyorRun:
    """``conveyor run TASK --no-progress --json`` in the background: stderr lines with their times, peak
    memory of its process tree, stopped with SIGTERM (a CDC task stops after its current commit, exit 0)."""

    def __init__(self, conveyor: str, task: Path, state_dir: Path, profile: Path | None = None) -> None:
        cmd = [conveyor, "run", str(task), "--no-progress", "--json", "--state-dir", str(state_dir)]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.stdout = ""
        self.peak_mb = 0
        self.exited = 0.0
        #: CPU seconds of the process tree when it started streaming (startup left out of ``cpu_per_change``)
        self.cpu_at_streaming: float | None = None
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.profiler: subprocess.Popen[bytes] | None = None
        if profile is not None:
            self.profiler = subprocess.Popen(
                [
                    PY_SPY,
                    "record",
                    "--idle",
                    "--pid",
                    str(self.proc.pid),
                    "--subprocesses",
                    "--format",
                    "raw",
                    "-o",
                    str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if self.cpu_at_streaming is None and "streaming changes from" in line:
                self.cpu_at_streaming = tree_cpu_s(self.proc.pid)
            self.lines.append((time.perf_counter(), line.rstrip()))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def _sample(self) -> None:
        while not self._done.wait(PSS_SECONDS):
            self.peak_mb = max(self.peak_mb, tree_pss_mb(self.proc.pid))

    def stderr_tail(self) -> str:
        return "\n".join(line for _, line in self.lines[-30:])

    def alive(self) -> None:
        if self.proc.poll() is not None:
            time.sleep(0.2)  # the rest of its stderr
            raise RuntimeError(f"conveyor exited early ({self.proc.returncode}):\n{self.stderr_tail()}")

    def line_time(self, text: str, timeout: float = 300) -> float:
        """Seconds from process start until a stderr line containing ``text``."""

        def seen() -> bool:
            return any(text in line for _, line in self.lines)

        wait_for(seen, timeout, f"conveyor to say {text!r}", self.alive)
        return next(t for t, line in self.lines if text in line) - self.started

    def streaming(self) -> float:
        """When the run said it streams (its start when it did not)."""
        return next((t for t, line in self.lines if "streaming changes from" in line), self.started)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait, and the run's statistics (its --json output)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.exited = time.perf_counter()
        self._done.set()
        for t in self._threads:
            t.join(10)
        if self.profiler is not None:
            self.profiler.wait(60)
        if code != 0:
            raise RuntimeError(f"conveyor exited with {code} after SIGTERM:\n{self.stderr_tail()}")
        doc: dict[str, Any] = json.loads(self.stdout)
        return doc


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-cdc-") as tmp:
        yield Path(tmp)


def cpu_seconds(trees: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree (a server's postmaster, a Conveyor run)."""
    return {name: tree_cpu_s(pid) for name, pid in trees.items()}


def cpu_per_change(before: dict[str, float], after: dict[str, float], changes: int) -> dict[str, float]:
    """CPU microseconds per change of each process tree between two ``cpu_seconds``: where the work goes."""
    return {name: round((after[name] - before[name]) * 1e6 / max(changes, 1), 1) for name in after}


def drain(
    run: ConveyorRun, present: Callable[[], bool], changes: int, timeout: float, servers: dict[str, int]
) -> dict[str, Any]:
    """Wait until the marker is on the target, then stop the run. A run still draining after ``timeout``
    is stopped there and counted by what it applied until then (``complete`` false). ``servers``: the
    postmasters (or mariadbd) whose CPU per change is reported with Conveyor's."""
    before = cpu_seconds(servers)
    try:
        done = wait_for(present, timeout, "the marker on the target", run.alive)
        complete = True
    except TimeoutError:
        complete = False
    after = {**cpu_seconds(servers), "conveyor": tree_cpu_s(run.proc.pid)}
    before["conveyor"] = run.cpu_at_streaming or 0.0
    stats = run.stop()
    applied = stats.get("CdcStatistics", {}).get("CDCAppliedChanges")
    if not complete:
        done = run.exited
    count = changes if complete else applied or 0
    streaming = run.streaming()
    return {
        "complete": complete,
        "seconds": done - run.started,
        "changes_per_s": count / (done - run.started),
        "stream_changes_per_s": count / (done - streaming),
        "startup_s": streaming - run.started,
        "peak_mem_mb": run.peak_mb,
        "applied_changes": applied,
        "cpu_us_per_change": cpu_per_change(before, after, count),
        "warnings": stats.get("Warnings", []),
    }


def make_durable(server: PostgresServer) -> None:
    """PostgreSQL's own defaults for durability (the test servers turn them off for speed): every commit
    that asks for it waits for its WAL to reach the disk, as on a production server."""
    with server.connect() as conn:
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        conn.execute("SELECT pg_reload_conf()")


# --------------------------------------------------------------------------- PG -> PG
class PgPair:
    """A source and a target server, with template databases both sides start every run from."""

    def __init__(self, rows: int, conveyor: str, drain_timeout: float, durable: bool) -> None:
        self.rows = rows
        self.conveyor_cmd = conveyor
        self.drain_timeout = drain_timeout
        self.src = PostgresServer.launch()
        self.dst = PostgresServer.launch()
        if durable:
            for server in (self.src, self.dst):
                make_durable(server)

    def prepare(self) -> None:
        start = time.perf_counter()
        self.src.create_database("src_tpl")
        with self.src.connect("src_tpl") as conn:
            for stmt in PG_ORDERS:
                conn.execute(stmt.format(orders=self.rows, customers=max(1, self.rows // 10)))
            conn.execute(PG_GENERATOR)
            conn.execute("VACUUM (FREEZE, ANALYZE) orders")
        self.dst.create_database("dst_tpl")
        dump = subprocess.run(
            f"{self.src.bindir}/pg_dump --no-owner -t orders -d {self.src.url('src_tpl')} | "
            f"{self.dst.bindir}/psql -q -X -v ON_ERROR_STOP=1 -d {self.dst.url('dst_tpl')}",
            shell=True,
            capture_output=True,
            text=True,
        )
        if dump.returncode != 0:
            raise RuntimeError(f"pg_dump | psql failed:\n{dump.stderr[-3000:]}")
        with self.dst.connect("dst_tpl") as conn:
            conn.execute("VACUUM (FREEZE, ANALYZE) orders")
        log(f"pg2pg: {self.rows:,} orders on the source and the target ({time.perf_counter() - start:.0f} s)")

    def servers(self) -> dict[str, int]:
        return {"source": self.src.pid, "target": self.dst.pid}

    def fresh(self) -> tuple[str, str]:
        return clone(self.src, "bench_src", "src_tpl"), clone(self.dst, "bench_dst", "dst_tpl")

    def generate(self, changes: int, txn: int) -> float:
        """The backlog, written on the source; returns seconds."""
        start = time.perf_counter()
        with self.src.connect("bench_src") as conn:
            conn.execute("CALL bench_changes(0, %s, %s, %s, %s)", (changes, txn, self.rows, MARKER))
        return time.perf_counter() - start

    def verify(self, what: str) -> None:
        with self.src.connect("bench_src") as s, self.dst.connect("bench_dst") as d:
            check_equal(fingerprint(s, PG_FINGERPRINT), fingerprint(d, PG_FINGERPRINT), what)

    def subscription_sql(self, database: str) -> str:
        src = self.src
        conninfo = (
            f"host={src.host} port={src.port} dbname={database} user={src.user} password={src.password} "
            f"sslmode={TLS_MODE}"
        )
        return f"CREATE SUBSCRIPTION bench_sub CONNECTION '{conninfo}' PUBLICATION bench_pub WITH (copy_data = false"

    def native(self, changes: int, txn: int) -> dict[str, Any]:
        self.fresh()
        with self.src.connect("bench_src") as conn:
            conn.execute("CREATE PUBLICATION bench_pub FOR TABLE orders")
        with self.dst.connect("bench_dst") as conn:
            conn.execute(self.subscription_sql("bench_src") + ", enabled = false)")
        generated = self.generate(changes, txn)
        with self.dst.connect("bench_dst") as conn:
            start, before = time.perf_counter(), cpu_seconds(self.servers())
            conn.execute("ALTER SUBSCRIPTION bench_sub ENABLE")
            done = wait_for(marker_present(conn), self.drain_timeout, "the marker on the target")
            after = cpu_seconds(self.servers())
            conn.execute("ALTER SUBSCRIPTION bench_sub DISABLE")
        self.verify(NATIVE)
        self.dst.drop_database("bench_dst")  # the subscription; the slot goes with the source's database
        self.src.drop_database("bench_src")
        seconds = done - start
        return {
            "complete": True,
            "seconds": seconds,
            "changes_per_s": changes / seconds,
            "generate_s": generated,
            "cpu_us_per_change": cpu_per_change(before, after, changes),
        }

    def conveyor(self, changes: int, txn: int, batch: bool, profile: Path | None) -> dict[str, Any]:
        src_url, dst_url = self.fresh()
        with workdir() as tmp:
            task = write_task(tmp / "task.json", cdc_task("bench_cdc", src_url, dst_url, batch, "cdc", ["orders"]))
            prime = ConveyorRun(self.conveyor_cmd, task, tmp / "state")  # creates the slot: starts "now"
            prime.line_time("streaming changes from")
            prime.stop()
            generated = self.generate(changes, txn)
            with self.dst.connect("bench_dst") as conn:
                run = ConveyorRun(self.conveyor_cmd, task, tmp / "state", profile)
                result = drain(run, marker_present(conn), changes, self.drain_timeout, self.servers())
        if result["complete"]:
            self.verify(f"conveyor (BatchApplyEnabled={batch})")
        self.dst.drop_database("bench_dst")
        self.src.drop_database("bench_src")
        result["generate_s"] = generated
        return result

    # ------------------------------------------------------------------ latency
    def latency_dbs(self) -> tuple[str, str]:
        src_url = self.src.create_database("bench_lat")
        with self.src.connect("bench_lat") as conn:
            conn.execute(TICKS_SOURCE)
        dst_url = self.dst.create_database("bench_lat")
        with self.dst.connect("bench_lat") as conn:
            conn.execute(TICKS_TARGET)
        return src_url, dst_url

    def steady(self, rate: int, txn: int, seconds: float, alive: Callable[[], None] | None) -> dict[str, Any]:
        """The probe row (waits until it arrives: the pipeline is warm), then ``rate`` changes/s in
        transactions of ``txn`` for ``seconds``; waits for every row, returns the latency figures."""
        with self.src.connect("bench_lat") as s, self.dst.connect("bench_lat") as d:
            # the test servers run synchronous_commit=off, and a walsender sends only flushed WAL: commits
            # would wait for the WAL writer (wal_writer_delay, 200 ms) before either tool could see them
            s.execute("SET synchronous_commit = on")
            s.execute("SELECT bench_tick(0, 1)")
            wait_for(
                lambda: d.execute("SELECT 1 FROM ticks WHERE id = 0").fetchone() is not None, 120, "the probe", alive
            )
            interval = txn / rate
            count = max(1, round(seconds * rate / txn))
            start = time.perf_counter()
            for k in range(count):
                delay = start + k * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                s.execute("SELECT bench_tick(%s, %s)", (1 + k * txn, txn))
            elapsed = time.perf_counter() - start
            total = count * txn

            def arrived() -> bool:
                row = d.execute("SELECT count(*) FROM ticks WHERE id >= 1").fetchone()
                return row is not None and row[0] >= total

            wait_for(arrived, 300, "every tick on the target", alive)
            row = d.execute(LATENCY_SQL).fetchone()
        assert row is not None and row[3] == total
        return {"p50_ms": row[0], "p99_ms": row[1], "max_ms": float(row[2]), "rate": total / elapsed, "changes": total}

    def native_latency(self, rate: int, txn: int, seconds: float) -> dict[str, Any]:
        self.latency_dbs()
        with self.src.connect("bench_lat") as conn:
            conn.execute("CREATE PUBLICATION bench_pub FOR TABLE ticks")
        with self.dst.connect("bench_lat") as conn:
            conn.execute(self.subscription_sql("bench_lat") + ")")
        result = self.steady(rate, txn, seconds, None)
        self.dst.drop_database("bench_lat")
        self.src.drop_database("bench_lat")
        return result

    def conveyor_latency(self, rate: int, txn: int, seconds: float) -> dict[str, Any]:
        src_url, dst_url = self.latency_dbs()
        with workdir() as tmp:
            task = write_task(tmp / "task.json", cdc_task("bench_lat", src_url, dst_url, False, "cdc", ["ticks"]))
            run = ConveyorRun(self.conveyor_cmd, task, tmp / "state")
            run.line_time("streaming changes from")
            result = self.steady(rate, txn, seconds, run.alive)
            run.stop()
        result["peak_mem_mb"] = run.peak_mb
        self.dst.drop_database("bench_lat")
        self.src.drop_database("bench_lat")
        return result

    def destroy(self) -> None:
        self.src.destroy()
        self.dst.destroy()


# --------------------------------------------------------------------------- MariaDB -> PG
def mysql2pg(dst: PostgresServer, args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]) -> None:
    my = MariaDBServer.launch()
    try:
        start = time.perf_counter()
        my.create_database("bench_src")
        my_url = my.url("bench_src", **MYSQL_TLS)
        with my.connect("bench_src") as conn, conn.cursor() as cur:
            for stmt in MYSQL_ORDERS:
                cur.execute(stmt.format(orders=args.rows, customers=max(1, args.rows // 10)))
            cur.execute(MYSQL_GENERATOR)
            conn.commit()
        log(f"mysql2pg: {args.rows:,} orders in MariaDB ({time.perf_counter() - start:.0f} s)")
        first = 0  # the source is loaded once: each run's changes follow the previous run's
        for i in range(args.runs):
            for tool, batch in VARIANTS.items():
                dst.create_database("bench_my")
                dst_url = str(dst.url("bench_my", sslmode=TLS_MODE))
                with workdir() as tmp:
                    doc = cdc_task("bench_my", my_url, dst_url, batch, "full-load-and-cdc", ["orders"])
                    task = write_task(tmp / "task.json", doc)
                    prime = ConveyorRun(args.conveyor, task, tmp / "state")  # full load, then streaming: stop
                    prime.line_time("streaming changes from", timeout=1800)
                    prime.stop()
                    marker = MARKER - first  # a new marker row every run
                    t0 = time.perf_counter()
                    with my.connect("bench_src") as conn, conn.cursor() as cur:
                        cur.execute(
                            "CALL bench_changes(%s, %s, %s, %s, %s)", (first, args.changes, args.txn, args.rows, marker)
                        )
                    generated = time.perf_counter() - t0
                    first += args.changes
                    with dst.connect("bench_my") as conn:
                        run = ConveyorRun(args.conveyor, task, tmp / "state", profile_path(args, "mysql2pg", tool, i))

                        def present(conn: psycopg.Connection[Any] = conn, marker: int = marker) -> bool:
                            return conn.execute("SELECT 1 FROM orders WHERE id = %s", (marker,)).fetchone() is not None

                        result = drain(
                            run, present, args.changes, args.drain_timeout, {"source": my.pid, "target": dst.pid}
                        )
                if result["complete"]:
                    with my.connect("bench_src") as s, dst.connect("bench_my") as d:
                        check_equal(fingerprint(s, PORTABLE_FINGERPRINT), fingerprint(d, PORTABLE_FINGERPRINT), tool)
                dst.drop_database("bench_my")
                result["generate_s"] = generated
                result["full_load_peak_mem_mb"] = prime.peak_mb
                runs[tool].append(result)
                log(f"mysql2pg run {i + 1}: {tool} {sample_text(result)}")
    finally:
        my.destroy()


def profile_path(args: argparse.Namespace, pair: str, tool: str, run: int) -> Path | None:
    if not args.profile:
        return None
    return RESULTS / f"cdc-profile-{pair}-{'batch' if tool == BATCH else 'transactional'}-{run}.txt"


# --------------------------------------------------------------------------- summary
def sample_text(sample: dict[str, Any]) -> str:
    text = f"{sample['changes_per_s']:,.0f} changes/s"
    if not sample["complete"]:
        text += f" (stopped after {sample['seconds']:.0f} s with {sample['applied_changes']:,} applied)"
    cpu = sample.get("cpu_us_per_change")
    if cpu:
        text += "; CPU µs/change " + ", ".join(f"{name} {us}" for name, us in cpu.items())
    return text


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians; a run stopped at --drain-timeout counts with the rate it reached."""
    complete = [s for s in samples if s["complete"]]
    out: dict[str, Any] = {
        "complete_runs": len(complete),
        "seconds": round(statistics.median(s["seconds"] for s in complete), 2) if complete else None,
        "changes_per_s": round(statistics.median(s["changes_per_s"] for s in samples)),
        "samples": [{k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()} for s in samples],
    }
    if "stream_changes_per_s" in samples[0]:
        out["stream_changes_per_s"] = round(statistics.median(s["stream_changes_per_s"] for s in samples))
        out["startup_s"] = round(statistics.median(s["startup_s"] for s in samples), 2)
        out["peak_mem_mb"] = max(s["peak_mem_mb"] for s in samples)
        out["applied_changes"] = [s["applied_changes"] for s in samples]
        out["warnings"] = sorted({w for s in samples for w in s["warnings"]})
    if "full_load_peak_mem_mb" in samples[0]:
        out["full_load_peak_mem_mb"] = max(s["full_load_peak_mem_mb"] for s in samples)
    out["generate_s"] = round(statistics.median(s["generate_s"] for s in samples), 2)
    return out


def summarize_latency(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: round(statistics.median(s[key] for s in samples), 1) for key in ("p50_ms", "p99_ms", "max_ms", "rate")
    }
    out["samples"] = [{k: round(v, 1) for k, v in s.items()} for s in samples]
    if "peak_mem_mb" in samples[0]:
        out["peak_mem_mb"] = max(s["peak_mem_mb"] for s in samples)
    return out


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the measured figure and whether it is met."""
    out: dict[str, Any] = {}
    pg2pg = results.get("pg2pg", {})
    if NATIVE in pg2pg:
        native = pg2pg[NATIVE]["changes_per_s"]
        for tool, key in ((BATCH, "batch_vs_native"), (TXN, "transactional_vs_native")):
            if tool in pg2pg:
                ratio = round(pg2pg[tool]["changes_per_s"] / native, 2)
                pg2pg[tool]["vs_native"] = ratio
                out[key] = {"target": TARGETS[key], "measured": ratio, "met": ratio >= TARGETS[key]}
    latency = results.get("latency", {})
    if TXN in latency:
        p99 = latency[TXN]["p99_ms"]
        out["p99_ms"] = {"target": TARGETS["p99_ms"], "measured": p99, "met": p99 <= TARGETS["p99_ms"]}
    my = results.get("mysql2pg", {})
    if TXN in my:
        rate = my[TXN]["changes_per_s"]
        out["mysql2pg"] = {"target": TARGETS["mysql2pg"], "measured": rate, "met": rate >= TARGETS["mysql2pg"]}
    mems = [
        r["peak_mem_mb"]
        for part in (pg2pg, latency, my)
        for r in part.values()
        if isinstance(r, dict) and "peak_mem_mb" in r
    ]
    if mems:
        out["mem_mb"] = {"target": TARGETS["mem_mb"], "measured": max(mems), "met": max(mems) <= TARGETS["mem_mb"]}
    return out


def num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-" if value is None else str(value)


def report(results: dict[str, Any]) -> None:
    log(
        f"\n{results['changes']:,} single-row changes in transactions of {results['txn']} against {results['rows']:,} "
        f"rows; median of {results['runs']} runs ({os.cpu_count()} cores, shared with other work: figures are noisy)"
    )
    head = (
        f"{'pair':9} {'tool':28} {'seconds':>8} {'changes/s':>10} {'stream/s':>9} {'startup s':>9} {'peak MB':>8} "
        f"{'vs native':>9}"
    )
    for pair in ("pg2pg", "mysql2pg"):
        part = results.get(pair)
        if part is None:
            continue
        if "skipped" in part or "error" in part:
            log(f"{pair}: {part.get('skipped') or part.get('error')}")
            continue
        log(head)
        for tool, r in part.items():
            seconds = (
                r["seconds"]
                if r["complete_runs"] == len(r["samples"])
                else f"{r['complete_runs']}/{len(r['samples'])} ok"
            )
            log(
                f"{pair:9} {tool:28} {seconds:>8} {r['changes_per_s']:>10,} "
                f"{num(r.get('stream_changes_per_s')):>9} {r.get('startup_s', '-'):>9} "
                f"{r.get('peak_mem_mb', '-'):>8} {r.get('vs_native', '-'):>9}"
            )
    latency = results.get("latency")
    if latency:
        log(
            f"\nlatency at {results['latency_rate']:,} changes/s for {results['latency_seconds']} s "
            "(arrived_at - sent_at)"
        )
        log(f"{'tool':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'changes/s':>10} {'peak MB':>8}")
        for tool, r in latency.items():
            log(
                f"{tool:28} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {r['rate']:>10,.0f} "
                f"{r.get('peak_mem_mb', '-'):>8}"
            )
    if results["targets"]:
        log("\ntargets")
        for name, v in results["targets"].items():
            log(f"  {name:24} target {v['target']:>8}  measured {v['measured']:>8}  {'met' if v['met'] else 'NOT MET'}")
    notes = sorted(
        {
            w
            for part in ("pg2pg", "mysql2pg")
            for r in results.get(part, {}).values()
            if isinstance(r, dict)
            for w in r.get("warnings", [])
        }
    )
    for w in notes:
        log(f"conveyor warning: {w}")
    if any(
        r.get("complete_runs", 1) < len(r.get("samples", ()))
        for part in ("pg2pg", "mysql2pg")
        for r in results.get(part, {}).values()
        if isinstance(r, dict)
    ):
        log(
            f"(n/m ok: only n of m drains finished within --drain-timeout {results['drain_timeout']:.0f} s; the others "
            "count with the rate they reached, and their target was not compared with the source)"
        )


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--txn", type=int, default=100, help="changes per source transaction")
    parser.add_argument("--only", default="pg2pg,latency,mysql2pg")
    parser.add_argument("--latency-rate", type=int, default=2_000, help="changes/s of the steady writer")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds after which a drain is stopped and counted by the changes it applied until then",
    )
    parser.add_argument("--conveyor", default=CONVEYOR, help="the conveyor command (to compare builds)")
    parser.add_argument("--profile", action="store_true", help="py-spy record each Conveyor drain")
    parser.add_argument(
        "--durable",
        action="store_true",
        help="PostgreSQL servers with their default durability (fsync, synchronous_commit, full_page_writes on)",
    )
    args = parser.parse_args()
    parts = args.only.split(",")
    # deletes walk the keys that are not 1 mod 3; mysql2pg writes runs x variants backlogs into one source
    deletes = args.changes * args.runs * len(VARIANTS) // 3 + 1
    if 3 * (deletes // 2) + 3 > args.rows:
        parser.error("--rows is too small for --changes x --runs (deletes would run out of rows)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "rows": args.rows,
        "changes": args.changes,
        "txn": args.txn,
        "runs": args.runs,
        "latency_rate": args.latency_rate,
        "latency_seconds": args.latency_seconds,
        "drain_timeout": args.drain_timeout,
        "conveyor": args.conveyor,
    }
    pair = PgPair(args.rows, args.conveyor, args.drain_timeout, args.durable)
    try:
        if "pg2pg" in parts:
            pair.prepare()
            runs: dict[str, list[dict[str, Any]]] = {NATIVE: [], TXN: [], BATCH: []}
            for i in range(args.runs):
                runs[NATIVE].append(pair.native(args.changes, args.txn))
                for tool, batch in VARIANTS.items():
                    profile = profile_path(args, "pg2pg", tool, i)
                    runs[tool].append(pair.conveyor(args.changes, args.txn, batch, profile))
                log(f"pg2pg run {i + 1}: " + ", ".join(f"{k} {sample_text(v[-1])}" for k, v in runs.items()))
            results["pg2pg"] = {tool: summarize(samples) for tool, samples in runs.items()}
        if "latency" in parts:
            lat: dict[str, list[dict[str, Any]]] = {NATIVE: [], TXN: []}
            for i in range(args.runs):
                lat[NATIVE].append(pair.native_latency(args.latency_rate, args.txn, args.latency_seconds))
                lat[TXN].append(pair.conveyor_latency(args.latency_rate, args.txn, args.latency_seconds))
                log(
                    f"latency run {i + 1}: "
                    + ", ".join(
                        f"{k} p50 {v[-1]['p50_ms']:.0f} ms p99 {v[-1]['p99_ms']:.0f} ms" for k, v in lat.items()
                    )
                )
            results["latency"] = {tool: summarize_latency(samples) for tool, samples in lat.items()}
        if "mysql2pg" in parts:
            from conveyor.endpoints.mysql.engine import ENGINE

            if ENGINE.open_capture is None:
                results["mysql2pg"] = {"skipped": "skipped: MySQL capture is not available yet (open_capture is None)"}
                log(results["mysql2pg"]["skipped"])
            else:
                my_runs: dict[str, list[dict[str, Any]]] = {TXN: [], BATCH: []}
                try:
                    mysql2pg(pair.dst, args, my_runs)
                    results["mysql2pg"] = {tool: summarize(s) for tool, s in my_runs.items() if s}
                except Exception as exc:  # capture is being written: keep the PostgreSQL figures
                    results["mysql2pg"] = {"error": f"failed: {type(exc).__name__}: {exc}"}
                    log(results["mysql2pg"]["error"])
    finally:
        pair.destroy()
    results["targets"] = verdicts(results)
    (RESULTS / "cdc.json").write_text(json.dumps(results, indent=2, default=str))
    report(results)


if __name__ == "__main__":
    main()
