"""Hot reload for long-running coordinators: notice an edited config cheaply, keep the last valid one.

`ConfigWatcher` answers "did the file change since I last looked?" with at most one `stat` per interval
(seconds, on a monotonic clock), comparing (mtime_ns, size, inode): an editor that replaces the file (write to
a temporary, rename) changes the inode, one that rewrites it in place changes the size or mtime.

`ConfigStatus` is what `Engine.config_status` reports: "ok", or "degraded" with the problems of the edit that
could not be loaded (the engine keeps routing with the last valid config meanwhile).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

OK, DEGRADED = "ok", "degraded"


@dataclass(frozen=True, slots=True)
class ConfigStatus:
    """`state` "ok" or "degraded"; `problems`: one line each (place and message) of the edit that failed to
    load, empty when ok; `source`: the config file."""

    state: str
    source: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.state == OK


Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode); None: the file is missing


class ConfigWatcher:
    """Whether `path` changed since the last `changed()` that said so, asking the file system at most once
    per `interval_s` seconds (0: on every call)."""

    def __init__(self, path: str, interval_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"reload interval must be >= 0 seconds, got {interval_s}")
        self.path = path
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._next = -math.inf
        self._seen = self.signature()

    def signature(self) -> Signature:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self, force: bool = False) -> bool:
        """True once per change of the file (`force`: look now, whatever the interval)."""
        if not force:
            now = self._monotonic()
            if now < self._next:
                return False
            self._next = now + self.interval_s
        current = self.signature()
        if current == self._seen:
            return False
        self._seen = current
        return True
