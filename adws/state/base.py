"""The state store contract: records, cooldowns, cursors, sticky choices, circuit breakers and
concurrency slots.

Every backend (see `adws.state.STORES`) implements `StateStore`; the contract tests in
tests/test_state.py run unchanged against each one. The shapes here are plain frozen values so a backend
only has to persist them, never to understand them.

Times are timezone-aware datetimes everywhere. A naive datetime is refused with ValueError rather than
guessed at: a store shared by coordinators in different zones would otherwise count usage in the wrong
period without anyone noticing. A store keeps times from EARLIEST to LATEST (1970 to the year 3000, UTC): a
time outside (a reset an agent CLI announced for the year 9999) is kept as the nearer bound (`stored_epoch`),
because the year 9999 in one zone is the year 10000 in UTC, which no datetime can hold: a store that kept it
could not read it back. Reading clamps the same way (`from_epoch`), so a store an older adws wrote such a time
into reads again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from adws.attempt import Usage
from adws.dataclass_cache import dataclass
from adws.errors import AdwsError
from adws.throttle import Throttle

BREAKER_STATES = ("closed", "open", "half_open")


# The Redis backend's variable and key prefix: here, so naming them does not import the backend (redis-py).
ENV_URL = "ADWS_STATE_URL"
DEFAULT_PREFIX = "adws:"
# The SQLite backend's default file: here, so naming it does not import sqlite3 (routing without a store).
DEFAULT_PATH = ".adws/state.sqlite3"


class StateStoreError(AdwsError):
    """The store cannot be opened or used (unreadable file, schema from a newer adws, ...)."""


def damaged_entry(where: str, entry: str, what: str, fix: str, verb: str = "remove it") -> StateStoreError:
    """The one line for one damaged entry of a store (a Redis key or field, a SQLite row): the store `where` is, the
    `entry` and `what` is wrong with it, and `fix`, the one command that removes just that entry (`verb` says what it
    does), so the rest of the state is kept. Every backend words an entry's damage through this. Each part is
    `printable`: a key or path holding an escape sequence or a newline cannot reach the terminal raw; `fix` must be
    built so that this changes nothing in it (`typable` values, `shell_word` paths), or it would no longer run."""
    return StateStoreError(f"state store {printable(where)} is damaged: {printable(entry)} {printable(what)}; "
                           f"{printable(verb)} ({printable(fix)}) and the rest of the state stays")


# Control and format characters (C0, DEL, C1, bidi overrides, line and paragraph separators, ...): printed raw, they
# move the cursor, recolour or rewrite the terminal, or make a key look like another.
_UNPRINTABLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def printable(text: str) -> str:
    """`text` with every control or format character written as its escape (\x1b, \n, \u202e): for a message
    that shows a stored key or a path. Everything else (spaces, accents) is kept as it is."""
    if text.isprintable():  # the common case, at C speed; isprintable also refuses spaces other than " "
        return text
    import unicodedata  # on the damage-message path only: not a cost of every start-up

    return "".join(repr(c)[1:-1] if unicodedata.category(c) in _UNPRINTABLE else c for c in text)


def typable(text: str, limit: int = 200) -> bool:
    """Whether `text` can appear as it is in a command printed for the user to run: at most `limit` characters, each
    printable ASCII (space included). Anything else (a tab, a NUL, a no-break space, an escape sequence, a long key)
    would be changed, lost or misread on its way through a terminal and a copy-paste."""
    return len(text) <= limit and all(" " <= c <= "~" for c in text)


def shell_word(text: str) -> str:
    """`text` as one shell word that stays on one printable line: shlex's quoting, or for text holding control or
    format characters, bash's $'...' with each of them escaped (shlex would keep them raw inside its quotes)."""
    import shlex  # on the damage-message path only: not a cost of every start-up
    import unicodedata

    if printable(text) == text:
        return shlex.quote(text)
    out = []
    for c in text:
        if c in "\\'":
            out.append("\\" + c)
        elif unicodedata.category(c) in _UNPRINTABLE:
            out.append("".join(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogatepass")))
        else:
            out.append(c)
    return "$'" + "".join(out) + "'"


def require_aware(value: datetime, name: str) -> datetime:
    """Return `value` unchanged, or raise ValueError when it has no timezone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive datetime {value.isoformat()}")
    return value


# The times a store keeps (see the module docstring): after the Unix epoch, since SQLite's hour buckets
# truncate (floor only for times >= 0); before the year 3000, centuries past any quota period or reset, and far
# from the end of datetime's range (year 9999), so adding a period to a stored time cannot overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
EARLIEST_EPOCH, LATEST_EPOCH = EARLIEST.timestamp(), LATEST.timestamp()


def to_epoch(value: datetime, name: str) -> float:
    """UTC epoch seconds: the one representation backends store, so comparisons never depend on zones."""
    return require_aware(value, name).timestamp()


def stored_epoch(value: datetime, name: str) -> float:
    """`to_epoch` for a time a store writes: one outside EARLIEST..LATEST becomes the nearer bound, so the store
    can always read back what it wrote (ValueError for a naive `value`, as `to_epoch`)."""
    return min(max(to_epoch(value, name), EARLIEST_EPOCH), LATEST_EPOCH)


def stored_time(value: datetime, name: str) -> datetime:
    """`value` as a store keeps it (`stored_epoch`): unchanged inside EARLIEST..LATEST, else the nearer bound."""
    epoch = to_epoch(value, name)
    return value if EARLIEST_EPOCH <= epoch <= LATEST_EPOCH else from_epoch(epoch)


def from_epoch(value: float) -> datetime:
    """The aware UTC datetime of epoch seconds, clamped to EARLIEST..LATEST (an older adws could store times
    outside; they read as the bound a store writes now). ValueError for NaN, TypeError for a non-number."""
    return datetime.fromtimestamp(min(max(value, EARLIEST_EPOCH), LATEST_EPOCH), UTC)


# The largest count, token figure, cursor or sum of money one row may hold (`adws state import` refuses more, and the
# agents' output parsers take no larger figure from one attempt): see adws.state.maintenance.
MAX_COUNT = 10**12
# The largest figure a stored row may hold: SQLite's largest integer, since a roll-up makes one row of an hour's rows
# (each at most MAX_COUNT) and must read back. Beyond, or below 0, a row was not written by adws: reading it is
# damage, not a quota. A total (`usage_totals`) is a sum of rows each store has checked, and is never damage however
# large (`stored_usage(..., high=math.inf)`): every store sums whole numbers exactly up to 2**53 (over 9,000 rows of
# MAX_COUNT in one account's period); beyond, SQLite (TOTAL) and Redis (Lua) sum in doubles, to within one part in
# 2**53 of the memory store's exact sum, and none of them fails.
MAX_STORED = 2**63 - 1
# The longest lease (a max_concurrency slot or a token reservation) the manager takes: a provider's timeout (at most
# a week), its kill_grace (at most an hour) and a minute's margin. A lease ending later than this after now was not
# written by adws: the stores refuse to take one and report one they hold as damage (it would bench the provider).
MAX_LEASE = timedelta(days=7, hours=1, minutes=1)


def stored_count(value: object, name: str, high: float = MAX_STORED) -> int:
    """A whole number from 0 to `high` read from a store (a float with no fraction, as Redis sums give, is one);
    ValueError naming `name` for anything else: a negative or huge figure would move quotas, a string is damage."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is {_kind(value)}, not a whole number")
    if not 0 <= value <= high:
        raise ValueError(f"{name} {value} is out of range (0 to {high:,})")
    return value


def stored_amount(value: object, name: str, high: float = MAX_STORED, *, above_zero: bool = False) -> float:
    """A finite number from 0 to `high` (> 0 with `above_zero`) read from a store (money, an observed figure);
    ValueError naming `name` for anything else (NaN and infinity included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is {_kind(value)}, not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > high or (above_zero and number == 0):
        raise ValueError(f"{name} {value!r} is out of range ({'above ' if above_zero else ''}0 to {high:,.0f})")
    return number


def stored_at(value: object, name: str) -> datetime:
    """The time of epoch seconds read from a store (`from_epoch`: a finite time outside EARLIEST..LATEST reads as the
    bound, as an older adws could write one); ValueError naming `name` for a non-number, NaN or infinity, which no
    adws writes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} is {_kind(value) if not isinstance(value, float) else value}, not a time")
    return from_epoch(value)


