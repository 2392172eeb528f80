"""Errors a user can act on: one line naming the thing and the fix, no traceback, no password."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from oracle import fetch
from servers import PostgresServer
from tasks import cli, cli_json, task_doc, write_task

PASSWORD = "secret"


def run_cli(doc: dict[str, object], tmp_path: Path, *extra: str) -> tuple[int, str]:
    proc = cli(
        "run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"), "--no-progress", *extra
    )
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stderr


def sqlite_source(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'a')")
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_wrong_password(engine: str, pg_server, mysql_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = pg_server if engine == "postgresql" else mysql_server
    url = server.url("postgres" if engine == "postgresql" else "mysql", password="not-the-password")
    code, err = run_cli(task_doc(url, f"sqlite:///{tmp_path / 'b.db'}"), tmp_path)
    assert code == 1
    assert "not-the-password" not in err and err.count("\n") == 1
    assert "conveyor" in err and ("password" in err.lower() or "access denied" in err.lower())


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_host(scheme: str, tmp_path: Path) -> None:
    code, err = run_cli(task_doc(f"{scheme}://u:{PASSWORD}@127.0.0.1:1/db", f"sqlite:///{tmp_path / 'b.db'}"), tmp_path)
    assert code == 1 and "127.0.0.1:1" in err and PASSWORD not in err


def test_missing_database(pg_server, mysql_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for url in (pg_server.url("no_such_db"), mysql_server.url("no_such_db")):
        code, err = run_cli(task_doc(url, f"sqlite:///{tmp_path / 'b.db'}"), tmp_path)
        assert code == 1 and "no_such_db" in err and PASSWORD not in err


def test_tls_failure_names_the_setting(pg_server, mysql_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pg = pg_server.url("postgres", sslmode="verify-full", sslrootcert=str(tmp_path / "missing-ca.pem"))
    code, err = run_cli(task_doc(pg, f"sqlite:///{tmp_path / 'b.db'}"), tmp_path)
    assert code == 1 and "sslrootcert" in err and PASSWORD not in err
    my = mysql_server.url("mysql", **{"ssl-mode": "VERIFY_CA", "ssl-ca": str(tmp_path / "missing-ca.pem")})
    code, err = run_cli(task_doc(my, f"sqlite:///{tmp_path / 'b.db'}"), tmp_path)
    assert code == 1 and "ssl" in err.lower() and PASSWORD not in err


def test_tls_works_with_the_right_ca(pg_server, mysql_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pg_server.create_database("tls_src")
    with pg_server.connect("tls_src") as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    src = pg_server.url("tls_src", sslmode="verify-full", sslrootcert=str(pg_server.ca_file))
    my = mysql_server.create_database("tls_dst")
    dst = my + f"?ssl-mode=VERIFY_CA&ssl-ca={mysql_server.ca_file}"
    code, doc = cli_json(
        "run", str(write_task(task_doc(src, dst), tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s")
    )
    assert code == 0, doc
    assert sorted(fetch(my, "t")) == [(1, "a"), (2, "b")]


def test_missing_privilege_pg(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pg_server.create_database("priv_src")
    with pg_server.connect("priv_src") as conn:
        conn.execute("CREATE TABLE secret_table (id int PRIMARY KEY)")
    url = pg_server.url("priv_src", user="limited", password=PASSWORD)
    code, err = run_cli(task_doc(url, f"sqlite:///{tmp_path / 'b.db'}"), tmp_path)
    assert code == 1 and "secret_table" in err and "GRANT" in err, err


def test_missing_privilege_mysql(mysql_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mysql_server.create_database("priv_src")
    url = mysql_server.url("priv_src", user="limited", password=PASSWORD)
    code, err = run_cli(task_doc(url, f"sqlite:///{tmp_path / 'b.db'}"), tmp_path)
    assert code == 1 and "priv_src" in err and PASSWORD not in err, err


def test_rejected_row_log_error_and_stop_task(pg_url: str, tmp_path: Path) -> None:
    """A NUL byte cannot be stored in PostgreSQL text: LOG_ERROR records the row, STOP_TASK stops."""
    src = tmp_path / "a.db"
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes VALUES (?, ?)", [(1, "fine"), (2, "bad\x00byte"), (3, "also fine")])
    conn.commit()
    conn.close()
    code, doc = cli_json(
        "run",
        str(write_task(task_doc(f"sqlite:///{src}", pg_url), tmp_path / "t.yaml")),
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert code == 3
    (stats,) = doc["TableStatistics"]
    assert stats["FullLoadRows"] == 2 and stats["FullLoadErrorRows"] == 1
    assert sorted(fetch(pg_url, "notes", schema="public")) == [(1, "fine"), (3, "also fine")]
    (exception,) = fetch(
        pg_url, "conveyor_apply_exceptions", ["table_name", "row_key", "column_name", "error"], schema="public"
    )
    assert exception[0] == "notes" and '"id": 2' in exception[1] and exception[2] == "body"
    assert "NUL" in exception[3]

    doc_stop = task_doc(f"sqlite:///{src}", pg_url, name="stopper", ErrorBehavior={"DataErrorPolicy": "STOP_TASK"})
    code, err = run_cli(doc_stop, tmp_path)
    assert code == 1 and "notes" in err and "NUL" in err and "2" in err


def test_table_dropped_during_load(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = pg_server.create_database("drop_src")
    with pg_server.connect("drop_src") as conn:
        conn.execute("CREATE TABLE a_big (id bigint PRIMARY KEY, v text)")
        conn.execute("INSERT INTO a_big SELECT g, repeat('x', 200) FROM generate_series(1, 400000) g")
        conn.execute("CREATE TABLE z_small (id int PRIMARY KEY)")
        conn.execute("INSERT INTO z_small SELECT generate_series(1, 10)")
        conn.execute("ANALYZE")
    dst = tmp_path / "dst.db"
    doc = task_doc(src, f"sqlite:///{dst}", FullLoadSettings={"MaxFullLoadSubTasks": 1})

    def drop_when_loading() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(dst, timeout=0.1) as c:
                    if c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'z_small'").fetchone()[0]:
                        break
            except sqlite3.Error:
                pass
            time.sleep(0.01)
        with pg_server.connect("drop_src") as conn:
            conn.execute("DROP TABLE z_small")

    dropper = threading.Thread(target=drop_when_loading)
    dropper.start()
    code, doc_out = cli_json("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"))
    dropper.join()
    assert code == 1
    states = {t["TableName"]: t for t in doc_out["TableStatistics"]}
    assert states["a_big"]["TableState"] == "Table completed"
    assert states["z_small"]["TableState"] == "Table error"
    assert "dropped" in states["z_small"]["ErrorMessage"]


def test_suspend_table_policy_fails_only_that_table(pg_url: str, tmp_path: Path) -> None:
    src = tmp_path / "a.db"
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE bad (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE TABLE good (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO bad VALUES (?, ?)", [(1, "ok"), (2, "nul\x00")])
    conn.executemany("INSERT INTO good VALUES (?, ?)", [(1, "ok"), (2, "fine")])
    conn.commit()
    conn.close()
    doc = task_doc(f"sqlite:///{src}", pg_url, ErrorBehavior={"DataErrorPolicy": "SUSPEND_TABLE"})
    code, out = cli_json("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"))
    assert code == 1
    states = {t["TableName"]: t["TableState"] for t in out["TableStatistics"]}
    assert states == {"bad": "Table error", "good": "Table completed"}
    assert fetch(pg_url, "bad", schema="public") == []  # the segment rolled back whole
    assert sorted(fetch(pg_url, "good", schema="public")) == [(1, "ok"), (2, "fine")]


def test_a_row_a_postgresql_target_refuses_in_a_pass_through_copy_is_rejected_alone(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """pg -> pg copies the source's COPY stream untouched, which cannot say which row the target refused (a
    CHECK the source lacks): the segment is copied again decoded, and only that row is rejected."""
    import psycopg

    source, target = pg_server.create_database("pt_src"), pg_server.create_database("pt_dst")
    try:
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute("CREATE TABLE r (id int PRIMARY KEY, v int, t text)")
            conn.execute(
                "INSERT INTO r SELECT g, CASE WHEN g % 100 = 0 THEN -1 ELSE g END, 't' || g "
                "FROM generate_series(1, 5000) g"
            )
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("CREATE TABLE r (id int PRIMARY KEY, v int CHECK (v >= 0), t text)")
        doc = task_doc(source, target, FullLoadSettings={"TargetTablePrepMode": "TRUNCATE_BEFORE_LOAD"})
        code, out = cli_json("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"))
        assert code == 3, out
        (stats,) = out["TableStatistics"]
        assert (stats["FullLoadRows"], stats["FullLoadErrorRows"]) == (4950, 50)
        assert len(fetch(target, "conveyor_apply_exceptions", ["row_key"], schema="public")) == 50
        assert sorted(r[0] for r in fetch(target, "r", ["id"], schema="public")) == [
            g for g in range(1, 5001) if g % 100
        ]
    finally:
        pg_server.drop_database("pt_src")
        pg_server.drop_database("pt_dst")
