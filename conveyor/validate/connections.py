"""Reading connections for validation: each engine's own session (UTC, ISO dates), autocommit, so every
checksum query sees the data as it is now (a recheck must see rows that changed since)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def open_reader(engine: str, config: Any) -> tuple[Any, Callable[[str], str]]:
    """A connection and the engine's identifier quoting (``%`` doubled where statements take ``%s``)."""
    if engine == "postgresql":
        from conveyor.endpoints.postgres.connect import connect as pg_connect
        from conveyor.endpoints.postgres.connect import quote as pg_quote

        pconn = pg_connect(config, autocommit=True)
        # chunk queries are short and some expressions long (JSON): compiling them costs more than it saves
        pconn.execute("SET jit = off")
        # a checksum's GROUP BY of a key expression is estimated at one group per row (hundreds per chunk in
        # fact): the planner would sort every row, spilling to disk, where hashing them is ~30% cheaper
        pconn.execute("SET enable_sort = off")
        # the lanes are the parallelism (ThreadCount queries at once): a chunk's query forking workers of its
        # own costs more CPU than it saves (about 15% of PostgreSQL's CPU on 2 cores)
        pconn.execute("SET max_parallel_workers_per_gather = 0")
        return pconn, lambda name: pg_quote(pconn, name)
    if engine == "mysql":
        from conveyor.endpoints.mysql.connect import connect as my_connect
        from conveyor.endpoints.mysql.connect import quote as my_quote

        mconn = my_connect(config, "source")
        mconn.autocommit(True)
        return mconn, lambda name: my_quote(name).replace("%", "%%")
    from conveyor.endpoints.sqlite.connect import connect as lite_connect
    from conveyor.endpoints.sqlite.connect import quote as lite_quote

    return lite_connect(config, readonly=True), lite_quote


def readers(engine: str, config: Any) -> tuple[Callable[[], Any], Callable[[str], str]]:
    """A function opening reading connections (its first call returns the connection the quoting was
    made with) and the engine's identifier quoting."""
    first, quote = open_reader(engine, config)
    spare = [first]

    def connect() -> Any:
        return spare.pop() if spare else open_reader(engine, config)[0]

    return connect, quote
