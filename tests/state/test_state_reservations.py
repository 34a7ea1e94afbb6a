"""The store's part of issue 11, on every backend: reservations (leases that carry tokens), observations of real
usage, and learned runs (recorded one by one, listed and bulk-loaded for `adws state export` / `import`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.state import STORES, RedisStore, SqliteStore, StateStore, StateStoreError, base, redis_store
from adws.state.base import CHANGE_KINDS, Observation, RunRecord, RunsImported
from tests.state.test_state import open_backend

T0 = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=30)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    opened = open_backend(request.param, request, tmp_path)  # Redis: a real redis-server, as in test_state.py
    yield opened
    opened.close()


def totals(store: StateStore, now: datetime) -> dict[tuple[str, str], int]:
    return {key: sum(tokens for tokens, _ in leases) for key, leases in store.reservations(now).items()}


def test_a_reservation_is_counted_until_released(store: StateStore) -> None:
    assert store.reserve("ag", "ag-01", "h1", 30000, T0, LATER) == {}
    assert store.reserve("ag", "ag-01", "h2", 20000, T0, LATER) == {"ag-01": 30000}  # what stood before it
    assert store.reserve("ag", "ag-02/claude", "h3", 5000, T0, LATER) == {"ag-01": 50000}
    assert store.reserve("other", "x", "h4", 1, T0, LATER) == {}  # per provider
    assert totals(store, T0) == {("ag", "ag-01"): 50000, ("ag", "ag-02/claude"): 5000, ("other", "x"): 1}
    store.release_reservation("ag", "h1")
    store.release_reservation("ag", "never-held")  # not an error
    assert totals(store, T0) == {("ag", "ag-01"): 20000, ("ag", "ag-02/claude"): 5000, ("other", "x"): 1}


def test_a_holder_replaces_its_own_reservation(store: StateStore) -> None:
    store.reserve("ag", "ag-01", "h1", 30000, T0, LATER)
    assert store.reserve("ag", "ag-02", "h1", 10000, T0, LATER) == {}  # its own does not count against it
    assert totals(store, T0) == {("ag", "ag-02"): 10000}


def test_a_reservation_expires_like_a_lease(store: StateStore) -> None:
    store.reserve("ag", "ag-01", "dead-coordinator", 30000, T0, LATER)
    assert totals(store, LATER - timedelta(seconds=1)) == {("ag", "ag-01"): 30000}
    assert totals(store, LATER) == {}
    assert store.reserve("ag", "ag-01", "h2", 1, LATER, LATER + timedelta(minutes=1)) == {}


def test_reservations_say_when_each_one_ends(store: StateStore) -> None:
    store.reserve("ag", "ag-01", "late", 2, T0, LATER)
    store.reserve("ag", "ag-01", "soon", 1, T0, T0 + timedelta(minutes=5))
    assert store.reservations(T0) == {("ag", "ag-01"): ((1, T0 + timedelta(minutes=5)), (2, LATER))}


def test_reservation_arguments_are_checked(store: StateStore) -> None:
    with pytest.raises(ValueError, match="a reservation cannot be negative"):
        store.reserve("ag", "a", "h", -1, T0, LATER)
    with pytest.raises(ValueError, match="a reservation must end after now"):
        store.reserve("ag", "a", "h", 1, T0, T0)


def test_reservations_move_the_version(store: StateStore) -> None:
    before = store.version()
    store.reserve("ag", "a", "h", 1, T0, LATER)
    middle = store.version()
    store.release_reservation("ag", "h")
    assert before != middle != store.version()


def test_the_latest_observation_per_subject_is_kept(store: StateStore) -> None:
    first = Observation("ag", "ag-01", T0, 41.0, "usage_command", 205000.0, 500000.0, T0 + timedelta(days=2))
    later = Observation("ag", "ag-01", LATER, 63.0, "claude rate_limit_event (seven_day)")
    assert store.record_observation(later) is True
    assert store.record_observation(first) is False  # older: does not replace the later reading
    assert store.record_observation(Observation("ag", "ag-01/claude", T0, 5.0, "usage_command")) is True
    assert store.observations() == {("ag", "ag-01"): later,
                                    ("ag", "ag-01/claude"): Observation("ag", "ag-01/claude", T0, 5.0,
                                                                        "usage_command")}
    newer = Observation("ag", "ag-01", LATER + timedelta(minutes=1), 70.0, "usage_command", 1.0, 2.0, LATER)
    assert store.record_observation(newer) is True
    assert store.observations()[("ag", "ag-01")] == newer
    assert store.record_observation(newer) is True  # the same time again: kept (not older), as an import repeats


def test_recent_runs_newest_first_per_provider_and_specialization(store: StateStore) -> None:
    for i in range(5):
        store.record_run("ag", "code", T0 + timedelta(minutes=i), 1000 * (i + 1))
    store.record_run("ag", "docs", T0, 7)
    store.record_run("cline", "code", T0, 9)
    assert store.recent_runs("ag", "code", 3) == [5000, 4000, 3000]
    assert store.recent_runs("ag", "docs", 10) == [7]
    assert store.recent_runs("ag", "reasoning", 10) == []


def test_every_kept_run_can_be_listed_and_bulk_loaded(store: StateStore) -> None:
    runs = [RunRecord("ag", "code", T0 + timedelta(minutes=2), 300), RunRecord("ag", "code", T0, 100),
            RunRecord("ag", "code", T0 + timedelta(minutes=1), 200), RunRecord("ag", "code", T0, 100),
            RunRecord("cline", "docs", T0, 9), RunRecord("ag", "a:b/c d", LATER, 7)]
    assert store.import_runs(runs) == RunsImported(kept=6, displaced=0)
    assert store.import_runs([]) == RunsImported(0, 0)
    store.record_run("ag", "code", LATER, 400)
    # Grouped by (provider, specialization) in name order, each oldest first; two equal runs stay two.
    assert list(store.recorded_runs()) == [
        RunRecord("ag", "a:b/c d", LATER, 7),
        RunRecord("ag", "code", T0, 100), RunRecord("ag", "code", T0, 100),
        RunRecord("ag", "code", T0 + timedelta(minutes=1), 200),
        RunRecord("ag", "code", T0 + timedelta(minutes=2), 300),
        RunRecord("ag", "code", LATER, 400),
        RunRecord("cline", "docs", T0, 9),
    ]
    assert store.recent_runs("ag", "code", 3) == [400, 300, 200]  # bulk-loaded runs count like recorded ones
    assert store.recent_runs("ag", "a:b/c d", 5) == [7]


def test_bulk_loading_runs_moves_the_runs_change_count(store: StateStore) -> None:
    before = store.change_counts()
    version = store.version()
    store.import_runs([RunRecord("ag", "code", T0, 1)])
    assert store.version() != version
    after = store.change_counts()
    if before is not None and after is not None:  # Redis keeps no counter per kind
        assert [k for k, b, a in zip(CHANGE_KINDS, before, after, strict=True) if b != a] == ["runs"]


def test_every_backend_keeps_the_newest_runs_of_a_group_when_bulk_loading(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "RUNS_KEPT", 3)
    monkeypatch.setattr(redis_store, "IMPORT_BATCH", 2)  # Redis: several pipelines, the last one not full
    store.record_run("ag", "code", T0 + timedelta(minutes=10), 10)
    store.record_run("ag", "docs", T0, 99)  # another group: untouched
    runs = [RunRecord("ag", "code", T0 + timedelta(minutes=i), i) for i in range(5)]
    # Of 0..4 and 10 the newest 3 stay: 3, 4 of the bulk load, and the run that was there.
    assert store.import_runs(runs) == RunsImported(kept=2, displaced=0)
    assert [run.tokens for run in store.recorded_runs()] == [3, 4, 10, 99]
    # Older than all kept: not kept.
    assert store.import_runs([RunRecord("ag", "code", T0 - timedelta(days=1), 98)]) == RunsImported(0, 0)
    assert store.recent_runs("ag", "code", 10) == [10, 4, 3]
    # Newer ones push the store's own out, and say how many.
    newer = [RunRecord("ag", "code", LATER + timedelta(minutes=i), 100 + i) for i in range(2)]
    assert store.import_runs(newer) == RunsImported(kept=2, displaced=2)
    assert store.recent_runs("ag", "code", 10) == [101, 100, 10]
    assert store.recent_runs("ag", "docs", 10) == [99]


def test_every_backend_drops_a_groups_oldest_run_as_a_new_one_is_recorded(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording a run past the cap drops the group's oldest: a store that runs for years stays bounded (SQLite
    and memory kept every run before)."""
    monkeypatch.setattr(base, "RUNS_KEPT", 3)
    for minutes in range(10):
        store.record_run("ag", "code", T0 + timedelta(minutes=minutes), minutes)
    assert store.recent_runs("ag", "code", 10) == [9, 8, 7]
    assert [run.tokens for run in store.recorded_runs()] == [7, 8, 9]
    # A run recorded late with an old time is the oldest: it is the one dropped.
    store.record_run("ag", "code", T0 - timedelta(days=1), 42)
    assert store.recent_runs("ag", "code", 10) == [9, 8, 7]