def stored_text(value: object, name: str) -> str:
    """A string read from a store; ValueError naming `name` for anything else (a BLOB, a number)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} is {_kind(value)}, not text")
    return value


def stored_usage(requests: object, input_tokens: object, output_tokens: object, cost_usd: object,
                 estimated: object, *, high: float = MAX_STORED) -> Usage:
    """The Usage of one stored row or sum, each figure checked (`stored_count`, `stored_amount`, each at most `high`;
    `estimated` 0 or 1). A sum of checked rows passes `high=math.inf`: any sum of valid rows is valid (MAX_STORED)."""
    stored_flag(estimated, "estimated")
    return Usage(requests=stored_count(requests, "requests", high),
                 input_tokens=stored_count(input_tokens, "input_tokens", high),
                 output_tokens=stored_count(output_tokens, "output_tokens", high),
                 cost_usd=stored_amount(cost_usd, "cost_usd", high), estimated=bool(estimated))


def stored_flag(value: object, name: str) -> bool:
    """A flag read from a store: 0 or 1 (True and False are 1 and 0); ValueError naming `name` for anything else."""
    if value not in (0, 1):
        raise ValueError(f"{name} is {_kind(value)}, not 0 or 1")
    return bool(value)


def check_usage(record: UsageRecord) -> UsageRecord:
    """`record` as a store writes it: requests and tokens whole numbers and cost a finite number, each from 0 to
    MAX_COUNT (what `adws state import` takes and the agents' output parsers give), `estimated` a bool. A whole float
    count (requests=5.0) becomes the int 5 and an int cost the float, so every backend keeps and returns the same types
    (SQLite and Redis read an int back; the memory store would have kept the float). ValueError naming the account
    and the figure otherwise (negative, NaN, infinite, too large, a fraction of a token, another type): every backend
    refuses such a record on write, with this message, before writing anything; read back it would be damage."""
    u = record.usage
    try:
        requests, input_tokens, output_tokens = (stored_count(getattr(u, name), name, MAX_COUNT)
                                                 for name in ("requests", "input_tokens", "output_tokens"))
        cost = stored_amount(u.cost_usd, "cost_usd", MAX_COUNT)
        if not isinstance(u.estimated, bool):
            raise ValueError(f"estimated is {_kind(u.estimated)}, not True or False")
    except ValueError as exc:
        raise ValueError(f"cannot record usage of {one_line(record.provider, 60)}/{one_line(record.account, 60)}: "
                         f"{exc}") from None
    # Built, not dataclasses.replace: `adws route` imports no dataclasses module (tests/test_dataclass_cache.py).
    return UsageRecord(record.provider, record.account, record.at,
                       Usage(requests, input_tokens, output_tokens, cost, u.estimated), record.model, record.task_id)


def stored_lease_end(value: object, name: str, now: float) -> datetime:
    """The end of a lease read from a store (`stored_at`), at most MAX_LEASE after `now` (epoch seconds)."""
    end = stored_at(value, name)
    if end.timestamp() > now + MAX_LEASE.total_seconds():
        raise ValueError(f"{name} {end.isoformat()} is more than {MAX_LEASE} after now (no lease adws takes is longer)")
    return end


def _kind(value: object) -> str:
    """`value` in a message: short, and no more of a BLOB than its size."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"a BLOB of {len(value)} bytes"
    return one_line(repr(value), 60)


def one_line(text: str, limit: int = 200) -> str:
    """`text` on one line (a quoted value may hold newlines), at most `limit` characters: for error messages."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one attempt consumed on one account, and when."""

    provider: str
    account: str
    at: datetime
    usage: Usage
    model: str | None = None
    task_id: str | None = None

    def __post_init__(self) -> None:
        require_aware(self.at, "UsageRecord.at")


@dataclass(frozen=True, slots=True)
class Cooldown:
    """An account is not to be used before `until` (e.g. the reset a rate-limit message announced)."""

    until: datetime
    reason: str

    def __post_init__(self) -> None:
        require_aware(self.until, "Cooldown.until")


@dataclass(frozen=True, slots=True)
class BreakerState:
    """Persisted state of one provider's circuit breaker; the transition logic lives with the breaker."""

    state: str = "closed"  # closed | open | half_open
    failures: int = 0
    opened_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.state not in BREAKER_STATES:
            raise ValueError(f"breaker state must be one of {', '.join(BREAKER_STATES)}, got {self.state!r}")
        if self.failures < 0:
            raise ValueError(f"breaker failures must be >= 0, got {self.failures}")
        if self.opened_at is not None:
            require_aware(self.opened_at, "BreakerState.opened_at")


def check_lease(limit: int, now: datetime, until: datetime) -> tuple[float, float]:
    """Validate acquire_slot's arguments; return `now` and `until` as epoch seconds (`until` as stored:
    `stored_epoch`)."""
    if limit < 1:
        raise ValueError(f"slot limit must be >= 1, got {limit}")
    start, end = to_epoch(now, "now"), to_epoch(until, "until")
    if end <= start:
        raise ValueError(f"a lease must end after now: until {until.isoformat()} <= now {now.isoformat()}")
    _check_length(start, end, "lease")
    return start, stored_epoch(until, "until")


def _check_length(start: float, end: float, what: str) -> None:
    if end - start > MAX_LEASE.total_seconds():
        raise ValueError(f"a {what} cannot be longer than {MAX_LEASE}, got {timedelta(seconds=end - start)}")


@dataclass(frozen=True, slots=True)
class Observation:
    """One reading of an account's (or pool's) real usage from outside the ledger (see adws.observe)."""

    provider: str
    subject: str  # the quota subject: "acc-03" or "acc-03/claude" (see adws.pools)
    at: datetime
    percent: float  # 0-100 (may exceed 100)
    source: str  # "usage_command" | "claude rate_limit_event (seven_day)"
    used: float | None = None  # in the window's own unit, where the source gave it
    limit: float | None = None
    reset_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.at, "Observation.at")
        if self.reset_at is not None:
            require_aware(self.reset_at, "Observation.reset_at")
        if not math.isfinite(self.percent) or self.percent < 0:
            raise ValueError(f"observed percent must be a finite number >= 0, got {self.percent}")

    def in_force(self, now: datetime, period_start: datetime | None) -> bool:
        """True while the reading still describes the current period."""
        if self.reset_at is not None:
            return self.reset_at > now and self.at <= now
        return period_start is None or period_start <= self.at <= now


