"""The assessment catalog, grading and table checks: pure logic (the servers: tests/e2e/test_assess_servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.assess.assessment import Status, grade
from conveyor.assess.catalog import NO_KEY, SELECTION, Scope, every_spec, source_specs, target_specs
from conveyor.assess.tables import table_findings
from conveyor.errors import UserActionError
from conveyor.model.findings import Finding, enforce
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.types import ColumnType, LogicalType

DOC = Path(__file__).parents[2] / "docs" / "assessment.md"


def test_every_key_is_unique_and_documented() -> None:
    keys = [s.key for s in every_spec()]
    assert len(keys) == len(set(keys))
    doc = DOC.read_text(encoding="utf-8")
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert not missing, f"docs/assessment.md lacks {missing}"


def test_engine_families_have_their_own_keys() -> None:
    assert {s.key for s in source_specs("mariadb")} >= {"mariadb-check-binlog-format", "mariadb-check-binlog-image"}
    assert not any(s.key.startswith("mariadb-") for s in source_specs("mysql"))
    assert "mysql-check-binlog-compression" not in {s.key for s in source_specs("mariadb")}
    assert source_specs("sqlite") == () and target_specs("sqlite") == ()
    assert [s.key for s in target_specs("postgresql")] == ["postgres-check-target-privileges"]


@pytest.mark.parametrize(
    ("scope", "applies"),
    [
        (Scope.CDC, {"full-load": False, "cdc": True, "full-load-and-cdc": True}),
        (Scope.FULL_LOAD, {"full-load": True, "cdc": False, "full-load-and-cdc": True}),
        (Scope.EVERY, {"full-load": True, "cdc": True, "full-load-and-cdc": True}),
    ],
)
def test_scopes(scope: Scope, applies: dict[str, bool]) -> None:
    assert {t: scope.applies(t) for t in applies} == applies


def test_grading() -> None:
    assert grade(NO_KEY, [], "full-load", selected=True).status is Status.SKIPPED
    assert grade(NO_KEY, [], "cdc", selected=False).status is Status.SKIPPED
    passed = grade(NO_KEY, [], "cdc", selected=True)
    assert (passed.status, passed.message) == (Status.PASSED, NO_KEY.title)
    warned = grade(NO_KEY, [Finding(NO_KEY.key, "a", warning=True), Finding("other", "b")], "cdc", selected=True)
    assert (warned.status, warned.message) == (Status.WARNING, "a")
    mixed = [Finding(SELECTION.key, "x", warning=True), Finding(SELECTION.key, "y"), Finding(SELECTION.key, "y")]
    failed = grade(SELECTION, mixed, "full-load", selected=False)
    assert (failed.status, failed.message, failed.blocking) == (Status.FAILED, "x; y", True)


def test_enforce_raises_the_first_problem_and_returns_warnings() -> None:
    assert enforce([Finding("k", "careful", warning=True)]) == ["careful"]
    with pytest.raises(UserActionError, match=r"^first$"):
        enforce([Finding("k", "note", warning=True), Finding("a", "first"), Finding("b", "second")])


def _table(name: str, *columns: tuple[str, LogicalType], key: bool = False, **extra: str) -> Table:
    cols = tuple(Column(n, ColumnType(t, native=str(t))) for n, t in columns)
    return Table(TableId("s", name), cols, primary_key=Key("pk", (cols[0].name,)) if key else None, extra=extra)


def test_table_findings() -> None:
    tables = [
        _table("keyed", ("id", LogicalType.INTEGER), ("body", LogicalType.TEXT), key=True),
        _table("log", ("at", LogicalType.INTEGER), ("msg", LogicalType.TEXT), engine="MyISAM"),
        _table("geo", ("id", LogicalType.INTEGER), key=True, unsupported_columns="g (geometry)", engine="InnoDB"),
    ]
    found = {f.key: f.message for f in table_findings(tables, "mysql", same_engine=False, cdc=True)}
    assert found == {
        "unsupported-data-types-in-source": "1 table(s): s.geo (columns of unsupported types are not copied: "
        "g (geometry))",
        "mysql-check-table-storage-engine": "1 table(s): s.log (engine MyISAM)",
        "table-with-no-primary-key-or-unique-constraint": "1 table(s): s.log (no primary or unique key)",
        "table-with-lob-but-without-primary-key-or-unique-constraint": "1 table(s): s.log (msg)",
    }
    same = {f.key for f in table_findings(tables, "mysql", same_engine=True, cdc=False)}
    assert same == {"mysql-check-table-storage-engine"}  # copied exactly between MySQL servers; no CDC checks
    many = [_table(f"t{i}", ("a", LogicalType.INTEGER)) for i in range(12)]
    (finding,) = table_findings(many, "sqlite", same_engine=True, cdc=True)[:1]
    assert finding.message.endswith("and 2 more") and finding.message.startswith("12 table(s): s.t0 (")
