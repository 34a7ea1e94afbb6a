"""Choosing accounts within a tier: the checks that make an account unusable, and the strategies that order
the usable ones.

Routing calls `rank()` for every tier of every decision, so state is read through a snapshot that is rebuilt
only when the store says something changed (`StateStore.version()`) or the quota period moved on. A rolling
window's start moves with the clock; its snapshot is reused for up to `ROLLING_REFRESH` seconds, which can
only over-count usage (old records drop out a little late), never under-count it. A `now` earlier than the
snapshot's (callers pass `now` explicitly) always re-reads: the snapshot has already dropped the cooldowns and
window records that ended before its own time.

Concurrency slots (`max_concurrency`) are part of the snapshot too: taking and releasing one is a write, so
the version moves with them. A lease whose holder died runs out without a write; its end is in the snapshot,
and like a cooldown's end it makes the next decision after it recompute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from adws.attempt import Usage
from adws.availability import Availability
from adws.decision import Skip
from adws.model import AccountSpec, ProviderSpec, QuotaSpec
from adws.quota import QuotaLimits, QuotaPeriod, percent_used
from adws.state.base import BreakerState, Cooldown, StateStore
from adws.taskview import TaskView

DEFAULT_ACCOUNT = "default"  # usage of a provider that declares no accounts is kept under this name
ROLLING_REFRESH = 30.0
_NO_USAGE = Usage(requests=0)


@dataclass(slots=True)
class Ranking:
    eligible: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    earliest: datetime | None = None  # when the first blocked account comes back, if all are blocked


class AccountPlanner(Protocol):
    def rank(self, provider: ProviderSpec, view: TaskView) -> Ranking: ...
    def provider_blocked(self, provider: ProviderSpec, now: datetime) -> str | None: ...
    def generation(self, now: datetime) -> int:
        """Changes whenever an answer of rank() or provider_blocked() may have changed."""
        ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """An account that passed every check, with what strategies need to order it."""

    name: str
    position: int  # in the file
    percent: float
    usage: Usage


@dataclass(frozen=True, slots=True)
class StrategyContext:
    provider: ProviderSpec
    task_key: str | None
    store: StateStore | None


Strategy = Callable[[list[Candidate], StrategyContext], list[Candidate]]


def _least_used(cands: list[Candidate], ctx: StrategyContext) -> list[Candidate]:
    # Most quota left first (lowest percent of the fullest limited dimension), then fewest tokens in the
    # period, then file order. Accounts without any quota have no period and no usage in the snapshot:
    # all of them tie at 0% and keep file order (use round_robin to spread unlimited accounts).
    return sorted(cands, key=lambda c: (c.percent, c.usage.total_tokens, c.position))


def _fill_first(cands: list[Candidate], ctx: StrategyContext) -> list[Candidate]:
    return sorted(cands, key=lambda c: c.position)


def _round_robin(cands: list[Candidate], ctx: StrategyContext) -> list[Candidate]:
    if ctx.store is None or not cands:
        return _fill_first(cands, ctx)
    total = max(len(ctx.provider.accounts), 1)
    start = ctx.store.peek_cursor(cursor_key(ctx.provider.name)) % total
    return sorted(cands, key=lambda c: (c.position - start) % total)


def _sticky(cands: list[Candidate], ctx: StrategyContext) -> list[Candidate]:
    ordered = _least_used(cands, ctx)
    if ctx.store is None or ctx.task_key is None:
        return ordered
    held = ctx.store.get_sticky(sticky_key(ctx.provider.name, ctx.task_key))
    return sorted(ordered, key=lambda c: c.name != held)  # stable: the held account first, rest unchanged


STRATEGIES: dict[str, Strategy] = {
    "least_used": _least_used,
    "round_robin": _round_robin,
    "fill_first": _fill_first,
    "sticky": _sticky,
}


def cursor_key(provider: str) -> str:
    return f"round_robin:{provider}"


def sticky_key(provider: str, task_key: str) -> str:
    return f"sticky:{provider}:{task_key}"


def build_period(quota: QuotaSpec) -> QuotaPeriod:
    if quota.reset is not None:
        return QuotaPeriod.cron(quota.reset, ZoneInfo(quota.timezone))
    return QuotaPeriod.rolling(timedelta(seconds=quota.window_seconds or 0))


def limits_of(quota: QuotaSpec) -> QuotaLimits:
    return QuotaLimits(quota.tokens, quota.requests, quota.cost_usd)


class StatefulAccounts:
    """Accounts checked against the state store: cooldowns, quota hard blocks, circuit breakers."""

    def __init__(self, providers: dict[str, ProviderSpec] | None, availability: Availability,
                 store: StateStore | None, breaker_cooldown: float = 600.0) -> None:
        self.availability = availability
        self.store = store
        self.breaker_cooldown = timedelta(seconds=breaker_cooldown)
        self._periods: dict[int, QuotaPeriod] = {}
        self._version: int | None = None
        self._usage: dict[tuple[str, str], Usage] = {}
        self._starts: list[datetime] | None = None
        self._read_ts: float | None = None  # the `now` the snapshot was read at (epoch seconds)
        self._fresh_until = 0.0  # epoch seconds: before it, no period start has moved since the read
        self._expires_ts: float | None = None
        self._cooldowns: dict[tuple[str, str], Cooldown] = {}
        self._breakers: dict[str, BreakerState] = {}
        self._slots: dict[str, tuple[datetime, ...]] = {}  # live lease ends per provider, soonest first
        self._providers = providers or {}
        # Accounts grouped by the quota that governs them, so each period start is computed once.
        groups: dict[int, tuple[QuotaSpec, list[tuple[str, str]]]] = {}
        for provider in self._providers.values():
            for account in provider.accounts or (None,):
                quota = self.quota_of(provider, account)
                if quota is not None:
                    name = account.name if account is not None else DEFAULT_ACCOUNT
                    groups.setdefault(id(quota), (quota, []))[1].append((provider.name, name))
        self._quota_groups = list(groups.values())
        self._rankings: dict[tuple[str, str | None, tuple[bool, ...]], Ranking] = {}
        self._expires: datetime | None = None  # the earliest cooldown end or breaker probe in the snapshot
        self._generation = 0

    # -- quota ----------------------------------------------------------------------------------------------

    def quota_of(self, provider: ProviderSpec, account: AccountSpec | None) -> QuotaSpec | None:
        return (account.quota if account is not None else None) or provider.quota

    def period_of(self, quota: QuotaSpec) -> QuotaPeriod:
        period = self._periods.get(id(quota))
        if period is None:
            period = self._periods[id(quota)] = build_period(quota)
        return period

    def _refresh(self, now: datetime) -> None:
        """Re-read state when another writer committed, a period start moved or a cooldown ended.

        Routing calls this once per decision, so the common case (nothing changed, `now` still inside the
        current periods) is one clock conversion, two float comparisons and the store's version check.
        """
        if self.store is None:
            return
        ts = now.timestamp()
        if self._expires_ts is not None and ts >= self._expires_ts:
            self._invalidate(now)
        version = self.store.version()
        if version == self._version and self._read_ts is not None and self._read_ts <= ts < self._fresh_until:
            return
        starts = [self.period_of(quota).start(now) for quota, _ in self._quota_groups]
        earlier = self._read_ts is not None and ts < self._read_ts
        if version == self._version and not earlier and self._starts_fresh(starts):
            self._fresh_until = self._fresh_limit(now)
            return
        usage: dict[tuple[str, str], Usage] = {}
        for (_, members), since in zip(self._quota_groups, starts, strict=True):
            by_provider: dict[str, list[str]] = {}
            for prov, acc in members:
                by_provider.setdefault(prov, []).append(acc)
            totals = self.store.usage_totals(dict.fromkeys(by_provider, since))
            for prov, accs in by_provider.items():
                usage.update({(prov, acc): totals[(prov, acc)] for acc in accs if (prov, acc) in totals})
        self._usage, self._starts, self._read_ts = usage, starts, ts
        self._cooldowns = self.store.cooldowns(now)
        self._breakers = self.store.breakers()
        self._slots = self.store.active_slots(now)
        self._version = self.store.version()
        self._fresh_until = self._fresh_limit(now)
        self._invalidate(now)

    def _fresh_limit(self, now: datetime) -> float:
        """Until when (epoch seconds) the snapshot's period starts stay right without recomputing them."""
        limit = float("inf")
        for quota, _ in self._quota_groups:
            if quota.window_seconds is not None:
                limit = min(limit, (self._read_ts or now.timestamp()) + ROLLING_REFRESH)
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
        self._rankings.clear()
        self._generation += 1
        ends = [c.until for c in self._cooldowns.values() if c.until > now]
        ends += [b.opened_at + self.breaker_cooldown for b in self._breakers.values()
                 if b.state == "open" and b.opened_at is not None and b.opened_at + self.breaker_cooldown > now]
        # Leases are normally released (a write) long before they end, so only a dead holder's lease gets here.
        ends += [next(e for e in lease_ends if e > now) for lease_ends in self._slots.values()
                 if lease_ends and lease_ends[-1] > now]
        self._expires = min(ends, default=None)
        self._expires_ts = self._expires.timestamp() if self._expires is not None else None

    def generation(self, now: datetime) -> int:
        self._refresh(now)
        return self._generation

    def next_reset(self, provider: ProviderSpec, account: AccountSpec | None, now: datetime) -> datetime | None:
        quota = self.quota_of(provider, account)
        if quota is None:
            return None
        period = self.period_of(quota)
        reset = period.next_reset(now)
        if reset is None and self.store is not None and quota.window_seconds:
            # Rolling window: usage starts to fall out when the oldest record in the window ages out.
            name = account.name if account is not None else DEFAULT_ACCOUNT
            oldest = self.store.oldest_usage(provider.name, name, period.start(now))
            reset = oldest + timedelta(seconds=quota.window_seconds) if oldest else None
        return reset

    # -- the planner interface ------------------------------------------------------------------------------

    # rank() and provider_blocked() read the snapshot as of the last generation(now) call: the router calls
    # that once per decision, so a decision over five tiers asks the store once.

    def provider_blocked(self, provider: ProviderSpec, now: datetime) -> str | None:
        state = self._breakers.get(provider.name)
        if state is not None and state.state == "open" and state.opened_at is not None:
            probe_at = state.opened_at + self.breaker_cooldown
            if now < probe_at:  # from probe_at on it is half-open: one attempt may probe it
                return (f"circuit open after {state.failures} infrastructure failures; "
                        f"probed again at {probe_at.isoformat()}")
        return self._busy(provider, now)

    def _busy(self, provider: ProviderSpec, now: datetime) -> str | None:
        """Why every max_concurrency slot is taken, or None. The manager's acquire_slot is what enforces the
        limit; this only keeps a full provider out of the plan (and shows it in `skipped`)."""
        limit = provider.max_concurrency
        if limit is None:
            return None
        held = sum(1 for end in self._slots.get(provider.name, ()) if end > now)
        return f"busy: {held} of {limit} slots in use" if held >= limit else None

    def rank(self, provider: ProviderSpec, view: TaskView) -> Ranking:
        """Eligible accounts in strategy order, and the skipped ones with why. Cached per state snapshot."""
        now = view.local_now
        # Credentials are read from the environment, not the store, so a key set between two decisions changes
        # the answer without a new generation: which keys are present is part of the cache key.
        present = tuple(not self.availability.missing_credentials(a.api_key_env)
                        for a in provider.accounts if a.api_key_env)
        if provider.requires_api_key and provider.api_key_env:  # accounts without a key of their own use it
            present += (not self.availability.missing_credentials(provider.api_key_env),)
        key = (provider.name, view.task_id if provider.account_strategy == "sticky" else None, present)
        ranking = self._rankings.get(key)
        if ranking is None:
            ranking = self._rankings[key] = self._rank(provider, view.task_id, now)
        return ranking

    def _rank(self, provider: ProviderSpec, task_key: str | None, now: datetime) -> Ranking:
        out = Ranking()
        candidates: list[Candidate] = []
        accounts: Sequence[AccountSpec | None] = provider.accounts or (None,)
        for position, account in enumerate(accounts):
            name = account.name if account is not None else DEFAULT_ACCOUNT
            shown = None if account is None else name
            if account is not None and not account.enabled:
                out.skipped.append(Skip(provider.name, "account disabled", shown))
                continue
            key_var = account.api_key_env if account is not None else None
            if account is not None and key_var is None and provider.requires_api_key:
                key_var = provider.api_key_env  # an account without a key of its own uses the provider's
            if account is not None and self.availability.missing_credentials(key_var):
                out.skipped.append(Skip(provider.name, f"credentials missing: {key_var} is not set", shown))
                continue
            # Both blocks are checked: a five-hour cooldown on an account whose week is spent ends with the week.
            blocks: list[tuple[str, datetime | None]] = []
            cooldown = self._cooldowns.get((provider.name, name))
            if cooldown is not None and cooldown.until > now:
                blocks.append((f"cooling down: {cooldown.reason}", cooldown.until))
            usage = self._usage.get((provider.name, name), _NO_USAGE)
            quota = self.quota_of(provider, account)
            percent = percent_used(usage, limits_of(quota)) if quota is not None else 0.0
            if quota is not None and percent >= quota.hard_block_percent:
                blocks.append((f"quota {percent:.0f}% used (hard block at {quota.hard_block_percent:g}%)",
                               self.next_reset(provider, account, now)))
            if blocks:
                back = _latest([until for _, until in blocks])
                out.skipped.append(Skip(provider.name, "; ".join(reason for reason, _ in blocks), shown, back))
                out.earliest = _earlier(out.earliest, back)
                continue
            candidates.append(Candidate(name, position, percent, usage))
        ctx = StrategyContext(provider, task_key, self.store)
        ordered = STRATEGIES[provider.account_strategy](candidates, ctx)
        out.eligible = [c.name for c in ordered]
        if provider.accounts:
            return out
        # No declared accounts: the tier itself is usable or blocked; the implicit account is not shown.
        if not out.eligible:
            reasons = "; ".join(s.reason for s in out.skipped)
            out.skipped = [Skip(provider.name, reasons, None, out.earliest)]
        return out


def _latest(times: list[datetime | None]) -> datetime | None:
    """When every block has ended; None when one of them has no known end."""
    known = [t for t in times if t is not None]
    return max(known) if len(known) == len(times) else None


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
