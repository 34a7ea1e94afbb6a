"""Choosing accounts within a tier: the checks that make an account unusable (disabled, credentials missing,
cooling down, quota hard block); the provider's strategy (adws.strategies) orders the usable ones. Accounts
come resolved from load (`ProviderSpec.runs_as`): a provider without declared accounts has its implicit
`default` one, checked like any other and not shown in plans.

Routing calls `rank()` for every tier of every decision, so state is read through a snapshot that is rebuilt
only when the store says something changed (`StateStore.version()`) or the quota period moved on. A rolling
window's start moves with the clock; its snapshot is reused for up to `ROLLING_REFRESH` seconds, which can
only over-count usage (old records drop out a little late), never under-count it. A `now` earlier than the
snapshot's (callers pass `now` explicitly) always re-reads: the snapshot has already dropped the cooldowns and
window records that ended before its own time. When only the version moved, the usage rows appended since
the snapshot's cursor (`StateStore.usage_since`) are added to it instead of re-summing each period; a store
that refuses the cursor (a roll-up rewrote rows) is read in full. The other kinds of state are read again only
when their change counter moved (`StateStore.change_counts`; every kind when the store keeps none). A store that
does not exist yet (ABSENT_VERSION) holds nothing at any time and is never re-read.

A change costs what it touched: rankings (`_Ranked`) are kept across changes and only the accounts whose quota
subjects changed are judged again, at once, each moved to its new place by binary search on the strategy's sort
key. The generation (which keys the router's plan cache) moves only when some answer did, and `stamp(provider)`
tells the router which providers' plan steps must be built again: a usage row that leaves every ranking as it was
(the account keeps its place) costs the read of that row and one judgement, and every cached plan stands. A full
read, a snapshot expiry or a replaced rejected key starts every ranking over. At most KEPT_RANKINGS rankings are kept
current: beyond them, the least recently used are dropped at the next change (and built again when asked for).

One StatefulAccounts may be shared by threads (the router's, under the engine's lock, and each run's reservation
check): its public methods take its own lock.

Concurrency slots (`max_concurrency`) are part of the snapshot too: taking and releasing one is a write, so
the version moves with them. A lease whose holder died runs out without a write; its end is in the snapshot,
and like a cooldown's end it makes the next decision after it recompute.

An account whose credentials were rejected (an `auth` attempt) cools down for AUTH_COOLDOWN, or until the value
of its key variable changes, whichever comes first (`credential_cooldown`): otherwise `least_used` would pick
the account with the bad key first again for every following task, since a rejected call books nothing. The
cooldown records a short hash of the rejected value (never the value); a different value lifts it. An account
without a key variable (a CLI's own login in its home directory) waits out the declared time.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple, Protocol, TypeVar
from zoneinfo import ZoneInfo

from adws import breaker
from adws.attempt import Usage
from adws.availability import Availability
from adws.compiled import IMPLICIT_ACCOUNT, Account, CompiledConfig, ProviderSpec, QuotaSpec
from adws.dataclass_cache import dataclass, field
from adws.decision import Skip
from adws.need import Need
from adws.pools import Governing, governing, subjects
from adws.quota import QuotaLimits, QuotaPeriod
from adws.spend import judge_governed
from adws.state import ABSENT_VERSION
from adws.state.base import (
    CHANGE_KINDS,
    ZERO_USAGE,
    BreakerState,
    Cooldown,
    Observation,
    StateStore,
    UsageChanges,
    UsageCursor,
    add_usage,
)
from adws.state.memory import MemoryStore
from adws.strategies import STRATEGIES, Candidate, OrderContext, SortKey, Strategy, cursor_key, sticky_key

__all__ = ["AUTH_COOLDOWN", "DEFAULT_ACCOUNT", "STRATEGIES", "AccountPlanner", "Candidate", "RankInput", "Ranking",
           "StatefulAccounts", "Strategy", "build_period", "credential_cooldown", "cursor_key", "limits_of",
           "reads_tier_scores", "sticky_key"]

DEFAULT_ACCOUNT = IMPLICIT_ACCOUNT  # usage of a provider that declares no accounts is kept under this name
ROLLING_REFRESH = 30.0
READ_ATTEMPTS = 3  # full usage reads that a concurrent append may cost before an over-count is accepted
# Rankings kept up to date after each change, at most: each touched one is judged again at once (that is what lets
# an unchanged answer keep the plans), so beyond this many the least recently used ones (a sticky provider's
# finished tasks) are dropped at the next change, and built again from the snapshot if they are asked for again.
KEPT_RANKINGS = 64
_NAME = attrgetter("name")
K = TypeVar("K")
# (provider, account position, quota subject, model price, tokens required): what a usable account's Candidate
# depends on besides the snapshot (StatefulAccounts._judge)
_Memo = tuple[str, int, str, float, int | None]
_COOLDOWNS, _RESERVATIONS, _OBSERVATIONS, _BREAKERS, _SLOTS, _RUNS, _STRATEGY = (
    CHANGE_KINDS.index(kind) for kind in ("cooldowns", "reservations", "observations", "breakers", "slots", "runs",
                                          "strategy"))
# How long an account whose credentials were rejected stays out when nothing about them changes: long enough
# not to burn one attempt per task on a dead key, short enough that a login renewed outside adws is retried.
AUTH_COOLDOWN = timedelta(hours=1)
_REJECTED = re.compile(r"^auth \(credentials ([0-9a-f]{12}) rejected")


def _credential_vars(account: Account) -> tuple[str, ...]:
    return (account.key_env,) if account.key_env else account.secret_vars


def credential_fingerprint(account: Account, environ: Mapping[str, str]) -> str | None:
    """12 hex digits of SHA-256 over the values of the account's key variables (None when none is set):
    enough to tell a changed key from the rejected one, and nothing an attacker could use."""
    values = [environ.get(var, "") for var in _credential_vars(account)]
    if not any(values):
        return None
    import hashlib  # only after a credential was rejected: not on the start-up path of every command

    return hashlib.sha256("\0".join(values).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def credential_cooldown(account: Account, environ: Mapping[str, str], now: datetime) -> Cooldown:
    """The cooldown after an `auth` attempt: AUTH_COOLDOWN, lifted early when the key variable's value changes."""
    fingerprint = credential_fingerprint(account, environ)
    if fingerprint is None:
        return Cooldown(now + AUTH_COOLDOWN, "auth")
    names = ", ".join(_credential_vars(account))
    return Cooldown(now + AUTH_COOLDOWN, f"auth (credentials {fingerprint} rejected; lifted when {names} changes)")


