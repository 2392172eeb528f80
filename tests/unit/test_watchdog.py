"""Watchdog: a guarded block that outlives its deadline is expired, unless it keeps making progress."""

from __future__ import annotations

import threading
import time

from conveyor.endpoints.watchdog import Watchdog


def test_a_silent_block_is_expired() -> None:
    expired = threading.Event()
    dog = Watchdog(0.2, expired.set)
    try:
        with dog.guard():
            assert expired.wait(2)
        assert dog.fired
    finally:
        dog.close()


def test_progress_keeps_a_long_block_alive() -> None:
    expired = threading.Event()
    dog = Watchdog(0.3, expired.set)
    try:
        with dog.guard():
            for _ in range(12):  # 0.6 s in all, twice the deadline, never 0.3 s without progress
                time.sleep(0.05)
                dog.pet()
        assert not expired.is_set() and not dog.fired
        dog.pet()  # outside a guard: starts nothing
        time.sleep(0.4)
        assert not expired.is_set()
    finally:
        dog.close()
