"""A table-mapping JSON written for AWS DMS runs unchanged: several rule types together, in the shape of the
DMS documentation's examples (selection with a source filter and an exclude, schema rename, table prefix,
column rename, add-column, the three data-masking actions, parallel-load ranges), through a real full
load and change processing PostgreSQL -> PostgreSQL, checked row by row."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cdc_support import Running, postgres_source, wait_until
from servers import PostgresServer
from tasks import task_doc

SOURCE_SQL = """
CREATE SCHEMA sales;
CREATE TABLE sales.customer_master (cust_id int PRIMARY KEY, cust_name text NOT NULL,
  cust_passport_no varchar(20), cust_phone varchar(20), email text, region varchar(5));
INSERT INTO sales.customer_master SELECT g, 'name ' || g, 'C' || g || 'BGJ' || (g * 7) || 'K',
  '+1-555-' || lpad(g::text, 4, '0'), 'user' || g || '@example.com', (ARRAY['EU','US','AP'])[g % 3 + 1]
  FROM generate_series(1, 120) g;
CREATE TABLE sales.orders (order_id int PRIMARY KEY, cust_id int NOT NULL, amount numeric(10,2), status varchar(10));
INSERT INTO sales.orders SELECT g, g % 120 + 1, g * 1.25, 'new' FROM generate_series(1, 200) g;
CREATE TABLE sales.tmp_scratch (id int PRIMARY KEY);
INSERT INTO sales.tmp_scratch VALUES (1);
"""

#: as a DMS user writes it (the console's JSON editor), unchanged
DMS_MAPPING = """
{
  "rules": [
    {"rule-type": "selection", "rule-id": "1", "rule-name": "customers",
     "object-locator": {"schema-name": "sales", "table-name": "customer_master"}, "rule-action": "include",
     "filters": [{"filter-type": "source", "column-name": "region",
                  "filter-conditions": [{"filter-operator": "eq", "value": "EU"},
                                        {"filter-operator": "eq", "value": "US"}]}]},
    {"rule-type": "selection", "rule-id": "2", "rule-name": "orders",
     "object-locator": {"schema-name": "sales", "table-name": "%"}, "rule-action": "include", "filters": []},
    {"rule-type": "selection", "rule-id": "3", "rule-name": "no-scratch",
     "object-locator": {"schema-name": "sales", "table-name": "tmp[_]%"}, "rule-action": "exclude"},
    {"rule-type": "transformation", "rule-id": "4", "rule-name": "schema", "rule-target": "schema",
     "object-locator": {"schema-name": "sales"}, "rule-action": "rename", "value": "crm", "old-value": null},
    {"rule-type": "transformation", "rule-id": "5", "rule-name": "prefix", "rule-target": "table",
     "object-locator": {"schema-name": "sales", "table-name": "orders"}, "rule-action": "add-prefix",
     "value": "dw_", "old-value": null},
    {"rule-type": "transformation", "rule-id": "6", "rule-name": "name", "rule-target": "column",
     "object-locator": {"schema-name": "sales", "table-name": "customer_master", "column-name": "cust_name"},
     "rule-action": "rename", "value": "name", "old-value": null},
    {"rule-type": "transformation", "rule-id": "7", "rule-name": "passport", "rule-target": "column",
     "object-locator": {"schema-name": "sales", "table-name": "customer_master", "column-name": "cust_passport_no"},
     "rule-action": "data-masking-digits-mask", "value": "#"},
    {"rule-type": "transformation", "rule-id": "8", "rule-name": "phone", "rule-target": "column",
     "object-locator": {"schema-name": "sales", "table-name": "customer_master", "column-name": "cust_phone"},
     "rule-action": "data-masking-digits-randomize"},
    {"rule-type": "transformation", "rule-id": "9", "rule-name": "email", "rule-target": "column",
     "object-locator": {"schema-name": "sales", "table-name": "customer_master", "column-name": "email"},
     "rule-action": "data-masking-hash-mask"},
    {"rule-type": "transformation", "rule-id": "10", "rule-name": "tag", "rule-target": "column",
     "object-locator": {"schema-name": "sales", "table-name": "customer_master"},
     "rule-action": "add-column", "value": "region_tag", "expression": "lower($region) || ':' || $AR_H_OPERATION",
     "data-type": {"type": "string", "length": 20}},
    {"rule-type": "table-settings", "rule-id": "11", "rule-name": "ranges",
     "object-locator": {"schema-name": "sales", "table-name": "orders"},
     "parallel-load": {"type": "ranges", "columns": ["order_id"], "boundaries": [["50"], ["150"]]}}
  ]
}
"""


@pytest.fixture
def source(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from postgres_source(pg_server, "dmsfile_" + request.node.name, "dmsfile", SOURCE_SQL)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return sorted(tuple(r) for r in conn.execute(sql))


def shape(phone: str | None) -> str | None:
    return None if phone is None else re.sub(r"\d", "9", phone)


def expected_customers(url: str, ops: dict[int, str]) -> list[tuple[Any, ...]]:
    """The source's customers as the mapping makes them; the randomized phone by its shape."""
    out = []
    for cid, name, passport, phone, email, region in rows(url, "SELECT * FROM sales.customer_master"):
        if region in ("EU", "US"):
            masked = None if passport is None else re.sub(r"\d", "#", passport)
            hashed = None if email is None else hashlib.sha256(email.encode()).hexdigest().upper()
            out.append((cid, name, masked, shape(phone), hashed, region, f"{region.lower()}:{ops.get(cid, 'INSERT')}"))
    return out