def cooldown_applies(cooldown: Cooldown, account: Account, environ: Mapping[str, str]) -> bool:
    """False for a credential cooldown whose rejected value is no longer the one set."""
    rejected = _REJECTED.match(cooldown.reason)
    return rejected is None or rejected.group(1) == credential_fingerprint(account, environ)


@dataclass(slots=True)
class Ranking:
    """A tier's accounts for one decision. `eligible` are the names to show in the plan, in strategy order:
    empty for a provider without declared accounts, whose implicit account is never shown."""

    usable: bool = False  # at least one account can take the task
    eligible: list[str] = field(default_factory=list)
    first_percent: float | None = None  # used + reserved of the account tried first; None: not metered
    skipped: list[Skip] = field(default_factory=list)
    earliest: datetime | None = None  # when the first blocked account comes back, if all are blocked


class RankInput(NamedTuple):
    """Everything a ranking depends on besides the state snapshot (whose generation empties the cache):
    the ranking cache's key, and the only task and environment data `_rank` reads."""

    provider: str
    task_key: str | None  # None unless the provider's strategy depends on the task
    keys_set: tuple[str, ...]  # which of the provider's key variables are set (credentials are read per decision)
    model: str | None  # the tier's model, where the provider's quotas have pools (it picks the pool); else None
    need: Need | None  # the task's expected need on this provider (adws.need); None: only the hard block applies
    # The model's price per 1K tokens where a budget check reads it (a need is given and some quota of the provider
    # counts cost_usd), else None: models of one price share a ranking, models of different prices never do.
    price: float | None = None


class AccountPlanner(Protocol):
    def rank(self, provider: ProviderSpec, task_key: str | None, now: datetime, *, model: str | None = None,
             need: Need | None = None) -> Ranking: ...
    def recent_runs(self, provider: str, specialization: str, limit: int) -> list[int]: ...
    def provider_blocked(self, provider: ProviderSpec, now: datetime) -> Skip | None: ...
    def generation(self, now: datetime) -> int:
        """Changes whenever an answer of rank() or provider_blocked() may have changed (StatefulAccounts: a change
        of `Ranking.first_percent` alone only where tier scores read it, `tier_scores`), and stays while none did."""
        ...
    def stamp(self, provider: str) -> int:
        """Changes whenever an answer of rank() or provider_blocked() for `provider` may have changed (read after
        generation(now), like them)."""
        ...


def build_period(quota: QuotaSpec) -> QuotaPeriod:
    """The period `quota` counts usage in: its cron `reset`, its rolling `window`, or, for a quota with neither
    (load allows that only for a quota with pools and no limits of its own: only its pools are metered, each by
    its own period, see `adws.pools.subjects`), an unmetered period that counts nothing and never resets."""
    if quota.reset is not None:
        return QuotaPeriod.cron(quota.reset, ZoneInfo(quota.timezone))
    if quota.window_seconds:
        return QuotaPeriod.rolling(timedelta(seconds=quota.window_seconds))
    return QuotaPeriod.unmetered()


def limits_of(quota: QuotaSpec) -> QuotaLimits:
    return QuotaLimits(quota.tokens, quota.requests, quota.cost_usd)


