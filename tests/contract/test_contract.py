"""One contract over every engine: each role behaves the same, whatever the engine."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from schemas import PORTABLE_DDL, execute_sql

from conveyor.endpoints.base import ErrorPolicy, PrepMode
from conveyor.endpoints.config import parse_endpoint
from conveyor.endpoints.registry import EngineSpec, engine_for
from conveyor.endpoints.sql.applier import StaleLease
from conveyor.model.rows import RowBatch
from conveyor.model.schema import TableId
from conveyor.model.segments import Segment
from conveyor.model.types import LogicalType

ENGINES = ["sqlite", "postgresql", "mysql"]


@pytest.fixture(params=ENGINES)
def endpoint(request: pytest.FixtureRequest) -> tuple[str, Any, EngineSpec]:
    fixture = {"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param]
    url = request.getfixturevalue(fixture)
    config = parse_endpoint(url, "endpoint")
    return url, config, engine_for(config)


def test_capabilities_match_roles(endpoint: tuple[str, Any, EngineSpec]) -> None:
    _, config, spec = endpoint
    assert spec.name == config.engine
    caps = spec.capabilities
    assert caps.max_identifier_length >= 63
    assert callable(spec.open_introspector) and callable(spec.open_snapshot) and callable(spec.open_applier)
    assert callable(spec.join_snapshot)
    assert spec.classify is None or spec.classify(ValueError("not a driver error")) is None
    if caps.schemas:
        assert spec.default_schema(config)


def test_introspection(endpoint: tuple[str, Any, EngineSpec]) -> None:
    url, config, spec = endpoint
    execute_sql(url, PORTABLE_DDL)
    intro = spec.open_introspector(config)
    schema = spec.default_schema(config)
    ids = intro.table_ids(schema)
    assert {t.name for t in ids} >= {"people", "pets"}
    people = intro.table(TableId(schema, "people"))
    assert people.primary_key is not None and people.primary_key.columns == ("id",)
    kinds = {c.name: c.type for c in people.columns}
    assert kinds["id"].logical is LogicalType.INTEGER
    assert kinds["name"].logical is LogicalType.VARCHAR and kinds["name"].length == 50
    assert kinds["amount"].logical is LogicalType.DECIMAL and (kinds["amount"].precision, kinds["amount"].scale) == (
        10,
        2,
    )
    assert kinds["born"].logical is LogicalType.DATE
    assert not people.column("name").nullable and people.column("amount").nullable
    assert [k.columns for k in people.unique_keys] == [("name",)]
    assert [i.columns for i in people.indexes] == [("born",)]
    pets = intro.table(TableId(schema, "pets"))
    (fk,) = pets.foreign_keys
    assert fk.columns == ("owner_id",) and fk.ref_table.name == "people" and fk.ref_columns == ("id",)
    assert fk.on_delete == "CASCADE"
    close = getattr(intro, "close", None)
    if close:
        close()


def test_snapshot_reads_segments(endpoint: tuple[str, Any, EngineSpec]) -> None:
    url, config, spec = endpoint
    execute_sql(url, PORTABLE_DDL)
    intro = spec.open_introspector(config)
    people = intro.table(TableId(spec.default_schema(config), "people"))
    snapshot = spec.open_snapshot(config, 2)
    reader = snapshot.reader()
    try:
        assert reader.estimate_rows(people) >= 0
        assert reader.key_bounds(people, "id") == (1, 3)
        first = [r for b in reader.read(people, Segment(people.id, 0, "range", "id", None, 2), 10) for r in b.rows]
        rest = [r for b in reader.read(people, Segment(people.id, 1, "range", "id", 2, None), 1) for r in b.rows]
        assert [r[0] for r in first] == [1] and sorted(r[0] for r in rest) == [2, 3]
        by_id = {r[0]: r for r in first + rest}
        assert by_id[1][1] == "ann" and Decimal(str(by_id[1][2])) == Decimal("10.50")
    finally:
        reader.close()
        snapshot.close()


def test_snapshot_is_joined_by_its_token(endpoint: tuple[str, Any, EngineSpec]) -> None:
    """What a worker process does: join with the picklable token, read, then the runner releases."""
    url, config, spec = endpoint
    execute_sql(url, PORTABLE_DDL)
    people = spec.open_introspector(config).table(TableId(spec.default_schema(config), "people"))
    snapshot = spec.open_snapshot(config, 1, hold=True)
    try:
        token = pickle.loads(pickle.dumps(snapshot.token()))
        joined = spec.join_snapshot(pickle.loads(pickle.dumps(config)), token)
        snapshot.release()
        try:
            assert sorted(r[0] for b in joined.read(people, Segment(people.id, 0), 10) for r in b.rows) == [1, 2, 3]
        finally:
            joined.close()
    finally:
        snapshot.close()


def test_applier_commits_segments_atomically_and_fences(endpoint: tuple[str, Any, EngineSpec]) -> None:
    url, config, spec = endpoint
    execute_sql(url, PORTABLE_DDL)
    intro = spec.open_introspector(config)
    people = intro.table(TableId(spec.default_schema(config), "people"))
    target = people.renamed(TableId(spec.default_schema(config), "people_copy"))
    applier = spec.open_applier(config, spec.default_schema(config))
    natives = [applier.map_type(c.type) for c in people.columns]
    assert natives[0]  # homogeneous: the source's own type
    lease = applier.start_task("contract", fresh=True)
    assert applier.start_task("contract", fresh=False) == lease + 1
    applier.prepare(target, natives, PrepMode.DROP_AND_CREATE)
    rows = [(1, "ann", Decimal("10.50"), None), (2, "bob", None, None)]
    batches: Callable[[], list[RowBatch]] = lambda: [RowBatch(target.column_names, rows)]  # noqa: E731
    encoders = [applier.encoder(c.type, n) for c, n in zip(people.columns, natives, strict=True)]
    with pytest.raises(StaleLease):
        applier.load("contract", lease, target, 0, batches, encoders, ErrorPolicy.LOG_ERROR, lambda r, b: None, natives)
    assert applier.done_segments("contract") == {}
    result = applier.load(
        "contract", lease + 1, target, 0, batches, encoders, ErrorPolicy.LOG_ERROR, lambda r, b: None, natives
    )
    assert result.rows == 2
    assert applier.done_segments("contract") == {(str(target.id), 0): (2, 0)}
    assert applier.finish(target, natives) == []
    applier.close()
    reread = spec.open_introspector(config).table(target.id)
    assert [k.columns for k in reread.unique_keys] + [i.columns for i in reread.indexes if i.unique] == [("name",)]
