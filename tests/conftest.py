"""Shared fixtures: throwaway PostgreSQL and MariaDB servers (see tests/servers.py).

Servers are started lazily, once per test session (once per xdist worker), and are
destroyed at the end of the session.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Shared test helpers (oracle.py, tasks.py, e2e/alltypes.py, faults/workload.py) import as top-level modules.
sys.path.insert(0, str(Path(__file__).parent / "e2e"))
sys.path.insert(0, str(Path(__file__).parent / "faults"))
from servers import MariaDBServer, PostgresServer, unique_db_name


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long-running soak tests (deselected by default)")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer.launch()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MariaDBServer]:
    server = MariaDBServer.launch()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, empty database (user conveyor, superuser); dropped afterwards."""
    pg_server.ensure_running()  # in case an earlier test stopped or killed it
    name = unique_db_name(request.node.name)
    url = pg_server.create_database(name)
    yield url
    if pg_server.is_running():
        pg_server.drop_database(name)


@pytest.fixture
def mysql_url(mysql_server: MariaDBServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, empty database (user conveyor, all privileges); dropped afterwards."""
    yield from _mysql_database(mysql_server, request.node.name)


@pytest.fixture
def mysql_source_url(mysql_server: MariaDBServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """Like ``mysql_url``, another database: a task's MariaDB source beside a ``mysql_url`` target."""
    yield from _mysql_database(mysql_server, "src_" + request.node.name)


def _mysql_database(server: MariaDBServer, hint: str) -> Iterator[str]:
    server.ensure_running()
    name = unique_db_name(hint)
    url = server.create_database(name)
    yield url
    if server.is_running():
        server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"
