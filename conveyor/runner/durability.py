"""When a committed source position may be acknowledged to the source.

Change processing stores each source position in the target transaction holding the changes up to it.
Where the target lets a session commit without waiting for its log to reach the disk (PostgreSQL's
``synchronous_commit = off``, as its own subscriptions apply), a commit that returned can still be lost
in a target crash, together with the position it stored: the target then resumes from an older position,
which is right as long as the source kept its log from there. So a position is acknowledged (the source
may discard its log up to it) only once the target's log is durable past the commit that stored it:
native logical replication reports its flush position the same way. Commits no longer wait for a disk
flush each, which on a durable target was most of the time per target transaction.

One query (``log_positions``) per ``CHECK_SECONDS`` bounds every commit before it: the log's end at that
moment is past their commit records.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from conveyor.endpoints.sql.applier import SqlApplier

#: seconds between the target log queries that release positions (PostgreSQL's WAL writer flushes
#: every wal_writer_delay, 200 ms by default)
CHECK_SECONDS = 0.1


class DurableAcks:
    """Committed source positions, released for acknowledgement once durable on the target."""

    def __init__(self, applier: SqlApplier) -> None:
        self.applier = applier
        self.lazy = applier.commit_lazily()
        #: (target log end when asked, the last position committed before asking), oldest first
        self._pending: deque[tuple[int, Any]] = deque()
        #: the last committed position no log query has bounded yet
        self._unbounded: Any = None
        self._checked = 0.0

    @property
    def waiting(self) -> bool:
        """Positions committed but not released yet."""
        return bool(self._pending) or self._unbounded is not None

    def committed(self, position: Any) -> Any:
        """A target commit stored ``position``; returns the latest position now safe to acknowledge
        (None: none new). Calls the target at most every ``CHECK_SECONDS``."""
        if not self.lazy:
            return position
        self._unbounded = position
        return self.poll_if_due()

    def poll_if_due(self) -> Any:
        """``poll`` when the last was ``CHECK_SECONDS`` ago, else None."""
        return self.poll() if time.monotonic() - self._checked >= CHECK_SECONDS else None

    def poll(self) -> Any:
        """Ask the target how far its log is durable; the latest position released by it, or None."""
        written, flushed = self.applier.log_positions()
        self._checked = time.monotonic()
        if self._unbounded is not None:
            self._pending.append((written, self._unbounded))
            self._unbounded = None
        released = None
        while self._pending and self._pending[0][0] <= flushed:
            released = self._pending.popleft()[1]
        return released

    def drain(self, timeout: float) -> Any:
        """Before stopping: wait up to ``timeout`` seconds for every committed position to be durable;
        the latest released (None: none)."""
        released = None
        deadline = time.monotonic() + timeout
        while self.lazy and self.waiting:
            released = self.poll() or released
            if not self.waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return released
