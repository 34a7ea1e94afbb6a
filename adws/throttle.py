""""At most once per interval": the one rule behind the store's change polling and the config watcher."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Throttle:
    """`due()` is True at most once per `interval_s` seconds of `monotonic` time (always, for 0); `reset()`
    makes the next call due. Raises ValueError for a negative interval, naming `what`."""

    __slots__ = ("_monotonic", "_next", "interval_s")

    def __init__(self, interval_s: float, monotonic: Callable[[], float] = time.monotonic,
                 what: str = "interval") -> None:
        if interval_s < 0:
            raise ValueError(f"{what} must be >= 0 seconds, got {interval_s}")
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._next = -math.inf

    def due(self) -> bool:
        if not self.interval_s:
            return True
        now = self._monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True

    def reset(self) -> None:
        self._next = -math.inf
