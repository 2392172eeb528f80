"""Resume planning from a stored position's table definitions: the MySQL capture gives back the tables a
position holds, and the runner plans them with those columns and the catalog's keys that still fit."""

from __future__ import annotations

from conveyor.endpoints.base import PositionDefinitions
from conveyor.endpoints.config import MySQLConfig, parse_endpoint
from conveyor.endpoints.mysql.capture import BinlogPosition, MySQLCapture
from conveyor.endpoints.mysql.history import TableSchema, history_json
from conveyor.endpoints.mysql.rowevents import Target
from conveyor.endpoints.mysql.types import to_logical
from conveyor.model.schema import Column, ForeignKey, Index, Key, Table, TableId
from conveyor.runner.planning import as_defined

ITEMS = TableId("shop", "items")


def column(name: str, native: str, nullable: bool = True) -> Column:
    return Column(name, to_logical(native), nullable)


def test_a_position_gives_back_the_definitions_it_carries() -> None:
    then = Table(ITEMS, (column("id", "int(11)", False), column("b", "varchar(20)")), Key("PRIMARY", ("id",)))
    schema = TableSchema(then, tuple(Target(c.name, c.type, None) for c in then.columns), 0)
    position = BinlogPosition("mysql-bin.000001", 4, "", history_json({ITEMS: schema}))
    config = parse_endpoint("mysql://u@127.0.0.1:1/shop", "source")
    assert isinstance(config, MySQLConfig)
    capture = MySQLCapture(config, "t")  # connects only when asked something of the server
    assert isinstance(capture, PositionDefinitions)
    known = capture.definitions_at(capture.position_from_json(capture.position_json(position)))
    assert known == {ITEMS: then} and known[ITEMS].dialect == "mysql"
    assert capture.definitions_at(BinlogPosition("mysql-bin.000001", 4)) == {}  # a user's start position


def test_as_defined_takes_the_columns_then_and_the_keys_that_fit() -> None:
    now = Table(
        ITEMS,
        (column("id", "bigint(20)", False), column("c", "int(11)"), column("b2", "varchar(20)")),
        Key("PRIMARY", ("id",)),
        unique_keys=(Key("u_b2", ("b2",)), Key("u_id", ("id",))),
        indexes=(Index("i_c", ("c",)), Index("i_id", ("id",))),
        foreign_keys=(ForeignKey("f_c", ("c",), TableId("shop", "other"), ("id",)),),
        comment="kept",
    )
    then = Table(ITEMS, (column("id", "int(11)", False), column("b", "varchar(20)")), Key("PRIMARY", ("id",)))
    planned = as_defined(now, then)
    assert planned.columns == then.columns and planned.primary_key == then.primary_key
    assert [k.name for k in planned.unique_keys] == ["u_id"] and [i.name for i in planned.indexes] == ["i_id"]
    assert planned.foreign_keys == () and planned.comment == "kept"
    assert as_defined(now, None) is now
