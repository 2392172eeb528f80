"""The command line: exit codes, statistics JSON, and one-line errors without tracebacks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tasks import cli, cli_json, task_doc, write_task


def shop(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER, price REAL)")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", ((i, i, i / 4) for i in range(1000)))
    conn.commit()
    conn.close()


def test_json_statistics_use_dms_names(tmp_path: Path) -> None:
    shop(tmp_path / "a.db")
    task = write_task(task_doc(f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"), tmp_path / "t.yaml")
    code, doc = cli_json("run", str(task), "--state-dir", str(tmp_path / "s"))
    assert code == 0
    (stats,) = doc["TableStatistics"]
    assert stats["TableName"] == "items" and stats["SchemaName"] == "main"
    assert stats["FullLoadRows"] == 1000 and stats["TableState"] == "Table completed"
    assert stats["FullLoadStartTime"] and stats["FullLoadEndTime"]


def test_bad_task_file_is_one_line(tmp_path: Path) -> None:
    task = tmp_path / "t.yaml"
    task.write_text(
        "name: x\nsource: sqlite:///a.db\ntarget: sqlite:///b.db\nsettings: {FullLoadSettings: {Nope: 1}}\n"
    )
    proc = cli("run", str(task), "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: settings.FullLoadSettings.Nope: unknown key (not an AWS DMS task setting)"
    assert "Traceback" not in proc.stderr


def test_missing_source_file(tmp_path: Path) -> None:
    task = write_task(
        task_doc(f"sqlite:///{tmp_path / 'nope.db'}", f"sqlite:///{tmp_path / 'b.db'}"), tmp_path / "t.yaml"
    )
    proc = cli("run", str(task), "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1
    assert "nope.db" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_engine(tmp_path: Path) -> None:
    task = write_task(task_doc("oracle://u:pw@h/db", f"sqlite:///{tmp_path / 'b.db'}"), tmp_path / "t.yaml")
    proc = cli("run", str(task), "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 2 and "unknown engine" in proc.stderr and "pw" not in proc.stderr


def test_resume_without_earlier_run(tmp_path: Path) -> None:
    shop(tmp_path / "a.db")
    task = write_task(task_doc(f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"), tmp_path / "t.yaml")
    proc = cli("run", str(task), "--state-dir", str(tmp_path / "s"), "--resume")
    assert proc.returncode == 1 and "no earlier run" in proc.stderr


def test_cdc_from_sqlite_is_refused_clearly(tmp_path: Path) -> None:
    shop(tmp_path / "a.db")
    doc = task_doc(f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    doc["migration_type"] = "full-load-and-cdc"
    proc = cli("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1 and "change data capture from sqlite is not available" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_table_selected(tmp_path: Path) -> None:
    shop(tmp_path / "a.db")
    doc = task_doc(f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    doc["table_mappings"] = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "1",
                "rule-action": "include",
                "object-locator": {"schema-name": "main", "table-name": "nothing%"},
            }
        ]
    }
    proc = cli("run", str(write_task(doc, tmp_path / "t.yaml")), "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1 and "no source table matches" in proc.stderr
