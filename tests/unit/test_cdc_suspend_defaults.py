"""A column added with a default during CDC: which defaults the target follows (``diff_table`` keeps the
column, ``added_default`` converts a constant and refuses the rest)."""

from __future__ import annotations

import pytest

from conveyor.convert.added_default import added_default
from conveyor.convert.engines import NotConvertible
from conveyor.convert.schema_change import AddColumn, diff_table
from conveyor.model.schema import Column, Key, Table, TableId
from conveyor.model.types import ColumnType
from conveyor.model.types import LogicalType as L

INT = ColumnType(L.INTEGER, bits=32)
ID = Column("id", INT, nullable=False)


def test_columns_added_with_a_default_are_kept_for_the_target_to_follow() -> None:
    old = Table(TableId("public", "t"), (ID,), primary_key=Key("pk", ("id",)))
    added = [Column("n", INT, nullable=False, default="7"), Column("m", INT, default="'x'::text")]
    assert diff_table(old, [ID, *added]) == ([AddColumn(c) for c in added], [])


@pytest.mark.parametrize(
    ("default", "logical", "native", "source", "target", "expected"),
    [
        ("7", L.INTEGER, "integer", "postgresql", "postgresql", "7"),
        (
            "'it''s 100%'::character varying",
            L.VARCHAR,
            "varchar(30)",
            "postgresql",
            "postgresql",
            "'it''s 100%%'::character varying",
        ),
        ("'it''s 100%'::character varying", L.VARCHAR, "varchar(30)", "postgresql", "mysql", "'it''s 100%'"),
        ("true", L.BOOLEAN, "tinyint(1)", "postgresql", "mysql", "1"),
        ("1", L.BOOLEAN, "boolean", "mysql", "postgresql", "TRUE"),
        ("-1.5", L.DECIMAL, "numeric(6,2)", "mysql", "postgresql", "-1.5"),
        ("NULL", L.INTEGER, "integer", "mysql", "postgresql", None),
        ("'{1,2}'::integer[]", L.ARRAY, "integer[]", "postgresql", "postgresql", "'{1,2}'::integer[]"),
    ],
)
def test_constant_defaults_convert(
    default: str, logical: L, native: str, source: str, target: str, expected: str | None
) -> None:
    column = Column("c", ColumnType(logical), default=default)
    assert added_default(column, native, source, target) == expected


@pytest.mark.parametrize(
    ("default", "logical", "source", "target", "reason"),
    [
        ("now()", L.TIMESTAMPTZ, "postgresql", "postgresql", "is not a constant"),
        ("gen_random_uuid()", L.UUID, "postgresql", "postgresql", "is not a constant"),
        ("nextval('t_id_seq'::regclass)", L.INTEGER, "postgresql", "mysql", "is not a constant"),
        ("(uuid())", L.VARCHAR, "mysql", "mysql", "is not a constant"),
        ("current_timestamp()", L.TIMESTAMP, "mysql", "postgresql", "is not a constant"),
        ("(1 + 1)", L.INTEGER, "mysql", "postgresql", "is not a constant"),
        (
            "'2024-01-01 00:00:00+02'::timestamp with time zone",
            L.TIMESTAMPTZ,
            "postgresql",
            "mysql",
            "followed only between two postgresql servers",
        ),
    ],
)
def test_other_defaults_are_refused(default: str, logical: L, source: str, target: str, reason: str) -> None:
    column = Column("c", ColumnType(logical), default=default)
    with pytest.raises(NotConvertible, match=reason):
        added_default(column, "text", source, target)
