"""The queue in front of `assistant serve`'s engine: one request at a time, a bounded number waiting.

Admission is counted when a request arrives (before any await), so a burst cannot overfill the
queue; the turn is an ``asyncio.Lock`` (FIFO, cancellation-safe), released when the worker is done.
A request that cannot be admitted is answered 429 with a ``Retry-After`` from recent durations.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque


class Gate:
    """One engine job at a time, first come first served; at most ``limit`` more admitted to wait."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted = 0  # requests admitted and not finished, running or waiting
        self.turn = asyncio.Lock()
        self.durations: deque[float] = deque(maxlen=20)  # seconds the last jobs held the engine

    @property
    def busy(self) -> bool:
        return self.turn.locked()

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - int(self.busy))

    def admit(self) -> bool:
        if self.admitted > self.limit:
            return False
        self.admitted += 1
        return True

    def leave(self, seconds: float | None = None) -> None:
        """A request is done (``seconds``: how long it held the engine, if it ran)."""
        self.admitted -= 1
        if seconds is not None:
            self.durations.append(seconds)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the mean recent duration times the jobs ahead of it."""
        mean = sum(self.durations) / len(self.durations) if self.durations else 1.0
        return max(1, min(3600, math.ceil(mean * (self.waiting + 1))))
