"""The embedded state store: one SQLite file shared by every coordinator process on a machine.

Why it is safe for several processes at once:
- WAL mode, so readers never block the writer and a process killed mid-write leaves at most an
  uncommitted tail in the WAL that the next opener discards;
- every write runs inside `BEGIN IMMEDIATE`, which takes the write lock before reading, so
  read-modify-write operations (cursor, breaker, concurrency slots) never lose an update and never
  hit a late "database is locked" on lock upgrade;
- `busy_timeout` makes a writer wait for the lock instead of failing;
- schema creation runs in the same kind of transaction and is guarded by `PRAGMA user_version`, so
  processes opening a fresh file together create it exactly once. A file from an older adws is upgraded
  in place the same way: the migrations from its version on run in one transaction (`_MIGRATIONS`).

`synchronous = NORMAL`: in WAL mode a crash of the process (kill -9) loses nothing that was committed;
only a power loss may drop the last few commits, never corrupt the file. Usage counters can afford that,
and it is what makes > 1,000 commits/s possible on ordinary disks.

Threads: one store may be shared by threads (an Engine in a thread pool): its one connection is opened with
`check_same_thread=False` and every statement or transaction runs under the store's lock, so a transaction of
one thread never interleaves with another's. Open one store per process after a fork.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from adws.attempt import Usage
from adws.state.base import (
    ROLLUP_SECONDS,
    BreakerState,
    ChangePoller,
    Closing,
    Cooldown,
    StateStoreError,
    UsageRecord,
    check_lease,
    from_epoch,
    hour_start,
    to_epoch,
)

DEFAULT_PATH = ".adws/state.sqlite3"

# Separate statements (not one script): executescript() would COMMIT our transaction first.
_SCHEMA_V1 = (
    """CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        at REAL NOT NULL,
        requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        estimated INTEGER NOT NULL,
        model TEXT,
        task_id TEXT
    )""",
    # Leads with (provider, account, at) for period lookups. The summed columns ride along so totals
    # are answered from the index alone, without a table lookup per row (about a third faster).
    """CREATE INDEX usage_by_account_time
        ON usage (provider, account, at, requests, input_tokens, output_tokens, cost_usd, estimated)""",
    """CREATE TABLE cooldowns (
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        until REAL NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (provider, account)
    ) WITHOUT ROWID""",
    "CREATE TABLE cursors (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE sticky (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE breakers (
        provider TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL,
        opened_at REAL
    ) WITHOUT ROWID""",
)

# Version 2: leases on a provider's max_concurrency slots. Keyed by provider first, so counting one
# provider's leases reads only its slice.
_SCHEMA_V2 = (
    """CREATE TABLE slots (
        provider TEXT NOT NULL,
        holder TEXT NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (provider, holder)
    ) WITHOUT ROWID""",
)

# What brings a file from the previous version to this one. A fresh file runs them all; a file from an
# older adws runs the ones after its version. Only add entries: a published version never changes.
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2}
SCHEMA_VERSION = max(_MIGRATIONS)

_INSERT_USAGE = (
    "INSERT INTO usage (provider, account, at, requests, input_tokens, output_tokens, cost_usd,"
    " estimated, model, task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# Sums per account, reading only each account's slice of the (provider, account, at) index.
# `accounts` walks the index from one distinct account to the next (a "loose index scan"), so the cost
# is one seek per account plus the rows inside the period, however many years of history the table holds.
_TOTALS = """
WITH RECURSIVE
bounds(provider, since) AS (VALUES {values}),
accounts(provider, since, account) AS (
    SELECT b.provider, b.since, (SELECT MIN(u.account) FROM usage u WHERE u.provider = b.provider)
    FROM bounds b
    UNION ALL
    SELECT a.provider, a.since,
           (SELECT MIN(u.account) FROM usage u WHERE u.provider = a.provider AND u.account > a.account)
    FROM accounts a WHERE a.account IS NOT NULL
)
SELECT a.provider, a.account, SUM(u.requests), SUM(u.input_tokens), SUM(u.output_tokens),
       SUM(u.cost_usd), MAX(u.estimated)
FROM accounts a
JOIN usage u ON u.provider = a.provider AND u.account = a.account AND u.at >= a.since{until}
WHERE a.account IS NOT NULL
GROUP BY a.provider, a.account
"""

# Opening a fresh file from several processes at once can race on the switch to WAL, which needs an
# exclusive lock that the busy handler does not always wait for; retry that step a bounded number of times.
_SETUP_ATTEMPTS = 50
_SETUP_BACKOFF_S = 0.02


def _row_usage(row: tuple[int, int, int, float, int]) -> Usage:
    requests, input_tokens, output_tokens, cost_usd, estimated = row
    return Usage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
        estimated=bool(estimated),
    )


