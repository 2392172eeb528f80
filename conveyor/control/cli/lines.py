"""A run's messages as plain lines on stderr (``--no-progress``, logs): without rich, which a CDC task's
start-up then does not import (~40 ms)."""

from __future__ import annotations

import time

from conveyor.control.cli.common import say
from conveyor.runner import stats as st


class LineListener(st.NullListener):
    """Messages as plain lines, and change processing's figures every ``every`` seconds."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._last = 0.0

    def message(self, text: str) -> None:
        say(text)

    def cdc_progress(self, cdc: st.CdcStats) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.message(
                f"changes: {cdc.applied_changes:,} applied, {cdc.throughput:,.0f}/s, latency "
                f"{cdc.latency_target:.2f} s, checkpoint {cdc.checkpoint}"
            )
