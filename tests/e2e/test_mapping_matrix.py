"""The table-mapping matrix on real servers, PostgreSQL -> PostgreSQL: every transformation action on every
rule-target, every filter operator, the wildcards (``%``, ``_``, ``[_]``) and conflicts (the lower rule-id wins),
each checked row by row on the target after the full load and again after change processing in one
``full-load-and-cdc`` task.

Every case is one source table ``(id, v, <name column>)`` with the same rows and the same changes. The expected
target is modelled here from the documented semantics: a change's new row must pass the filters; an update whose
new row fails keeps the target's row as it was; one whose row newly passes is an apply error (the target does not
have the row); a delete removes the row.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_until
from oracle import fetch
from psycopg import sql
from servers import PostgresServer
from tasks import task_doc
from test_mapping_operators import OPERATORS

Src = tuple[int, int | None, str]
INITIAL: list[Src] = [(i, v, f"n{i}") for i, v in enumerate([*range(1, 9), None, None], start=1)]


@dataclass(frozen=True)
class Ctx:
    """What a target row's computed columns depend on: the change that wrote it."""

    op: str = "INSERT"
    before: Src | None = None
    txid: int | None = None
    window: tuple[datetime, datetime] | None = None
    cdc: bool = False


class Like:
    """A value the test can only check by a rule (a random digit, a timestamp in a window)."""

    def __init__(self, what: str, test: Callable[[Any], bool]) -> None:
        self.what, self.test = what, test

    def __eq__(self, other: object) -> bool:
        return self.test(other)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<{self.what}>"


def stamped(ctx: Ctx) -> Like:
    assert ctx.window is not None
    lo, hi = ctx.window[0] - timedelta(seconds=1), ctx.window[1] + timedelta(seconds=1)
    return Like(f"UTC time in {lo}..{hi}", lambda s: isinstance(s, str) and lo <= datetime.fromisoformat(s) <= hi)


@dataclass(frozen=True)
class Case:
    name: str
    schema: str
    table: str
    rules: list[dict[str, Any]]
    target: tuple[str, str]
    columns: list[str]
    row: Callable[[Src, Ctx], tuple[Any, ...]] = lambda r, _c: r
    col: str = "name"  # the source's name column
    keeps: Callable[[int | None], bool] = lambda _v: True
    filters: list[dict[str, Any]] = field(default_factory=list)
    keyless: bool = False
    #: PostgreSQL sends an update's whole old row (not only its key) only under REPLICA IDENTITY FULL
    old_rows: bool = False


def t(target: str, action: str, locator: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "rule-type": "transformation",
        "rule-target": target,
        "rule-action": action,
        "object-locator": locator,
        **extra,
    }


NAME_ACTIONS: list[tuple[str, str, dict[str, str], str]] = [
    # (action, source name, value / old-value, target name)
    ("rename", "x_ren", {"value": "x_renamed"}, "x_renamed"),
    ("convert-lowercase", "X_Low", {}, "x_low"),
    ("convert-uppercase", "x_up", {}, "X_UP"),
    ("add-prefix", "x_ap", {"value": "p_"}, "p_x_ap"),
    ("add-suffix", "x_as", {"value": "_s"}, "x_as_s"),
    ("remove-prefix", "old_rp", {"value": "old_"}, "rp"),
    ("remove-suffix", "x_rs_old", {"value": "_old"}, "x_rs"),
    ("replace-prefix", "pre_xp", {"old-value": "pre_", "value": "post_"}, "post_xp"),
    ("replace-suffix", "x_xs_a", {"old-value": "_a", "value": "_b"}, "x_xs_b"),
]


def name_cases() -> list[Case]:
    """Each name action on a schema (its own source schema, named like the table), a table and a column."""
    out = []
    for action, source, values, target in NAME_ACTIONS:
        on_schema = {"schema-name": source}
        on_table = {"schema-name": "m", "table-name": source}
        on_column = {"schema-name": "m", "table-name": "c" + source, "column-name": source}
        columns = ["id", "v", "name"]
        out += [
            Case(f"schema-{action}", source, "t", [t("schema", action, on_schema, **values)], (target, "t"), columns),
            Case(f"table-{action}", "m", source, [t("table", action, on_table, **values)], ("m", target), columns),
            Case(
                f"column-{action}",
                "m",
                "c" + source,
                [t("column", action, on_column, **values)],
                ("m", "c" + source),
                ["id", "v", target],
                col=source,
            ),
        ]
    return out


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest().upper()


