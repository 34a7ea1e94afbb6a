"""Hot reload for long-running coordinators: notice an edited config cheaply, keep the last valid one.

`ConfigWatcher` answers "did the file change since I last looked?" with at most one `stat` per interval
(seconds, on a monotonic clock), comparing (mtime_ns, size, inode): an editor that replaces the file (write to
a temporary, rename) changes the inode, one that rewrites it in place changes the size or mtime.

`ConfigStatus` is what `Engine.config_status` reports: "ok", or "degraded" with the problems of the edit that
could not be loaded (the engine keeps routing with the last valid config meanwhile).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from adws.dataclass_cache import dataclass
from adws.throttle import Throttle

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
        self.path = path
        self._throttle = Throttle(interval_s, monotonic, "reload interval")
        self._seen = self.signature()

    def signature(self) -> Signature:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self, force: bool = False) -> bool:
        """True once per change of the file (`force`: look now, whatever the interval)."""
        if not force and not self._throttle.due():
            return False
        current = self.signature()
        if current == self._seen:
            return False
        self._seen = current
        return True
