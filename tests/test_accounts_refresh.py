"""The account snapshot after another process writes: new usage rows are applied incrementally (no re-read of
the period), a roll-up falls back to a full re-read, and writes by others are seen within the store's
documented staleness bound (checked with an injected monotonic clock, never with timings)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adws.accounts import StatefulAccounts
from adws.availability import Availability
from adws.compiled import CompiledConfig
from adws.config.load import compile_config, parse_toml
from adws.state import ABSENT_VERSION, STORES, PendingStore, SqliteStore, StateStore
from tests.test_accounts import WEDNESDAY, config_text, use


class Ticks:
    """An injected monotonic clock (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def config() -> CompiledConfig:
    return compile_config(parse_toml(config_text()), "test-config")


def accounts_on(store: StateStore) -> StatefulAccounts:
    return StatefulAccounts(dict(config().providers), Availability({}, lambda name: f"/bin/{name}"), store)


def order(accounts: StatefulAccounts, now: Any = WEDNESDAY) -> list[str]:
    accounts.generation(now)
    return accounts.rank(config().providers["claude"], None, now).eligible


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SqliteStore, SqliteStore]]:
    """A reader and a writer on one SQLite file: two connections, as two processes would hold."""
    path = str(tmp_path / "state.sqlite3")
    with SqliteStore(path) as reader, SqliteStore(path) as writer:
        yield reader, writer


def count_totals(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = store.usage_totals

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "usage_totals", counted)
    return calls


def test_rows_written_by_another_process_are_applied_without_re_reading_the_period(
        pair: tuple[SqliteStore, SqliteStore], monkeypatch: pytest.MonkeyPatch) -> None:
    reader, writer = pair
    use(writer, "a", 40_000)
    accounts = accounts_on(reader)
    totals = count_totals(reader, monkeypatch)
    assert order(accounts) == ["b", "c", "a"]
    reads = totals[0]
    use(writer, "b", 60_000)
    use(writer, "c", 1_000, at=WEDNESDAY - timedelta(days=30))  # before the weekly period: counts nothing
    use(writer, "c", 10_000)
    assert order(accounts) == ["c", "a", "b"]
    assert totals[0] == reads  # applied from the rows since the cursor
    assert order(accounts_on(reader)) == ["c", "a", "b"]  # what a full read answers


def test_a_roll_up_by_another_process_falls_back_to_a_full_read(
        pair: tuple[SqliteStore, SqliteStore], monkeypatch: pytest.MonkeyPatch) -> None:
    reader, writer = pair
    early = WEDNESDAY - timedelta(hours=5)
    use(writer, "a", 30_000, at=early)
    use(writer, "a", 30_000, at=early + timedelta(minutes=1))
    accounts = accounts_on(reader)
    totals = count_totals(reader, monkeypatch)
    assert order(accounts) == ["b", "c", "a"]
    reads = totals[0]
    assert writer.roll_up(WEDNESDAY) == 1
    use(writer, "b", 70_000)
    assert order(accounts) == ["c", "a", "b"]
    assert totals[0] > reads  # the cursor was refused: usage re-read from the totals
    use(writer, "c", 80_000)
    assert order(accounts) == ["a", "b", "c"]


@pytest.mark.parametrize("backend", sorted(set(STORES) - {"redis"}))
def test_incremental_answers_match_a_fresh_read_on_each_backend(backend: str, tmp_path: Path) -> None:
    store = STORES[backend](str(tmp_path / "state.sqlite3"))
    accounts = accounts_on(store)
    for step, (account, tokens) in enumerate([("a", 20_000), ("b", 5_000), ("c", 30_000), ("b", 40_000)]):
        use(store, account, tokens, at=WEDNESDAY - timedelta(minutes=step))
        assert order(accounts) == order(accounts_on(store))
    store.close()


def _seen_at_the_bound(reader: SqliteStore, writer: SqliteStore, ticks: Ticks, inside: float, rest: float) -> Any:
    """Another connection's write is not yet seen `inside` seconds later on the reader's clock, and is `rest`
    seconds after that (the bound); returns the reader's accounts (order a, b, c before the write, b, c, a after)."""
    accounts = accounts_on(reader)
    assert order(accounts) == ["a", "b", "c"]
    use(writer, "a", 50_000)
    ticks.now += inside
    assert order(accounts) == ["a", "b", "c"]  # inside the bound the snapshot may be stale
    ticks.now += rest
    assert order(accounts) == ["b", "c", "a"]  # at the bound it is not
    return accounts


def test_another_process_write_is_seen_within_the_poll_interval(tmp_path: Path) -> None:
    ticks = Ticks()
    path = str(tmp_path / "state.sqlite3")
    with SqliteStore(path, poll_interval_s=0.005, monotonic=ticks) as reader, SqliteStore(path) as writer:
        assert reader.staleness_s == 0.005
        _seen_at_the_bound(reader, writer, ticks, 0.004, 0.001)


def test_a_pending_store_looks_for_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    ticks = Ticks()
    path = tmp_path / "state.sqlite3"
    looks: list[str] = []
    backend = STORES["sqlite"]

    def exists(location: str) -> bool:
        looks.append(location)
        return Path(location).exists()

    pending = PendingStore(dataclasses.replace(backend, exists=exists), str(path),
                           poll_interval_s=0.005, monotonic=ticks)
    assert pending.staleness_s == 0.005
    assert [pending.version() for _ in range(3)] == [ABSENT_VERSION] * 3
    assert len(looks) == 1
    with SqliteStore(str(path)) as other:
        use(other, "a", 1)
    ticks.now += 0.004
    assert pending.version() == ABSENT_VERSION  # created elsewhere, not looked for yet
    ticks.now += 0.001
    assert pending.version() != ABSENT_VERSION
    assert len(looks) == 2
    pending.close()


def test_a_pending_store_sees_its_own_write_at_once(tmp_path: Path) -> None:
    ticks = Ticks()
    backend = STORES["sqlite"]
    pending = PendingStore(backend, str(tmp_path / "state.sqlite3"), poll_interval_s=60, monotonic=ticks)
    accounts = accounts_on(pending)
    assert order(accounts) == ["a", "b", "c"]
    use(pending, "a", 50_000)
    assert order(accounts) == ["b", "c", "a"]
    pending.close()


def test_a_sqlite_store_opened_for_a_config_sees_another_process_write_within_its_bound(tmp_path: Path) -> None:
    from adws.state import SQLITE_POLL_S, open_store

    ticks = Ticks()
    path = str(tmp_path / "state.sqlite3")
    SqliteStore(path).close()
    reader = open_store("sqlite", path, env={}, monotonic=ticks)
    assert reader.staleness_s == SQLITE_POLL_S == 0.002
    with SqliteStore(path) as writer:
        accounts = _seen_at_the_bound(reader, writer, ticks, 0.0019, 0.0001)
        use(reader, "b", 60_000)
        assert order(accounts) == ["c", "a", "b"]  # this process's own write: at once
    reader.close()
