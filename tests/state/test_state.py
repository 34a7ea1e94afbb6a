"""The state store contract, run against every backend, plus SQLite's multi-process guarantees."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adws.attempt import Usage
from adws.config.load import compile_config, parse_toml
from adws.errors import ConfigError
from adws.state import (
    DEFAULT_PATH,
    STORES,
    BreakerState,
    Cooldown,
    MemoryStore,
    RedisStore,
    SqliteStore,
    StateStore,
    StateStoreError,
    UsageRecord,
    open_store,
)
from adws.state.base import CHANGE_KINDS, ChangePoller, Observation
from adws.state.sqlite import SCHEMA_VERSION
from tests.helpers import ROOT

REPO = ROOT
WORKER = REPO / "tests" / "state" / "state_worker.py"
T0 = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)


def open_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    """A fresh, empty store of backend `name`: its own file, its own Redis key prefix."""
    if name == "redis":
        # Cooldown keys expire by the store's clock: pinned to the tests' fixed time, not the wall clock.
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        return RedisStore(url, key_prefix=prefix, clock=T0.timestamp)
    return STORES[name](str(tmp_path / "state.sqlite3"))


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    opened = open_backend(request.param, request, tmp_path)
    yield opened
    opened.close()


def rec(provider: str, account: str, at: datetime, **usage: object) -> UsageRecord:
    return UsageRecord(provider, account, at, Usage(**usage))  # type: ignore[arg-type]


# -- usage ledger ----------------------------------------------------------------------------------


def test_usage_totals_sum_per_account_from_each_providers_start(store: StateStore) -> None:
    store.record_usage(rec("anti", "a1", T0, input_tokens=100, output_tokens=20, cost_usd=0.25))
    store.record_usage(rec("anti", "a1", T0 + timedelta(hours=1), input_tokens=50, cost_usd=0.5))
    store.record_usage(rec("anti", "a2", T0, requests=3, input_tokens=7))
    store.record_usage(rec("copilot", "c1", T0 - timedelta(days=2), input_tokens=1000))
    store.record_usage(rec("copilot", "c1", T0, input_tokens=9))
    store.record_usage(rec("other", "o1", T0, input_tokens=5))

    totals = store.usage_totals({"anti": T0, "copilot": T0 - timedelta(hours=1)})

    assert totals == {
        ("anti", "a1"): Usage(requests=2, input_tokens=150, output_tokens=20, cost_usd=0.75),
        ("anti", "a2"): Usage(requests=3, input_tokens=7),
        ("copilot", "c1"): Usage(requests=1, input_tokens=9),
    }


def test_usage_before_since_and_at_or_after_until_is_not_counted(store: StateStore) -> None:
    for minutes in (-1, 0, 30, 60):
        store.record_usage(rec("p", "a", T0 + timedelta(minutes=minutes), input_tokens=1))

    assert store.usage_totals({"p": T0}) == {("p", "a"): Usage(requests=3, input_tokens=3)}
    until = T0 + timedelta(minutes=60)
    assert store.usage_totals({"p": T0}, until=until) == {("p", "a"): Usage(requests=2, input_tokens=2)}
    assert store.usage_totals({"p": T0 + timedelta(hours=2)}) == {}
    assert store.usage_totals({}) == {}


def test_usage_totals_are_estimated_when_any_record_was(store: StateStore) -> None:
    store.record_usage(rec("p", "exact", T0, input_tokens=1))
    store.record_usage(rec("p", "mixed", T0, input_tokens=1))
    store.record_usage(rec("p", "mixed", T0, input_tokens=1, estimated=True))

    totals = store.usage_totals({"p": T0})

    assert totals[("p", "exact")].estimated is False
    assert totals[("p", "mixed")] == Usage(requests=2, input_tokens=2, estimated=True)


def test_since_in_another_timezone_means_the_same_instant(store: StateStore) -> None:
    store.record_usage(rec("p", "a", T0, input_tokens=1))
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))

    assert store.usage_totals({"p": plus_two}) == {("p", "a"): Usage(requests=1, input_tokens=1)}
    assert store.usage_totals({"p": plus_two + timedelta(microseconds=1)}) == {}


def test_oldest_usage_finds_the_first_record_inside_a_rolling_window(store: StateStore) -> None:
    precise = T0 + timedelta(microseconds=123457)
    store.record_usage(rec("p", "a", T0 - timedelta(hours=6)))
    store.record_usage(rec("p", "a", precise + timedelta(hours=1)))
    store.record_usage(rec("p", "a", precise))
    store.record_usage(rec("p", "b", T0 - timedelta(hours=1)))

    assert store.oldest_usage("p", "a", T0 - timedelta(hours=5)) == precise
    assert store.oldest_usage("p", "a", T0 + timedelta(hours=2)) is None
    assert store.oldest_usage("p", "nobody", T0 - timedelta(days=1)) is None


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    naive = datetime(2025, 3, 2, 12, 0)
    with pytest.raises(ValueError) as exc:
        UsageRecord("p", "a", naive, Usage())
    assert str(exc.value) == "UsageRecord.at must be timezone-aware, got naive datetime 2025-03-02T12:00:00"
    with pytest.raises(ValueError) as exc:
        store.usage_totals({"p": naive})
    assert str(exc.value) == "since['p'] must be timezone-aware, got naive datetime 2025-03-02T12:00:00"
    with pytest.raises(ValueError) as exc:
        store.usage_totals({"p": T0}, until=naive)
    assert str(exc.value) == "until must be timezone-aware, got naive datetime 2025-03-02T12:00:00"
    with pytest.raises(ValueError) as exc:
        store.cooldowns(naive)
    assert str(exc.value) == "now must be timezone-aware, got naive datetime 2025-03-02T12:00:00"
    with pytest.raises(ValueError) as exc:
        Cooldown(until=naive, reason="x")
    assert str(exc.value) == "Cooldown.until must be timezone-aware, got naive datetime 2025-03-02T12:00:00"


records_strategy = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(min_value=-600, max_value=600),  # minutes from T0
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=8),  # cost in quarter dollars: sums are exact in floats
        st.booleans(),
    ),
    max_size=40,
)


Records = list[tuple[str, str, int, int, int, bool]]
since_strategy = st.dictionaries(st.sampled_from(["p1", "p2", "p4"]), st.integers(-700, 700))
until_strategy = st.none() | st.integers(-700, 700)


def assert_agrees_with_memory(store: StateStore, records: Records, since: dict[str, int], until: int | None) -> None:
    """`store`, given the records, answers totals, oldest rows and the row list exactly as MemoryStore does."""
    stores: list[StateStore] = [store, MemoryStore()]
    for provider, account, minutes, tokens, quarters, estimated in records:
        usage = Usage(input_tokens=tokens, cost_usd=quarters / 4, estimated=estimated)
        for each in stores:
            each.record_usage(UsageRecord(provider, account, T0 + timedelta(minutes=minutes), usage))
    starts = {p: T0 + timedelta(minutes=m) for p, m in since.items()}
    end = None if until is None else T0 + timedelta(minutes=until)
    assert store.usage_totals(starts, end) == stores[1].usage_totals(starts, end)
    for provider, start in starts.items():
        for account in "abc":
            assert store.oldest_usage(provider, account, start) == stores[1].oldest_usage(provider, account, start)
    # Rows at the same instant may come in any order between backends.
    assert sorted(map(repr, store.usage_records())) == sorted(map(repr, stores[1].usage_records()))


@settings(max_examples=60, deadline=None)
@given(records=records_strategy, since=since_strategy, until=until_strategy)
def test_sqlite_and_memory_agree_on_totals(records: Records, since: dict[str, int], until: int | None) -> None:
    with SqliteStore(":memory:") as store:
        assert_agrees_with_memory(store, records, since, until)


# -- cooldowns -------------------------------------------------------------------------------------


def test_cooldown_runs_until_its_end_and_not_after(store: StateStore) -> None:
    until = T0 + timedelta(minutes=10)
    store.set_cooldown("p", "a", Cooldown(until=until, reason="rate limited"))
    store.set_cooldown("p", "b", Cooldown(until=T0 - timedelta(seconds=1), reason="old"))

    assert store.cooldowns(T0) == {("p", "a"): Cooldown(until=until, reason="rate limited")}
    assert store.cooldowns(until - timedelta(microseconds=1)) == {("p", "a"): Cooldown(until, "rate limited")}
    assert store.cooldowns(until) == {}


def test_cooldown_is_replaced_and_cleared(store: StateStore) -> None:
    store.set_cooldown("p", "a", Cooldown(until=T0 + timedelta(hours=1), reason="first"))
    store.set_cooldown("p", "a", Cooldown(until=T0 + timedelta(hours=2), reason="second"))
    assert store.cooldowns(T0) == {("p", "a"): Cooldown(until=T0 + timedelta(hours=2), reason="second")}

    store.clear_cooldown("p", "a")
    store.clear_cooldown("p", "never-set")
    assert store.cooldowns(T0) == {}


# -- cursors and sticky choices --------------------------------------------------------------------


def test_cursor_fetches_then_increments_per_key(store: StateStore) -> None:
    assert store.peek_cursor("rr:anti") == 0
    assert [store.next_cursor("rr:anti") for _ in range(3)] == [0, 1, 2]
    assert store.peek_cursor("rr:anti") == 3
    assert store.next_cursor("rr:other") == 0
    assert store.peek_cursor("rr:anti") == 3


def test_cursor_advances_forward_only(store: StateStore) -> None:
    store.advance_cursor("rr:anti", 5)
    assert store.peek_cursor("rr:anti") == 5
    assert store.next_cursor("rr:anti") == 5
    store.advance_cursor("rr:anti", 1)  # another coordinator already moved it further: it stays
    assert store.peek_cursor("rr:anti") == 6
    assert store.peek_cursor("rr:other") == 0


def test_sticky_choice_is_remembered_and_overwritten(store: StateStore) -> None:
    assert store.get_sticky("issue:42") is None
    store.set_sticky("issue:42", "acct-3")
    store.set_sticky("issue:43", "acct-1")
    assert store.get_sticky("issue:42") == "acct-3"
    store.set_sticky("issue:42", "acct-5")
    assert (store.get_sticky("issue:42"), store.get_sticky("issue:43")) == ("acct-5", "acct-1")


# -- circuit breakers ------------------------------------------------------------------------------


def test_breaker_defaults_to_closed_and_updates_atomically(store: StateStore) -> None:
    assert store.get_breaker("anti") == BreakerState()
    assert store.breakers() == {}

    def fail(state: BreakerState) -> BreakerState:
        return replace(state, failures=state.failures + 1)

    store.update_breaker("anti", fail)
    opened = store.update_breaker("anti", lambda s: replace(fail(s), state="open", opened_at=T0))

    assert opened == BreakerState(state="open", failures=2, opened_at=T0)
    assert store.get_breaker("anti") == opened
    assert store.breakers() == {"anti": opened}


def test_breaker_update_that_raises_changes_nothing(store: StateStore) -> None:
    store.update_breaker("anti", lambda s: replace(s, failures=1))

    def broken(state: BreakerState) -> BreakerState:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.update_breaker("anti", broken)
    assert store.get_breaker("anti") == BreakerState(failures=1)
    assert store.next_cursor("k") == 0  # the store is still usable: no transaction left open


def test_breaker_state_is_validated() -> None:
    with pytest.raises(ValueError) as exc:
        BreakerState(state="half-open")
    assert str(exc.value) == "breaker state must be one of closed, open, half_open, got 'half-open'"


# -- concurrency slots -----------------------------------------------------------------------------


def test_slots_are_leased_up_to_the_limit_then_refused(store: StateStore) -> None:
    end = T0 + timedelta(minutes=30)
    assert store.active_slots(T0) == {}
    assert store.acquire_slot("p", "h1", 2, T0, end)
    assert store.acquire_slot("p", "h2", 2, T0, end + timedelta(minutes=1))
    assert not store.acquire_slot("p", "h3", 2, T0, end)
    assert store.acquire_slot("other", "h3", 1, T0, end)  # limits are per provider
    assert store.active_slots(T0) == {"p": (end, end + timedelta(minutes=1)), "other": (end,)}

    store.release_slot("p", "h1")
    assert store.active_slots(T0) == {"p": (end + timedelta(minutes=1),), "other": (end,)}
    assert store.acquire_slot("p", "h3", 2, T0, end)
    assert not store.acquire_slot("p", "h4", 2, T0, end)


def test_slot_lease_that_ended_is_reclaimed(store: StateStore) -> None:
    end = T0 + timedelta(minutes=1)
    assert store.acquire_slot("p", "dead", 1, T0, end)  # its holder never releases it
    assert not store.acquire_slot("p", "live", 1, end - timedelta(microseconds=1), end + timedelta(minutes=1))
    assert store.active_slots(end - timedelta(microseconds=1)) == {"p": (end,)}
    assert store.active_slots(end) == {}  # until <= now: ended

    assert store.acquire_slot("p", "live", 1, end, end + timedelta(minutes=1))
    assert store.active_slots(T0) == {"p": (end + timedelta(minutes=1),)}  # the dead lease is gone


def test_slot_holder_renews_its_own_lease_and_release_is_idempotent(store: StateStore) -> None:
    assert store.acquire_slot("p", "h", 1, T0, T0 + timedelta(minutes=1))
    assert store.acquire_slot("p", "h", 1, T0, T0 + timedelta(minutes=5))
    assert store.active_slots(T0) == {"p": (T0 + timedelta(minutes=5),)}
    store.release_slot("p", "h")
    store.release_slot("p", "h")
    store.release_slot("never", "held")
    assert store.active_slots(T0) == {}


def test_slot_arguments_are_validated(store: StateStore) -> None:
    later = T0 + timedelta(minutes=1)
    with pytest.raises(ValueError) as exc:
        store.acquire_slot("p", "h", 0, T0, later)
    assert str(exc.value) == "slot limit must be >= 1, got 0"
    with pytest.raises(ValueError) as exc:
        store.acquire_slot("p", "h", 1, T0, T0)
    assert str(exc.value) == (
        "a lease must end after now: until 2025-03-02T12:00:00+00:00 <= now 2025-03-02T12:00:00+00:00"
    )
    with pytest.raises(ValueError) as exc:
        store.acquire_slot("p", "h", 1, datetime(2025, 3, 2, 12, 0), later)
    assert str(exc.value) == "now must be timezone-aware, got naive datetime 2025-03-02T12:00:00"
    assert store.active_slots(T0) == {}


def test_sqlite_connections_racing_for_slots_take_exactly_the_limit(tmp_path: Path) -> None:
    # One connection per thread is what one process each would have: BEGIN IMMEDIATE serializes them all.
    path = str(tmp_path / "slots.sqlite3")
    SqliteStore(path).close()
    racers, limit = 8, 3
    start = threading.Barrier(racers)
    got: list[bool] = []

    def race(n: int) -> None:
        with SqliteStore(path) as mine:
            start.wait()
            got.append(mine.acquire_slot("p", f"h{n}", limit, T0, T0 + timedelta(minutes=1)))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == [False] * (racers - limit) + [True] * limit
    with SqliteStore(path) as store:
        assert len(store.active_slots(T0)["p"]) == limit


# -- change detection ------------------------------------------------------------------------------


def test_version_changes_after_each_write_and_only_then(store: StateStore) -> None:
    first = store.version()
    assert store.version() == first
    store.usage_totals({"p": T0})
    store.get_breaker("p")
    store.active_slots(T0)
    assert store.version() == first

    seen = {first}
    writes: list[Callable[[], object]] = [
        lambda: store.record_usage(rec("p", "a", T0)),
        lambda: store.set_cooldown("p", "a", Cooldown(T0, "x")),
        lambda: store.next_cursor("k"),
        lambda: store.set_sticky("k", "v"),
        lambda: store.update_breaker("p", lambda s: s),
        lambda: store.acquire_slot("p", "h", 1, T0, T0 + timedelta(minutes=1)),
        lambda: store.release_slot("p", "h"),
    ]
    for write in writes:
        write()
        current = store.version()
        assert current not in seen
        seen.add(current)
        assert store.version() == current


def test_sqlite_version_sees_commits_of_other_connections(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    with SqliteStore(path) as mine, SqliteStore(path) as theirs:
        before = mine.version()
        assert mine.version() == before
        theirs.set_sticky("k", "v")
        after = mine.version()
        assert after != before
        assert mine.version() == after
        assert mine.get_sticky("k") == "v"


def test_sqlite_version_polled_at_an_interval_sees_other_connections_within_it(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    ticks = [0.0]
    with SqliteStore(path) as theirs, SqliteStore(path, poll_interval_s=0.004, monotonic=lambda: ticks[0]) as mine:
        assert mine.staleness_s == 0.004
        first = mine.version()
        theirs.set_sticky("k", "v")
        ticks[0] = 0.003
        assert mine.version() == first  # inside the bound: not asked yet
        ticks[0] = 0.004
        second = mine.version()
        assert second != first
        mine.set_sticky("k", "w")
        assert mine.version() != second  # own writes at once


def _writes_of_each_kind(store: StateStore) -> dict[str, list[Callable[[], object]]]:
    later = T0 + timedelta(hours=1)
    return {
        "cooldowns": [lambda: store.set_cooldown("p", "a", Cooldown(later, "r")),
                      lambda: store.clear_cooldown("p", "a")],
        "reservations": [lambda: store.reserve("p", "a", "h", 5, T0, later),
                         lambda: store.release_reservation("p", "h")],
        "observations": [lambda: store.record_observation(Observation("p", "a", T0, 40.0, "usage_command"))],
        "breakers": [lambda: store.update_breaker("p", lambda state: BreakerState("open", 3, T0))],
        "slots": [lambda: store.acquire_slot("p", "h", 2, T0, later), lambda: store.release_slot("p", "h")],
        "runs": [lambda: store.record_run("p", "code", T0, 100)],
        "strategy": [lambda: store.next_cursor("rr"), lambda: store.advance_cursor("rr", 9),
                     lambda: store.set_sticky("k", "a")],
    }


def test_change_counts_move_with_a_write_of_their_kind_only(store: StateStore) -> None:
    counts = store.change_counts()
    if counts is None:  # the backend keeps no counters per kind: its readers re-read every kind
        return
    assert len(counts) == len(CHANGE_KINDS)
    store.record_usage(rec("p", "a", T0, input_tokens=1))
    assert store.change_counts() == counts  # usage rows are read incrementally (usage_since), not counted here
    for kind, writes in _writes_of_each_kind(store).items():
        for write in writes:
            before = store.change_counts()
            assert before is not None
            write()
            after = store.change_counts()
            assert after is not None
            assert [k for k, b, a in zip(CHANGE_KINDS, before, after, strict=True) if b != a] == [kind], write


def test_sqlite_change_counts_see_writes_of_other_connections(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    with SqliteStore(path) as mine, SqliteStore(path) as theirs:
        before = mine.change_counts()
        theirs.set_cooldown("p", "a", Cooldown(T0 + timedelta(hours=1), "r"))
        after = mine.change_counts()
        assert after[CHANGE_KINDS.index("cooldowns")] == before[CHANGE_KINDS.index("cooldowns")] + 1


def test_sqlite_usage_since_carries_the_change_counts_of_the_same_read(tmp_path: Path) -> None:
    """The reader's poll after another process's commit is one statement: the counters come with the new rows, as
    change_counts() gives them, also when only their sum says they moved."""
    path = str(tmp_path / "s.sqlite3")
    with SqliteStore(path) as mine, SqliteStore(path) as theirs:
        cursor = mine.usage_cursor()
        writes = [lambda: theirs.record_usage(rec("p", "a", T0, input_tokens=1)),
                  lambda: theirs.set_cooldown("p", "a", Cooldown(T0 + timedelta(hours=1), "r")),
                  lambda: theirs.next_cursor("round_robin:p"),
                  lambda: theirs.record_usage(rec("p", "b", T0, input_tokens=2)),
                  lambda: theirs.clear_cooldown("p", "a")]
        for write in writes:
            write()
            changes = mine.usage_since(cursor)
            assert changes is not None
            assert changes.counts == theirs.change_counts()
            cursor = changes.cursor


def test_change_poller_refuses_a_negative_interval() -> None:
    with pytest.raises(ValueError) as exc:
        ChangePoller(lambda: 0, -1)
    assert str(exc.value) == "poll interval must be >= 0 seconds, got -1"


# -- export, import, retention ---------------------------------------------------------------------


def test_every_row_cursor_and_sticky_choice_can_be_listed_and_bulk_loaded(store: StateStore) -> None:
    records = [
        UsageRecord("p", "a", T0 + timedelta(minutes=5), Usage(input_tokens=3, cost_usd=0.25), "m1", "task-1"),
        UsageRecord("p", "a", T0, Usage(requests=2, output_tokens=7, estimated=True)),
        UsageRecord("q", "b:c", T0 + timedelta(minutes=1), Usage(input_tokens=1)),
    ]
    assert store.import_usage(records) == 3
    assert store.import_usage([]) == 0
    assert list(store.usage_records()) == [records[1], records[2], records[0]]  # oldest first
    store.next_cursor("rr:p")
    store.advance_cursor("rr:q", 4)
    store.set_sticky("sticky:p:7", "a")
    assert store.cursors() == {"rr:p": 1, "rr:q": 4}
    assert store.sticky_choices() == {"sticky:p:7": "a"}


def test_roll_up_keeps_totals_and_leaves_one_row_per_account_hour(store: StateStore) -> None:
    hour = T0 - timedelta(hours=3)  # T0 is on the hour
    for minutes in (0, 10, 59):
        store.record_usage(UsageRecord("p", "a", hour + timedelta(minutes=minutes),
                                       Usage(input_tokens=minutes + 1, cost_usd=0.25), "m", "t"))
    store.record_usage(rec("p", "a", hour + timedelta(hours=1, minutes=1), input_tokens=100, estimated=True))
    store.record_usage(rec("p", "a", hour + timedelta(hours=1, minutes=2), input_tokens=200))
    store.record_usage(rec("p", "b", hour + timedelta(minutes=30), input_tokens=5))  # alone in its hour: kept
    store.record_usage(rec("p", "a", T0 - timedelta(minutes=30), input_tokens=7))  # in the hour before the cutoff
    store.record_usage(rec("p", "a", T0 - timedelta(minutes=20), input_tokens=8))
    before = store.usage_totals({"p": hour})
    version = store.version()

    # The cutoff rounds down to its hour: the hour holding T0 - 30 min is not complete before it.
    assert store.roll_up(T0 - timedelta(minutes=10)) == 3
    assert store.version() != version
    assert store.usage_totals({"p": hour}) == before
    rows = list(store.usage_records())
    assert [(r.account, r.at, r.usage, r.model) for r in rows[:3]] == [
        ("a", hour, Usage(requests=3, input_tokens=1 + 11 + 60, cost_usd=0.75), None),
        ("b", hour + timedelta(minutes=30), Usage(requests=1, input_tokens=5), None),
        ("a", hour + timedelta(hours=1), Usage(requests=2, input_tokens=300, estimated=True), None),
    ]
    assert len(rows) == 5
    assert store.roll_up(T0 - timedelta(minutes=10)) == 0  # nothing left to roll up
    assert store.roll_up(T0) == 1
    assert store.usage_totals({"p": hour}) == before


# -- opening stores --------------------------------------------------------------------------------


def test_path_precedence_env_then_argument_then_default() -> None:
    def located(path: str | None, env: dict[str, str]) -> str:
        return STORES["sqlite"].location(path, env, "sqlite")

    env = {"ADWS_STATE_PATH": "/srv/adws.sqlite3"}
    assert located("config.sqlite3", env) == "/srv/adws.sqlite3"
    assert located(None, env) == "/srv/adws.sqlite3"
    assert located("config.sqlite3", {}) == "config.sqlite3"
    assert located(None, {}) == DEFAULT_PATH == ".adws/state.sqlite3"


def test_open_store_uses_env_path_and_creates_its_directory(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "dir" / "state.sqlite3"
    store = open_store("sqlite", str(tmp_path / "ignored.sqlite3"), env={"ADWS_STATE_PATH": str(target)})
    store.set_sticky("k", "v")
    store.close()
    assert target.exists()
    assert not (tmp_path / "ignored.sqlite3").exists()


def test_open_store_default_path_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    open_store(env={}).close()
    assert (tmp_path / ".adws" / "state.sqlite3").exists()


def test_open_store_backends() -> None:
    assert isinstance(open_store("memory", env={}), MemoryStore)
    in_memory = open_store("sqlite", ":memory:", env={})
    assert isinstance(in_memory, SqliteStore)
    assert in_memory.next_cursor("k") == 0
    assert in_memory.next_cursor("k") == 1
    in_memory.close()
    with pytest.raises(ValueError) as exc:
        open_store("postgres", env={})
    assert str(exc.value) == "unknown state backend 'postgres': expected one of memory, redis, sqlite"


@pytest.mark.parametrize(("state", "problem"), [
    ('url = "redis://h:6379/0"', 'state → url: not read by backend "sqlite" (it reads path); remove it or change '
     "the backend"),
    ('backend = "memory"\npath = "s.sqlite3"', 'state → path: not read by backend "memory" (it reads nothing); '
     "remove it or change the backend"),
    ('backend = "redis"\nurl = "redis://h/0"\npath = "s.sqlite3"', 'state → path: not read by backend "redis" (it '
     "reads url, key_prefix); remove it or change the backend"),
])
def test_state_keys_the_backend_does_not_read_are_refused(state: str, problem: str) -> None:
    # `url` under the default backend is a forgotten `backend = "redis"`: that fleet would keep private ledgers.
    text = f'[providers.x]\ncommand_template = ["x"]\nprompt = "stdin"\n[state]\n{state}\n'
    with pytest.raises(ConfigError) as exc:
        compile_config(parse_toml(text), "c.toml", base_dir=".")
    assert [str(p) for p in exc.value.problems] == [problem]


def test_state_keys_of_the_chosen_backend_are_compiled() -> None:
    text = ('[providers.x]\ncommand_template = ["x"]\nprompt = "stdin"\n'
            '[state]\nbackend = "redis"\nurl = "rediss://h:6380/1"\nkey_prefix = "fleet-b:"\n')
    config = compile_config(parse_toml(text), "c.toml", base_dir="/srv")
    assert (config.state_backend, config.state_path, config.state_options) == (
        "redis", "rediss://h:6380/1", {"key_prefix": "fleet-b:"})


def test_sqlite_file_is_wal_with_the_period_index(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    SqliteStore(str(path)).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    columns = [row[2] for row in conn.execute("PRAGMA index_info(usage_by_account_time)")]
    assert columns[:3] == ["provider", "account", "at"]
    conn.close()


def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateStoreError) as exc:
        SqliteStore(str(path))
    assert str(exc.value) == (f"state store {path} is damaged or not an adws state store (file is not a "
                              "database): move the file aside (adws starts a new one) or point [state] path / "
                              "ADWS_STATE_PATH at another file")


def test_sqlite_refuses_a_schema_from_a_newer_adws(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StateStoreError) as exc:
        SqliteStore(str(path))
    assert str(exc.value) == (
        f"state store {path} has schema version 99, this adws knows up to {SCHEMA_VERSION}: "
        "upgrade adws or point [state] path at another file"
    )


def test_sqlite_file_from_the_previous_version_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with SqliteStore(str(path)) as old:
        old.record_usage(rec("p", "a", T0, input_tokens=3))
        old.set_cooldown("p", "a", Cooldown(T0 + timedelta(hours=1), "rate_limited"))
    # What adws wrote before slots existed: the same tables without `slots` (nor later versions'), at user_version 1.
    conn = sqlite3.connect(path)
    for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {trigger}")  # version 5's change counters
    for table in ("slots", "reservations", "observations", "runs", "meta", "changes"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    with SqliteStore(str(path)) as upgraded:
        assert upgraded.usage_totals({"p": T0}) == {("p", "a"): Usage(requests=1, input_tokens=3)}
        assert upgraded.cooldowns(T0) == {("p", "a"): Cooldown(T0 + timedelta(hours=1), "rate_limited")}
        assert upgraded.acquire_slot("p", "h", 1, T0, T0 + timedelta(minutes=1))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("SELECT provider, holder FROM slots").fetchall() == [("p", "h")]
    assert conn.execute("SELECT n FROM changes WHERE kind = 'slots'").fetchone() == (1,)  # counted from the upgrade
    conn.close()


def test_sqlite_write_that_cannot_get_the_lock_is_a_state_store_error(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite3"
    store = SqliteStore(str(path), busy_timeout_s=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StateStoreError) as exc:
        store.set_sticky("k", "v")
    assert str(exc.value) == f"state store {path}: database is locked"
    holder.execute("ROLLBACK")
    holder.close()
    store.set_sticky("k", "v")  # nothing was left half-open
    assert store.get_sticky("k") == "v"
    store.close()


def test_sqlite_store_is_reopened_with_its_data(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    with SqliteStore(path) as first:
        first.record_usage(rec("p", "a", T0, input_tokens=3))
        first.next_cursor("k")
    with SqliteStore(path) as second:
        assert second.usage_totals({"p": T0}) == {("p", "a"): Usage(requests=1, input_tokens=3)}
        assert second.peek_cursor("k") == 1


# -- several processes -----------------------------------------------------------------------------


def worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def shared_location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, StateStore]:
    """Where worker processes meet (tests/state/state_worker.py's STORE argument), and a store of our own there."""
    if backend == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        return f"{url}#{prefix}", RedisStore(url, key_prefix=prefix)
    path = str(tmp_path / "shared.sqlite3")  # created by the workers themselves, racing
    return path, SqliteStore(path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_four_processes_at_once_lose_no_update(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    location, store = shared_location(backend, request, tmp_path)
    n = 150
    procs = [worker("count", location, str(n), f"acct-{i}") for i in range(4)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:  # release them together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert (proc.returncode, out) == (0, "done\n")

    totals = store.usage_totals({"prov": T0})
    assert totals == {
        ("prov", f"acct-{i}"): Usage(requests=n, input_tokens=10 * n, output_tokens=5 * n, cost_usd=0.5 * n)
        for i in range(4)
    }
    assert store.peek_cursor("shared") == 4 * n
    assert store.get_breaker("prov").failures == 4 * n  # SQLite: write lock; Redis: compare-and-set
    store.close()


@pytest.mark.slow
def test_kill_9_mid_write_leaves_a_consistent_database(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.sqlite3")
    proc = worker("loop", path)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    with SqliteStore(path) as watcher:
        deadline = time.monotonic() + 30
        while watcher.peek_cursor("shared") < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    with SqliteStore(path) as store:
        cursor = store.peek_cursor("shared")
        failures = store.get_breaker("prov").failures
        (usage,) = store.usage_totals({"prov": T0}).values()
        # Each round is cursor -> breaker -> usage, one transaction each: a kill may cut a round short
        # but never lose or half-apply a committed step.
        assert cursor >= 300
        assert cursor >= failures >= usage.requests >= cursor - 1
        assert usage == Usage(
            requests=usage.requests,
            input_tokens=10 * usage.requests,
            output_tokens=5 * usage.requests,
            cost_usd=0.5 * usage.requests,
        )
        assert store.next_cursor("shared") == cursor  # and it keeps working


# -- usage rows since a cursor (incremental refresh of the account ranking) ---------------------------


def test_usage_since_returns_only_rows_appended_after_the_cursor(store: StateStore) -> None:
    store.record_usage(rec("p", "a", T0, input_tokens=1))
    cursor = store.usage_cursor()
    empty = store.usage_since(cursor)
    assert empty is not None and empty.records == [] and empty.cursor == cursor
    later = UsageRecord("p", "b", T0 - timedelta(days=3), Usage(requests=1, output_tokens=7), "m", "t-1")
    store.record_usage(later)  # appended, though older than the first row: order is append order, not time
    store.record_usage(rec("p", "a", T0 + timedelta(seconds=1), input_tokens=2))
    changes = store.usage_since(cursor)
    assert changes is not None
    assert changes.records == [later, rec("p", "a", T0 + timedelta(seconds=1), input_tokens=2)]
    assert changes.cursor == store.usage_cursor()
    after = store.usage_since(changes.cursor)
    assert after is not None and after.records == []


def test_usage_since_refuses_a_cursor_from_before_a_roll_up(store: StateStore) -> None:
    store.record_usage(rec("p", "a", T0, input_tokens=1))
    store.record_usage(rec("p", "a", T0 + timedelta(minutes=1), input_tokens=2))
    cursor = store.usage_cursor()
    assert store.roll_up(T0 + timedelta(hours=2)) == 1
    assert store.usage_since(cursor) is None  # rows were rewritten: the reader must re-read the totals
    fresh = store.usage_cursor()
    store.record_usage(rec("p", "a", T0 + timedelta(hours=3), input_tokens=4))
    changes = store.usage_since(fresh)
    assert changes is not None and [r.usage.input_tokens for r in changes.records] == [4]


def test_usage_since_a_roll_up_that_changes_nothing_keeps_cursors(store: StateStore) -> None:
    store.record_usage(rec("p", "a", T0, input_tokens=1))
    cursor = store.usage_cursor()
    assert store.roll_up(T0 + timedelta(hours=2)) == 0  # one row per hour already
    store.record_usage(rec("p", "a", T0 + timedelta(hours=3), input_tokens=4))
    changes = store.usage_since(cursor)
    assert changes is not None and len(changes.records) == 1


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_usage_since_sees_rows_another_connection_appended(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    _, reader = shared_location(backend, request, tmp_path)
    _, writer = shared_location(backend, request, tmp_path)
    with reader, writer:
        writer.record_usage(rec("p", "a", T0, input_tokens=1))
        cursor = reader.usage_cursor()
        writer.record_usage(rec("p", "b", T0, input_tokens=5))
        changes = reader.usage_since(cursor)
        assert changes is not None and [(r.account, r.usage.input_tokens) for r in changes.records] == [("b", 5)]
        writer.roll_up(T0 + timedelta(hours=2))  # nothing to merge: one row per account-hour
        writer.record_usage(rec("p", "b", T0 + timedelta(minutes=1), input_tokens=6))
        writer.roll_up(T0 + timedelta(hours=2))  # merges b's two rows
        assert reader.usage_since(changes.cursor) is None


def test_sqlite_cursor_of_another_file_is_refused(tmp_path: Path) -> None:
    with SqliteStore(str(tmp_path / "one.sqlite3")) as one, SqliteStore(str(tmp_path / "two.sqlite3")) as two:
        one.record_usage(rec("p", "a", T0))
        assert two.usage_since(one.usage_cursor()) is None


def test_redis_log_keeps_the_newest_rows_and_refuses_a_reader_left_behind(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    from adws.state import redis_store

    monkeypatch.setattr(redis_store, "LOG_CAP", 3)
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    with RedisStore(url, key_prefix=prefix) as store:
        cursor = store.usage_cursor()
        for i in range(2):
            store.record_usage(rec("p", "a", T0 + timedelta(seconds=i), input_tokens=i))
        recent = store.usage_cursor()
        for i in range(2, 5):
            store.record_usage(rec("p", "a", T0 + timedelta(seconds=i), input_tokens=i))
        assert store.usage_since(cursor) is None  # its rows were trimmed from the log
        changes = store.usage_since(recent)
        assert changes is not None and [r.usage.input_tokens for r in changes.records] == [2, 3, 4]


class _Host:
    """One simulated host sharing `store`: its own clock (`skew` from T0) and its own reader (routing, sightings)."""

    def __init__(self, store: StateStore, skew: timedelta) -> None:
        from adws import breaker
        from adws.accounts import StatefulAccounts
        from adws.availability import Availability
        from tests.test_breaker import provider

        self.store, self.skew, self.spec = store, skew, provider()
        self.lease = breaker.probe_lease(self.spec)
        self.accounts = StatefulAccounts({self.spec.name: self.spec}, Availability({}, lambda name: f"/bin/{name}"),
                                         store, HOST_COOLDOWN.total_seconds())

    def at(self, offset: timedelta = timedelta(0)) -> datetime:
        """This host's clock when the true time is T0 + `offset`."""
        return T0 + offset + self.skew

    def blocked_until(self, offset: timedelta) -> datetime | None:
        """When routing on this host, at true time T0 + `offset`, lets the provider in again (None: it does now)."""
        self.accounts.generation(self.at(offset))
        skip = self.accounts.provider_blocked(self.spec, self.at(offset))
        return None if skip is None else skip.until

    def claims(self, offset: timedelta) -> bool:
        from adws import breaker

        claimed, _ = breaker.claim_probe(self.store, self.spec.name, self.at(offset), HOST_COOLDOWN, self.lease,
                                         self.accounts.sightings)
        return claimed


HOST_COOLDOWN = timedelta(minutes=10)


def test_a_probe_a_host_ahead_claimed_is_live_for_the_lease_on_every_backend(store: StateStore) -> None:
    # Before, the second host took the half-open time an hour ahead for no probe and claimed its own: two probes.
    ahead, here = _Host(store, timedelta(hours=1)), _Host(store, timedelta(0))
    store.update_breaker(here.spec.name, lambda _: BreakerState("open", 3, T0 - timedelta(minutes=20)))
    assert ahead.claims(timedelta(0))
    assert store.get_breaker(here.spec.name) == BreakerState("half_open", 3, ahead.at())
    assert here.blocked_until(timedelta(0)) == T0 + here.lease  # the lease from this host's own sighting
    assert not here.claims(timedelta(0))
    assert not here.claims(here.lease - timedelta(seconds=1))
    assert here.blocked_until(here.lease - timedelta(seconds=1)) == T0 + here.lease
    # Capped at the lease: once it ran out on this host's clock, the probe may be taken over (its host died).
    assert here.blocked_until(here.lease) is None
    assert here.claims(here.lease)
    assert store.get_breaker(here.spec.name) == BreakerState("half_open", 3, T0 + here.lease)


def test_a_breaker_a_host_ahead_opened_blocks_for_the_cooldown_from_each_readers_clock(store: StateStore) -> None:
    # Before, an open time an hour ahead blocked nobody (its probe was due at once): that host's opens were ignored.
    from adws import breaker

    ahead, here = _Host(store, timedelta(hours=1)), _Host(store, timedelta(0))
    store.update_breaker(here.spec.name, lambda s: breaker.after_attempt(BreakerState("closed", 2, None), True,
                                                                          ahead.at(), threshold=3))
    assert store.get_breaker(here.spec.name) == BreakerState("open", 3, ahead.at())
    # Never zero: this host sees it open for the whole cooldown from when it first saw it ...
    assert here.blocked_until(timedelta(0)) == T0 + HOST_COOLDOWN
    assert not here.claims(timedelta(minutes=1))
    assert here.blocked_until(HOST_COOLDOWN - timedelta(seconds=1)) == T0 + HOST_COOLDOWN
    # ... and never longer (believed, it would hold until the time an hour ahead plus the cooldown).
    assert here.blocked_until(HOST_COOLDOWN) is None
    assert here.claims(HOST_COOLDOWN)


def test_a_host_behind_neither_probes_at_once_nor_shortens_the_others_cooldown(store: StateStore) -> None:
    # Before, to a host an hour behind every other host's open time lay ahead: it probed at once, writing its own
    # time an hour back, and the others took the probe for long dead and probed as well.
    from adws import breaker

    behind, here = _Host(store, -timedelta(hours=1)), _Host(store, timedelta(0))
    store.update_breaker(here.spec.name, lambda s: breaker.after_attempt(BreakerState("closed", 2, None), True,
                                                                          here.at(), threshold=3))
    assert behind.blocked_until(timedelta(0)) == behind.at(HOST_COOLDOWN)
    assert not behind.claims(timedelta(minutes=1))
    assert store.get_breaker(here.spec.name) == BreakerState("open", 3, T0)  # untouched: the cooldown holds
    assert here.blocked_until(timedelta(minutes=1)) == T0 + HOST_COOLDOWN
    assert here.claims(HOST_COOLDOWN)
    assert not behind.claims(HOST_COOLDOWN)  # this host's probe is live on the host behind too


BAD_FIGURES = {
    "negative requests": (Usage(requests=-1), "requests -1 is out of range (0 to 1,000,000,000,000)"),
    "NaN input": (Usage(input_tokens=math.nan), "input_tokens is nan, not a whole number"),  # type: ignore[arg-type]
    "infinite output": (Usage(output_tokens=math.inf), "output_tokens is inf, not a whole number"),  # type: ignore[arg-type]
    "too many tokens": (Usage(input_tokens=10**13),
                        "input_tokens 10000000000000 is out of range (0 to 1,000,000,000,000)"),
    "negative cost": (Usage(cost_usd=-0.5), "cost_usd -0.5 is out of range (0 to 1,000,000,000,000)"),
    "NaN cost": (Usage(cost_usd=math.nan), "cost_usd nan is out of range (0 to 1,000,000,000,000)"),
    "infinite cost": (Usage(cost_usd=math.inf), "cost_usd inf is out of range (0 to 1,000,000,000,000)"),
}


@pytest.mark.parametrize("case", list(BAD_FIGURES))
def test_every_backend_refuses_a_figure_it_could_not_read_back_on_write(store: StateStore, case: str) -> None:
    # Before, the memory store kept them (a negative quota, NaN totals), SQLite called its own file damaged (NaN is
    # NULL there) or wrote a row it then refused to read, and Redis wrote a row every later total stopped at.
    usage, problem = BAD_FIGURES[case]
    bad = UsageRecord("p", "a", T0, usage)
    good = rec("p", "a", T0, input_tokens=5)
    for write in (lambda: store.record_usage(bad), lambda: store.import_usage([good, bad])):
        with pytest.raises(ValueError) as exc:
            write()
        assert str(exc.value) == f"cannot record usage of p/a: {problem}"
        assert list(store.usage_records()) == []  # nothing written, not even the good row before it


def test_every_backend_keeps_a_whole_float_count_as_the_int_it_returns(store: StateStore) -> None:
    # Before, the memory store kept requests=5.0 and returned the float, where SQLite and Redis returned 5.
    store.record_usage(rec("p", "a", T0, requests=5.0, input_tokens=7.0, cost_usd=2))
    store.import_usage([rec("p", "a", T0, requests=1.0, output_tokens=3.0)])
    shapes = [(type(u.requests), type(u.input_tokens), type(u.output_tokens), type(u.cost_usd))
              for u in [r.usage for r in store.usage_records()] + [store.usage_totals({"p": T0})["p", "a"]]]
    assert shapes == [(int, int, int, float)] * 3
    assert store.usage_totals({"p": T0})["p", "a"] == Usage(requests=6, input_tokens=7, output_tokens=3, cost_usd=2.0)
    with pytest.raises(ValueError) as exc:
        store.record_usage(rec("p", "a", T0, requests=1.5))
    assert str(exc.value) == "cannot record usage of p/a: requests is 1.5, not a whole number"


def test_a_total_of_valid_rows_past_2_53_is_read_as_the_sum_not_damage(store: StateStore) -> None:
    # 9,100 rows of 10**12 tokens, each what every store takes: before, their sum (past 2**53) read as damage (SQLite:
    # "move the file aside"; Redis: DEL the whole usage history), where the memory store returned it.
    rows = [rec("p", "a", T0 + timedelta(seconds=i / 10), input_tokens=10**12) for i in range(9_100)]
    store.import_usage(rows)
    expected = Usage(requests=9_100, input_tokens=9_100 * 10**12)
    assert store.usage_totals({"p": T0}) == {("p", "a"): expected}
    store.roll_up(T0 + timedelta(hours=2))  # one row of the hour's sum: still a row every store reads
    assert store.usage_totals({"p": T0}) == {("p", "a"): expected}
    assert [r.usage for r in store.usage_records()] == [expected]
