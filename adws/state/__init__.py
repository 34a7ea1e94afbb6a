"""State shared by coordinator processes: usage ledger, cooldowns, cursors, sticky choices, breakers.

Backends live in `STORES`, one `Backend` entry per name; config validation takes the allowed names from it.
A backend owns its location: it turns `[state] path` (or ADWS_STATE_PATH) into the place it opens, so a
SQLite path is made relative to the config's directory while another backend's URL is taken as written.
Adding a backend is one entry, which also names the `[state]` keys it reads (config validation refuses the
others: `url` under the SQLite backend is a mistake, not something to ignore).

Where the SQLite file lives, highest precedence first:
1. the environment variable ADWS_STATE_PATH (so an operator or a test can redirect every process
   without editing config.toml); relative to the working directory;
2. `[state] path` from config.toml, relative to the config file's directory;
3. ".adws/state.sqlite3", relative to the working directory.
":memory:" gives a private, non-shared SQLite database.

The Redis server (backend "redis"): ADWS_STATE_URL, else `[state] url`, taken as written; no default (see
adws.state.redis_store). `[state] key_prefix` namespaces its keys.

`open_configured` gives an Engine its one store for its whole life. A backend whose store is a file that
routing must not create (`Backend.exists`) is opened through `PendingStore`: it reads as empty until the
file appears (one stat call per `version()`), and the first write creates it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adws.attempt import Usage
from adws.dataclass_cache import dataclass
from adws.errors import set_or_unset
from adws.state.base import (
    BREAKER_STATES,
    DEFAULT_PATH,
    DEFAULT_PREFIX,
    ENV_URL,
    BreakerState,
    Cooldown,
    Observation,
    RunRecord,
    RunsImported,
    StateStore,
    StateStoreError,
    UsageChanges,
    UsageCursor,
    UsageRecord,
)
from adws.state.memory import MemoryStore
from adws.throttle import Throttle

if TYPE_CHECKING:
    from adws.state.redis_store import RedisStore
    from adws.state.sqlite import SqliteStore

__all__ = [
    "ABSENT_VERSION",
    "BREAKER_STATES",
    "DEFAULT_PATH",
    "DEFAULT_PREFIX",
    "ENV_PATH",
    "ENV_URL",
    "PENDING_POLL_S",
    "SQLITE_POLL_S",
    "STORES",
    "Backend",
    "BreakerState",
    "Cooldown",
    "MemoryStore",
    "PendingStore",
    "RedisStore",
    "SqliteStore",
    "StateStore",
    "StateStoreError",
    "UsageRecord",
    "open_configured",
    "open_store",
]

ENV_PATH = "ADWS_STATE_PATH"
# What a store that does not exist yet (a PendingStore) answers to version(): it holds nothing, at any time.
ABSENT_VERSION = -1
# Seconds: how late routing may notice a state file that another process created (PendingStore.version()).
PENDING_POLL_S = 0.005
# Seconds: how late a SQLite store opened for a config (`open_configured`, `open_store`) may notice another
# process's commit: `PRAGMA data_version` is asked at most this often instead of on every decision (about 2 µs
# each); the store's own writes are seen at once. A SqliteStore built directly asks on every call unless told.
SQLITE_POLL_S = 0.002


def _as_path(location: str, base_dir: str) -> str:
    """A file location relative to `base_dir`, `~` expanded; ":memory:" stays as it is."""
    if location == ":memory:":
        return location
    return str(Path(base_dir, os.path.expanduser(location)))


def _file_exists(location: str) -> bool:
    return location == ":memory:" or os.path.exists(location)


@dataclass(frozen=True, slots=True)
class Backend:
    """One state backend: how to open it and where it lives.

    `factory(location, **options)` opens the store; `options` are the other `[state]` keys it reads.
    `locate(configured, base_dir)` turns the configured location as written into the location (default: taken
    as written). `problem(location)`, where the backend can tell, says what is wrong with a location as written
    (None: nothing), in words that show no credential: config load reports it at its key, and a location from the
    environment is refused with it before anything is opened.
    `exists(location)`, for backends whose store is created by opening it, says without creating
    anything whether it is there; None when opening creates nothing. `setting` is the `[state]` key holding
    the location, `env` the variable that overrides it, `default` the location when neither is given (None:
    one is required); `reads` every `[state]` key the backend uses.
    """

    factory: Callable[..., StateStore]
    locate: Callable[[str, str], str] = lambda configured, base_dir: configured
    exists: Callable[[str], bool] | None = None
    setting: str = "path"
    env: str = ENV_PATH
    default: str | None = DEFAULT_PATH
    reads: tuple[str, ...] = ("path",)
    problem: Callable[[str], str | None] | None = None

    def __call__(self, location: str, **options: Any) -> StateStore:
        return self.factory(location, **options)

    def location(self, configured: str | None, env: Mapping[str, str], name: str) -> str:
        """The environment's location, else `configured` (already located), else the default.

        Raises StateStoreError when the backend needs a location and none is given, when its variable is set
        but empty or to a location the backend refuses (`problem`), or when another backend's variable is set (see
        `check_environment`)."""
        check_environment(self, env, name)
        given = env.get(self.env)
        if given and self.problem is not None:
            problem = self.problem(given)
            if problem is not None:
                raise StateStoreError(f"{self.env} is not a usable location: {problem}; correct it, or unset it to "
                                      f"use [state] {self.setting}")
        found = given or configured or self.default
        if not found:
            raise StateStoreError(f'state backend "{name}" needs a location: set [state] {self.setting} '
                                  f"or {self.env}")
        return found


def check_environment(backend: Backend, env: Mapping[str, str], name: str) -> None:
    """Refuse state variables that would otherwise be ignored without a word (raises StateStoreError):

    - ADWS_STATE_PATH or ADWS_STATE_URL set but empty: a mistake (`ADWS_STATE_PATH=$UNSET`); taken as unset, the
      process would use the configured store, the very one the variable was set to keep it away from.
    - ADWS_STATE_URL set while the backend (`name`) is not the one that reads it: the host would keep a private
      ledger while the operator believes it shares the fleet's, which is why `[state] url` under the SQLite
      backend is a config error. ADWS_STATE_PATH under Redis is not refused: a host keeps using the shared store
      (nothing is lost), and a test or an operator may set it for every process whatever the backend.
    """
    for variable, what in ((ENV_PATH, "a state file"), (ENV_URL, "a Redis URL")):
        set_or_unset(env, variable, what, "the config's [state]", StateStoreError)
    if env.get(ENV_URL) is not None and backend.env != ENV_URL:
        raise StateStoreError(f'{ENV_URL} is set, but the state backend is "{name}", which does not read it: this '
                              f'host would not share the fleet\'s store. Unset {ENV_URL}, or set [state] backend = '
                              '"redis"')


def _open_redis(location: str, **options: Any) -> StateStore:
    from adws.state.redis_store import RedisStore  # only fleets that chose Redis load it (and redis-py)

    return RedisStore(location, **options)


def _redis_url_problem(url: str) -> str | None:
    from adws.state.redis_store import url_problem  # redis-py itself is imported only to check query arguments

    return url_problem(url)


def __getattr__(name: str) -> Any:
    """`adws.state.RedisStore` and `adws.state.SqliteStore`, imported on first use: routing with no store
    file yet (a PendingStore) needs neither sqlite3 nor redis-py."""
    if name == "RedisStore":
        from adws.state.redis_store import RedisStore

        return RedisStore
    if name == "SqliteStore":
        from adws.state.sqlite import SqliteStore

        return SqliteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _open_sqlite(location: str, **options: Any) -> StateStore:
    from adws.state.sqlite import SqliteStore

    return SqliteStore(location, **{"poll_interval_s": SQLITE_POLL_S, **options})


STORES: dict[str, Backend] = {
    "sqlite": Backend(_open_sqlite, _as_path, _file_exists),
    "memory": Backend(MemoryStore, reads=()),
    # A URL, taken as written (never made into a path); connecting checks it, so nothing is pending.
    "redis": Backend(_open_redis, setting="url", env=ENV_URL, default=None, reads=("url", "key_prefix"),
                     problem=_redis_url_problem),
}


def _backend(name: str) -> Backend:
    backend = STORES.get(name)
    if backend is None:
        known = ", ".join(sorted(STORES))
        raise ValueError(f"unknown state backend {name!r}: expected one of {known}")
    return backend


def open_store(
    backend: str = "sqlite", path: str | None = None, *, env: Mapping[str, str] | None = None, **options: Any
) -> StateStore:
    """Open the named backend at `path` (already located; a URL for Redis). `env` defaults to os.environ
    (injectable for tests); its variable for the backend (ADWS_STATE_PATH, ADWS_STATE_URL) wins. `options`:
    the backend's other `[state]` keys (key_prefix).

    Raises ValueError for an unknown backend, StateStoreError when the store cannot be opened.
    """
    found = _backend(backend)
    return found(found.location(path, os.environ if env is None else env, backend), **options)


def open_configured(backend: str, configured: str | None, base_dir: str,
                    env: Mapping[str, str] | None = None, options: Mapping[str, Any] | None = None) -> StateStore:
    """The store a config names: `configured` is the backend's location key as written (`[state] path`,
    `[state] url`; None: the default), located by the backend relative to `base_dir`; the backend's variable
    in `env` (ADWS_STATE_PATH, ADWS_STATE_URL) overrides it as written. `options`: its other `[state]` keys.

    Creates nothing: a store that does not exist yet is a PendingStore until the first write.
    """
    found = _backend(backend)
    environ = os.environ if env is None else env
    location = found.location(found.locate(configured, base_dir) if configured else None, environ, backend)
    if found.exists is None or found.exists(location):
        return found(location, **(options or {}))
    return PendingStore(found, location)


class PendingStore:
    """A store that does not exist yet: reads see an empty store, the first write creates the real one.

    Once the real store exists (created here or by another process, seen by `version()`), every call goes to
    it. Routing only reads, so routing never creates a state file.
    """

    def __init__(self, backend: Backend, location: str, *, poll_interval_s: float = PENDING_POLL_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """`poll_interval_s` (seconds, on `monotonic`): how often `version()` looks for a store created by
        another process; 0 looks on every call."""
        if backend.exists is None:
            raise ValueError("a PendingStore needs a backend that can tell whether its store exists")
        self.backend, self.location = backend, location
        self._exists = backend.exists
        self._looks = Throttle(poll_interval_s, monotonic, "poll interval")
        self._store: StateStore | None = None
        self._empty = MemoryStore()  # what reading a store that does not exist gives

    def _reader(self) -> StateStore:
        if self._store is None and self._exists(self.location):
            self._store = self.backend(self.location)
        return self._store if self._store is not None else self._empty

    def _writer(self) -> StateStore:
        if self._store is None:
            try:
                from adws.files import make_private_dirs

                make_private_dirs(Path(self.location).parent)
            except OSError as exc:
                raise StateStoreError(f"cannot create the state store's directory for {self.location}: "
                                      f"{exc.strerror or exc}") from None
            self._store = self.backend(self.location)
        return self._store

    # reads: the real store once it exists, else empty answers

    def usage_totals(self, since: Mapping[str, datetime],
                     until: datetime | None = None) -> dict[tuple[str, str], Usage]:
        return self._reader().usage_totals(since, until)

    def oldest_usage(self, provider: str, account: str, since: datetime) -> datetime | None:
        return self._reader().oldest_usage(provider, account, since)

    def cooldowns(self, now: datetime) -> dict[tuple[str, str], Cooldown]:
        return self._reader().cooldowns(now)

    def peek_cursor(self, key: str) -> int:
        return self._reader().peek_cursor(key)

    def get_sticky(self, key: str) -> str | None:
        return self._reader().get_sticky(key)

    def get_breaker(self, provider: str) -> BreakerState:
        return self._reader().get_breaker(provider)

    def breakers(self) -> dict[str, BreakerState]:
        return self._reader().breakers()

    def active_slots(self, now: datetime) -> dict[str, tuple[datetime, ...]]:
        return self._reader().active_slots(now)

    def reservations(self, now: datetime) -> dict[tuple[str, str], tuple[tuple[int, datetime], ...]]:
        return self._reader().reservations(now)

    def observations(self) -> dict[tuple[str, str], Observation]:
        return self._reader().observations()

    def recent_runs(self, provider: str, specialization: str, limit: int) -> list[int]:
        return self._reader().recent_runs(provider, specialization, limit)

    def recorded_runs(self) -> Iterator[RunRecord]:
        return self._reader().recorded_runs()

    def usage_records(self) -> Iterator[UsageRecord]:
        return self._reader().usage_records()

    def usage_cursor(self) -> UsageCursor:
        return self._reader().usage_cursor()

    def usage_since(self, cursor: UsageCursor) -> UsageChanges | None:
        # A cursor of the empty stand-in is refused by the real store (another epoch): its reader re-reads.
        return self._reader().usage_since(cursor)

    def cursors(self) -> dict[str, int]:
        return self._reader().cursors()

    def change_counts(self) -> tuple[int, ...] | None:
        return self._reader().change_counts()

    def sticky_choices(self) -> dict[str, str]:
        return self._reader().sticky_choices()

    @property
    def pending(self) -> bool:
        """True while the store does not exist (one stat call)."""
        return self._store is None and not self._exists(self.location)

    @property
    def staleness_s(self) -> float:
        # While pending, version() looks for the file at most once per poll interval; writes through this
        # object create the store at once.
        return self._looks.interval_s if self._store is None else self._store.staleness_s

    def version(self) -> int:
        """ABSENT_VERSION while the store does not exist; then the real store's. Routing asks on every
        decision, so the stat call behind it runs at most once per `poll_interval_s`: a store created by
        another process is noticed at most that late (this object's own writes create it at once)."""
        if self._store is None:
            if not self._looks.due() or not self._exists(self.location):
                return ABSENT_VERSION
            self._store = self.backend(self.location)
        return self._store.version()

    # writes: create the store first

    def record_usage(self, record: UsageRecord) -> None:
        self._writer().record_usage(record)

    def set_cooldown(self, provider: str, account: str, cooldown: Cooldown) -> None:
        self._writer().set_cooldown(provider, account, cooldown)

    def clear_cooldown(self, provider: str, account: str) -> None:
        self._writer().clear_cooldown(provider, account)

    def next_cursor(self, key: str) -> int:
        return self._writer().next_cursor(key)

    def advance_cursor(self, key: str, value: int) -> None:
        self._writer().advance_cursor(key, value)

    def set_sticky(self, key: str, value: str) -> None:
        self._writer().set_sticky(key, value)

    def update_breaker(self, provider: str, fn: Callable[[BreakerState], BreakerState]) -> BreakerState:
        return self._writer().update_breaker(provider, fn)

    def acquire_slot(self, provider: str, holder: str, limit: int, now: datetime, until: datetime) -> bool:
        return self._writer().acquire_slot(provider, holder, limit, now, until)

    def release_slot(self, provider: str, holder: str) -> None:
        self._writer().release_slot(provider, holder)

    def reserve(self, provider: str, subject: str, holder: str, tokens: int, now: datetime,
                until: datetime) -> dict[str, int]:
        return self._writer().reserve(provider, subject, holder, tokens, now, until)

    def release_reservation(self, provider: str, holder: str) -> None:
        self._writer().release_reservation(provider, holder)

    def record_observation(self, observation: Observation) -> bool:
        return self._writer().record_observation(observation)

    def record_run(self, provider: str, specialization: str, at: datetime, tokens: int) -> None:
        self._writer().record_run(provider, specialization, at, tokens)

    def import_runs(self, runs: Iterable[RunRecord]) -> RunsImported:
        return self._writer().import_runs(runs)

    def import_usage(self, records: Iterable[UsageRecord]) -> int:
        return self._writer().import_usage(records)

    def roll_up(self, before: datetime) -> int:
        # Nothing to roll up in a store that does not exist: do not create it for that.
        return 0 if self.pending else self._writer().roll_up(before)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
