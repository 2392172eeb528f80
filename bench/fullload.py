"""Full-load benchmark: Conveyor side by side with the reference tools, in one run.

    .venv/bin/python bench/fullload.py [--orders 1000000] [--runs 3] [--only pg2pg,mysql2pg]

* PG -> PG: Conveyor vs ``pg_dump | psql``.
* MariaDB -> PG: Conveyor vs pgloader (Debian package, given a 4 GB heap).

Throwaway servers come from tests/servers.py. The data set (about 600 MB): ``orders`` with 1M rows
(bigint key, int, numeric(12,2), varchar, timestamp, ~100-byte text, boolean, ~200-byte JSON),
``customers`` (100k rows), ``events`` without a primary key (200k rows) and ``attachments`` with
~8 KB binary values (5k rows). Reports medians of ``--runs`` runs: seconds, rows/s, MB/s, peak memory
(PSS summed over the tool's whole process tree) and the ratio to the reference tool. Results also go to
bench/results/fullload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import MariaDBServer, PostgresServer  # noqa: E402

TABLES = ("orders", "customers", "events", "attachments")

PG_SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, name varchar(100) NOT NULL, email varchar(120), created timestamp);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2), status varchar(20),
  created timestamp, note text, paid boolean, details jsonb);
CREATE TABLE events (kind varchar(20), at timestamp, payload text);
CREATE TABLE attachments (id int PRIMARY KEY, body bytea);
INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com',
  '2020-01-01'::timestamp + g * interval '1 minute' FROM generate_series(1, {customers}) g;
INSERT INTO orders SELECT g, (g % {customers}) + 1, (g % 100000) / 100.0, (ARRAY['new','paid','shipped'])[g % 3 + 1],
  '2021-01-01'::timestamp + g * interval '1 second', repeat(md5(g::text), 3),
  g % 2 = 0,
  jsonb_build_object('sku', 'SKU-' || g, 'qty', g % 7, 'tags', jsonb_build_array('a', 'b', g % 13),
    'address', jsonb_build_object('street', repeat('x', 40), 'city', 'Lisbon', 'zip', lpad((g % 99999)::text, 5, '0')),
    'comment', md5((g * 7)::text) || md5((g * 11)::text))
  FROM generate_series(1, {orders}) g;
INSERT INTO events SELECT (ARRAY['click','view','buy'])[g % 3 + 1], '2022-01-01'::timestamp + g * interval '1 second',
  md5(g::text) FROM generate_series(1, {events}) g;
INSERT INTO attachments SELECT g, decode(repeat(md5(g::text), 256), 'hex') FROM generate_series(1, {attachments}) g;
ANALYZE;
"""

MYSQL_SCHEMA = [
    "CREATE TABLE customers (id bigint PRIMARY KEY, name varchar(100) NOT NULL, email varchar(120), created datetime)",
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount decimal(12,2), status varchar(20), "
    "created datetime, note text, paid boolean, details json)",
    "CREATE TABLE events (kind varchar(20), at datetime, payload text)",
    "CREATE TABLE attachments (id int PRIMARY KEY, body mediumblob)",
    "INSERT INTO customers SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com'), "
    "'2020-01-01' + INTERVAL seq MINUTE FROM seq_1_to_{customers}",
    "INSERT INTO orders SELECT seq, (seq % {customers}) + 1, (seq % 100000) / 100.0, ELT(seq % 3 + 1, 'new', 'paid', "
    "'shipped'), '2021-01-01' + INTERVAL seq SECOND, REPEAT(MD5(seq), 3), seq % 2 = 0, "
    "JSON_OBJECT('sku', CONCAT('SKU-', seq), 'qty', seq % 7, 'tags', JSON_ARRAY('a', 'b', seq % 13), "
    "'address', JSON_OBJECT('street', REPEAT('x', 40), 'city', 'Lisbon', 'zip', LPAD(seq % 99999, 5, '0')), "
    "'comment', CONCAT(MD5(seq * 7), MD5(seq * 11))) FROM seq_1_to_{orders}",
    "INSERT INTO events SELECT ELT(seq % 3 + 1, 'click', 'view', 'buy'), '2022-01-01' + INTERVAL seq SECOND, MD5(seq) "
    "FROM seq_1_to_{events}",
    "INSERT INTO attachments SELECT seq, UNHEX(REPEAT(MD5(seq), 256)) FROM seq_1_to_{attachments}",
    "ANALYZE TABLE customers, orders, events, attachments",
]