def test_redis_lists_only_its_own_runs_among_other_prefixes(request: pytest.FixtureRequest, redis_url: str,
                                                            redis_prefix: str) -> None:
    # Runs are found by a key pattern: neither a prefix holding pattern characters nor another fleet whose prefix
    # is ours + "runs:" (its keys have the same shape) may leak into the listing.
    mine = RedisStore(redis_url, key_prefix=f"{redis_prefix}[a]*:", clock=T0.timestamp)
    lookalike = RedisStore(redis_url, key_prefix=f"{redis_prefix}abcd:", clock=T0.timestamp)
    nested = RedisStore(redis_url, key_prefix=f"{redis_prefix}[a]*:runs:", clock=T0.timestamp)
    with mine, lookalike, nested:
        lookalike.record_run("ag", "code", T0, 1)
        nested.acquire_slot("slots", "4242-0123456789ab", 2, T0, LATER)  # {p}runs:slots:slots, a sorted set
        nested.record_run("ag", "code", T0, 2)  # {p}runs:runs:ag:code: three names, not a runs key of ours
        assert list(mine.recorded_runs()) == []
        mine.record_run("ag", "code", T0, 3)
        assert list(mine.recorded_runs()) == [RunRecord("ag", "code", T0, 3)]
        assert [run.tokens for run in lookalike.recorded_runs()] == [1]


