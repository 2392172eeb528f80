"""Every source-filter operator pushed into a real full load (PostgreSQL -> SQLite), under each
parallel-load type, checked row by row against the operator evaluated here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from oracle import fetch
from tasks import run_task, task_doc

VALUES = [*range(1, 9), None, None]
#: (condition, which source values it keeps)
OPERATORS: list[tuple[dict[str, str], Callable[[int | None], bool]]] = [
    ({"filter-operator": "eq", "value": "5"}, lambda v: v == 5),
    ({"filter-operator": "noteq", "value": "5"}, lambda v: v is not None and v != 5),
    ({"filter-operator": "lte", "value": "3"}, lambda v: v is not None and v <= 3),
    ({"filter-operator": "ste", "value": "3"}, lambda v: v is not None and v <= 3),
    ({"filter-operator": "gte", "value": "6"}, lambda v: v is not None and v >= 6),
    ({"filter-operator": "between", "start-value": "2", "end-value": "4"}, lambda v: v is not None and 2 <= v <= 4),
    (
        {"filter-operator": "notbetween", "start-value": "2", "end-value": "4"},
        lambda v: v is not None and not 2 <= v <= 4,
    ),
    ({"filter-operator": "null"}, lambda v: v is None),
    ({"filter-operator": "notnull"}, lambda v: v is not None),
]
PARALLEL: list[dict[str, Any]] = [
    {"type": "ranges", "columns": ["id"], "boundaries": [["3"], ["7"]]},
    {"type": "partitions-auto"},
    {"type": "none"},
]


@pytest.mark.parametrize(("condition", "keeps"), OPERATORS, ids=[c["filter-operator"] for c, _ in OPERATORS])
def test_filter_operator_on_real_rows(
    condition: dict[str, str], keeps: Callable[[int | None], bool], pg_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE nums (id int PRIMARY KEY, v int)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO nums VALUES (%s, %s)", list(enumerate(VALUES, start=1)))
    for i, parallel in enumerate(PARALLEL):
        target = f"sqlite:///{tmp_path / f'{i}.db'}"
        doc = task_doc(pg_url, target, name=f"ops{i}")
        doc["table_mappings"] = mapping(condition, parallel)
        run_task(doc, tmp_path / f"state{i}")
        got: list[Any] = sorted(fetch(target, "nums", ["id", "v"]), key=lambda r: r[0])
        want = [(i, v) for i, v in enumerate(VALUES, start=1) if keeps(v)]
        assert [tuple(r) for r in got] == want, parallel["type"]


def mapping(condition: dict[str, str], parallel: dict[str, Any]) -> dict[str, Any]:
    locator = {"schema-name": "public", "table-name": "nums"}
    return {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "1",
                "object-locator": locator,
                "rule-action": "include",
                "filters": [{"filter-type": "source", "column-name": "v", "filter-conditions": [condition]}],
            },
            {
                "rule-type": "table-settings",
                "rule-id": "2",
                "rule-name": "2",
                "object-locator": locator,
                "parallel-load": parallel,
            },
        ]
    }