#: define-primary-key: (table, origin, primary-key-def besides its name)
KEY_DEFS: list[tuple[str, str, dict[str, Any]]] = [
    ("pk_def", "primary-key", {"columns": ["id"]}),  # origin primary-key is the default
    ("uk_def", "unique-index", {"origin": "unique-index", "columns": ["id"]}),
]


def column_cases() -> list[Case]:
    def on(table: str, **locator: str) -> dict[str, str]:
        return {"schema-name": "m", "table-name": table, **locator}

    headers = [
        "AR_H_OPERATION",
        "AR_H_TIMESTAMP",
        "AR_H_COMMIT_TIMESTAMP",
        "AR_H_TRANSACTION_ID",
        "AR_H_STREAM_POSITION",
        "AR_M_SOURCE_SCHEMA",
        "AR_M_SOURCE_TABLE_NAME",
    ]
    string = {"data-type": {"type": "string", "length": 40}}
    return [
        Case(
            "remove-column",
            "m",
            "remove_col",
            [t("column", "remove-column", on("remove_col", **{"column-name": "v"}))],
            ("m", "remove_col"),
            ["id", "name"],
            lambda r, _c: (r[0], r[2]),
        ),
        Case(
            "include-column",
            "m",
            "include_col",
            [t("column", "include-column", on("include_col", **{"column-name": c})) for c in ("id", "name")],
            ("m", "include_col"),
            ["id", "name"],
            lambda r, _c: (r[0], r[2]),
        ),
        Case(
            "change-data-type",
            "m",
            "change_type",
            [t("column", "change-data-type", on("change_type", **{"column-name": "v"}), **string)],
            ("m", "change_type"),
            ["id", "v", "name"],
            lambda r, _c: (r[0], None if r[1] is None else str(r[1]), r[2]),
        ),
        Case(
            "add-column",
            "m",
            "add_expr",
            [
                t(
                    "column",
                    "add-column",
                    on("add_expr"),
                    value="e",
                    expression="upper($name) || '-' || ($v * 2)",
                    **string,
                ),
                t("column", "add-column", on("add_expr"), value="nothing", **string),
            ],
            ("m", "add_expr"),
            ["id", "v", "name", "e", "nothing"],
            lambda r, _c: (*r, None if r[1] is None else f"{r[2].upper()}-{r[1] * 2}", None),
        ),
        Case(
            "add-column-headers",
            "m",
            "headers",
            [t("column", "add-column", on("headers"), value=h.lower(), expression="$" + h, **string) for h in headers],
            ("m", "headers"),
            ["id", *(h.lower() for h in headers)],
            lambda r, c: (
                r[0],
                c.op,
                stamped(c),
                stamped(c),
                None if c.txid is None else str(c.txid),
                Like("an LSN", lambda s: isinstance(s, str) and s.isdigit()) if c.cdc else None,
                "m",
                "headers",
            ),
        ),
        Case(
            "add-before-image-columns",
            "m",
            "images",
            [
                t(
                    "column",
                    "add-before-image-columns",
                    on("images"),
                    **{"before-image-def": {"column-prefix": "BI_", "column-suffix": "_was", "column-filter": "all"}},
                )
            ],
            ("m", "images"),
            ["id", "v", "name", "BI_id_was", "BI_v_was", "BI_name_was"],
            lambda r, c: (*r, *(c.before if c.op == "UPDATE" and c.before else (None, None, None))),
            old_rows=True,
        ),
        Case(
            "add-before-image-columns-pk-only",
            "m",
            "images_pk",
            [t("column", "add-before-image-columns", on("images_pk"))],
            ("m", "images_pk"),
            ["id", "v", "name", "BI_id"],
            lambda r, c: (*r, c.before[0] if c.op == "UPDATE" and c.before else None),
        ),
        *(
            Case(
                f"define-primary-key-{origin}",
                "m",
                table,
                [t("table", "define-primary-key", on(table), **{"primary-key-def": {"name": table + "_key", **key}})],
                ("m", table),
                ["id", "v", "name"],
                keyless=True,
            )
            for table, origin, key in KEY_DEFS
        ),
        Case(
            "data-masking-digits-mask",
            "m",
            "mask_digits",
            [t("column", "data-masking-digits-mask", on("mask_digits", **{"column-name": "name"}), value="#")],
            ("m", "mask_digits"),
            ["id", "v", "name"],
            lambda r, _c: (r[0], r[1], re.sub(r"\d", "#", r[2])),
        ),
        Case(
            "data-masking-digits-randomize",
            "m",
            "mask_random",
            [t("column", "data-masking-digits-randomize", on("mask_random", **{"column-name": "name"}))],
            ("m", "mask_random"),
            ["id", "v", "name"],
            lambda r, _c: (
                r[0],
                r[1],
                Like(f"{r[2]} randomized", lambda s: re.fullmatch(re.sub(r"\d", r"\\d", r[2]), s) is not None),
            ),
        ),
        Case(
            "data-masking-hash-mask",
            "m",
            "mask_hash",
            [t("column", "data-masking-hash-mask", on("mask_hash", **{"column-name": "name"}))],
            ("m", "mask_hash"),
            ["id", "v", "name"],
            lambda r, _c: (r[0], r[1], sha(r[2])),
        ),
        # conflicts: "9" < "10" as rule-ids (numbers), though not as text; rules of other kinds still apply
        Case(
            "conflict-table-name",
            "m",
            "conf_tab",
            [
                t("table", "add-prefix", on("conf_tab"), value="lost_", **{"rule-id": "10"}),
                t("table", "rename", on("conf_tab"), value="conf_won", **{"rule-id": "9"}),
            ],
            ("m", "conf_won"),
            ["id", "v", "name"],
        ),
        Case(
            "conflict-column",
            "m",
            "conf_col",
            [
                t("column", "rename", on("conf_col", **{"column-name": "v"}), value="lost", **{"rule-id": "20"}),
                t("column", "convert-uppercase", on("conf_col", **{"column-name": "v"}), **{"rule-id": "19"}),
                t(
                    "column",
                    "change-data-type",
                    on("conf_col", **{"column-name": "v"}),
                    **{"data-type": {"type": "int8"}, "rule-id": "30"},
                ),
                t("column", "change-data-type", on("conf_col", **{"column-name": "v"}), **string, **{"rule-id": "29"}),
            ],
            ("m", "conf_col"),
            ["id", "V", "name"],
            lambda r, _c: (r[0], None if r[1] is None else str(r[1]), r[2]),
        ),
    ]