class StatefulAccounts:
    """Accounts checked against the state store: cooldowns, quota hard blocks, circuit breakers."""

    def __init__(self, providers: Mapping[str, ProviderSpec] | None, availability: Availability,
                 store: StateStore | None, breaker_cooldown: float = 600.0, *, tier_scores: bool = True) -> None:
        """`store` None: a private in-memory store (a router on its own, e.g. in tests). `tier_scores`: whether
        some plan scores its tiers and so reads `Ranking.first_percent` (`reads_tier_scores(config)`); when none
        does, a change that moves only that percent keeps the generation (and the plans cached on it)."""
        self.availability = availability
        self.tier_scores = tier_scores
        self.store: StateStore = store if store is not None else MemoryStore()
        self.breaker_cooldown = timedelta(seconds=breaker_cooldown)
        # When this reader first saw each breaker state: a time ahead of its clock counts from then (adws.breaker);
        # the manager's admission reads the same, so routing and the probe's claim agree.
        self.sightings = breaker.Sightings()
        self._periods: dict[int, QuotaPeriod] = {}
        self._version: int | None = None
        self._usage: dict[tuple[str, str], Usage] = {}
        self._starts: list[datetime] | None = None
        self._read_ts: float | None = None  # the `now` the snapshot was read at (epoch seconds)
        self._usage_ts: float | None = None  # the `now` of the last full usage read, whose starts it counts from
        self._fresh_until = 0.0  # epoch seconds: before it, no period start has moved since the read
        self._expires_ts: float | None = None
        self._cooldowns: dict[tuple[str, str], Cooldown] = {}
        self._breakers: dict[str, BreakerState] = {}
        self._slots: dict[str, tuple[datetime, ...]] = {}  # live lease ends per provider, soonest first
        self._providers = providers or {}
        # Quota subjects (an account, or one of its pools: adws.pools) grouped by the quota that governs them, so
        # each period start is computed once.
        groups: dict[int, tuple[QuotaSpec, list[tuple[str, str]]]] = {}
        priced: set[str] = set()  # providers with a quota (or pool) that counts cost: the model's price matters
        for provider in self._providers.values():
            for account in provider.runs_as:
                for subject, _, governed in subjects(account.quota, account.name):
                    if governed is not None:
                        if governed.cost_usd is not None:
                            priced.add(provider.name)
                        members = groups.setdefault(id(governed), (governed, []))[1]
                        members.append((provider.name, subject))
        self._reserved: dict[tuple[str, str], tuple[tuple[int, datetime], ...]] = {}  # (tokens, end) per subject
        self._observed: dict[tuple[str, str], Observation] = {}
        self._runs: dict[tuple[str, str, int], list[int]] = {}
        self._priced = frozenset(priced)
        self._quota_groups = list(groups.values())
        self._group_of = {member: index for index, (_, members) in enumerate(self._quota_groups)
                          for member in members}
        self._cursor: UsageCursor | None = None  # where the snapshot's usage stops in the store's rows
        # Least recently used first (rank() moves the one it answers from to the end): the order _touch evicts in.
        self._rankings: OrderedDict[RankInput, _Ranked] = OrderedDict()
        self._counts: tuple[int, ...] | None = None  # the store's change counters as of the snapshot
        self._epoch = 0  # the generation of the last full invalidation
        self._stamps: dict[str, int] = {}  # provider -> the generation its answers last changed in
        # a usable account's Candidate, and whether its judgement read the clock; until the next change of the snapshot
        self._usable: dict[_Memo, tuple[Candidate, bool]] = {}
        self._expires: datetime | None = None  # the earliest cooldown end or breaker probe in the snapshot
        self._generation = 0
        self._rejected: list[Account] = []
        self._rejected_seen: tuple[str | None, ...] = ()
        # One thread at a time in the snapshot and the rankings: the router calls in under the engine's lock, but a
        # run's reservation check (ProviderManager._reserve) and its wait for a reset call in from the run's own
        # thread. Every public method takes it (uncontended, a fraction of a microsecond); the private ones run
        # under it.
        self._lock = threading.RLock()

    # -- quota ----------------------------------------------------------------------------------------------

    def period_of(self, quota: QuotaSpec) -> QuotaPeriod:
        """The quota's period (built once). Without the lock: two threads building one at once build equal ones."""
        period = self._periods.get(id(quota))
        if period is None:
            period = self._periods[id(quota)] = build_period(quota)
        return period

    def _refresh(self, now: datetime, version: int) -> None:
        """Re-read state when another writer committed, a period start moved or a cooldown ended. `version`: the
        store's, just read.

        `generation` (once per decision) reads the version and calls this unless the store is still absent as
        it was at the last call, so the common case (nothing changed, `now` still inside the current periods)
        is one clock conversion and two float comparisons. The absent-store branch is for a store that went
        missing after it existed.
        """
        if version == ABSENT_VERSION:
            # No store yet (see PendingStore): it holds nothing at any `now`, so there is nothing to re-read.
            if self._version != ABSENT_VERSION:
                self._usage, self._cooldowns, self._breakers, self._slots = {}, {}, {}, {}
                self._reserved, self._observed = {}, {}
                self._starts, self._read_ts, self._version, self._cursor = None, None, ABSENT_VERSION, None
                self._counts = None
                self._invalidate(now)
            return
        ts = now.timestamp()
        if self._expires_ts is not None and ts >= self._expires_ts:
            self._invalidate(now)
        # Before the fresh limit no period start has moved since the snapshot's read: new rows are added to it.
        fresh = self._read_ts is not None and self._read_ts <= ts < self._fresh_until
        starts: list[datetime] | None = None  # computed at `now` when the snapshot may be past a start
        if fresh:
            if version == self._version:
                return
            addable = self._starts is not None
        else:
            starts = [self.period_of(quota).start(now) for quota, _ in self._quota_groups]
            earlier = self._read_ts is not None and ts < self._read_ts
            addable = not earlier and self._starts_fresh(starts)
            if version == self._version and addable:
                self._fresh_until = self._fresh_limit(now, self._usage_ts)
                return
        # Counters read before the state they guard (like the version): a write landing between is re-read at
        # the next change, never taken as seen. (They guard every kind but usage rows, which the cursor guards.)
        # Version and cursor are None until this read is through (the period starts are kept only then too): should
        # a store read fail below, no shortcut above takes the half-read snapshot as current, also when no write
        # came since (a period rolled over), and the next refresh reads everything again (rows already added in
        # place were never judged).
        prior, self._version = self._version, None
        cursor, self._cursor = self._cursor, None
        changes = self.store.usage_since(cursor) if version != prior and addable and cursor is not None else None
        counts = changes.counts if changes is not None and changes.counts is not None else self.store.change_counts()
        changed = self._apply_new_usage(changes) if changes is not None else None
        if changes is not None and changed is not None:
            cursor = changes.cursor
        else:
            if starts is None:  # a full read counts from the starts at `now` (a rolling window's moves)
                starts = [self.period_of(quota).start(now) for quota, _ in self._quota_groups]
            cursor = self._read_usage(starts)
            changed = None
        # The period starts the usage counts from, and when they were computed: kept with the version at the end.
        starts, usage_ts = (self._starts, self._usage_ts) if changed is not None else (starts, ts)
        seen = self._counts if changed is not None else None

        def moved(kind: int) -> bool:
            return seen is None or counts is None or seen[kind] != counts[kind]

        bumped: set[str] = set()
        # What _watch reads (cooldowns, breakers, reservations, slots, observations): when none of it moved, the
        # earliest end it found is still ahead (else the snapshot would have expired above) and still the earliest.
        watch = any(moved(kind) for kind in (_COOLDOWNS, _RESERVATIONS, _OBSERVATIONS, _BREAKERS, _SLOTS))
        if moved(_COOLDOWNS):
            cooldowns = self.store.cooldowns(now)
            if changed is not None:
                # Which quota subjects the write(s) touched: only their accounts are judged again.
                changed |= _changed_keys(self._cooldowns, cooldowns)
            self._cooldowns = cooldowns
        if moved(_RESERVATIONS):
            reserved = self.store.reservations(now)
            if changed is not None:
                changed |= _changed_keys(self._reserved, reserved)
            self._reserved = reserved
        if moved(_OBSERVATIONS):
            observed = self.store.observations()
            if changed is not None:
                changed |= _changed_keys(self._observed, observed)
            self._observed = observed
        if moved(_BREAKERS):
            breakers = self.store.breakers()
            bumped |= _changed_keys(self._breakers, breakers)
            self._breakers = breakers
        if moved(_SLOTS):
            slots = self.store.active_slots(now)
            bumped |= _changed_keys(self._slots, slots)
            self._slots = slots
        if not fresh or changed is None:
            self._fresh_until = self._fresh_limit(now, usage_ts)
        if changed is None:
            self._invalidate(now)
        else:
            if moved(_RUNS):
                self._runs.clear()  # learned needs: any provider's (a rule's need reads the tier's runs)
                bumped.update(self._providers)
            self._touch(changed, bumped, reorder=moved(_STRATEGY), watch=watch, now=now)
        # The version read before the state, not after: a write that lands while this snapshot is read makes the
        # next decision read again, instead of being taken as seen (a missed row would over-state an account's room).
        # All are kept only now that the read is through: one that failed is read again, not taken as seen.
        self._version, self._counts, self._cursor = version, counts, cursor
        self._starts, self._usage_ts, self._read_ts = starts, usage_ts, ts

    def _read_usage(self, starts: list[datetime]) -> UsageCursor:
        """Re-read the usage of every period from the store; returns the cursor that later rows come after.

        The cursor is taken before the totals and compared after: when a row was appended in between (it may
        or may not be in the totals), the read is repeated, up to READ_ATTEMPTS times; after that the earlier
        cursor is kept, which can only count such a row twice (over-count), never miss it.
        """
        for _ in range(READ_ATTEMPTS):
            cursor = self.store.usage_cursor()
            usage: dict[tuple[str, str], Usage] = {}
            for (_, members), since in zip(self._quota_groups, starts, strict=True):
                by_provider: dict[str, list[str]] = {}
                for prov, acc in members:
                    by_provider.setdefault(prov, []).append(acc)
                totals = self.store.usage_totals(dict.fromkeys(by_provider, since))
                for prov, accs in by_provider.items():
                    usage.update({(prov, acc): totals[(prov, acc)] for acc in accs if (prov, acc) in totals})
            if self.store.usage_cursor() == cursor:
                break
        self._usage = usage
        return cursor

    def _apply_new_usage(self, changes: UsageChanges) -> set[tuple[str, str]] | None:
        """Add the usage rows appended since the last read (`StateStore.usage_since` of the snapshot's cursor) to
        the snapshot (rows of accounts without a quota, or older than their period's start, change nothing) and
        return the (provider, subject) keys whose usage changed; None when there are no starts to count from."""
        if self._starts is None:
            return None
        changed: set[tuple[str, str]] = set()
        usage, starts = self._usage, self._starts
        for record in changes.records:
            key = (record.provider, record.account)
            group = self._group_of.get(key)
            if group is not None and record.at >= starts[group]:
                usage[key] = add_usage(usage.get(key, ZERO_USAGE), record.usage)
                changed.add(key)
        return changed

    def _fresh_limit(self, now: datetime, usage_ts: float | None) -> float:
        """Until when (epoch seconds) the snapshot's period starts stay right without recomputing them
        (`usage_ts`: when the starts its usage counts from were computed, for a rolling window)."""
        limit = float("inf")
        for quota, _ in self._quota_groups:
            if quota.window_seconds is not None:
                # From the full read: rows applied since then were counted from the same (older) start.
                limit = min(limit, (usage_ts or now.timestamp()) + ROLLING_REFRESH)
            else:
                reset = self.period_of(quota).next_reset(now)
                if reset is not None:
                    limit = min(limit, reset.timestamp())
        return limit

    def _starts_fresh(self, starts: list[datetime]) -> bool:
        if self._starts is None:
            return False
        for (quota, _), new, old in zip(self._quota_groups, starts, self._starts, strict=True):
            if new == old:
                continue
            if quota.window_seconds is not None and (new - old).total_seconds() < ROLLING_REFRESH:
                continue
            return False
        return True

    def _invalidate(self, now: datetime) -> None:
        """Forget every ranking: the next rank() of each input judges all its accounts."""
        self._rankings.clear()
        self._runs.clear()
        self._generation += 1
        self._usable.clear()
        self._epoch = self._generation
        self._watch(now)

    def _touch(self, changed: set[tuple[str, str]], bumped: set[str], *, reorder: bool, watch: bool,
               now: datetime) -> None:
        """An incremental change: rankings are kept, and the accounts reading a quota subject in `changed`
        (provider, subject) are judged again now; with `reorder`, a strategy whose order reads the store (a cursor,
        a sticky choice) is asked again. `bumped`: providers whose other answers (circuit, slots, learned needs)
        may have changed. Only when some answer changed is there a new generation, and only the providers whose
        answers changed get a new stamp: a usage row that leaves every ranking as it was keeps every cached plan.
        `watch`: the kinds of state `_watch` reads moved."""
        self._usable.clear()
        rankings = self._rankings
        while len(rankings) > KEPT_RANKINGS:
            # The least recently used goes, and its provider gets a new stamp: cached plans may hold its answer,
            # and once it is gone no later change would tell them that answer moved. (Plans served from the cache
            # never call rank(), so the rankings they hold are the least recently used ones.)
            dropped = rankings.popitem(last=False)[1]
            bumped.add(dropped.provider.name)
        for ranked in rankings.values():
            if ranked.touch(changed, reorder) and ranked.update(self, now):
                bumped.add(ranked.provider.name)
        if bumped:
            self._generation += 1
            for provider in bumped:
                self._stamps[provider] = self._generation
        if watch:
            self._watch(now)

    def stamp(self, provider: str) -> int:
        """Moves whenever an answer of rank() or provider_blocked() for `provider`, or a learned need of a task on
        it, may have changed: a plan step built for it stays right while this number stays the same."""
        with self._lock:
            return max(self._epoch, self._stamps.get(provider, 0))

    def _watch(self, now: datetime) -> None:
        """What the snapshot must watch without a write: replaced rejected keys, and the earliest moment an
        answer changes with the clock alone (a cooldown or lease ends, a breaker's probe is due, an observation
        comes into force or stops being so)."""
        # Accounts cooling down after rejected credentials: their key values are watched on every decision.
        runs_as = {(p.name, a.name): a for p in self._providers.values() for a in p.runs_as} if any(
            _REJECTED.match(c.reason) for c in self._cooldowns.values()) else {}
        self._rejected = [runs_as[key] for key, c in self._cooldowns.items()
                          if key in runs_as and _REJECTED.match(c.reason)]
        self._rejected_seen = self._fingerprints()
        ends = [c.until for c in self._cooldowns.values() if c.until > now]
        for name, state in self._breakers.items():
            provider = self._providers.get(name)
            end = None if provider is None else breaker.expires(
                state, now, self.breaker_cooldown, breaker.probe_lease(provider),
                self.sightings.first(name, state, now))
            ends += [end] if end is not None else []
        # Reservations, like slots, are released by a write; only a dead holder's runs out unannounced.
        ends += [end for leases in self._reserved.values() for _, end in leases if end > now]
        # Leases are normally released (a write) long before they end, so only a dead holder's lease gets here.
        ends += [next(e for e in lease_ends if e > now) for lease_ends in self._slots.values()
                 if lease_ends and lease_ends[-1] > now]
        for obs in self._observed.values():
            ends += [t for t in (obs.at, obs.reset_at) if t is not None and t > now]
        self._expires = min(ends, default=None)
        self._expires_ts = self._expires.timestamp() if self._expires is not None else None

    def generation(self, now: datetime) -> int:
        """Bring the snapshot up to date at `now` (see the module docstring) and return its generation, which moves
        whenever an answer of rank() or provider_blocked() may have changed. Raises StateStoreError when the store
        cannot be read (the next call reads it again in full)."""
        lock = self._lock
        lock.acquire()  # not `with`: this runs once per decision, and the two calls cost half of what `with` does
        try:
            version = self.store.version()
            # Still no store, as at the last decision (see PendingStore): nothing to re-read, no call to make.
            if version != ABSENT_VERSION or self._version != ABSENT_VERSION:
                self._refresh(now, version)
            if self._rejected and self._fingerprints() != self._rejected_seen:
                self._invalidate(now)  # a rejected key was replaced: its cooldown no longer applies
            return self._generation
        finally:
            lock.release()

    def _fingerprints(self) -> tuple[str | None, ...]:
        environ = self.availability.environ
        return tuple(credential_fingerprint(account, environ) for account in self._rejected)

    def next_reset(self, provider: ProviderSpec, account: Account, now: datetime,
                   model: str | None = None) -> datetime | None:
        """When the quota an attempt of `model` on the account draws on next resets (its pool's, else the
        account's; rolling: when its oldest record in the window ages out); None without a quota, or without
        usage in a rolling window."""
        gov = governing(account.quota, account.name, model)
        with self._lock:
            return self._subject_reset(provider.name, gov.subject, gov.quota, now)

    def subject_reset(self, provider: str, subject: str, quota: QuotaSpec | None, now: datetime) -> datetime | None:
        """When the quota `quota` of the subject (an account or `ACCOUNT/POOL`) next resets (see next_reset)."""
        with self._lock:
            return self._subject_reset(provider, subject, quota, now)

    def _subject_reset(self, provider: str, subject: str, quota: QuotaSpec | None, now: datetime) -> datetime | None:
        if quota is None:
            return None
        period = self.period_of(quota)
        reset = period.next_reset(now)
        if reset is None and quota.window_seconds:
            # Rolling window: usage starts to fall out when the oldest record in the window ages out.
            oldest = self.store.oldest_usage(provider, subject, period.start(now))
            reset = oldest + timedelta(seconds=quota.window_seconds) if oldest else None
        return reset

    def reserved_tokens(self, provider: str, subject: str, now: datetime) -> int:
        """Tokens that runs in flight hold on a quota subject, as of the last snapshot."""
        with self._lock:
            return self._reserved_tokens(provider, subject, now)

    def _reserved_tokens(self, provider: str, subject: str, now: datetime) -> int:
        return sum(tokens for tokens, end in self._reserved.get((provider, subject), ()) if end > now)

    def recent_runs(self, provider: str, specialization: str, limit: int) -> list[int]:
        """Learned needs' history (adws.need.NeedHistory), read once per state snapshot."""
        key = (provider, specialization, limit)
        with self._lock:
            runs = self._runs.get(key)
            if runs is None:
                runs = self._runs[key] = self.store.recent_runs(provider, specialization, limit)
            return runs

    # -- the planner interface ------------------------------------------------------------------------------

    # rank() and provider_blocked() read the snapshot as of the last generation(now) call: the router calls
    # that once per decision, so a decision over five tiers asks the store once.

    def provider_blocked(self, provider: ProviderSpec, now: datetime) -> Skip | None:
        """Why the whole provider is out at `now` (circuit open, probe in flight, every slot busy), with when
        it comes back; None when it is not."""
        with self._lock:
            state = self._breakers.get(provider.name)
            if state is not None:
                lease = breaker.probe_lease(provider)
                seen = self.sightings.first(provider.name, state, now)
                why = breaker.blocked(state, now, self.breaker_cooldown, lease, seen)
                if why is not None:
                    return Skip(provider.name, why,
                                until=breaker.expires(state, now, self.breaker_cooldown, lease, seen))
            return self._busy(provider, now)

    def _busy(self, provider: ProviderSpec, now: datetime) -> Skip | None:
        """Why every max_concurrency slot is taken, or None. The manager's acquire_slot is what enforces the
        limit; this only keeps a full provider out of the plan (and shows it in `skipped`)."""
        limit = provider.max_concurrency
        if limit is None:
            return None
        ends = [end for end in self._slots.get(provider.name, ()) if end > now]  # soonest first
        if len(ends) < limit:
            return None
        # A slot frees when every lease beyond the limit, and one more, has ended: the latest it comes back
        # (a holder normally releases its slot long before its lease ends).
        return Skip(provider.name, f"busy: {len(ends)} of {limit} slots in use", until=ends[len(ends) - limit])

    def rank(self, provider: ProviderSpec, task_key: str | None, now: datetime, *, model: str | None = None,
             need: Need | None = None) -> Ranking:
        """Usable accounts in strategy order, and the skipped ones with why, for a task of `need` tokens on
        `model` (which picks the quota pool). Cached per state snapshot; after a change of some accounts' state,
        only those accounts are judged again (see `_Ranked`)."""
        strategy = STRATEGIES[provider.account_strategy]
        environ = self.availability.environ
        # Credentials are read from the environment, not the store: a key set between two decisions changes
        # the answer without a new generation, so which keys are set is part of the input.
        key_vars = provider.key_vars
        inp = RankInput(provider.name, task_key if strategy.depends_on_task else None,
                        tuple([v for v in key_vars if environ.get(v)]) if key_vars else (),
                        model if provider.pooled else None, need,
                        _price(provider, model) if need is not None and provider.name in self._priced else None)
        # Needs that differ only in their wording (the basis: tasks of different specializations with the same
        # fixed need) share one ranking: only skips that quote the need are worded for each (`_Ranked.worded_for`).
        family = inp if need is None else inp._replace(need=Need(need.tokens, "", need.margin_tokens, need.smallest))
        with self._lock:
            ranked = self._rankings.get(family)
            if ranked is None:
                ranked = self._rankings[family] = _Ranked(self, provider, strategy, inp, model, now)
            else:
                self._rankings.move_to_end(family)  # the most recently used: the last to be dropped (_touch)
            if not ranked.worded or need is None or need == ranked.inp.need:
                return ranked.ranking
            return ranked.worded_for(self, need, now)

    def _judge(self, provider: ProviderSpec, account: Account, gov: Governing, need: Need | None, now: datetime,
               cost: float, memo: _Memo) -> tuple[Candidate | Skip, datetime | None, bool]:
        """One account that passed the static checks (enabled, credentials set), judged on the snapshot for a task
        of `need` on a model of `cost` (per 1K tokens): its Candidate, or its Skip; when that Skip's account comes
        back (None: unknown); and whether the verdict reads the clock beyond what expiry watches (an observation's
        age in its text: judged again on every change).

        A usable account's Candidate does not depend on the need's wording, only on the tokens it requires, nor on
        the model beyond the quota it draws on and its price: tasks of different specializations and models with
        the same expected need share it until the snapshot changes (`_usable`, keyed by `memo`: `_Memo`)."""
        usable = self._usable.get(memo)
        if usable is not None:
            return usable[0], None, usable[1]
        # Both blocks are checked: a five-hour cooldown on an account whose week is spent ends with the week.
        blocks: list[tuple[str, datetime | None]] = []
        for subject in dict.fromkeys((account.name, gov.subject)) if self._cooldowns else ():  # a pool's limit
            cooldown = self._cooldowns.get((provider.name, subject))  # cools the pool only
            if cooldown is not None and cooldown.until > now and \
                    cooldown_applies(cooldown, account, self.availability.environ):
                where = f" ({gov.pool} pool)" if subject != account.name else ""
                blocks.append((f"cooling down{where}: {cooldown.reason}", cooldown.until))
        key = (provider.name, gov.subject)
        usage = self._usage.get(key, ZERO_USAGE)
        period = self.period_of(gov.quota).start(now) if gov.quota is not None else None
        reserved = self._reserved_tokens(provider.name, gov.subject, now) if key in self._reserved else 0
        verdict = judge_governed(gov, need, usage=usage, reserved_tokens=reserved,
                                 observation=self._observed.get(key), period_start=period, now=now,
                                 cost_per_1k_tokens=cost)
        if verdict.reason is not None:
            blocks.append((verdict.reason, self._subject_reset(provider.name, gov.subject, gov.quota, now)))
        timed = verdict.observed is not None
        if blocks:
            back = latest_end([until for _, until in blocks])
            return Skip(provider.name, "; ".join(reason for reason, _ in blocks), account.shown, back), back, timed
        held = add_usage(usage, Usage(requests=0, input_tokens=reserved)) if reserved else usage
        # Reservations count as used: coordinators deciding at once spread instead of piling on one account.
        candidate = Candidate(account.name, account.position, verdict.committed_percent, held, verdict.left_tokens,
                              reserved > 0)
        self._usable[memo] = (candidate, timed)
        return candidate, None, timed


