"""The CDC write workload on both engines: it commits what it counts, one thread reproduces its rows,
and it runs in the background until stopped."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from oracle import canonical_rows, fetch
from psycopg import sql
from workload import BIG_CHARS, Counts, Workload

ITEM_COLUMNS = ["id", "grp", "name", "qty", "big", "updated_at"]


@pytest.fixture(params=["postgresql", "mariadb"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url"))


def snapshot(w: Workload) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    items = sorted(canonical_rows(fetch(w.url, w.table, ITEM_COLUMNS)))
    bag = sorted(canonical_rows(fetch(w.url, w.bag, ["k", "v"])))
    return items, bag


def assert_tables_hold(w: Workload, counts: Counts) -> None:
    """Every committed insert is there unless a committed delete took it away: the counts are real."""
    items, bag = snapshot(w)
    kinds = counts.kinds
    assert len(items) == kinds["insert"] + kinds["reinsert"] - kinds["delete"]
    assert len(bag) == kinds["bag_insert"] - kinds["bag_delete"]
    assert counts.changes == sum(v for k, v in kinds.items() if k != "update_kept_big")


def test_commits_what_it_counts(url: str) -> None:
    w = Workload(url, seed=7)
    w.create()
    counts = w.run(80, rows_per_txn=6, threads=2)
    assert counts.transactions + counts.rolled_back == 80 and counts.rolled_back > 0
    for kind in ("insert", "update", "update_big", "update_key", "delete", "bag_insert", "bag_delete", "bag_update"):
        assert counts.kinds[kind] > 0, kind
    assert counts.kinds["update_kept_big"] > 0  # updates that leave a TOAST-sized big alone
    assert_tables_hold(w, counts)
    items, bag = snapshot(w)
    assert any(len(row[4]) >= BIG_CHARS for row in items)
    assert len(bag) > len(set(bag))  # identical rows in the keyless table

    more = w.run(20, threads=3)  # a second run carries on from the rows that are there
    counts.add(more)
    assert_tables_hold(w, counts)


def test_big_values_are_stored_out_of_line_on_postgresql(pg_url: str) -> None:
    w = Workload(pg_url, seed=1)
    w.create()
    w.run(20, threads=1)
    with psycopg.connect(pg_url) as conn:
        [(toast,)] = conn.execute("SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'cdc_items'")
        [(chunks,)] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*toast.split("."))))
        assert chunks > 0  # TOASTed, so updates that leave big alone send it as "unchanged"
        [(identity,)] = conn.execute("SELECT relreplident FROM pg_class WHERE relname = 'cdc_bag'")
        assert identity == "f"  # REPLICA IDENTITY FULL: deletes of keyless rows carry the old row


def test_one_thread_is_reproducible(url: str) -> None:
    first = Workload(url, seed=42)
    first.create()
    first.run(30, threads=1)
    rows = snapshot(first)

    again = Workload(url, seed=42)
    again.create()
    again.run(30, threads=1)
    assert snapshot(again) == rows

    other = Workload(url, seed=43)
    other.create()
    other.run(30, threads=1)
    assert snapshot(other) != rows


def test_runs_in_the_background_until_stopped(url: str) -> None:
    w = Workload(url, seed=3)
    w.create()
    threads = threading.active_count()
    w.start_background(threads=2, rate=200)
    with pytest.raises(RuntimeError, match="already running"):
        w.start_background()
    deadline = time.monotonic() + 20
    while w.progress().transactions < 20:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    counts = w.stop()
    assert counts.transactions >= 20 and counts.changes > counts.transactions
    assert threading.active_count() == threads
    assert_tables_hold(w, counts)
    with pytest.raises(RuntimeError, match="not running"):
        w.stop()
