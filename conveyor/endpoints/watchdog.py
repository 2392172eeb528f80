"""A deadline on calls that wait for a server: a peer that accepts bytes but never answers (a hung
host, a black-holed network) would otherwise block the caller for ever, since TCP sees nothing wrong."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator


class Watchdog:
    """Runs ``expire`` (from its own thread) when a ``guard()`` block lasts longer than ``seconds``;
    ``expire`` should make the blocked call fail, e.g. by shutting its socket down. ``fired`` then
    says so, until the next ``guard()``."""

    def __init__(self, seconds: float, expire: Callable[[], None]) -> None:
        self.seconds = seconds
        self.expire = expire
        self.fired = False
        self._deadline: float | None = None
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="conveyor-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        with self._changed:
            self.fired = False
            self._deadline = time.monotonic() + self.seconds
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._deadline = None

    def pet(self) -> None:
        """The guarded block made progress (a server answered): its deadline starts again from now. A
        block of many round trips is not a silent server however long it takes in all."""
        with self._changed:
            if self._deadline is not None:
                self._deadline = time.monotonic() + self.seconds

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                self._deadline = None
                self.fired = True
                with contextlib.suppress(Exception):  # the call it guards fails or returns either way
                    self.expire()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout=5)
