"""DurableAcks: a committed source position is released for acknowledgement only once the target's log is
durable past the commit that stored it (pure ordering logic; the PostgreSQL side is
tests/e2e/test_cdc_durable_acks.py)."""

from __future__ import annotations

from typing import Any

from conveyor.runner import durability
from conveyor.runner.durability import DurableAcks


class Log:
    """A target's log: its end and how far it is flushed; commits return before they are flushed."""

    def __init__(self, lazy: bool = True) -> None:
        self.lazy = lazy
        self.end = 100
        self.flushed = 100
        self.queries = 0

    def commit_lazily(self) -> bool:
        return self.lazy

    def log_positions(self) -> tuple[int, int]:
        self.queries += 1
        return self.end, self.flushed

    def commit(self) -> None:
        self.end += 10


def acks(log: Log) -> DurableAcks:
    return DurableAcks(log)  # type: ignore[arg-type]


def test_a_position_waits_for_the_flush_past_its_commit(monkeypatch: Any) -> None:
    monkeypatch.setattr(durability, "CHECK_SECONDS", 0.0)
    log = Log()
    durable = acks(log)
    log.commit()
    assert durable.committed("p1") is None  # its commit (log end 110) is not on disk
    assert durable.waiting
    log.commit()
    assert durable.committed("p2") is None
    log.flushed = 110
    assert durable.poll() == "p1"  # p2's commit ends at 120
    log.flushed = 125
    assert durable.poll() == "p2"
    assert not durable.waiting
    assert durable.poll() is None


def test_one_log_query_per_interval_bounds_every_commit_before_it(monkeypatch: Any) -> None:
    monkeypatch.setattr(durability, "CHECK_SECONDS", 0.0)
    log = Log()
    durable = acks(log)
    log.commit()
    assert durable.committed("p1") is None  # asks at once
    monkeypatch.setattr(durability, "CHECK_SECONDS", 3600.0)
    for name in ("p2", "p3"):
        log.commit()
        assert durable.committed(name) is None
    assert log.queries == 1  # the others wait for the interval
    log.flushed = log.end
    assert durable.poll() == "p3"  # the query ran after p3's commit: its log end bounds it


def test_drain_waits_for_the_flush_then_gives_up(monkeypatch: Any) -> None:
    log = Log()
    durable = acks(log)
    monkeypatch.setattr(durability, "CHECK_SECONDS", 3600.0)  # no poll from committed()
    durable.poll()
    log.commit()
    assert durable.committed("p1") is None
    assert durable.drain(0.05) is None  # never flushed: nothing released, the stop goes on
    log.flushed = log.end
    assert durable.drain(1.0) == "p1"


def test_durable_commits_release_at_once() -> None:
    log = Log(lazy=False)
    durable = acks(log)
    assert durable.committed("p1") == "p1"
    assert not durable.waiting and log.queries == 0