def wildcard_cases() -> list[Case]:
    prefix = t("table", "add-prefix", {"schema-name": "m", "table-name": "wc[_]%"}, value="p_")
    suffix = t("table", "add-suffix", {"schema-name": "m", "table-name": "u_q"}, value="_s")
    return [
        Case("escape-matches", "m", "wc_a", [prefix], ("m", "p_wc_a"), ["id", "v", "name"]),
        Case("escape-is-literal", "m", "wcxa", [], ("m", "wcxa"), ["id", "v", "name"]),
        Case("underscore-matches", "m", "urq", [suffix], ("m", "urq_s"), ["id", "v", "name"]),
        Case("underscore-is-one", "m", "urrq", [], ("m", "urrq"), ["id", "v", "name"]),
        Case("exclude-escape-is-literal", "m", "skipxa", [], ("m", "skipxa"), ["id", "v", "name"]),
        Case("exclude-underscore-is-one", "m", "exab", [], ("m", "exab"), ["id", "v", "name"]),
    ]


#: excluded by the selection's wildcards: never on the target
EXCLUDED = [("m", "skip_a"), ("m", "exa")]


def filter_cases() -> list[Case]:
    return [
        Case(
            f"filter-{c['filter-operator']}",
            "f",
            c["filter-operator"],
            [],
            ("f", c["filter-operator"]),
            ["id", "v", "name"],
            keeps=keeps,
            filters=[{"filter-type": "source", "column-name": "v", "filter-conditions": [c]}],
        )
        for c, keeps in OPERATORS
    ]


