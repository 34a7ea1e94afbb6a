"""State shared by coordinator processes: usage ledger, cooldowns, cursors, sticky choices, breakers.

Backends live in `STORES`, one entry per name; config validation takes the allowed names from it, and
adding a backend (e.g. Redis) is adding one entry whose factory takes the configured path/URL.

Where the SQLite file lives, highest precedence first:
1. the environment variable ADWS_STATE_PATH (so an operator or a test can redirect every process
   without editing config.toml);
2. the `path` given to `open_store` (normally `[state] path` from config.toml);
3. ".adws/state.sqlite3", relative to the working directory.
":memory:" gives a private, non-shared SQLite database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from adws.state.base import (
    BREAKER_STATES,
    BreakerState,
    Cooldown,
    StateStore,
    StateStoreError,
    UsageRecord,
)
from adws.state.memory import MemoryStore
from adws.state.sqlite import DEFAULT_PATH, SqliteStore

__all__ = [
    "BREAKER_STATES",
    "DEFAULT_PATH",
    "ENV_PATH",
    "STORES",
    "BreakerState",
    "Cooldown",
    "MemoryStore",
    "SqliteStore",
    "StateStore",
    "StateStoreError",
    "UsageRecord",
    "open_store",
    "resolve_path",
]

ENV_PATH = "ADWS_STATE_PATH"

STORES: dict[str, Callable[[str | None], StateStore]] = {
    "sqlite": SqliteStore,
    "memory": MemoryStore,
}


def resolve_path(path: str | None, env: Mapping[str, str] | None = None) -> str:
    """The path a store will use: ADWS_STATE_PATH, else `path`, else DEFAULT_PATH."""
    environ = os.environ if env is None else env
    return environ.get(ENV_PATH) or path or DEFAULT_PATH


def open_store(
    backend: str = "sqlite", path: str | None = None, *, env: Mapping[str, str] | None = None
) -> StateStore:
    """Open the named backend. `env` defaults to os.environ (injectable for tests)."""
    factory = STORES.get(backend)
    if factory is None:
        known = ", ".join(sorted(STORES))
        raise ValueError(f"unknown state backend {backend!r}: expected one of {known}")
    return factory(resolve_path(path, env))