class RunRecord(NamedTuple):
    """One successful run kept for learned needs (`StateStore.record_run`): its total tokens (input + output)
    and when it was recorded, per provider and specialization."""

    provider: str
    specialization: str
    at: datetime
    tokens: int


# How far past the store's clock the time of a reading or of an imported event is believed: hosts' clocks out of step
# by less (NTP keeps them within seconds; 5 minutes is Kerberos's default allowance for the same). Redis keeps a live
# reading dated later as of this bound (`record_observation`, on the server's clock), and `adws state import` refuses
# a file's time beyond it: a reading from the future would stay "the newest" until its time came.
FUTURE_TOLERANCE = timedelta(minutes=5)


# Successful runs kept per (provider, specialization) by every backend, the newest by time (older ones are dropped as
# new ones come: a store's runs stay bounded); config load refuses `need = { learned_runs = N }` above it. Backends
# read it as `base.RUNS_KEPT` at call time, so a test can lower it for all of them at once.
RUNS_KEPT = 1000


class RunsImported(NamedTuple):
    """What `StateStore.import_runs` did: how many of the runs given the store holds afterwards (`kept`), and how
    many runs it held before that they pushed out (`displaced`: a backend that keeps only the newest per group)."""

    kept: int
    displaced: int = 0


def check_reservation(tokens: int, now: datetime, until: datetime) -> tuple[float, float]:
    """Validate reserve()'s arguments; return `now` and `until` as epoch seconds (`until` as stored:
    `stored_epoch`)."""
    if tokens < 0:
        raise ValueError(f"a reservation cannot be negative, got {tokens} tokens")
    if tokens > MAX_COUNT:
        raise ValueError(f"a reservation cannot exceed {MAX_COUNT:,} tokens, got {tokens}")
    start, end = to_epoch(now, "now"), to_epoch(until, "until")
    if end <= start:
        raise ValueError(f"a reservation must end after now: until {until.isoformat()} <= now {now.isoformat()}")
    _check_length(start, end, "reservation")
    return start, stored_epoch(until, "until")