CASES = [*name_cases(), *column_cases(), *wildcard_cases(), *filter_cases()]


def mapping() -> dict[str, Any]:
    def select(action: str, schema: str, table: str, **extra: Any) -> dict[str, Any]:
        locator = {"schema-name": schema, "table-name": table}
        return {"rule-type": "selection", "object-locator": locator, "rule-action": action, **extra}

    rules = [
        select("include", "m", "%"),
        # the name actions' schemas: x_ren, X_Low, ... (`_` one character, `[_]` a literal one); old_rp, pre_xp
        select("include", "_[_]%", "t"),
        select("include", "old[_]rp", "%"),
        select("include", "pre[_]xp", "%"),
        select("exclude", "m", "skip[_]%"),  # skip_a, not skipxa
        select("exclude", "m", "ex_"),  # exa, not exab
    ]
    for case in CASES:
        if case.filters:
            rules.append(select("include", case.schema, case.table, filters=case.filters))
        rules.extend(dict(r) for r in case.rules)
    for n, rule in enumerate(rules, start=1000):
        rule.setdefault("rule-id", str(n))
        rule["rule-name"] = f"r{rule['rule-id']}"
    return {"rules": rules}


def source_sql() -> str:
    out = ["CREATE SCHEMA m", "CREATE SCHEMA f"]
    tables = [(c.schema, c.table, c.col, c.keyless, c.keyless or c.old_rows) for c in CASES]
    tables += [(s, n, "name", False, False) for s, n in EXCLUDED]
    for schema, table, col, keyless, old_rows in tables:
        if schema not in ("m", "f"):
            out.append(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)).as_string(None))
        name = sql.Identifier(schema, table).as_string(None)
        key = "NOT NULL" if keyless else "PRIMARY KEY"
        out.append(f"CREATE TABLE {name} (id int {key}, v int, {sql.Identifier(col).as_string(None)} text)")
        if old_rows:
            out.append(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
        out.append(
            f"INSERT INTO {name} VALUES "
            + ", ".join(f"({i}, {'NULL' if v is None else v}, '{n}')" for i, v, n in INITIAL)
        )
    return ";\n".join(out)


# --------------------------------------------------------------------------- the changes, and their model
@dataclass
class Model:
    """One case's target as the documented semantics make it: source id -> (source row, the change that wrote it)."""

    case: Case
    rows: dict[int, tuple[Src, Ctx]]
    apply_errors: int = 0

    def write(self, old: Src | None, new: Src | None, ctx: Ctx) -> None:
        if new is None:  # delete: applied where the old row is (the filter column may not be sent)
            assert old is not None
            if self.rows.pop(old[0], None) is None:
                self.apply_errors += 1  # the target has no row to delete
        elif not self.case.keeps(new[1]):
            pass  # not applied: an update keeps the target's row as it was
        elif old is None:
            self.rows[new[0]] = (new, ctx)
        elif old[0] not in self.rows:
            self.apply_errors += 1  # the row newly passes: the target has none to update
        else:
            del self.rows[old[0]]
            self.rows[new[0]] = (new, ctx)

    def expected(self) -> list[tuple[Any, ...]]:
        return [self.case.row(r, c) for _, (r, c) in sorted(self.rows.items())]


#: (old row's id or None, new row or None), one source transaction each, on every case's table
CHANGES: list[tuple[int | None, Src | None]] = [
    (None, (11, 5, "n11")),
    (None, (12, None, "n12")),
    (None, (13, 2, "n13")),
    (3, (3, 3, "u3")),
    (5, (5, 1, "n5")),  # out of eq 5, into lte 3
    (2, (2, 5, "n2")),  # into eq 5, out of lte 3
    (9, (9, 7, "n9")),  # out of null, into notnull
    (4, (4, None, "n4")),  # into null, out of notnull
    (1, None),
    (6, None),
    (8, (80, 8, "n80")),  # a key update
]


def change_source(url: str, models: list[Model]) -> None:
    source: dict[int, Src] = {r[0]: r for r in INITIAL}
    with psycopg.connect(url, autocommit=True) as conn:
        for old_id, new in CHANGES:
            start = datetime.now(UTC).replace(tzinfo=None)
            with conn.transaction():
                txid = conn.execute("SELECT txid_current()").fetchone()[0]  # type: ignore[index]
                for model in models:
                    c = model.case
                    table, col = sql.Identifier(c.schema, c.table), sql.Identifier(c.col)
                    if old_id is None:
                        assert new is not None
                        conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(table), new)
                    elif new is None:
                        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(table), (old_id,))
                    else:
                        conn.execute(
                            sql.SQL("UPDATE {} SET id = %s, v = %s, {} = %s WHERE id = %s").format(table, col),
                            (*new, old_id),
                        )
            window = (start, datetime.now(UTC).replace(tzinfo=None))
            old = source.pop(old_id) if old_id is not None else None
            if new is not None:
                source[new[0]] = new
            ctx = Ctx("INSERT" if old is None else "UPDATE", old, txid, window, cdc=True)
            for model in models:
                model.write(old, new, ctx)