def target_customers(url: str) -> list[tuple[Any, ...]]:
    got = rows(
        url, "SELECT cust_id, name, cust_passport_no, cust_phone, email, region, region_tag FROM crm.customer_master"
    )
    return [(*r[:3], shape(r[3]), *r[4:]) for r in got]


def test_a_dms_mapping_file_runs_unchanged_in_full_load_and_cdc(source: str, pg_url: str, tmp_path: Path) -> None:
    doc = {**task_doc(source, pg_url, name="dmsfile"), "migration_type": "full-load-and-cdc"}
    doc["table_mappings"] = json.loads(DMS_MAPPING)
    task = Running(doc, tmp_path / "state")
    wait_until(task, lambda: task.runner.cdc.started is not None)
    full = target_customers(pg_url)
    assert full == expected_customers(source, {}) and len(full) == 80
    original = dict(rows(source, "SELECT cust_id, cust_phone FROM sales.customer_master"))
    assert sum(r[3] != original[r[0]] for r in rows(pg_url, "SELECT * FROM crm.customer_master")) > 40
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sales.customer_master VALUES (500, 'new', 'X12Y', '+44 20 7946 0000', 'n@x.io', 'EU')"
        )
        conn.execute("INSERT INTO sales.customer_master VALUES (501, 'out', 'X1', '1', 'o@x.io', 'AP')")  # filtered
        conn.execute("UPDATE sales.customer_master SET cust_passport_no = 'P999Q', email = NULL WHERE cust_id = 1")
        conn.execute("UPDATE sales.customer_master SET cust_phone = '0049 30 1234' WHERE cust_id = 2")
        conn.execute("DELETE FROM sales.customer_master WHERE cust_id IN (4, 5, 6)")
        conn.execute("INSERT INTO sales.orders VALUES (1000, 1, 9.99, 'new')")
        conn.execute("UPDATE sales.orders SET status = 'paid' WHERE order_id BETWEEN 40 AND 60")
        conn.execute("DELETE FROM sales.orders WHERE order_id = 150")
        conn.execute("INSERT INTO sales.tmp_scratch VALUES (2)")
    ops = {1: "UPDATE", 2: "UPDATE"}
    deadline = time.monotonic() + 60
    while True:
        want, got = expected_customers(source, ops), target_customers(pg_url)
        orders = rows(source, "SELECT * FROM sales.orders") == rows(pg_url, "SELECT * FROM crm.dw_orders")
        if (got == want and orders) or time.monotonic() > deadline:
            break
        task.check()
        time.sleep(0.3)
    task.finish()
    assert got == want
    assert orders
    assert [r for r in got if r[0] in (1, 500)] == [
        (1, "name 1", "P###Q", shape("+1-555-0001"), None, "US", "us:UPDATE"),
        (
            500,
            "new",
            "X##Y",
            shape("+44 20 7946 0000"),
            hashlib.sha256(b"n@x.io").hexdigest().upper(),
            "EU",
            "eu:INSERT",
        ),
    ]
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'crm'"
        )
        assert sorted(tables.fetchall()) == [("crm", "customer_master"), ("crm", "dw_orders")]