def add_usage(total: Usage, more: Usage) -> Usage:
    """Sum two usages; the sum is estimated as soon as one part was."""
    return Usage(
        requests=total.requests + more.requests,
        input_tokens=total.input_tokens + more.input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        cost_usd=total.cost_usd + more.cost_usd,
        estimated=total.estimated or more.estimated,
    )


ZERO_USAGE = Usage(requests=0)

# Retention rolls raw usage rows up into one row per account and hour.
ROLLUP_SECONDS = 3600


def hour_start(epoch: float) -> float:
    """The start (epoch seconds) of the UTC hour holding `epoch`: the bucket of a rolled-up usage row."""
    return math.floor(epoch / ROLLUP_SECONDS) * ROLLUP_SECONDS


def roll_up_rows(rows: Iterable[tuple[float, Usage]]) -> dict[float, tuple[int, Usage]]:
    """Sum rows per hour bucket: {hour start: (rows summed, total)}. Shared by the in-process backends."""
    buckets: dict[float, tuple[int, Usage]] = {}
    for at, usage in rows:
        hour = hour_start(at)
        count, total = buckets.get(hour, (0, ZERO_USAGE))
        buckets[hour] = (count + 1, add_usage(total, usage))
    return buckets


# Where a reader stands in a store's usage rows: (epoch, position). The epoch is a token that changes whenever
# rows already read may have been deleted or rewritten (a roll-up, a Redis server that lost its data); the
# position counts the rows appended before the cursor. Opaque to callers: only the store that issued it reads it.
UsageCursor = tuple[Hashable, int]