class _Ranked:
    """One RankInput's ranking, kept current account by account.

    Built in full when first asked for. After an incremental change (usage rows appended, a cooldown, reservation
    or observation of some quota subjects changed: `StatefulAccounts._touch`), only the accounts whose subjects
    changed are judged again, at once, and each is taken out of the kept order and put back at its place by binary
    search over the strategy's sort keys (`Strategy.sort_key`: keys never tie, so this is what sorting them all
    again gives), so one new usage row costs one judgement and O(log n) key comparisons, not a judgement and a key
    per account. `update` says whether the answer changed, so a change that moves no ranking's answer leaves the
    cached plans standing. A strategy whose key reads the store (a round-robin cursor, a sticky choice) is asked
    for its key again after a strategy write, and the accounts are sorted once more by it.
    """

    __slots__ = ("candidates", "cost", "deps", "dirty", "earliest", "entries", "govs", "inp", "key", "keyed", "keys",
                 "memos", "names", "provider", "ranking", "skips", "static", "strategy", "timed", "worded", "wordings")

    def __init__(self, owner: StatefulAccounts, provider: ProviderSpec, strategy: Strategy, inp: RankInput,
                 model: str | None, now: datetime) -> None:
        self.provider, self.strategy, self.inp = provider, strategy, inp
        self.cost = _price(provider, model)  # the same for every model that shares this ranking (RankInput.price)
        required = inp.need.required if inp.need is not None else None
        self.static: dict[int, Skip] = {}  # position -> skip that no state change lifts (disabled, no key)
        self.govs: dict[int, Governing] = {}  # the judged accounts' governing quota for this model
        self.memos: dict[int, _Memo] = {}  # the judged accounts' keys into StatefulAccounts._usable
        self.deps: dict[tuple[str, str], list[int]] = {}  # (provider, subject) -> positions that read it
        for account in provider.runs_as:
            if not account.enabled:
                self.static[account.position] = Skip(provider.name, "account disabled", account.shown)
            elif account.key_env is not None and account.key_env not in inp.keys_set:
                self.static[account.position] = Skip(
                    provider.name, f"credentials missing: {account.key_env} is not set", account.shown)
            else:
                gov = self.govs[account.position] = governing(account.quota, account.name, model)
                self.memos[account.position] = (provider.name, account.position, gov.subject, self.cost, required)
                for subject in dict.fromkeys((account.name, gov.subject)):
                    self.deps.setdefault((provider.name, subject), []).append(account.position)
        # position -> (skip, when it is back) for the judged accounts that are out
        self.entries: dict[int, tuple[Skip, datetime | None]] = {}
        # The usable ones in strategy order, with their sort keys and names in step (parallel lists), and each
        # one's key by position (to find it again by binary search).
        self.candidates: list[Candidate] = []
        self.keys: list[Any] = []
        self.names: list[str] = []
        self.keyed: dict[int, Any] = {}
        self.key: SortKey | None = None  # the strategy's key; None: ask for it (and sort) at the next update
        self.skips: list[Skip] | None = None  # the static and judged skips in file order (None: to be listed),
        # and when the earliest of the judged ones is back
        self.earliest: datetime | None = None
        # Whether a skip quotes the need (an account it does not fit): then a need of other wording (basis) and the
        # same figures gets its own skips (`worded_for`, kept in `wordings` until the ranking changes).
        self.worded = False
        self.wordings: dict[Need, Ranking] = {}
        self.timed: set[int] = set()
        self.dirty: set[int] = set(self.govs)
        self.ranking = Ranking()
        self.update(owner, now)

    def touch(self, keys: set[tuple[str, str]], reorder: bool) -> bool:
        """Subjects whose state changed: their accounts are judged again at the next update(), and with `reorder`
        (the store's strategy state moved) a strategy whose key reads the store is asked again. True when there is
        something to update."""
        for key in keys:
            positions = self.deps.get(key)
            if positions is not None:
                self.dirty.update(positions)
        self.dirty |= self.timed
        if reorder and self.strategy.reads_store:
            self.key = None
        return bool(self.dirty) or self.key is None

    def update(self, owner: StatefulAccounts, now: datetime) -> bool:
        """Judge the dirty accounts again, put them in their place, and make the new Ranking. True when the answer
        changed in what a plan reads: `first_percent` counts only where tier scores read it
        (`StatefulAccounts.tier_scores`; the Ranking itself is always the new one)."""
        provider, runs_as, dirty = self.provider, self.provider.runs_as, self.dirty
        candidates, keys, names, keyed, key = self.candidates, self.keys, self.names, self.keyed, self.key
        if key is None:
            if dirty:
                candidates = [c for c in candidates if c.position not in dirty]
        else:
            for position in dirty:
                old = keyed.pop(position, None)
                if old is not None:
                    i = bisect_left(keys, old)
                    if i == len(candidates) or candidates[i].position != position:  # never, while keys never tie
                        i = [c.position for c in candidates].index(position)
                    del candidates[i], keys[i], names[i]
        skips_moved = False
        fresh: list[Candidate] = []
        need, cost, govs, memos, judge = self.inp.need, self.cost, self.govs, self.memos, owner._judge
        for position in sorted(dirty) if len(dirty) > 1 else dirty:
            before = self.entries.pop(position, None)
            found, back, timed = judge(provider, runs_as[position], govs[position], need, now, cost, memos[position])
            if timed:
                self.timed.add(position)
            elif self.timed:
                self.timed.discard(position)
            if isinstance(found, Candidate):
                fresh.append(found)
                skips_moved |= before is not None
            else:
                self.entries[position] = (found, back)
                skips_moved |= before != (found, back)
        self.dirty = set()
        if key is None:
            # First build, or the strategy's key reads state that moved: sort (the kept candidates come in their
            # previous order, nearly sorted, which Python's sort handles in near-linear time).
            key = self.key = self.strategy.sort_key(
                OrderContext(provider, self.inp.task_key, owner.store, self.inp.need))
            candidates = self.candidates = sorted([*candidates, *fresh], key=key)
            keys = self.keys = list(map(key, candidates))
            names = self.names = list(map(_NAME, candidates))
            self.keyed = dict(zip([c.position for c in candidates], keys, strict=True))
        else:
            for candidate in fresh:
                k = keyed[candidate.position] = key(candidate)
                i = bisect_left(keys, k)
                keys.insert(i, k)
                candidates.insert(i, candidate)
                names.insert(i, candidate.name)
        skips = self.skips
        if skips is None or skips_moved:
            skips, self.earliest, skips_moved = [], None, True
            for position in sorted([*self.static, *self.entries]):
                if position in self.static:
                    skips.append(self.static[position])
                else:
                    skip, back = self.entries[position]
                    skips.append(skip)
                    self.earliest = _earlier(self.earliest, back)
            self.skips = skips
            phrase = self.inp.need.describe() if self.inp.need is not None else None
            self.worded = phrase is not None and any(phrase in skip.reason for skip in skips)
        old = self.ranking
        first = candidates[0] if candidates else None
        percent = first.percent if first is not None and self.govs[first.position].quota is not None else None
        # Declared accounts are shown by name; the implicit one (a provider without declared accounts) never is.
        shown = bool(provider.accounts)
        changed = skips_moved or bool(candidates) != old.usable or (shown and names != old.eligible)
        if not changed and percent == old.first_percent:
            return False  # what was handed out is still the answer (one account kept its place)
        out = Ranking(usable=bool(candidates), eligible=names.copy() if shown else [], first_percent=percent,
                      skipped=list(skips), earliest=self.earliest)
        if shown and not candidates:  # the implicit account's own skip already says why
            when = f"; the first is back at {out.earliest.isoformat()}" if out.earliest else ""
            out.skipped.append(Skip(provider.name, "no usable account" + when, until=out.earliest))
        self.ranking = out  # a new object: rankings already handed out (cached plans) keep what they said
        self.wordings = {}
        return changed or owner.tier_scores

    def worded_for(self, owner: StatefulAccounts, need: Need, now: datetime) -> Ranking:
        """The ranking for `need`, a need of the same figures as this ranking's but other wording: the same order
        and skips, but for the skips that quote the need, which are judged again with it."""
        found = self.wordings.get(need)
        if found is None:
            assert self.inp.need is not None  # a ranking of no need quotes none (`worded` is False)
            phrase = self.inp.need.describe()
            base = self.ranking
            skipped = list(base.skipped)
            runs_as = self.provider.runs_as
            for index, position in enumerate(sorted([*self.static, *self.entries])):
                if position in self.entries and phrase in skipped[index].reason:
                    judged = owner._judge(self.provider, runs_as[position], self.govs[position], need, now, self.cost,
                                          self.memos[position])[0]
                    if isinstance(judged, Skip):  # always: the same figures give the same verdict
                        skipped[index] = judged
            found = self.wordings[need] = Ranking(base.usable, list(base.eligible), base.first_percent, skipped,
                                                  base.earliest)
        return found


def _price(provider: ProviderSpec, model: str | None) -> float:
    """The model's price in USD per 1K tokens (0.0 for a model the provider does not declare, or none)."""
    spec = provider.models.get(model) if model is not None else None
    return spec.cost_per_1k_tokens if spec is not None else 0.0


def reads_tier_scores(config: CompiledConfig) -> bool:
    """Whether some plan of `config` orders its tiers other than by the chain (`[routing.scoring] order` or a
    rule's `tier_order`): only such a plan scores its tiers, which reads `Ranking.first_percent`."""
    return config.scoring.order != "chain" or any(rule.tier_order not in (None, "chain") for rule in config.rules)


def _changed_keys(old: Mapping[K, object], new: Mapping[K, object]) -> set[K]:
    """The keys whose value differs between two reads of one kind of state (added, removed or changed)."""
    if old == new:
        return set()
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def latest_end(times: list[datetime | None]) -> datetime | None:
    """When every block has ended; None when one of them has no known end."""
    known = [t for t in times if t is not None]
    return max(known) if len(known) == len(times) else None


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