def target_rows(url: str, case: Case) -> list[tuple[Any, ...]]:
    return sorted(fetch(url, case.target[1], case.columns, schema=case.target[0]), key=lambda r: r[0])


def differences(url: str, models: list[Model]) -> dict[str, tuple[list[Any], list[Any]]]:
    """case -> (wanted, got) for every case whose target rows differ from its model."""
    out = {}
    for model in models:
        want, got = model.expected(), target_rows(url, model.case)
        if want != got:
            out[model.case.name] = (want, got)
    return out


@pytest.fixture
def source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "matrix_" + request.node.name, "matrix", source_sql())


def test_every_action_operator_wildcard_and_conflict_in_full_load_and_cdc(
    source: str, pg_url: str, tmp_path: Any
) -> None:
    doc = {
        **task_doc(source, pg_url, name="matrix"),
        "migration_type": "full-load-and-cdc",
        "table_mappings": mapping(),
    }
    start = datetime.now(UTC).replace(tzinfo=None)
    task = Running(doc, tmp_path / "state")
    try:
        wait_until(task, lambda: task.runner.cdc.started is not None)
        loaded = Ctx(window=(start, datetime.now(UTC).replace(tzinfo=None)))
        models = [Model(c, {r[0]: (r, loaded) for r in INITIAL if c.keeps(r[1])}) for c in CASES]
        assert not (found := differences(pg_url, models)), f"full load: {found}"
        assert target_tables(pg_url) == sorted({c.target for c in CASES})
        # the key's name (primary-key-def.name) is not used: the target engine names it
        assert keys(pg_url, "pk_def") == [(True, ["id"])]
        assert keys(pg_url, "uk_def") == [(False, ["id"])]

        change_source(source, models)
        with contextlib.suppress(AssertionError):
            wait_until(task, lambda: not differences(pg_url, models), timeout=60)
        assert not (found := differences(pg_url, models)), f"change processing: {found}"
    finally:
        task.stop.set()
        task.thread.join(60)
    assert task.error is None and task.result is not None
    errors = {s.table: s.apply_error_rows for s in task.result.tables if s.apply_error_rows}
    assert errors == {m.case.target[1]: m.apply_errors for m in models if m.apply_errors}


def target_tables(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_name NOT LIKE 'conveyor%'"
        )
        return sorted(tuple(r) for r in found)


def keys(url: str, table: str) -> list[tuple[bool, list[str]]]:
    """(primary, columns) of the target table's unique indexes."""
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT i.indisprimary,"
            " array(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a"
            "       ON a.attrelid = i.indrelid AND a.attnum = k)::text[]"
            " FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisunique",
            (f"m.{table}",),
        )
        return [(p, list(c)) for p, c in found]