# The kinds of state a reader snapshots besides usage (whose appended rows `usage_since` gives), each with a
# change counter (`StateStore.change_counts`). "strategy" covers round-robin cursors and sticky choices.
CHANGE_KINDS = ("cooldowns", "reservations", "observations", "breakers", "slots", "runs", "strategy")


class UsageChanges(NamedTuple):
    """Rows appended after a cursor, oldest first, and the cursor to pass next time."""

    cursor: UsageCursor
    records: list[UsageRecord]
    # `change_counts()` as of the same read, where the backend reads them together (SQLite: one statement, so a
    # reader polling after another process's commit asks once); None: ask `change_counts()`.
    counts: tuple[int, ...] | None = None


class Closing:
    """`with store:` closes the store at the end; for every backend class (each defines `close`)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ChangePoller:
    """The change detection behind `StateStore.version()` for stores shared between processes.

    `read()` returns a token that differs whenever another process committed (SQLite's `PRAGMA data_version`,
    a Redis change counter); this object turns it into a local version number that also moves on this
    store's own writes (`wrote()`). With `interval_s` > 0 the token is read at most once per interval
    (seconds, on `monotonic`): a write by another process is noticed at most `interval_s` late, the store's
    own writes at once. `interval_s` = 0 reads the token on every call.
    """

    __slots__ = ("_own", "_read", "_seen", "_throttle", "_version")

    def __init__(self, read: Callable[[], Hashable], interval_s: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._throttle = Throttle(interval_s, monotonic, "poll interval")
        self._own = 0
        self._seen: tuple[Hashable, int] | None = None
        self._version = 0

    def wrote(self) -> None:
        """This store committed a write: the next version() reads the token again and moves."""
        self._own += 1
        self._throttle.reset()

    @property
    def interval_s(self) -> float:
        return self._throttle.interval_s

    def version(self) -> int:
        if not self._throttle.due():
            return self._version
        seen = (self._read(), self._own)
        if seen != self._seen:
            self._seen = seen
            self._version += 1
        return self._version


class StateStore(Protocol):
    """Shared, multi-process state behind routing and fall-through.

    A store object is used from one thread of one process; several processes (or machines, for
    networked backends) may use the same underlying state at once without losing an update.
    """

    @property
    def location(self) -> str:
        """Where the state lives, for messages (a file path, a URL without its password, "memory")."""
        ...

    @property
    def staleness_s(self) -> float:
        """Seconds: how late `version()` may notice a write committed by another process (0 = at once).

        The store's own writes are always noticed at once.
        """
        ...

    def record_usage(self, record: UsageRecord) -> None: ...

    def usage_totals(
        self, since: Mapping[str, datetime], until: datetime | None = None
    ) -> dict[tuple[str, str], Usage]:
        """Summed usage per (provider, account) of records with `since[provider] <= at (< until)`.

        One round trip for all providers. `estimated` is True when any summed record was. Accounts
        without usage in their period are absent.
        """
        ...

    def oldest_usage(self, provider: str, account: str, since: datetime) -> datetime | None:
        """Time of the oldest record at or after `since`: a rolling window resets `window` after it."""
        ...

    def usage_cursor(self) -> UsageCursor:
        """The position after the last usage row stored now: `usage_since` of it returns later rows only."""
        ...

    def usage_since(self, cursor: UsageCursor) -> UsageChanges | None:
        """The usage rows appended after `cursor` (any `at`, in append order) and the new cursor, in one
        consistent read; None when the cursor no longer holds (a roll-up rewrote rows since, the store was
        replaced, or the rows are older than the backend keeps for this): the caller re-reads `usage_totals`.

        Usage rows are only ever appended between roll-ups, so totals + the rows since = the new totals.
        """
        ...

    def set_cooldown(self, provider: str, account: str, cooldown: Cooldown) -> None: ...

    def clear_cooldown(self, provider: str, account: str) -> None: ...

    def cooldowns(self, now: datetime) -> dict[tuple[str, str], Cooldown]:
        """Cooldowns still running at `now` (until > now)."""
        ...

    def next_cursor(self, key: str) -> int:
        """Atomic fetch-and-increment across processes: returns the value before the increment (from 0)."""
        ...

    def advance_cursor(self, key: str, value: int) -> None:
        """Move the cursor forward to `value` if it is behind (never back): round robin moves it past the
        account a task really used, while other coordinators may have moved it further already."""
        ...

    def peek_cursor(self, key: str) -> int: ...

    def get_sticky(self, key: str) -> str | None: ...

    def set_sticky(self, key: str, value: str) -> None: ...

    def get_breaker(self, provider: str) -> BreakerState: ...

    def update_breaker(self, provider: str, fn: Callable[[BreakerState], BreakerState]) -> BreakerState:
        """Atomic read-modify-write: no other process writes this breaker between the read and the write.

        `fn` may run more than once on backends that retry on conflict, so it must be pure. The circuit
        breaker's half-open probe is claimed through this call (`adws.breaker.claim_probe`): its atomicity is
        what makes coordinators that start together after the cooldown produce exactly one probe.
        """
        ...

    def breakers(self) -> dict[str, BreakerState]: ...

    def acquire_slot(self, provider: str, holder: str, limit: int, now: datetime, until: datetime) -> bool:
        """Atomically: forget the provider's leases that ended (`until <= now`), then lease a slot to `holder`
        until `until` if fewer than `limit` are live. False, and nothing leased, when the provider is full.

        Leases expire so that a coordinator killed mid-run never holds a slot forever. A holder that already
        has a lease renews it (its own lease does not count against it).
        """
        ...

    def release_slot(self, provider: str, holder: str) -> None:
        """End the holder's lease; releasing one that expired or never existed is not an error."""
        ...

    def active_slots(self, now: datetime) -> dict[str, tuple[datetime, ...]]:
        """The end of each lease still live at `now` (until > now), per provider, soonest first.

        One round trip. Ends rather than a count: a reader can tell when a full provider frees up without
        asking again (a lease whose holder died expires without any write to announce it).
        """
        ...

    def reserve(self, provider: str, subject: str, holder: str, tokens: int, now: datetime,
                until: datetime) -> dict[str, int]:
        """Atomically: forget the provider's reservations that ended (`until <= now`), then reserve `tokens` on
        `subject` for `holder` until `until` (a holder that has one replaces it). Returns the provider's live
        reservations per subject as they stood just before this one, so coordinators deciding at the same
        instant can see who reserved first. Reservations expire like leases: a coordinator that dies mid-run
        holds nothing for ever."""
        ...

    def release_reservation(self, provider: str, holder: str) -> None:
        """End the holder's reservation (real usage replaces it); releasing none is not an error."""
        ...

    def reservations(self, now: datetime) -> dict[tuple[str, str], tuple[tuple[int, datetime], ...]]:
        """The reservations still live at `now` per (provider, subject): (tokens, end) each, soonest end first.
        One round trip. Ends rather than a sum: a reader can tell when a dead holder's reservation runs out
        without asking again (it expires without a write to announce it)."""
        ...

    def record_observation(self, observation: Observation) -> bool:
        """Keep the reading as the latest of its (provider, subject), unless a later one is already kept; True
        when it was kept (False: the store's own reading is later)."""
        ...

    def observations(self) -> dict[tuple[str, str], Observation]:
        """The latest reading per (provider, subject)."""
        ...

    def record_run(self, provider: str, specialization: str, at: datetime, tokens: int) -> None:
        """A successful run's total tokens, for learned needs (adws.need)."""
        ...

    def recent_runs(self, provider: str, specialization: str, limit: int) -> list[int]:
        """Total tokens of the provider's last `limit` successful runs of `specialization`, newest first."""
        ...

    def change_counts(self) -> tuple[int, ...] | None:
        """One counter per kind of CHANGE_KINDS, in that order, each moving whenever a write of that kind commits
        (from any process); None when the backend keeps none, and a reader re-reads every kind on each change.

        One cheap read: after `version()` moved, a reader that read these before a kind's state re-reads only
        the kinds whose counter moved (a write landing between the two reads moves the counter again later, so
        it is re-read then, never missed).
        """
        ...

    def version(self) -> int:
        """A number that changes whenever any process committed a write since the previous call.

        Cheap enough to call on every routing decision to decide whether a cached snapshot is stale: a
        networked backend answers from memory and asks its server at most once per `staleness_s`, so a
        write by another process shows up in the number at most `staleness_s` seconds after its commit.
        """
        ...

    # -- moving state between stores and keeping it bounded (adws state export/import/compact) ------------

    def usage_records(self) -> Iterator[UsageRecord]:
        """Every usage row, oldest first (rolled-up hourly rows included, with model and task_id None)."""
        ...

    def import_usage(self, records: Iterable[UsageRecord]) -> int:
        """Append many records at once (bulk loads, `adws state import`); returns how many."""
        ...

    def recorded_runs(self) -> Iterator[RunRecord]:
        """Every run the store keeps for learned needs (all that `recent_runs` could return), grouped by
        (provider, specialization) in name order, each group oldest first; runs recorded at the same instant in
        the order recorded where the backend keeps it (Redis: in no particular order).

        At most RUNS_KEPT per group, the newest."""
        ...

    def import_runs(self, runs: Iterable[RunRecord]) -> RunsImported:
        """Record many runs at once, each as `record_run` would (`adws state import`), with the cap every backend
        applies (the newest RUNS_KEPT per group: a run older than those is not kept, and runs the store held can be
        pushed out); returns how many of `runs` the store holds afterwards and how many of its own runs they pushed
        out."""
        ...

    def cursors(self) -> dict[str, int]:
        """Every round-robin cursor by key."""
        ...

    def sticky_choices(self) -> dict[str, str]:
        """Every sticky assignment by key."""
        ...

    def roll_up(self, before: datetime) -> int:
        """Retention: replace the raw usage rows of each (provider, account, UTC hour) wholly before `before`
        by one row at the hour's start holding their sum; returns how many rows went away.

        Totals over periods that start on an hour boundary at or before `before` are unchanged; only the
        position of usage inside an hour is lost. Atomic: a reader sees the rows before or after, never both.
        """
        ...

    def close(self) -> None: ...