def pg_source(pg: PostgresServer, sizes: dict[str, int]) -> str:
    """Database ``bench_src`` with the data set on PostgreSQL; its URL."""
    url = pg.create_database("bench_src")
    with pg.connect("bench_src") as conn:
        conn.execute(PG_SCHEMA.format(**sizes))
    return url


def mysql_source(my: MariaDBServer, sizes: dict[str, int]) -> str:
    """Database ``bench_src`` with the data set on MariaDB; its URL."""
    url = my.create_database("bench_src")
    with my.connect("bench_src") as conn, conn.cursor() as cur:
        for stmt in MYSQL_SCHEMA:
            cur.execute(stmt.format(**sizes))
        conn.commit()
    return url


def _children(pid: int) -> list[int]:
    try:
        found: list[int] = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        return []


def _pss_kb(pid: int) -> int:
    """Proportional set size: pages shared between forked workers count once across the tree."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_mb(root: int) -> int:
    """Memory of a process and all its descendants (workers, pipeline stages), in MB."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _pss_kb(pid)
        stack += _children(pid)
    return total // 1024


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process and of its children it has reaped (cutime + cstime), in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return sum(int(f) for f in fields[11:15])
    except (OSError, ValueError):
        return 0


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by a process tree: live processes and the ones their parents reaped."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _cpu_ticks(pid)
        stack += _children(pid)
    return total / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str] | str, shell: bool = False, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run a command; return (seconds, peak memory in MB of its whole process tree, sampled every 50 ms)."""
    seconds, peak, _ = measured(cmd, shell, env)
    return seconds, peak


def measured(
    cmd: list[str] | str, shell: bool = False, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)
) -> tuple[float, int, str]:
    """``timed``, also returning the command's stdout; exit codes in ``ok`` are success."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, tree_pss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode not in ok:
        raise RuntimeError(f"{cmd!r} failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    return seconds, peak, stdout


def pg_counts(pg: PostgresServer, db: str, schema: str = "public") -> dict[str, int]:
    with pg.connect(db) as conn:
        return {t: conn.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone()[0] for t in TABLES}  # type: ignore[index]


def pg_size_mb(pg: PostgresServer, db: str) -> float:
    with pg.connect(db) as conn:
        row = conn.execute(
            "SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
    return float(row[0]) / 1e6  # type: ignore[index]


def conveyor_task(tmp: Path, name: str, source: str, target: str, workers: int, pk_after: bool = False) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "name": name,
                "source": source,
                "target": target,
                "migration_type": "full-load",
                "settings": {
                    "FullLoadSettings": {
                        "TargetTablePrepMode": "DROP_AND_CREATE",
                        "MaxFullLoadSubTasks": workers,
                        "CreatePkAfterFullLoad": pk_after,
                    }
                },
            }
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="Conveyor's MaxFullLoadSubTasks")
    parser.add_argument("--only", default="pg2pg,mysql2pg")
    parser.add_argument(
        "--pk-after-load",
        action="store_true",
        help="CreatePkAfterFullLoad: keys built after the data, as pg_dump and pgloader do",
    )
    args = parser.parse_args()
    scale = args.orders / 1_000_000
    sizes = {
        "orders": args.orders,
        "customers": max(1, int(100_000 * scale)),
        "events": max(1, int(200_000 * scale)),
        "attachments": max(1, int(5_000 * scale)),
    }
    total_rows = sum(sizes.values())
    conveyor = str(Path(sys.executable).parent / "conveyor")
    # as installed: with bytecode (an editable install under PYTHONDONTWRITEBYTECODE would compile every start)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "conveyor")], check=True)
    tmp = ROOT / "bench" / "results"
    tmp.mkdir(parents=True, exist_ok=True)
    pg = PostgresServer.launch()
    results: dict[str, Any] = {"rows": total_rows, "sizes": sizes, "runs": args.runs, "pairs": {}}
    try:
        src_url = pg_source(pg, sizes)
        mb = pg_size_mb(pg, "bench_src")
        print(f"source data: {total_rows:,} rows, {mb:,.0f} MB in PostgreSQL", flush=True)
        pairs = args.only.split(",")
        if "pg2pg" in pairs:
            runs: dict[str, list[tuple[float, int]]] = {"conveyor": [], "pg_dump | psql": []}
            for i in range(args.runs):
                dst = pg.create_database("bench_dst")
                runs["pg_dump | psql"].append(
                    timed(
                        f"{pg.bindir}/pg_dump --no-owner -d {src_url} | "
                        f"{pg.bindir}/psql -q -X -v ON_ERROR_STOP=1 -d {dst}",
                        shell=True,
                    )
                )
                assert pg_counts(pg, "bench_dst") == sizes
                dst = pg.create_database("bench_dst")
                task = conveyor_task(tmp, "bench-pg2pg", src_url, dst, args.workers, args.pk_after_load)
                runs["conveyor"].append(
                    timed([conveyor, "run", str(task), "--no-progress", "--state-dir", str(tmp / f"state-pg2pg-{i}")])
                )
                assert pg_counts(pg, "bench_dst") == sizes
                print(f"pg2pg run {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f}s" for k, v in runs.items()), flush=True)
            results["pairs"]["pg2pg"] = summarize(runs, "pg_dump | psql", total_rows, mb)
        if "mysql2pg" in pairs:
            my = MariaDBServer.launch()
            try:
                my_url = mysql_source(my, sizes)
                runs = {"conveyor": [], "pgloader": []}
                pgloader = shutil.which("pgloader")
                for i in range(args.runs):
                    if pgloader:
                        dst = pg.create_database("bench_dst")
                        runs["pgloader"].append(
                            timed(
                                [
                                    pgloader,
                                    "--dynamic-space-size",
                                    "4096",
                                    "--no-ssl-cert-verification",
                                    my_url.replace("mysql://", "mysql://", 1),
                                    dst,
                                ]
                            )
                        )
                        assert pg_counts(pg, "bench_dst", "bench_src") == sizes
                    dst = pg.create_database("bench_dst")
                    # pgloader talks to MySQL without TLS; the same for Conveyor, for a like-for-like run
                    task = conveyor_task(
                        tmp, "bench-mysql2pg", my_url + "?ssl-mode=DISABLED", dst, args.workers, args.pk_after_load
                    )
                    runs["conveyor"].append(
                        timed(
                            [
                                conveyor,
                                "run",
                                str(task),
                                "--no-progress",
                                "--state-dir",
                                str(tmp / f"state-mysql2pg-{i}"),
                            ]
                        )
                    )
                    assert pg_counts(pg, "bench_dst") == sizes
                    print(
                        f"mysql2pg run {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f}s" for k, v in runs.items() if v),
                        flush=True,
                    )
                results["pairs"]["mysql2pg"] = summarize(runs, "pgloader", total_rows, mb)
            finally:
                my.destroy()
    finally:
        pg.destroy()
    (tmp / "fullload.json").write_text(json.dumps(results, indent=2))
    report(results)


