"""Where an engine's one store lives: each backend locates its own, and a store not yet created reads empty."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adws.attempt import Usage
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.state import (
    STORES,
    Backend,
    MemoryStore,
    PendingStore,
    SqliteStore,
    StateStore,
    StateStoreError,
    open_configured,
)
from adws.state.base import UsageRecord

AT = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)


def test_sqlite_is_located_relative_to_the_config_and_the_environment_overrides_it(tmp_path: Path) -> None:
    store = open_configured("sqlite", "state/s.sqlite3", str(tmp_path), env={})
    assert isinstance(store, PendingStore) and store.location == str(tmp_path / "state" / "s.sqlite3")
    moved = open_configured("sqlite", "state/s.sqlite3", str(tmp_path),
                            env={"ADWS_STATE_PATH": str(tmp_path / "elsewhere.sqlite3")})
    assert isinstance(moved, PendingStore) and moved.location == str(tmp_path / "elsewhere.sqlite3")
    assert isinstance(open_configured("sqlite", ":memory:", str(tmp_path), env={}), SqliteStore)


@pytest.fixture
def url_backend() -> Iterator[list[str]]:
    opened: list[str] = []

    def factory(location: str) -> StateStore:
        opened.append(location)
        return MemoryStore()

    STORES["urlstore"] = Backend(factory)  # takes its location as written, like a networked backend
    yield opened
    del STORES["urlstore"]


def test_a_url_is_handed_to_its_backend_as_written(tmp_path: Path, url_backend: list[str]) -> None:
    open_configured("urlstore", "redis://cache.internal:6379/2", str(tmp_path), env={})
    assert url_backend == ["redis://cache.internal:6379/2"]


def test_a_pending_store_reads_empty_creates_nothing_and_is_created_by_the_first_write(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.sqlite3"
    store = open_configured("sqlite", str(path), str(tmp_path), env={})
    assert isinstance(store, PendingStore)
    assert (store.cooldowns(AT), store.breakers(), store.peek_cursor("k"), store.get_sticky("k")) == ({}, {}, 0, None)
    assert store.usage_totals({"p": AT}) == {} and store.active_slots(AT) == {}
    assert store.version() == -1
    assert not path.parent.exists()  # reading created nothing, not even the directory
    store.record_usage(UsageRecord("p", "default", AT, Usage(requests=1)))
    assert path.exists()
    assert store.usage_totals({"p": AT})[("p", "default")].requests == 1
    store.close()


def test_a_store_another_process_creates_is_seen_by_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = open_configured("sqlite", str(path), str(tmp_path), env={})
    before = store.version()
    with SqliteStore(str(path)) as other:
        other.record_usage(UsageRecord("p", "a", AT, Usage(requests=2)))
    # A read looks for the file at once; version() at most every PENDING_POLL_S (tests/test_accounts_refresh.py).
    assert store.usage_totals({"p": AT})[("p", "a")].requests == 2
    assert store.version() != before
    store.close()


def test_a_pending_store_says_where_it_cannot_create_its_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = open_configured("sqlite", str(tmp_path / "file" / "s.sqlite3"), str(tmp_path), env={})
    with pytest.raises(StateStoreError, match=r"^cannot create the state store's directory for .*/file/s\.sqlite3: "):
        store.set_sticky("k", "v")


def test_an_engine_keeps_one_store_and_routing_creates_no_file(tmp_path: Path) -> None:
    text = '[routing]\nchain = ["p"]\n[providers.p]\ncommand_template = ["agent", "{{ prompt }}"]\nprompt = "arg"\n' \
           '[state]\npath = "nested/state.sqlite3"\n'
    engine = Engine(compile_config(parse_toml(text), "t", base_dir=str(tmp_path)), environ={},
                    which=lambda name: f"/bin/{name}")
    store = engine.store
    assert engine.route({"title": "t"}).provider == "p"
    assert not (tmp_path / "nested").exists()
    assert engine.accounts.store is store and engine.manager.store is store
    engine.close()


@pytest.mark.parametrize("variable", ["ADWS_STATE_PATH", "ADWS_STATE_URL"])
def test_a_state_variable_set_but_empty_is_refused(variable: str, tmp_path: Path) -> None:
    # Taken as unset, the process would write to the configured store: the one the variable was set to avoid.
    with pytest.raises(StateStoreError, match=f"^{variable} is set but empty: name a "):
        open_configured("sqlite", "s.sqlite3", str(tmp_path), env={variable: ""})
    assert not (tmp_path / "s.sqlite3").exists()


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_a_redis_url_in_the_environment_is_refused_by_a_backend_that_does_not_read_it(
        backend: str, tmp_path: Path) -> None:
    # As `[state] url` under backend "sqlite" is a config error: the host would keep a private ledger.
    with pytest.raises(StateStoreError, match=f'^ADWS_STATE_URL is set, but the state backend is "{backend}"'):
        open_configured(backend, None, str(tmp_path), env={"ADWS_STATE_URL": "redis://localhost:6379/0"})
    # The path variable under a backend that does not read it is not refused: the configured store is used.
    assert isinstance(open_configured("memory", None, str(tmp_path), env={"ADWS_STATE_PATH": "x"}), MemoryStore)
