"""The store's part of issue 11, on every backend: reservations (leases that carry tokens), observations of real
usage, and learned runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adws.state import STORES, SqliteStore, StateStore
from adws.state.base import Observation
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
    store.record_observation(later)
    store.record_observation(first)  # older: does not replace the later reading
    store.record_observation(Observation("ag", "ag-01/claude", T0, 5.0, "usage_command"))
    assert store.observations() == {("ag", "ag-01"): later,
                                    ("ag", "ag-01/claude"): Observation("ag", "ag-01/claude", T0, 5.0,
                                                                        "usage_command")}
    newer = Observation("ag", "ag-01", LATER + timedelta(minutes=1), 70.0, "usage_command", 1.0, 2.0, LATER)
    store.record_observation(newer)
    assert store.observations()[("ag", "ag-01")] == newer


def test_recent_runs_newest_first_per_provider_and_specialization(store: StateStore) -> None:
    for i in range(5):
        store.record_run("ag", "code", T0 + timedelta(minutes=i), 1000 * (i + 1))
    store.record_run("ag", "docs", T0, 7)
    store.record_run("cline", "code", T0, 9)
    assert store.recent_runs("ag", "code", 3) == [5000, 4000, 3000]
    assert store.recent_runs("ag", "docs", 10) == [7]
    assert store.recent_runs("ag", "reasoning", 10) == []


def test_two_sqlite_connections_see_each_others_reservation(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    with SqliteStore(path) as a, SqliteStore(path) as b:
        assert a.reserve("ag", "ag-01", "coordinator-a", 30000, T0, LATER) == {}
        # b decides at the same instant: its reservation sees a's, so it can move to another account.
        assert b.reserve("ag", "ag-01", "coordinator-b", 30000, T0, LATER) == {"ag-01": 30000}
        assert totals(a, T0) == {("ag", "ag-01"): 60000}