def test_redis_export_names_a_damaged_run_rather_than_dropping_its_group(redis_url: str, redis_prefix: str) -> None:
    """One hand-added member among a group's runs: the listing says which (as recent_runs does), instead of
    leaving the group out, which an export and import would lose without a word."""
    store = RedisStore(redis_url, key_prefix=redis_prefix, clock=T0.timestamp)
    with store:
        store.record_run("p", "code", T0, 5)
        for damaged in ("oops", "-5 zz", "1_000 q"):  # not a count, a negative one, Python's digit separator
            store._client.zadd(f"{redis_prefix}runs:p:code", {damaged: T0.timestamp()})
            with pytest.raises(StateStoreError, match=rf"damaged: key .*runs:p:code .*ZREM .*{damaged}"):
                list(store.recorded_runs())
            with pytest.raises(StateStoreError, match=rf"ZREM .*{damaged}"):
                store.recent_runs("p", "code", 10)
            store._client.zrem(f"{redis_prefix}runs:p:code", damaged)
        assert store.recent_runs("p", "code", 10) == [5]


def test_two_sqlite_connections_see_each_others_reservation(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    with SqliteStore(path) as a, SqliteStore(path) as b:
        assert a.reserve("ag", "ag-01", "coordinator-a", 30000, T0, LATER) == {}
        # b decides at the same instant: its reservation sees a's, so it can move to another account.
        assert b.reserve("ag", "ag-01", "coordinator-b", 30000, T0, LATER) == {"ag-01": 30000}
        assert totals(a, T0) == {("ag", "ag-01"): 60000}
