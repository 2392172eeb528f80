"""Plain SQL run against any engine's URL with its own driver, and a portable test schema."""

from __future__ import annotations

import sqlite3
from urllib.parse import unquote, urlsplit

from oracle import mysql_connect

PORTABLE_DDL = [
    "CREATE TABLE people (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50) NOT NULL, amount DECIMAL(10,2), "
    "born DATE, UNIQUE (name))",
    "CREATE INDEX people_born ON people (born)",
    "CREATE TABLE pets (id INTEGER NOT NULL PRIMARY KEY, owner_id INTEGER NOT NULL, "
    "FOREIGN KEY (owner_id) REFERENCES people (id) ON DELETE CASCADE)",
    "INSERT INTO people VALUES (1, 'ann', 10.50, '2000-01-01'), (2, 'bob', NULL, NULL), (3, 'cy', 3.00, '1999-12-31')",
    "INSERT INTO pets VALUES (1, 1), (2, 1)",
]


def execute_sql(url: str, statements: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        conn = sqlite3.connect(unquote(parts.path)[1:])
        for s in statements:
            conn.execute(s)
        conn.commit()
        conn.close()
    elif parts.scheme.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as pconn:
            for s in statements:
                pconn.execute(s)
    else:
        mconn = mysql_connect(url, autocommit=False)
        with mconn.cursor() as cur:
            for s in statements:
                cur.execute(s)
        mconn.commit()
        mconn.close()
