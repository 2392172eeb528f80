"""Batch apply into PostgreSQL of changes in the source's own text form (PostgreSQL to PostgreSQL): a column of
texts travels as one text the server cuts apart (``string_to_array``); values that hold the separator or the
NULL mark, and a lone empty text, go as array literals instead. Either way the target holds exactly them."""

from __future__ import annotations

from typing import Any

import psycopg
from cdc_support import text_change_applier

from conveyor.model.changes import UNCHANGED, Change, Op, Transaction

COLUMNS = ("id", "name", "amount", "doc", "at", "note", "flag")
READ = "SELECT id, name, amount::text, doc::text, at::text, note, flag FROM docs ORDER BY id"
QUOTED = '{"a": "q\\"uote", "b": [1, 2]}'
UNICODE = '{"k": "\u00e9\u4e2d"}'
PUNCTUATION = "tab\there, back\\slash, \"quotes\", {braces}, comma, 'single'"


def row(*values: str | None) -> tuple[str | None, ...]:
    return values


def test_text_columns_land_exactly_whichever_way_they_travel(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, name varchar(20), amount numeric(12,2), doc jsonb, "
            "at timestamp, note text, flag boolean)"
        )
    applier, changes, table, _ = text_change_applier(pg_url, "docs")
    sent: list[str] = []
    execute = applier.execute

    def recording(sql: str, params: Any = ()) -> Any:
        sent.append(sql)
        return execute(sql, params)

    applier.execute = recording  # type: ignore[method-assign]
    # inserts as statements too: a text table's go by COPY (tests/e2e/test_cdc_batch_copy_inserts.py), but the
    # texts of other tables' inserts (another engine's strings) travel the ways checked here
    applier.copy_rows = lambda *_: None  # type: ignore[method-assign]

    def change(op: Op, before: Any = None, after: Any = None) -> Change:
        return Change(op, table.id, COLUMNS, before, after, position=None)

    def key(k: str) -> tuple[Any, ...]:
        return (k, *[UNCHANGED] * (len(COLUMNS) - 1))

    lease = applier.start_task("cdc", fresh=True)
    assert changes.read_position("cdc") is None  # makes the control tables
    first = [
        change(Op.INSERT, after=row("1", "plain", "12.50", QUOTED, "2024-01-02 03:04:05.5", PUNCTUATION, "t")),
        change(Op.INSERT, after=row("2", None, None, None, None, None, None)),
        change(Op.INSERT, after=row("3", "sep", "0.00", UNICODE, "2024-01-02 00:00:00", "a \x1e record sep", "f")),
        change(Op.INSERT, after=row("4", "null mark", "1.00", "[]", "2024-01-02 00:00:00", "\x1f", "f")),
        change(Op.INSERT, after=row("5", "", "-3.25", '"s"', "1999-12-31 23:59:59.999999", "", "t")),
    ]
    result = changes.apply("cdc", lease, [Transaction(1, None, None, first)], {"lsn": 1}, net=True)
    assert (result.inserts, result.failed) == (5, [])
    second = [
        change(Op.UPDATE, key("1"), row("1", "plain2", "12.51", QUOTED, "2024-01-02 03:04:05.5", "n\x1f2", "f")),
        change(Op.DELETE, key("2")),
        change(Op.UPDATE, key("5"), row("5", "", "-3.25", '"s"', "1999-12-31 23:59:59.999999", "x", "t")),
    ]
    result = changes.apply("cdc", lease, [Transaction(2, None, None, second)], {"lsn": 2}, net=True)
    assert (result.updates, result.deletes, result.failed) == (2, 1, [])
    # one empty text alone: string_to_array would give no element for it (and the INSERT no row)
    third = [change(Op.INSERT, after=row("6", "", None, None, None, "", None))]
    result = changes.apply("cdc", lease, [Transaction(3, None, None, third)], {"lsn": 3}, net=True)
    assert (result.inserts, result.failed) == (1, [])
    applier.close()

    with psycopg.connect(pg_url) as conn:
        got = conn.execute(READ).fetchall()
    assert got == [
        (1, "plain2", "12.51", QUOTED, "2024-01-02 03:04:05.5", "n\x1f2", False),
        (3, "sep", "0.00", UNICODE, "2024-01-02 00:00:00", "a \x1e record sep", False),
        (4, "null mark", "1.00", "[]", "2024-01-02 00:00:00", "\x1f", False),
        (5, "", "-3.25", '"s"', "1999-12-31 23:59:59.999999", "x", True),
        (6, "", None, None, None, "", None),
    ]
    bulk = [s for s in sent if s.startswith(("INSERT INTO", "UPDATE", "DELETE FROM")) and "docs" in s]
    assert len(bulk) == 4  # INSERT; DELETE, UPDATE; INSERT: the bulk statements, never change by change
    assert all("string_to_array" in s for s in bulk)  # texts cut apart by the server where they can be
    # as array literals: the note columns holding a separator or the NULL mark, and the lone empty texts
    assert "%s::text[]" in bulk[0] and "%s::text[]" in bulk[2] and "%s::text[]" in bulk[3]
    assert "%s::varchar[]" in bulk[3]  # cast without its length: the column refuses a longer value
