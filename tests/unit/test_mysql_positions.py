"""A MySQL / MariaDB position names its table definitions by digest (``History``): the JSON a commit
stores is small, the definitions travel as a shared part, and a position stored inline by an earlier
version reads back the same."""

from __future__ import annotations

import json

from conveyor.endpoints.mysql.capture import BinlogPosition, position_from_json
from conveyor.endpoints.mysql.history import History, TableSchema, history_from_json, history_json
from conveyor.endpoints.mysql.rowevents import Target
from conveyor.endpoints.mysql.types import to_logical
from conveyor.endpoints.sql.changes import shared_part
from conveyor.model.schema import Column, Key, Table, TableId

ITEMS = TableId("shop", "items")


def history(*columns: tuple[str, str]) -> History:
    table = Table(ITEMS, tuple(Column(n, to_logical(t), True) for n, t in columns), Key("PRIMARY", ("id",)))
    return history_json({ITEMS: TableSchema(table, tuple(Target(c.name, c.type, None) for c in table.columns), 0)})


def test_the_digest_is_the_definitions_content() -> None:
    one = history(("id", "int(11)"), ("b", "varchar(20)"))
    assert one.digest == history(("id", "int(11)"), ("b", "varchar(20)")).digest
    assert one.digest != history(("id", "int(11)"), ("b", "varchar(21)")).digest
    assert History(tuple(json.loads(json.dumps(one.tables)))).digest == one.digest  # stored and read back
    assert not History() and one


def test_a_position_carries_its_definitions_as_a_shared_part() -> None:
    tables = history(("id", "int(11)"), ("b", "varchar(20)"))
    position = BinlogPosition("mysql-bin.000002", 1234, "0-1-7", tables)
    data = position.to_json()
    assert data == {
        "file": "mysql-bin.000002",
        "pos": 1234,
        "gtid": "0-1-7",
        "tables": shared_part(tables.digest, tables.tables),
    }
    back = position_from_json(json.loads(json.dumps(data)))
    assert back == position and back.gtid == "0-1-7" and back.tables == tables
    assert list(history_from_json(back.tables.tables)) == [ITEMS]
    assert BinlogPosition("mysql-bin.000002", 4).to_json() == {"file": "mysql-bin.000002", "pos": 4}


def test_a_position_stored_with_the_definitions_inline_reads_back_the_same() -> None:
    tables = history(("id", "int(11)"), ("b", "varchar(20)"))
    inline = {"file": "mysql-bin.000002", "pos": 1234, "tables": json.loads(json.dumps(tables.tables))}
    back = position_from_json(inline)
    assert back.tables == tables and back.tables.digest == tables.digest
    assert history_from_json(back.tables.tables)[ITEMS].table.column_names == ("id", "b")