def summarize(runs: dict[str, list[tuple[float, int]]], reference: str, rows: int, mb: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool, samples in runs.items():
        if not samples:
            continue
        seconds = statistics.median(s for s, _ in samples)
        out[tool] = {
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds),
            "mb_per_s": round(mb / seconds, 1),
            "peak_mem_mb": max(r for _, r in samples),
            "samples": [round(s, 2) for s, _ in samples],
        }
    if reference in out and "conveyor" in out:
        out["ratio"] = round(out[reference]["seconds"] / out["conveyor"]["seconds"], 2)
    return out


def report(results: dict[str, Any]) -> None:
    print(f"\n{results['rows']:,} rows, median of {results['runs']} runs")
    print(f"{'pair':10} {'tool':16} {'seconds':>8} {'rows/s':>10} {'MB/s':>7} {'peak mem MB':>12}")
    for pair, tools in results["pairs"].items():
        for tool, r in tools.items():
            if tool == "ratio":
                continue
            print(
                f"{pair:10} {tool:16} {r['seconds']:>8} {r['rows_per_s']:>10,} {r['mb_per_s']:>7} "
                f"{r['peak_mem_mb']:>12}"
            )
        if "ratio" in tools:
            print(f"{pair:10} conveyor speed-up vs reference: {tools['ratio']}x")


if __name__ == "__main__":
    main()
