"""State shared by coordinator processes: usage ledger, cooldowns, cursors, sticky choices, breakers.

Backends live in `STORES`, one entry per name; config validation takes the allowed names from it, and
adding a backend is adding one entry whose factory reads its own location from the [state] settings
(a SQLite path, a Redis URL: never one mangled into the other).

Where the SQLite file lives, highest precedence first:
1. the environment variable ADWS_STATE_PATH (so an operator or a test can redirect every process
   without editing config.toml);
2. the `path` given to `open_store` (normally `[state] path` from config.toml);
3. ".adws/state.sqlite3", relative to the working directory.
":memory:" gives a private, non-shared SQLite database.

The Redis server: ADWS_STATE_URL, else `[state] url` (see adws.state.redis_store).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from adws.state.base import (
    BREAKER_STATES,
    BreakerState,
    Cooldown,
    StateStore,
    StateStoreError,
    UsageRecord,
)
from adws.state.memory import MemoryStore
from adws.state.redis_store import DEFAULT_PREFIX, ENV_URL, RedisStore, resolve_url
from adws.state.sqlite import DEFAULT_PATH, SqliteStore

__all__ = [
    "BREAKER_STATES",
    "DEFAULT_PATH",
    "DEFAULT_PREFIX",
    "ENV_PATH",
    "ENV_URL",
    "STORES",
    "Backend",
    "BreakerState",
    "Cooldown",
    "MemoryStore",
    "RedisStore",
    "SqliteStore",
    "StateSettings",
    "StateStore",
    "StateStoreError",
    "UsageRecord",
    "open_store",
    "resolve_path",
]

ENV_PATH = "ADWS_STATE_PATH"



@dataclass(frozen=True, slots=True)
class StateSettings:
    """The [state] table as the backends read it; each backend picks the keys it knows."""

    path: str | None = None
    url: str | None = None
    key_prefix: str = DEFAULT_PREFIX
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)


@dataclass(frozen=True, slots=True)
class Backend:
    """One entry of STORES: how to open the backend, and which [state] keys it reads (config validation
    refuses the others, so `url` under backend = "sqlite" is not silently ignored)."""

    open: Callable[[StateSettings], StateStore]
    reads: tuple[str, ...]


STORES: dict[str, Backend] = {
    "sqlite": Backend(lambda s: SqliteStore(resolve_path(s.path, s.env)), ("path",)),
    "memory": Backend(lambda s: MemoryStore(), ()),
    "redis": Backend(lambda s: RedisStore(resolve_url(s.url, s.env), key_prefix=s.key_prefix), ("url", "key_prefix")),
}


def resolve_path(path: str | None, env: Mapping[str, str] | None = None) -> str:
    """The path a store will use: ADWS_STATE_PATH, else `path`, else DEFAULT_PATH."""
    environ = os.environ if env is None else env
    return environ.get(ENV_PATH) or path or DEFAULT_PATH


def open_store(
    backend: str = "sqlite", path: str | None = None, *, url: str | None = None,
    key_prefix: str = DEFAULT_PREFIX, env: Mapping[str, str] | None = None
) -> StateStore:
    """Open the named backend. `env` defaults to os.environ (injectable for tests).

    Raises ValueError for an unknown backend, StateStoreError when the store cannot be opened/reached.
    """
    factory = STORES.get(backend)
    if factory is None:
        known = ", ".join(sorted(STORES))
        raise ValueError(f"unknown state backend {backend!r}: expected one of {known}")
    environ = os.environ if env is None else env
    return factory.open(StateSettings(path=path, url=url, key_prefix=key_prefix, env=environ))