def _usage_row(record: UsageRecord) -> tuple[object, ...]:
    u = record.usage
    return (
        record.provider,
        record.account,
        to_epoch(record.at, "UsageRecord.at"),
        u.requests,
        u.input_tokens,
        u.output_tokens,
        u.cost_usd,
        int(u.estimated),
        record.model,
        record.task_id,
    )


class SqliteStore(Closing):
    """`StateStore` in one SQLite file.

    `poll_interval_s`: how often (seconds) `version()` asks SQLite whether another connection committed
    (`PRAGMA data_version`, about a microsecond); 0, the default, asks on every call. `monotonic`
    times the interval.
    """

    def __init__(self, path: str | None = None, *, busy_timeout_s: float = 30.0, poll_interval_s: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path or DEFAULT_PATH
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # data_version moves when another connection commits; the poller counts our own commits.
        self._lock = threading.RLock()  # one statement or transaction at a time on the shared connection
        self._changes = ChangePoller(self._data_version, poll_interval_s, monotonic)
        try:
            # isolation_level=None: the sqlite3 module must not open transactions behind our back;
            # every write below says BEGIN IMMEDIATE itself.
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot open state store {self.path}: {exc}") from exc
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._conn.close()
            raise StateStoreError(f"cannot open state store {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == _SETUP_ATTEMPTS - 1:
                    raise
                time.sleep(_SETUP_BACKOFF_S * (attempt + 1))
        self._conn.execute("PRAGMA synchronous = NORMAL")
        (found,) = self._conn.execute("PRAGMA user_version").fetchone()
        if found == SCHEMA_VERSION:
            return  # the usual case: no need to take the write lock just to open
        with self._write() as conn:
            (found,) = conn.execute("PRAGMA user_version").fetchone()
            if found > SCHEMA_VERSION:
                raise StateStoreError(
                    f"state store {self.path} has schema version {found}, this adws knows up to "
                    f"{SCHEMA_VERSION}: upgrade adws or point [state] path at another file"
                )
            # Inside BEGIN IMMEDIATE: a concurrent opener waits, then sees all of the schema, and the
            # version re-read above keeps two openers of an old file from upgrading it twice.
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. SQLite failures (lock wait exhausted, disk full, read-only file)
        become StateStoreError naming the file; anything else the body raises passes through."""
        conn = self._conn
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StateStoreError(f"state store {self.path}: {exc}") from exc
            self._changes.wrote()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """All rows of one query, under the lock (a read never lands inside another thread's transaction)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @property
    def location(self) -> str:
        return self.path

    @property
    def staleness_s(self) -> float:
        return self._changes.interval_s

    # -- usage ---------------------------------------------------------------------------------

    def record_usage(self, record: UsageRecord) -> None:
        row = _usage_row(record)
        with self._write() as conn:
            conn.execute(_INSERT_USAGE, row)

    def import_usage(self, records: Iterable[UsageRecord]) -> int:
        """Insert many records in one transaction (bulk loads, benchmarks); returns how many."""
        rows = [_usage_row(r) for r in records]
        with self._write() as conn:
            conn.executemany(_INSERT_USAGE, rows)
        return len(rows)

    def usage_records(self) -> Iterator[UsageRecord]:
        rows = self._read(
            "SELECT provider, account, at, requests, input_tokens, output_tokens, cost_usd, estimated, model,"
            " task_id FROM usage ORDER BY at, id"
        )
        for row in rows:
            yield UsageRecord(row[0], row[1], from_epoch(row[2]), _row_usage(row[3:8]), row[8], row[9])

    def roll_up(self, before: datetime) -> int:
        cutoff = hour_start(to_epoch(before, "before"))
        bucket = f"CAST(at / {ROLLUP_SECONDS} AS INTEGER) * {ROLLUP_SECONDS}"  # at >= 0: truncation = floor
        with self._write() as conn:
            conn.execute("DROP TABLE IF EXISTS temp.rolled")
            # Only hours holding more than one row: a lone row is already as small as its hour gets.
            conn.execute(
                f"CREATE TEMP TABLE rolled AS SELECT provider, account, {bucket} AS hour, SUM(requests) AS r,"
                " SUM(input_tokens) AS i, SUM(output_tokens) AS o, SUM(cost_usd) AS c, MAX(estimated) AS e,"
                f" COUNT(*) AS n FROM usage WHERE at < ? GROUP BY provider, account, hour HAVING n > 1",
                (cutoff,),
            )
            conn.execute(
                f"DELETE FROM usage WHERE at < ? AND (provider, account, {bucket}) IN"
                " (SELECT provider, account, hour FROM temp.rolled)",
                (cutoff,),
            )
            conn.execute(
                "INSERT INTO usage (provider, account, at, requests, input_tokens, output_tokens, cost_usd,"
                " estimated) SELECT provider, account, hour, r, i, o, c, e FROM temp.rolled"
            )
            (removed,) = conn.execute("SELECT COALESCE(SUM(n - 1), 0) FROM temp.rolled").fetchone()
            conn.execute("DROP TABLE temp.rolled")
        return int(removed)

    def usage_totals(
        self, since: Mapping[str, datetime], until: datetime | None = None
    ) -> dict[tuple[str, str], Usage]:
        if not since:
            return {}
        params: list[object] = []
        for provider, start in since.items():
            params += [provider, to_epoch(start, f"since[{provider!r}]")]
        until_sql = ""
        if until is not None:
            until_sql = " AND u.at < ?"
            params.append(to_epoch(until, "until"))
        sql = _TOTALS.format(values=", ".join(["(?, ?)"] * len(since)), until=until_sql)
        return {(row[0], row[1]): _row_usage(row[2:]) for row in self._read(sql, params)}

    def oldest_usage(self, provider: str, account: str, since: datetime) -> datetime | None:
        ((at,),) = self._read(
            "SELECT MIN(at) FROM usage WHERE provider = ? AND account = ? AND at >= ?",
            (provider, account, to_epoch(since, "since")),
        )
        return None if at is None else from_epoch(at)

    # -- cooldowns -----------------------------------------------------------------------------

    def set_cooldown(self, provider: str, account: str, cooldown: Cooldown) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO cooldowns (provider, account, until, reason) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider, account) DO UPDATE SET until = excluded.until,"
                " reason = excluded.reason",
                (provider, account, to_epoch(cooldown.until, "Cooldown.until"), cooldown.reason),
            )

    def clear_cooldown(self, provider: str, account: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM cooldowns WHERE provider = ? AND account = ?", (provider, account))

    def cooldowns(self, now: datetime) -> dict[tuple[str, str], Cooldown]:
        rows = self._read(
            "SELECT provider, account, until, reason FROM cooldowns WHERE until > ?",
            (to_epoch(now, "now"),),
        )
        return {(p, a): Cooldown(until=from_epoch(u), reason=r) for p, a, u, r in rows}

    # -- cursors and sticky choices ------------------------------------------------------------

    def next_cursor(self, key: str) -> int:
        with self._write() as conn:
            (after,) = conn.execute(
                "INSERT INTO cursors (key, value) VALUES (?, 1)"
                " ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                (key,),
            ).fetchone()
        return int(after) - 1

    def advance_cursor(self, key: str, value: int) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO cursors (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                (key, value),
            )

    def peek_cursor(self, key: str) -> int:
        rows = self._read("SELECT value FROM cursors WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else 0

    def cursors(self) -> dict[str, int]:
        return {key: int(value) for key, value in self._read("SELECT key, value FROM cursors")}

    def sticky_choices(self) -> dict[str, str]:
        return {key: str(value) for key, value in self._read("SELECT key, value FROM sticky")}

    def get_sticky(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM sticky WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_sticky(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sticky (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- circuit breakers ----------------------------------------------------------------------

    @staticmethod
    def _breaker(state: str, failures: int, opened_at: float | None) -> BreakerState:
        return BreakerState(
            state=state, failures=failures, opened_at=None if opened_at is None else from_epoch(opened_at)
        )

    def get_breaker(self, provider: str) -> BreakerState:
        rows = self._read("SELECT state, failures, opened_at FROM breakers WHERE provider = ?", (provider,))
        return self._breaker(*rows[0]) if rows else BreakerState()

    def update_breaker(self, provider: str, fn: Callable[[BreakerState], BreakerState]) -> BreakerState:
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, failures, opened_at FROM breakers WHERE provider = ?", (provider,)
            ).fetchone()
            new = fn(BreakerState() if row is None else self._breaker(*row))
            opened_at = None if new.opened_at is None else to_epoch(new.opened_at, "BreakerState.opened_at")
            conn.execute(
                "INSERT INTO breakers (provider, state, failures, opened_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider) DO UPDATE SET state = excluded.state,"
                " failures = excluded.failures, opened_at = excluded.opened_at",
                (provider, new.state, new.failures, opened_at),
            )
        return new

    def breakers(self) -> dict[str, BreakerState]:
        rows = self._read("SELECT provider, state, failures, opened_at FROM breakers")
        return {p: self._breaker(s, f, o) for p, s, f, o in rows}

    # -- concurrency slots -----------------------------------------------------------------------

    def acquire_slot(self, provider: str, holder: str, limit: int, now: datetime, until: datetime) -> bool:
        start, end = check_lease(limit, now, until)
        with self._write() as conn:
            # Count and insert under the write lock: two processes cannot both see the last free slot.
            conn.execute("DELETE FROM slots WHERE provider = ? AND until <= ?", (provider, start))
            (held,) = conn.execute(
                "SELECT COUNT(*) FROM slots WHERE provider = ? AND holder != ?", (provider, holder)
            ).fetchone()
            taken = bool(held < limit)
            if taken:
                conn.execute(
                    "INSERT INTO slots (provider, holder, until) VALUES (?, ?, ?)"
                    " ON CONFLICT (provider, holder) DO UPDATE SET until = excluded.until",
                    (provider, holder, end),
                )
        return taken

    def release_slot(self, provider: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM slots WHERE provider = ? AND holder = ?", (provider, holder))

    def active_slots(self, now: datetime) -> dict[str, tuple[datetime, ...]]:
        rows = self._read(
            "SELECT provider, until FROM slots WHERE until > ? ORDER BY provider, until", (to_epoch(now, "now"),)
        )
        live: dict[str, list[datetime]] = {}
        for provider, until in rows:
            live.setdefault(provider, []).append(from_epoch(until))
        return {provider: tuple(ends) for provider, ends in live.items()}

    # -- change detection ----------------------------------------------------------------------

    def _data_version(self) -> int:
        try:
            ((data_version,),) = self._read("PRAGMA data_version")
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store {self.path}: {exc}") from exc
        return int(data_version)

    def version(self) -> int:
        return self._changes.version()

    def close(self) -> None:
        self._conn.close()
