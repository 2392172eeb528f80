"""Extension types read as their canonical values (citext is text), like built-in ones."""

from __future__ import annotations

from pathlib import Path

from oracle import fetch
from tasks import run_task, task_doc

from conveyor.runner import stats as st


def test_citext_reaches_another_engine_as_text(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = pg_server.create_database("citext_src")
    with pg_server.connect("citext_src") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        conn.execute("CREATE TABLE people (id int PRIMARY KEY, email citext)")
        conn.execute("INSERT INTO people VALUES (1, 'AbC@Example.com'), (2, NULL)")
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    result = run_task(task_doc(src, dst), tmp_path / "state")
    assert all(t.state == st.COMPLETED for t in result.tables)
    assert sorted(fetch(dst, "people"), key=lambda r: r[0]) == [(1, "AbC@Example.com"), (2, None)]
