"""Validation benchmark: ``conveyor validate`` side by side with reladiff, in one run.

    .venv/bin/pip install reladiff psycopg2-binary mysql-connector-python   # the bench only
    .venv/bin/python bench/validate.py [--orders 1000000] [--runs 3] [--only pg2pg,mysql2pg]

The ``orders`` table of bench/fullload.py (1M rows, about 500 MB in PostgreSQL) is created on the source
(PostgreSQL, or MariaDB for mysql2pg) and copied to a PostgreSQL target by ``conveyor run``. Each pair is
then compared twice: identical, and after 100 differences are planted on the target (40 changed rows
across every column kind, 30 deleted, 30 extra). Each time both tools run ``--runs`` times, in turn:
``conveyor validate TASK --json --recheck-delay 0`` and
``reladiff SRC orders DST orders -k id -c '%' --json --skip-sort-results`` (reladiff 0.6 sorts its output
by comparing rows, which fails on a NULL: it logs an error, prints part of the differences and exits 0;
MariaDB -> PG it compares every column but ``details``: it refuses JSON against jsonb). MariaDB -> PG,
Conveyor also runs on those columns only (``conveyor-same-cols``: the task with ``details`` removed), the
like-for-like figure.
Reported: medians of seconds, peak memory (PSS of the whole process tree), the differences each tool
found against the planted ones (found, missed, false), and Conveyor's speed-up. Results also go to
bench/results/validate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from fullload import ROOT, MariaDBServer, PostgresServer, measured, mysql_source, pg_source

PLANTED = 100
#: the planted changes, in turn: numeric, varchar, trailing space in text, json, boolean to NULL, timestamp, int
UPDATES = (
    "amount = amount + 0.01",
    "status = 'lost'",
    "note = note || ' '",
    "details = jsonb_set(details, '{qty}', '99')",
    "paid = NULL",
    "created = created + interval '1 second'",
    "customer_id = customer_id + 1",
)
Found = set[tuple[str, int]]
RELADIFF_FLAGS = ("--json", "--skip-sort-results", "-k", "id")
RELADIFF_MYSQL_COLUMNS = ("customer_id", "amount", "status", "created", "note", "paid")
#: MariaDB -> PG, Conveyor also runs on reladiff's columns only (without the JSON column reladiff skips)
SAME_COLUMNS = "conveyor-same-cols"


def orders_only(schema: str, without: tuple[str, ...] = ()) -> str:
    """The orders table; ``without``: columns left out (a remove-column rule each)."""
    rule = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "orders",
        "object-locator": {"schema-name": schema, "table-name": "orders"},
        "rule-action": "include",
    }
    removed = [
        {
            "rule-type": "transformation",
            "rule-id": str(2 + n),
            "rule-name": f"without-{column}",
            "rule-target": "column",
            "object-locator": {"schema-name": schema, "table-name": "orders", "column-name": column},
            "rule-action": "remove-column",
        }
        for n, column in enumerate(without)
    ]
    return json.dumps({"rules": [rule, *removed]})


def task_file(tmp: Path, name: str, source: str, target: str, schema: str, without: tuple[str, ...] = ()) -> Path:
    path = tmp / f"{name}.json"
    doc = {
        "name": name,
        "source": source,
        "target": target,
        "migration_type": "full-load",
        "table_mappings": orders_only(schema, without),
        "settings": {"FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE", "MaxFullLoadSubTasks": 4}},
    }
    path.write_text(json.dumps(doc))
    return path


def plant(pg: PostgresServer, db: str, orders: int) -> Found:
    """100 differences on the target, spread over the key range; returns them as (kind, id)."""
    step = max(1, orders // PLANTED)
    ids = [1 + i * step for i in range(PLANTED)]
    expected: Found = set()
    with pg.connect(db) as conn:
        for n, i in enumerate(ids[:40]):
            conn.execute(f"UPDATE orders SET {UPDATES[n % len(UPDATES)]} WHERE id = %s", (i,))
            expected.add(("RECORD_DIFF", i))
        for i in ids[40:70]:
            conn.execute("DELETE FROM orders WHERE id = %s", (i,))
            expected.add(("MISSING_TARGET", i))
        for n in range(30):
            extra = orders + 1 + n * 997
            conn.execute(
                "INSERT INTO orders (id, customer_id, status, note) VALUES (%s, 1, 'ghost', 'extra')", (extra,)
            )
            expected.add(("MISSING_SOURCE", extra))
    return expected


def conveyor_found(stdout: str) -> Found:
    doc = json.loads(stdout)
    return {(f["FailureType"], int(f["Key"]["id"])) for f in doc["Failures"]}


def reladiff_found(stdout: str) -> Found:
    """reladiff's ``--json`` lines are ``["-", row]`` for a row only in the first table, ``["+", row]`` for
    the second (the key first); a key on both sides is a changed row."""
    minus: set[int] = set()
    plus: set[int] = set()
    for line in stdout.splitlines():
        if line.startswith("["):
            sign, row = json.loads(line)
            (minus if sign == "-" else plus).add(int(row[0]))
    return (
        {("RECORD_DIFF", i) for i in minus & plus}
        | {("MISSING_TARGET", i) for i in minus - plus}
        | {("MISSING_SOURCE", i) for i in plus - minus}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="pg2pg,mysql2pg")
    args = parser.parse_args()
    sizes = {"orders": args.orders, "customers": 1, "events": 1, "attachments": 1}
    bindir = Path(sys.executable).parent
    conveyor, reladiff = str(bindir / "conveyor"), str(bindir / "reladiff")
    if not Path(reladiff).exists():
        sys.exit("reladiff is missing: .venv/bin/pip install reladiff psycopg2-binary mysql-connector-python")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "conveyor")], check=True)
    tmp = ROOT / "bench" / "results"
    tmp.mkdir(parents=True, exist_ok=True)
    pairs = args.only.split(",")
    # a run with --only keeps the other pairs' earlier figures (each pair records its own size and runs)
    results = earlier(tmp / "validate.json", pairs)
    measured_as = {"orders": args.orders, "runs": args.runs}
    pg = PostgresServer.launch()
    try:
        if "pg2pg" in pairs:
            src = pg_source(pg, sizes)
            with pg.connect("bench_src") as conn:
                row = conn.execute("SELECT pg_total_relation_size('orders')").fetchone()
            results["orders_mb"] = round(float(row[0]) / 1e6)  # type: ignore[index]
            print(f"orders: {args.orders:,} rows, {results['orders_mb']:,} MB in PostgreSQL", flush=True)
            results["pairs"]["pg2pg"] = {
                **measured_as,
                **pair(pg, "pg2pg", src, "public", src, args, conveyor, reladiff, tmp),
            }
        if "mysql2pg" in pairs:
            my = MariaDBServer.launch()
            try:
                src = mysql_source(my, sizes)
                # like bench/fullload.py: no TLS to MariaDB, for either tool
                conveyor_src = src + "?ssl-mode=DISABLED"
                results["pairs"]["mysql2pg"] = {
                    **measured_as,
                    **pair(pg, "mysql2pg", conveyor_src, "bench_src", src, args, conveyor, reladiff, tmp),
                }
            finally:
                my.destroy()
    finally:
        pg.destroy()
    (tmp / "validate.json").write_text(json.dumps(results, indent=2))
    report(results)


def earlier(path: Path, measuring: list[str]) -> dict[str, Any]:
    """The results file without the pairs measured now (a file from before per-pair sizes gets them)."""
    old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    kept = {
        name: {"orders": old.get("orders"), "runs": old.get("runs"), **cases}
        for name, cases in old.get("pairs", {}).items()
        if name not in measuring
    }
    out: dict[str, Any] = {"planted": PLANTED, "pairs": kept}
    if "orders_mb" in old and "pg2pg" not in measuring:
        out["orders_mb"] = old["orders_mb"]
    return out


def pair(
    pg: PostgresServer,
    name: str,
    source: str,
    schema: str,
    reladiff_source: str,
    args: argparse.Namespace,
    conveyor: str,
    reladiff: str,
    tmp: Path,
) -> dict[str, Any]:
    db = f"bench_dst_{name}"
    target = pg.create_database(db)
    task = task_file(tmp, f"bench-validate-{name}", source, target, schema)
    load = subprocess.run(
        [conveyor, "run", str(task), "--no-progress", "--state-dir", str(tmp / f"state-validate-{name}")],
        capture_output=True,
        text=True,
    )
    if load.returncode != 0:
        raise RuntimeError(f"full load {name} failed:\n{load.stdout[-2000:]}\n{load.stderr[-3000:]}")
    # reladiff refuses MariaDB JSON against PostgreSQL jsonb ("Incompatible types", no output, exit 0):
    # between them it compares the other columns
    columns = ["-c", "%"] if name == "pg2pg" else [a for c in RELADIFF_MYSQL_COLUMNS for a in ("-c", c)]
    commands = {
        "conveyor": [conveyor, "validate", str(task), "--json", "--recheck-delay", "0"],
        "reladiff": [reladiff, reladiff_source, "orders", target, "orders", *RELADIFF_FLAGS, *columns],
    }
    parsers = {"conveyor": conveyor_found, "reladiff": reladiff_found}
    if name != "pg2pg":
        # Conveyor on the columns reladiff compares (the same task, validating without the JSON column)
        same = task_file(tmp, f"bench-validate-{name}-{SAME_COLUMNS}", source, target, schema, ("details",))
        commands[SAME_COLUMNS] = [conveyor, "validate", str(same), "--json", "--recheck-delay", "0"]
        parsers[SAME_COLUMNS] = conveyor_found
    wide = {**os.environ, "COLUMNS": "1000000"}  # reladiff prints through rich, which wraps lines
    out: dict[str, Any] = {}
    for case in ("identical", "planted"):
        expected = plant(pg, db, args.orders) if case == "planted" else set()
        samples: dict[str, list[tuple[float, int, Found]]] = {tool: [] for tool in commands}
        for i in range(args.runs):
            for tool, cmd in commands.items():
                seconds, peak, stdout = measured(cmd, ok=(0, 4), env=wide)
                samples[tool].append((seconds, peak, parsers[tool](stdout)))
            print(f"{name} {case} run {i + 1}: " + ", ".join(f"{t} {s[-1][0]:.1f}s" for t, s in samples.items()))
        out[case] = summarize(samples, expected)
    return out


def summarize(samples: dict[str, list[tuple[float, int, Found]]], expected: Found) -> dict[str, Any]:
    out: dict[str, Any] = {"planted": len(expected)}
    for tool, runs in samples.items():
        found = runs[-1][2]
        out[tool] = {
            "seconds": round(statistics.median(s for s, _, _ in runs), 2),
            "peak_mem_mb": max(p for _, p, _ in runs),
            "samples": [round(s, 2) for s, _, _ in runs],
            "found": len(found & expected),
            "missed": len(expected - found),
            "false": len(found - expected),
            "same_every_run": all(r[2] == found for r in runs),
        }
    out["speedup"] = round(out["reladiff"]["seconds"] / out["conveyor"]["seconds"], 2)
    if SAME_COLUMNS in samples:
        out["speedup_same_columns"] = round(out["reladiff"]["seconds"] / out[SAME_COLUMNS]["seconds"], 2)
    return out


def report(results: dict[str, Any]) -> None:
    for pair_name, cases in results["pairs"].items():
        print(f"\n{pair_name}: orders {cases['orders']:,} rows, median of {cases['runs']} runs")
        print(
            f"{'pair':9} {'case':10} {'tool':18} {'seconds':>8} {'peak MB':>8} {'found':>6} {'missed':>7} {'false':>6}"
        )
        for case in ("identical", "planted"):
            tools = cases[case]
            for tool in ("conveyor", SAME_COLUMNS, "reladiff"):
                if tool not in tools:
                    continue
                r = tools[tool]
                print(
                    f"{pair_name:9} {case:10} {tool:18} {r['seconds']:>8} {r['peak_mem_mb']:>8} "
                    f"{r['found']:>6} {r['missed']:>7} {r['false']:>6}"
                )
            print(f"{pair_name:9} {case:10} conveyor speed-up vs reladiff: {tools['speedup']}x")
            if "speedup_same_columns" in tools:
                print(f"{pair_name:9} {case:10} on reladiff's columns: {tools['speedup_same_columns']}x")


if __name__ == "__main__":
    main()
