"""PostgreSQL row hashes per database encoding: a UTF8 database hashes a text's own bytes (``textsend``),
another converts them to UTF-8 first; both agree with ``canonical.hash60``."""

from __future__ import annotations

import psycopg
from psycopg import sql

from conveyor.validate.canonical import hash60
from conveyor.validate.dialects import PostgresDialect

UTF8_TEXTS = ["", "1,", "12:hello world", "8:café€", "4:😀"]


def _hashes(url: str, texts: list[str]) -> tuple[bool, list[int]]:
    """(the session's dialect hashes UTF-8 bytes as they are, the SQL hashes of ``texts``)."""
    with psycopg.connect(url, autocommit=True) as conn:
        dialect = PostgresDialect().for_session(conn)
        assert isinstance(dialect, PostgresDialect)
        out = []
        for text in texts:
            row = conn.execute(f"SELECT {dialect.hash60('%s::text')}", (text,)).fetchone()
            assert row is not None
            out.append(int(row[0]))
        return dialect.utf8, out


def test_utf8_database_hashes_text_bytes_as_they_are(pg_url: str) -> None:
    utf8, hashes = _hashes(pg_url, UTF8_TEXTS)
    assert utf8
    assert hashes == [hash60(t) for t in UTF8_TEXTS]


def test_latin1_database_hashes_utf8_bytes(pg_url: str) -> None:
    name = f"{pg_url.rsplit('/', 1)[1]}_latin1"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
                sql.Identifier(name)
            )
        )
        try:
            texts = ["", "5:café", "3:abc"]
            utf8, hashes = _hashes(f"{pg_url.rsplit('/', 1)[0]}/{name}", texts)
            assert not utf8
            assert hashes == [hash60(t) for t in texts]
        finally:
            admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
