"""In-process state store: the same contract as SQLite, kept in dicts.

For tests and for `state.backend = "memory"` (a single coordinator that does not need state to outlive
it). Nothing is shared between processes or between two MemoryStore objects. Threads may share one: the
read-modify-write operations run under its lock.
"""

from __future__ import annotations

import threading
from bisect import insort
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime

from adws.attempt import Usage
from adws.state import base
from adws.state.base import (
    CHANGE_KINDS,
    ZERO_USAGE,
    BreakerState,
    Closing,
    Cooldown,
    Observation,
    RunRecord,
    RunsImported,
    UsageChanges,
    UsageCursor,
    UsageRecord,
    add_usage,
    check_lease,
    check_reservation,
    check_usage,
    from_epoch,
    hour_start,
    roll_up_rows,
    stored_epoch,
    stored_time,
    to_epoch,
)


class MemoryStore(Closing):
    location = "memory"
    staleness_s = 0.0  # nobody else writes

    def __init__(self, path: str | None = None) -> None:
        # `path` is accepted (and ignored) so every backend has the same factory signature.
        # Per account: (at, usage, model, task_id) in insertion order.
        self._usage: dict[tuple[str, str], list[tuple[float, Usage, str | None, str | None]]] = {}
        self._cooldowns: dict[tuple[str, str], Cooldown] = {}
        self._cursors: dict[str, int] = {}
        self._sticky: dict[str, str] = {}
        self._breakers: dict[str, BreakerState] = {}
        self._slots: dict[str, dict[str, float]] = {}  # provider -> holder -> lease end (epoch seconds)
        # provider -> holder -> (subject, tokens, end in epoch seconds)
        self._reserved: dict[str, dict[str, tuple[str, int, float]]] = {}
        self._observed: dict[tuple[str, str], Observation] = {}
        # (provider, specialization) -> (at, recording number, tokens) in that order: oldest first, ties as recorded.
        self._runs: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        self._run_seq = 0
        self._writes = 0
        self._counts = dict.fromkeys(CHANGE_KINDS, 0)
        self._lock = threading.RLock()
        # Append log behind usage_since: the same row tuples, in append order. A roll-up starts a new epoch
        # and an empty log (cursors of the old epoch are refused, their readers re-read the totals).
        self._log: list[tuple[str, str, tuple[float, Usage, str | None, str | None]]] = []
        self._epoch = 0

    def _wrote(self, kind: str | None = None) -> None:
        """A write committed; `kind` (of CHANGE_KINDS) for state other than usage rows."""
        self._writes += 1
        if kind is not None:
            self._counts[kind] += 1

    def change_counts(self) -> tuple[int, ...]:
        return tuple(self._counts.values())

    def record_usage(self, record: UsageRecord) -> None:
        record = check_usage(record)  # the figures as every store keeps them (ints, a float cost)
        at = stored_epoch(record.at, "UsageRecord.at")
        row = (at, record.usage, record.model, record.task_id)
        self._usage.setdefault((record.provider, record.account), []).append(row)
        self._log.append((record.provider, record.account, row))
        self._wrote()

    def import_usage(self, records: Iterable[UsageRecord]) -> int:
        checked = [check_usage(record) for record in records]  # all of them, before the first is written
        for record in checked:
            self.record_usage(record)
        return len(checked)

    def usage_records(self) -> Iterator[UsageRecord]:
        rows = [(at, p, a, u, m, t) for (p, a), kept in self._usage.items() for at, u, m, t in kept]
        rows.sort(key=lambda row: row[0])
        for at, provider, account, usage, model, task_id in rows:
            yield UsageRecord(provider, account, from_epoch(at), usage, model, task_id)

    def roll_up(self, before: datetime) -> int:
        with self._lock:
            cutoff = hour_start(to_epoch(before, "before"))
            removed = 0
            for key, kept in self._usage.items():
                old = [(at, u) for at, u, _, _ in kept if at < cutoff]
                buckets = {h: b for h, b in roll_up_rows(old).items() if b[0] > 1}
                if not buckets:
                    continue
                rest = [row for row in kept if row[0] >= cutoff or hour_start(row[0]) not in buckets]
                rolled = [(hour, total, None, None) for hour, (_, total) in buckets.items()]
                self._usage[key] = sorted(rolled + rest, key=lambda row: row[0])
                removed += len(kept) - len(self._usage[key])
            if removed:
                self._epoch += 1
                self._log = []
                self._wrote()
            return removed

    def usage_totals(
        self, since: Mapping[str, datetime], until: datetime | None = None
    ) -> dict[tuple[str, str], Usage]:
        starts = {provider: to_epoch(start, f"since[{provider!r}]") for provider, start in since.items()}
        end = to_epoch(until, "until") if until is not None else None
        totals: dict[tuple[str, str], Usage] = {}
        for (provider, account), rows in self._usage.items():
            start = starts.get(provider)
            if start is None:
                continue
            for at, usage, _, _ in rows:
                if at >= start and (end is None or at < end):
                    key = (provider, account)
                    totals[key] = add_usage(totals.get(key, ZERO_USAGE), usage)
        return totals

    def usage_cursor(self) -> UsageCursor:
        return (self._epoch, len(self._log))

    def usage_since(self, cursor: UsageCursor) -> UsageChanges | None:
        epoch, position = cursor
        if epoch != self._epoch or not 0 <= position <= len(self._log):
            return None
        new = self._log[position:]
        records = [UsageRecord(p, a, from_epoch(at), u, m, t) for p, a, (at, u, m, t) in new]
        return UsageChanges((self._epoch, position + len(new)), records)

    def oldest_usage(self, provider: str, account: str, since: datetime) -> datetime | None:
        start = to_epoch(since, "since")
        times = [row[0] for row in self._usage.get((provider, account), []) if row[0] >= start]
        return from_epoch(min(times)) if times else None

    def set_cooldown(self, provider: str, account: str, cooldown: Cooldown) -> None:
        # Times as the other backends keep them (base.stored_epoch), so every backend reads back the same.
        until = stored_time(cooldown.until, "Cooldown.until")
        self._cooldowns[(provider, account)] = cooldown if until is cooldown.until else Cooldown(until, cooldown.reason)
        self._wrote("cooldowns")

    def clear_cooldown(self, provider: str, account: str) -> None:
        if self._cooldowns.pop((provider, account), None) is not None:
            self._wrote("cooldowns")

    def cooldowns(self, now: datetime) -> dict[tuple[str, str], Cooldown]:
        limit = to_epoch(now, "now")
        return {key: c for key, c in self._cooldowns.items() if c.until.timestamp() > limit}

    def next_cursor(self, key: str) -> int:
        with self._lock:
            value = self._cursors.get(key, 0)
            self._cursors[key] = value + 1
            self._wrote("strategy")
            return value

    def advance_cursor(self, key: str, value: int) -> None:
        with self._lock:
            if value > self._cursors.get(key, 0):
                self._cursors[key] = value
                self._wrote("strategy")

    def peek_cursor(self, key: str) -> int:
        return self._cursors.get(key, 0)

    def cursors(self) -> dict[str, int]:
        return dict(self._cursors)

    def sticky_choices(self) -> dict[str, str]:
        return dict(self._sticky)

    def get_sticky(self, key: str) -> str | None:
        return self._sticky.get(key)

    def set_sticky(self, key: str, value: str) -> None:
        self._sticky[key] = value
        self._wrote("strategy")

    def get_breaker(self, provider: str) -> BreakerState:
        return self._breakers.get(provider, BreakerState())

    def update_breaker(self, provider: str, fn: Callable[[BreakerState], BreakerState]) -> BreakerState:
        with self._lock:
            new = fn(self.get_breaker(provider))
            opened = None if new.opened_at is None else stored_time(new.opened_at, "BreakerState.opened_at")
            self._breakers[provider] = new if opened is new.opened_at else BreakerState(new.state, new.failures, opened)
            self._wrote("breakers")
            return new

    def breakers(self) -> dict[str, BreakerState]:
        return dict(self._breakers)

    def acquire_slot(self, provider: str, holder: str, limit: int, now: datetime, until: datetime) -> bool:
        with self._lock:
            start, end = check_lease(limit, now, until)
            leases = self._slots.setdefault(provider, {})
            expired = [h for h, e in leases.items() if e <= start]
            for h in expired:
                del leases[h]
            taken = sum(1 for h in leases if h != holder) < limit
            if taken:
                leases[holder] = end
            if taken or expired:
                self._wrote("slots")
            return taken

    def release_slot(self, provider: str, holder: str) -> None:
        if self._slots.get(provider, {}).pop(holder, None) is not None:
            self._wrote("slots")

    def active_slots(self, now: datetime) -> dict[str, tuple[datetime, ...]]:
        limit = to_epoch(now, "now")
        live = {p: sorted(e for e in leases.values() if e > limit) for p, leases in self._slots.items()}
        return {p: tuple(from_epoch(e) for e in ends) for p, ends in live.items() if ends}

    def reserve(self, provider: str, subject: str, holder: str, tokens: int, now: datetime,
                until: datetime) -> dict[str, int]:
        start, end = check_reservation(tokens, now, until)
        with self._lock:
            held = self._reserved.setdefault(provider, {})
            for h in [h for h, (_, _, e) in held.items() if e <= start]:
                del held[h]
            before: dict[str, int] = {}
            for h, (subj, amount, _) in held.items():
                if h != holder:
                    before[subj] = before.get(subj, 0) + amount
            held[holder] = (subject, tokens, end)
            self._wrote("reservations")
            return before

    def release_reservation(self, provider: str, holder: str) -> None:
        with self._lock:
            if self._reserved.get(provider, {}).pop(holder, None) is not None:
                self._wrote("reservations")

    def reservations(self, now: datetime) -> dict[tuple[str, str], tuple[tuple[int, datetime], ...]]:
        limit = to_epoch(now, "now")
        out: dict[tuple[str, str], list[tuple[float, int]]] = {}
        with self._lock:
            for provider, held in self._reserved.items():
                for subject, tokens, end in held.values():
                    if end > limit:
                        out.setdefault((provider, subject), []).append((end, tokens))
        return {key: tuple((tokens, from_epoch(end)) for end, tokens in sorted(leases))
                for key, leases in out.items()}

    def record_observation(self, observation: Observation) -> bool:
        key = (observation.provider, observation.subject)
        o = observation
        at = stored_time(o.at, "Observation.at")
        reset_at = None if o.reset_at is None else stored_time(o.reset_at, "Observation.reset_at")
        if at is not o.at or reset_at is not o.reset_at:
            observation = Observation(o.provider, o.subject, at, o.percent, o.source, o.used, o.limit, reset_at)
        with self._lock:
            kept = self._observed.get(key)
            if kept is None or kept.at <= observation.at:
                self._observed[key] = observation
                self._wrote("observations")
                return True
            return False

    def observations(self) -> dict[tuple[str, str], Observation]:
        with self._lock:
            return dict(self._observed)

    def record_run(self, provider: str, specialization: str, at: datetime, tokens: int) -> None:
        self.import_runs([RunRecord(provider, specialization, at, tokens)])  # one write path, as SQLite's

    def recent_runs(self, provider: str, specialization: str, limit: int) -> list[int]:
        with self._lock:  # each group is kept oldest first, ties in the order recorded (import_runs)
            return [tokens for _, _, tokens in reversed(self._runs.get((provider, specialization), [])[-limit:])]

    def recorded_runs(self) -> Iterator[RunRecord]:
        with self._lock:
            groups = {key: list(runs) for key, runs in self._runs.items()}
        for (provider, specialization), runs in sorted(groups.items()):
            for at, _, tokens in runs:
                yield RunRecord(provider, specialization, from_epoch(at), tokens)

    def import_runs(self, runs: Iterable[RunRecord]) -> RunsImported:
        """Add the runs, each group kept in order (by time, then by when recorded), then keep the newest
        `base.RUNS_KEPT` of each group they touch, as every backend does: a long-lived coordinator's memory stays
        bounded, and a median is over the same runs as on SQLite or Redis. O(log n) to place a run, plus a move of
        the list when one is inserted before the end."""
        rows = [(run.provider, run.specialization, stored_epoch(run.at, "at"), run.tokens) for run in runs]
        cap = base.RUNS_KEPT  # read at call time: tests lower it
        kept, displaced = len(rows), 0
        with self._lock:  # all of them under one lock, one change counted
            first_new = self._run_seq  # runs numbered from here on are this import's
            touched: set[tuple[str, str]] = set()
            for provider, specialization, at, tokens in rows:
                self._run_seq += 1
                insort(self._runs.setdefault((provider, specialization), []), (at, self._run_seq, tokens))
                touched.add((provider, specialization))
            for key in touched:
                group = self._runs[key]
                excess = len(group) - cap
                if excess > 0:
                    ours = sum(seq > first_new for _, seq, _ in group[:excess])
                    kept, displaced = kept - ours, displaced + excess - ours
                    del group[:excess]
            if rows:
                self._wrote("runs")
        return RunsImported(kept, displaced)

    def version(self) -> int:
        # Only this object can write, so its own write counter is the whole story.
        return self._writes

    def close(self) -> None:
        # Nothing to release; kept so callers treat every backend alike.
        return None
