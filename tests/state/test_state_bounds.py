"""What a store does with values at the edge: times no datetime holds in UTC (kept at the nearest bound, on every
backend, and read back from a store an older adws wrote them into), values another program wrote into Redis (one
line naming the key, as SQLite reports a damaged file), and Redis's listing and bulk load of learned runs."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from adws.attempt import Usage
from adws.state import STORES, BreakerState, Cooldown, RedisStore, SqliteStore, StateStoreError, UsageRecord, base
from adws.state.base import EARLIEST, FUTURE_TOLERANCE, LATEST, Observation, RunRecord, RunsImported
from tests.state.test_state import T0, open_backend

# The year 9999 in its zone is the year 10000 in UTC, the year 1 in its zone the year 0 in UTC: no datetime holds
# either, so a store that kept their epoch could not turn it back into a time (`from_epoch`).
FAR_FUTURE = datetime.fromisoformat("9999-12-31T23:59:59-01:00")
FAR_PAST = datetime.fromisoformat("0001-01-01T00:00:00+01:00")
LATER = T0 + timedelta(minutes=30)


@pytest.mark.parametrize("backend", sorted(STORES))
def test_a_time_no_utc_datetime_holds_is_kept_at_the_nearest_bound(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with open_backend(backend, request, tmp_path) as store:
        store.record_usage(UsageRecord("p", "a", FAR_PAST, Usage(input_tokens=1)))
        store.set_cooldown("p", "a", Cooldown(FAR_FUTURE, "quota_exhausted"))  # a reset an agent CLI announced
        store.update_breaker("p", lambda _: BreakerState("open", 1, FAR_PAST))
        assert store.record_observation(Observation("p", "a", FAR_PAST, 100.0, "p output (seven_day)",
                                                    reset_at=FAR_FUTURE))
        store.record_run("p", "general", FAR_FUTURE, 5)
        assert store.import_runs([RunRecord("p", "code", FAR_PAST, 7)]).kept == 1
        with pytest.raises(ValueError, match="a lease cannot be longer than 7 days, 1:01:00"):
            store.acquire_slot("p", "h", 1, T0, FAR_FUTURE)  # no run holds one longer: a caller's mistake
        with pytest.raises(ValueError, match="a reservation cannot be longer than 7 days, 1:01:00"):
            store.reserve("p", "a", "h", 10, T0, FAR_FUTURE)
        # Every read works, and says what the store keeps: the bound nearest to the time given.
        assert [r.at for r in store.usage_records()] == [EARLIEST]
        assert store.oldest_usage("p", "a", EARLIEST) == EARLIEST
        assert store.cooldowns(T0) == {("p", "a"): Cooldown(LATEST, "quota_exhausted")}
        assert store.breakers() == {"p": BreakerState("open", 1, EARLIEST)}
        assert store.observations() == {("p", "a"): Observation("p", "a", EARLIEST, 100.0, "p output (seven_day)",
                                                                reset_at=LATEST)}
        assert list(store.recorded_runs()) == [RunRecord("p", "code", EARLIEST, 7),
                                               RunRecord("p", "general", LATEST, 5)]
        assert store.active_slots(T0) == {}
        assert store.reservations(T0) == {}


def _poison_sqlite(path: Path) -> None:
    """Times no datetime holds, as an adws before the bounds wrote them (an import of a far-zoned year 9999)."""
    with SqliteStore(str(path)) as store:
        store.record_usage(UsageRecord("p", "a", T0, Usage(input_tokens=1)))
        store.set_cooldown("p", "a", Cooldown(LATER, "quota_exhausted"))
        store.record_observation(Observation("p", "a", T0, 100.0, "usage_command", reset_at=LATER))
        store.record_run("p", "general", T0, 5)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE usage SET at = ?", (FAR_PAST.timestamp(),))
        db.execute("UPDATE cooldowns SET until = ?", (FAR_FUTURE.timestamp(),))
        db.execute("UPDATE observations SET at = ?, reset_at = ?", (FAR_PAST.timestamp(), FAR_FUTURE.timestamp()))
        db.execute("UPDATE runs SET at = ?", (FAR_FUTURE.timestamp(),))
    db.close()


def test_a_sqlite_store_an_older_adws_wrote_such_times_into_reads_again(tmp_path: Path) -> None:
    # Before, every command said "damaged ... move the file aside": all state lost over one imported line.
    path = tmp_path / "state.sqlite3"
    _poison_sqlite(path)
    with SqliteStore(str(path)) as store:
        assert [r.at for r in store.usage_records()] == [EARLIEST]
        assert store.cooldowns(T0) == {("p", "a"): Cooldown(LATEST, "quota_exhausted")}
        assert store.observations() == {("p", "a"): Observation("p", "a", EARLIEST, 100.0, "usage_command",
                                                                reset_at=LATEST)}
        assert list(store.recorded_runs()) == [RunRecord("p", "general", LATEST, 5)]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


def test_a_redis_store_an_older_adws_wrote_such_times_into_reads_again(
    redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    # Before, every command of every host raised "ValueError: year 10000 is out of range".
    with RedisStore(redis_url, key_prefix=redis_prefix, clock=T0.timestamp) as store:
        store.record_observation(Observation("p", "a", T0, 100.0, "usage_command", reset_at=LATER))
        key = f"{redis_prefix}obs:p"
        value = json.loads(client.hget(key, "a") or "")
        client.hset(key, "a", json.dumps({**value, "at": FAR_PAST.timestamp(), "reset_at": FAR_FUTURE.timestamp()}))
        store.set_cooldown("p", "a", Cooldown(LATER, "quota_exhausted"))
        client.set(f"{redis_prefix}cooldown:p:a", json.dumps(["p", "a", FAR_FUTURE.timestamp(), "quota_exhausted"]))
        assert store.observations() == {("p", "a"): Observation("p", "a", EARLIEST, 100.0, "usage_command",
                                                                reset_at=LATEST)}
        assert store.cooldowns(T0) == {("p", "a"): Cooldown(LATEST, "quota_exhausted")}


# Values another program (or a hand edit) left under our keys: what to write, the read that meets it, the entry named.
DAMAGE: dict[str, tuple[Callable[[redis.Redis, str], Any], Callable[[RedisStore], object], str]] = {
    "cursor": (lambda c, p: c.hset(f"{p}cursors", "rr:p", "many"), lambda s: s.cursors(), "HDEL {p}cursors rr:p"),
    "cursor peeked": (lambda c, p: c.hset(f"{p}cursors", "rr:p", "many"), lambda s: s.peek_cursor("rr:p"),
                      "HDEL {p}cursors rr:p"),
    "breaker": (lambda c, p: c.hset(f"{p}breakers", "p", "["), lambda s: s.breakers(), "HDEL {p}breakers p"),
    "breaker updated": (lambda c, p: c.hset(f"{p}breakers", "p", '["melted", 0, null]'),
                        lambda s: s.update_breaker("p", lambda b: b), "HDEL {p}breakers p"),
    "observation": (lambda c, p: (c.sadd(f"{p}observed", "p"), c.hset(f"{p}obs:p", "a", '{"at": "noon"}')),
                    lambda s: s.observations(), "HDEL {p}obs:p a"),
    "cooldown": (lambda c, p: (c.sadd(f"{p}cooldowns", "p:a"), c.set(f"{p}cooldown:p:a", "not json")),
                 lambda s: s.cooldowns(T0), "DEL {p}cooldown:p:a"),
    "usage row": (lambda c, p: (c.sadd(f"{p}providers", "p"), c.sadd(f"{p}accounts:p", "a"),
                                c.zadd(f"{p}usage:p:a", {"1 2": T0.timestamp()})),
                  lambda s: list(s.usage_records()), "ZREM {p}usage:p:a '1 2'"),
    "run": (lambda c, p: c.zadd(f"{p}runs:p:general", {"lots 0123456789ab": T0.timestamp()}),
            lambda s: s.recent_runs("p", "general", 5), "ZREM {p}runs:p:general 'lots 0123456789ab'"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_value_redis_holds_that_adws_cannot_read_is_one_line_naming_its_key(
    case: str, redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    write, read, entry = DAMAGE[case]
    write(client, redis_prefix)
    with RedisStore(redis_url, key_prefix=redis_prefix, clock=T0.timestamp) as store, \
            pytest.raises(StateStoreError) as exc:
        read(store)
    message = str(exc.value)
    assert message.startswith(f"state store {redis_url} is damaged: key {redis_prefix}")
    assert f"(redis-cli {entry.format(p=redis_prefix)}, against that server) and the rest of the state stays" in message
    assert "\n" not in message


def test_a_usage_log_entry_adws_cannot_read_names_the_log(redis_url: str, redis_prefix: str,
                                                          client: redis.Redis) -> None:
    with RedisStore(redis_url, key_prefix=redis_prefix, clock=T0.timestamp) as store:
        cursor = store.usage_cursor()
        client.rpush(f"{redis_prefix}log", "p a noon 1 2 3")
        with pytest.raises(StateStoreError) as exc:
            store.usage_since(cursor)
        assert f"key {redis_prefix}log holds a value this adws cannot read" in str(exc.value)
        assert f"(redis-cli DEL {redis_prefix}log, against that server)" in str(exc.value)


def test_redis_lists_each_group_of_runs_once_in_one_read(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_backend("redis", request, tmp_path) as store:
        assert isinstance(store, RedisStore)
        for specialization in ("code", "docs", "general"):
            store.record_run("ag", specialization, T0, len(specialization))
        # SCAN may return a key twice (the keyspace was resized while it ran): as if it did for every key.
        scan = store._client.scan_iter
        monkeypatch.setattr(store._client, "scan_iter", lambda **kw: [key for key in scan(**kw) for _ in (1, 2)])
        round_trips = []
        call = store._call
        monkeypatch.setattr(store, "_call", lambda fn, *a, **kw: (round_trips.append(fn), call(fn, *a, **kw))[1])
        assert list(store.recorded_runs()) == [RunRecord("ag", "code", T0, 4), RunRecord("ag", "docs", T0, 4),
                                               RunRecord("ag", "general", T0, 7)]
        assert len(round_trips) == 2  # the scan, then every group's runs in one pipeline (not one read per group)


def test_redis_writes_only_the_runs_it_keeps_and_counts_those_of_its_own_they_push_out(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: redis.Redis
) -> None:
    monkeypatch.setattr(base, "RUNS_KEPT", 3)
    with open_backend("redis", request, tmp_path) as store:
        assert isinstance(store, RedisStore)
        for minutes in (0, 1):
            store.record_run("ag", "code", T0 + timedelta(minutes=minutes), minutes)
        store.record_run("ag", "docs", T0, 99)  # another group: untouched

        def writes() -> int:
            return int(client.hget(f"{store.prefix}v", "n") or 0)  # one per write script run

        before = writes()
        runs = [RunRecord("ag", "code", T0 + timedelta(minutes=m), m) for m in (6, 2, 5, 3, 4)]
        # Of the store's 0, 1 and the file's 2..6 the newest 3 stay: 4, 5, 6; 2 and 3 are never written.
        assert store.import_runs(runs) == RunsImported(kept=3, displaced=2)
        assert writes() - before == 3
        assert store.recent_runs("ag", "code", 10) == [6, 5, 4]
        assert store.recent_runs("ag", "docs", 10) == [99]
        # Runs at one instant rank as Redis ranks them (by member after the time): the prediction holds at ties too.
        tied = [RunRecord("ag", "code", T0 + timedelta(minutes=5), 50 + i) for i in range(4)]
        result = store.import_runs(tied)
        kept = store.recent_runs("ag", "code", 10)
        assert len(kept) == 3 and 6 in kept
        # 4 went, and 5 unless it ranked above two of the file's at its instant.
        assert result == RunsImported(kept=len([t for t in kept if t >= 50]), displaced=1 + (5 not in kept))


# Keys of the wrong type, and counters that are not whole numbers: the server's error names no key ("WRONGTYPE ...
# script: 7c03..."), so the store finds the key and says how to remove it, as for a value it cannot read.
WRONG: dict[str, tuple[Callable[[redis.Redis, str], Any], Callable[[RedisStore], object], str, str]] = {
    "cursors a string": (lambda c, p: c.set(f"{p}cursors", "x"), lambda s: s.next_cursor("rr"),
                         "is a string, where adws keeps a hash", "DEL {p}cursors"),
    "counter a list": (lambda c, p: c.rpush(f"{p}v", "x"), lambda s: s.set_sticky("k", "v"),
                       "is a list, where adws keeps a hash", "DEL {p}v"),
    "counter not a number": (lambda c, p: c.hset(f"{p}v", "n", "abc"), lambda s: s.set_sticky("k", "v"),
                             # set anew above any value it held (microseconds since the epoch), not removed: readers
                             # compare it for equality, and counted up again from 0 it could look unchanged
                             "holds 'abc' in field n, not a whole number", "HSET {p}v n"),
    "cursor not a number": (lambda c, p: c.hset(f"{p}cursors", "rr", "many"), lambda s: s.next_cursor("rr"),
                            "holds 'many' for cursor 'rr', not a whole number", "HDEL {p}cursors rr"),
    "slots a string": (lambda c, p: (c.sadd(f"{p}slotted", "p"), c.set(f"{p}slots:p", "x")),
                       lambda s: s.acquire_slot("p", "h", 1, T0, T0 + timedelta(minutes=1)),
                       "is a string, where adws keeps a zset", "DEL {p}slots:p"),
    "usage a hash": (lambda c, p: (c.sadd(f"{p}providers", "p"), c.sadd(f"{p}accounts:p", "a"),
                                   c.hset(f"{p}usage:p:a", "x", "y")),
                     lambda s: s.usage_totals({"p": T0}), "is a hash, where adws keeps a zset", "DEL {p}usage:p:a"),
    "runs a string": (lambda c, p: c.set(f"{p}runs:p:general", "x"), lambda s: s.record_run("p", "general", T0, 5),
                      "is a string, where adws keeps a zset", "DEL {p}runs:p:general"),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_a_key_of_the_wrong_type_is_one_line_naming_it(
    case: str, redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    write, act, what, command = WRONG[case]
    write(client, redis_prefix)
    with RedisStore(redis_url, key_prefix=redis_prefix, clock=T0.timestamp) as store, \
            pytest.raises(StateStoreError) as exc:
        act(store)
    message = str(exc.value)
    assert what in message and "\n" not in message and "script:" not in message
    found = re.search(rf"\(redis-cli {re.escape(command.format(p=redis_prefix))}( \d+)?, against that server\) and "
                      "the rest of the state stays", message)
    assert found is not None, message
    assert (found.group(1) is not None) == command.startswith("HSET")
    assert found.group(1) is None or int(found.group(1)) > 10**15


def test_redis_judges_a_readings_time_on_the_servers_clock(
    request: pytest.FixtureRequest, tmp_path: Path, client: redis.Redis
) -> None:
    """A host whose clock is an hour ahead records a reading: Redis keeps it as of the server's time plus
    FUTURE_TOLERANCE, so the other hosts' readings are taken again within minutes, not after the hour; a reading
    already kept from further ahead (written before this bound) blocks nobody."""
    with open_backend("redis", request, tmp_path) as store:
        seconds, micros = client.time()
        server_now = datetime.fromtimestamp(seconds + micros / 1e6, UTC)
        ahead = Observation("ag", "acct", server_now + timedelta(hours=1), 80.0, "ag output (5h)")
        assert store.record_observation(ahead)
        (kept,) = store.observations().values()
        bound = server_now + FUTURE_TOLERANCE
        assert bound <= kept.at <= bound + timedelta(seconds=30) and kept.percent == 80.0
        assert kept.source == "ag output (5h)" and kept.reset_at is None  # the rest of the reading as it was
        # Within the tolerance, the later reading still wins: a host a minute behind does not replace it.
        assert not store.record_observation(Observation("ag", "acct", server_now, 10.0, "ag output (5h)"))
        # A reading kept from an hour ahead, as an older adws wrote it: the next real reading replaces it.
        key = f"{store.prefix}obs:ag"
        client.hset(key, "acct", json.dumps({"at": (server_now + timedelta(hours=1)).timestamp(), "percent": 99.0,
                                             "source": "old", "used": None, "limit": None, "reset_at": None}))
        assert store.record_observation(Observation("ag", "acct", server_now, 20.0, "ag output (5h)"))
        assert [o.percent for o in store.observations().values()] == [20.0]
