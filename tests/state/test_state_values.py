"""Values no adws writes, read back: every backend checks the type and range of each value it reads (a figure below 0
or beyond what a row holds, NaN, infinity, a BLOB where text goes, a lease longer than any run) and reports it as
damage in one line (SQLite naming the file, Redis the key and the command that removes the entry), never a wrong
quota, a negative median or a traceback after the agent ran."""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from adws.attempt import Usage
from adws.state import BreakerState, Cooldown, RedisStore, SqliteStore, StateStoreError, UsageRecord
from adws.state.base import CHANGE_KINDS, Observation
from adws.state.maintenance import StateImportError, export_lines, import_lines
from adws.state.memory import MemoryStore
from tests.state.test_state import T0

LATER = T0 + timedelta(minutes=5)


def _fill(store: Any) -> None:
    store.record_usage(UsageRecord("p", "a", T0, Usage(1, 100, 50, 0.5), "m", "t1"))
    store.set_cooldown("p", "a", Cooldown(LATER, "rate_limited"))
    store.next_cursor("rr")
    store.set_sticky("s", "a")
    store.update_breaker("p", lambda _: BreakerState("open", 3, T0))
    store.acquire_slot("p", "h", 2, T0, LATER)
    store.reserve("p", "a", "h", 1_000, T0, LATER)
    store.record_observation(Observation("p", "a", T0, 40.0, "test", used=4.0, limit=10.0))
    for _ in range(5):
        store.record_run("p", "general", T0, 1_000)


# (SQL that damages a store, what reads it): every value kind adws reads.
SQLITE: dict[str, tuple[str, Callable[[SqliteStore], object]]] = {
    "model a BLOB": ("UPDATE usage SET model = x'fffe'", lambda s: list(export_lines(s, T0))),
    "task id a BLOB": ("UPDATE usage SET task_id = x'07'", lambda s: list(s.usage_records())),
    "negative usage in totals": ("UPDATE usage SET requests = -5000000, input_tokens = -90000",
                                 lambda s: s.usage_totals({"p": T0})),
    "negative usage in records": ("UPDATE usage SET input_tokens = -90000", lambda s: list(s.usage_records())),
    "text usage in totals": ("UPDATE usage SET output_tokens = 'lots'", lambda s: s.usage_totals({"p": T0})),
    "huge usage": ("UPDATE usage SET input_tokens = 1e19", lambda s: s.usage_totals({"p": T0})),
    "infinite cost": ("UPDATE usage SET cost_usd = 1e999", lambda s: s.usage_totals({"p": T0})),
    "estimated 7": ("UPDATE usage SET estimated = 7", lambda s: s.usage_totals({"p": T0})),
    "time infinite": ("UPDATE usage SET at = 1e999", lambda s: list(s.usage_records())),
    "cursor at the top": ("UPDATE cursors SET value = 9223372036854775807", lambda s: s.next_cursor("rr")),
    "cursor peeked": ("UPDATE cursors SET value = -4", lambda s: s.peek_cursor("rr")),
    "cursor listed": ("UPDATE cursors SET value = 1.5", lambda s: s.cursors()),
    "sticky a BLOB": ("UPDATE sticky SET value = x'00'", lambda s: s.get_sticky("s")),
    "sticky listed": ("UPDATE sticky SET value = x'03'", lambda s: s.sticky_choices()),
    "negative runs": ("UPDATE runs SET tokens = -500", lambda s: s.recent_runs("p", "general", 5)),
    "runs listed": ("UPDATE runs SET tokens = 1e20", lambda s: list(s.recorded_runs())),
    "cooldown for ever": ("UPDATE cooldowns SET until = 1e999", lambda s: s.cooldowns(T0)),
    "cooldown reason a BLOB": ("UPDATE cooldowns SET reason = x'01'", lambda s: s.cooldowns(T0)),
    "breaker opened at infinity": ("UPDATE breakers SET opened_at = 1e999", lambda s: s.breakers()),
    "breaker failures negative": ("UPDATE breakers SET failures = -1", lambda s: s.get_breaker("p")),
    "lease for ever": ("UPDATE slots SET until = 1e999", lambda s: s.active_slots(T0)),
    "lease for a year": (f"UPDATE slots SET until = {(T0 + timedelta(days=365)).timestamp()}",
                         lambda s: s.active_slots(T0)),
    "reservation negative": ("UPDATE reservations SET tokens = -1000", lambda s: s.reservations(T0)),
    "reservation for ever": ("UPDATE reservations SET until = 1e999", lambda s: s.reservations(T0)),
    "reservation summed": ("UPDATE reservations SET tokens = -1000",
                           lambda s: s.reserve("p", "a", "other", 1, T0, LATER)),
    "observed use negative": ("UPDATE observations SET used = -5", lambda s: s.observations()),
    "observed limit zero": ("UPDATE observations SET usage_limit = 0", lambda s: s.observations()),
    "observed percent infinite": ("UPDATE observations SET percent = 1e999", lambda s: s.observations()),
    "observation source a BLOB": ("UPDATE observations SET source = x'01'", lambda s: s.observations()),
}


def _damaged(tmp_path: Path, case: str) -> tuple[Path, Callable[[SqliteStore], object]]:
    """A filled store damaged by SQLITE[case]'s statement, and the read that meets the damage."""
    statement, read = SQLITE[case]
    path = tmp_path / "state.sqlite3"
    with SqliteStore(str(path)) as store:
        _fill(store)
    with sqlite3.connect(path) as db:
        db.execute(statement)
    db.close()
    return path, read


@pytest.mark.parametrize("case", list(SQLITE))
def test_sqlite_reports_a_value_it_never_writes_as_damage(tmp_path: Path, case: str) -> None:
    path, read = _damaged(tmp_path, case)
    with SqliteStore(str(path)) as store, pytest.raises(StateStoreError) as exc:
        read(store)
    message = str(exc.value)
    assert message.startswith(f"state store {path} is damaged: table ") and "\n" not in message
    # One row's damage names that row and the statement removing it; moving the file aside would lose the rest.
    assert "move the file aside" not in message and f"(sqlite3 {path} \"DELETE FROM " in message


ROW_FIX = re.compile(r'is damaged: table (\w+), row (.*), column (\w+) holds .*; remove that row '
                     r'\(sqlite3 \S+ "(.*)"\) and the rest of the state stays$')


@pytest.mark.parametrize("case", list(SQLITE))
def test_sqlite_names_the_damaged_row_and_the_statement_that_removes_only_it(tmp_path: Path, case: str) -> None:
    path, read = _damaged(tmp_path, case)
    with SqliteStore(str(path)) as store:  # written after the damage: undamaged rows of another account
        store.record_usage(UsageRecord("q", "b", T0, Usage(1, 7, 7)))
        store.set_cooldown("q", "b", Cooldown(LATER, "rate_limited"))
    with sqlite3.connect(path) as db:
        sizes = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                 for table in ("usage", "cooldowns", "cursors", "sticky", "breakers", "slots", "reservations",
                               "observations", "runs")}
    db.close()
    for _ in range(10):  # one damaged row per turn (a run's damage touched all five of them)
        try:
            with SqliteStore(str(path)) as store:
                read(store)
            break
        except StateStoreError as exc:
            found = ROW_FIX.search(str(exc))
            assert found is not None, str(exc)
            table, row, column, fix = found.groups()
            assert fix == f"DELETE FROM {table} WHERE {row}" and column in str(exc)
            with sqlite3.connect(path) as db:
                assert db.execute(fix).rowcount == 1
            db.close()
            sizes[table] -= 1
    else:
        pytest.fail("the store stayed damaged")
    written = {"cursor at the top": "cursors", "reservation summed": "reservations"}.get(case)
    if written is not None:
        sizes[written] += 1  # the read is a write: it adds its own row once the damaged one is gone
    with sqlite3.connect(path) as db:  # only damaged rows went
        assert sizes == {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in sizes}
    db.close()
    with SqliteStore(str(path)) as store:
        assert store.usage_totals({"q": T0}) == {("q", "b"): Usage(1, 7, 7)}


def test_a_damaged_sqlite_row_is_one_line_naming_table_row_column_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with SqliteStore(str(path)) as store:
        _fill(store)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE breakers SET state = 'melted'")
    db.close()
    with SqliteStore(str(path)) as store, pytest.raises(StateStoreError) as exc:
        store.get_breaker("p")
    assert str(exc.value) == (
        f"state store {path} is damaged: table breakers, row provider = 'p', column state holds a value this adws "
        "cannot read (breaker state must be one of closed, open, half_open, got 'melted'); remove that row (sqlite3 "
        f"{path} \"DELETE FROM breakers WHERE provider = 'p'\") and the rest of the state stays")


def test_a_missing_change_counter_names_the_statement_that_adds_it(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    SqliteStore(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM changes WHERE kind = 'runs'")
    db.close()
    with SqliteStore(str(path)) as store, pytest.raises(StateStoreError) as exc:
        store.change_counts()
    assert str(exc.value) == (
        f"state store {path} is damaged: table changes, row kind = 'runs' is missing; add it, above any value it "
        f"held, so that no reader's cached state looks current (sqlite3 {path} \"INSERT INTO changes (kind, n) VALUES "
        "('runs', CAST(strftime('%s', 'now') AS INTEGER) * 1000000)\") and the rest of the state stays")


def test_a_damaged_cursor_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with SqliteStore(str(path)) as store:
        _fill(store)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE cursors SET value = 9223372036854775807")
    db.close()
    with SqliteStore(str(path)) as store, pytest.raises(StateStoreError):
        store.next_cursor("rr")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM cursors").fetchone() == (9223372036854775807,)  # nothing lost
    db.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


BAD_MEMBER = '-5000000 -90000 0 nan 1 aaaa1111bbbb2222 [null,"x"]'

# (how to damage the fleet's keys, what reads them, the redis-cli command the message gives).
REDIS: dict[str, tuple[Callable[[redis.Redis, str], Any], Callable[[RedisStore], object], str]] = {
    "negative usage in totals": (lambda c, p: c.zadd(f"{p}usage:p:a", {BAD_MEMBER: T0.timestamp()}),
                                 lambda s: s.usage_totals({"p": T0}), f"ZREM {{p}}usage:p:a '{BAD_MEMBER}'"),
    # Python's float() reads "1_000", Lua's tonumber does not: the script's verdict stands, as damage.
    "a figure only Python reads": (lambda c, p: c.zadd(f"{p}usage:p:a", {"1_000 100 50 0.5 0 aaaa1111bbbb2222 "
                                                                         "[null,null]": T0.timestamp()}),
                                   lambda s: s.usage_totals({"p": T0}), "ZREM {p}usage:p:a"),
    "NaN cost in records": (lambda c, p: c.zadd(f"{p}usage:p:a", {'1 1 1 nan 0 aaaa1111bbbb2222 [null,null]':
                                                                  T0.timestamp()}),
                            lambda s: list(export_lines(s, T0)), "ZREM {p}usage:p:a"),
    "lease for ever": (lambda c, p: c.zadd(f"{p}slots:p", {"h1": "inf"}), lambda s: s.active_slots(T0),
                       "DEL {p}slots:p"),
    "cursor too large": (lambda c, p: c.hset(f"{p}cursors", "rr", "99999999999999999"),
                         lambda s: s.peek_cursor("rr"), "HDEL {p}cursors rr"),
    "negative run": (lambda c, p: c.zadd(f"{p}runs:p:general", {"99999999999999 0123456789ab": T0.timestamp()}),
                     lambda s: s.recent_runs("p", "general", 5), "ZREM {p}runs:p:general"),
    "cooldown for ever": (lambda c, p: (c.sadd(f"{p}cooldowns", "p:a"),
                                        c.set(f"{p}cooldown:p:a", '["p", "a", 1e999, "x"]')),
                          lambda s: s.cooldowns(T0), "DEL {p}cooldown:p:a"),
    "breaker opened at infinity": (lambda c, p: c.hset(f"{p}breakers", "p", '["open", 1, 1e999]'),
                                   lambda s: s.breakers(), "HDEL {p}breakers p"),
    "observed use negative": (lambda c, p: (c.sadd(f"{p}observed", "p"), c.hset(f"{p}obs:p", "a", json.dumps(
        {"at": T0.timestamp(), "percent": 1.0, "source": "x", "used": -5, "limit": None, "reset_at": None}))),
        lambda s: s.observations(), "HDEL {p}obs:p a"),
}


@pytest.mark.parametrize("case", list(REDIS))
def test_redis_reports_a_value_it_never_writes_as_damage_naming_the_entry(
    case: str, redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    write, read, command = REDIS[case]
    with RedisStore(redis_url, key_prefix=redis_prefix, clock=T0.timestamp) as store:
        _fill(store)
        write(client, redis_prefix)
        with pytest.raises(StateStoreError) as exc:
            read(store)
    message = str(exc.value)
    assert message.startswith(f"state store {redis_url} is damaged: key {redis_prefix}") and "\n" not in message
    assert f"(redis-cli {command.format(p=redis_prefix)}" in message


def test_redis_reports_a_value_that_is_not_utf8_as_damage(redis_url: str, redis_prefix: str,
                                                          client: redis.Redis) -> None:
    with RedisStore(redis_url, key_prefix=redis_prefix, clock=T0.timestamp) as store:
        _fill(store)
        raw = redis.Redis.from_url(redis_url)  # bytes as another program writes them
        raw.hset(f"{redis_prefix}sticky", "k", b"\xff\xfe")
        raw.close()
        with pytest.raises(StateStoreError) as exc:
            store.get_sticky("k")
    message = str(exc.value)
    assert message.startswith(f"state store {redis_url} is damaged: a value under the prefix {redis_prefix} is not "
                              "UTF-8 text") and "\n" not in message
    assert "and remove it, and the rest of the state stays" in message and "redis-cli --scan --pattern " in message


def test_an_import_refuses_a_cooldown_longer_than_any_limit() -> None:
    header = {"kind": "adws-state", "version": 1, "exported_at": T0.isoformat()}
    line = {"kind": "cooldown", "provider": "p", "account": "a", "until": "2999-12-31T00:00:00+00:00",
            "reason": "quota_exhausted"}
    with MemoryStore() as store, pytest.raises(StateImportError) as exc:
        import_lines(store, [json.dumps(header), json.dumps(line)], "f", ["p"], T0)
    assert str(exc.value).startswith("f:2: until: '2999-12-31T00:00:00+00:00' is more than 400 days after the file's "
                                     "exported_at")
    line["until"] = "3000-01-01T00:00:00+00:00"  # what a store keeps for a reset announced beyond it: kept
    with MemoryStore() as store:
        assert import_lines(store, [json.dumps(header), json.dumps(line)], "f", ["p"], T0)["cooldown"] == 1
    line["until"] = (T0 + timedelta(days=366)).isoformat()  # a yearly reset: kept
    with MemoryStore() as store:
        assert import_lines(store, [json.dumps(header), json.dumps(line)], "f", ["p"], T0)["cooldown"] == 1


# Keys a task id or a name may hold, each next to the healthy key one_line made of it before (whitespace collapsed):
# the advice then removed the healthy row.
HOSTILE_KEYS = ["issue\t42", "issue\n42", "issue  42", "issue\xa042", "issue\x1c42", "issue\x1f42", "issue 42",
                "nul\x00key", "nul", "x" * 10_000, "x" * 9_999, "\x1b[31mred\x1b[0m", "\x1b]0;title\x07",
                "it's \"$HOME\" `id` \\ !x", "straße", "a" * 350 + "'"]


def _row_command(message: str) -> str | None:
    """The sqlite3 command a damage line advises, or None when it gives none."""
    found = re.search(r"; (?:remove that row|reset it, [^(]*?) \((sqlite3 .*)\) and the rest of the state stays$",
                      message)
    return None if found is None else found.group(1)


def test_sqlite_advice_for_a_hostile_key_removes_exactly_its_row_through_a_shell(tmp_path: Path) -> None:
    # Before, the statement went through one_line: tabs, newlines, runs of spaces, no-break spaces and \x1c-\x1f
    # became one space (the healthy 'issue 42' row was removed), a NUL and escape sequences reached the terminal raw,
    # a statement past 400 characters was cut short (its closing quote lost), and the path's two spaces became one.
    folder = tmp_path / "two  spaces $HOME 'q'"
    folder.mkdir()
    path = folder / "state.sqlite3"
    with SqliteStore(str(path)) as store:
        for key in HOSTILE_KEYS:
            store.set_sticky(key, "claude")
    remaining = set(HOSTILE_KEYS)
    for key in HOSTILE_KEYS:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE sticky SET value = x'01' WHERE key = ?", (key,))
        db.close()
        with SqliteStore(str(path)) as store, pytest.raises(StateStoreError) as exc:
            store.get_sticky(key)
        message = str(exc.value)
        assert message.isprintable(), message  # no control character reaches the terminal
        command = _row_command(message)
        if command is None:  # no statement cut short: too long to show, the row named by length and beginning
            assert len(key) > 300 and "the statement is too long to show" in message, message
            find = re.search(r"list the rows so named with (sqlite3 .*)\) and the rest", message)
            assert find is not None, message
            listed = subprocess.run(["bash", "-c", find.group(1)], capture_output=True, text=True, check=True)
            assert listed.stdout.split() == [key.encode().hex().upper()]
            with sqlite3.connect(path) as db:
                db.execute("DELETE FROM sticky WHERE key = ?", (key,))
            db.close()
        else:
            assert command is not None, message
            subprocess.run(["bash", "-c", command], check=True, capture_output=True)
        remaining.discard(key)
        with sqlite3.connect(path) as db:
            assert {k for (k,) in db.execute("SELECT key FROM sticky")} == remaining, key  # exactly that row went
        db.close()


def test_a_damaged_change_counter_is_advised_above_any_value_it_held(tmp_path: Path) -> None:
    # Before: "UPDATE changes SET n = 0", which a counter can count back up to a value a reader saw (readers compare
    # by equality): a stale cache would look current.
    path = tmp_path / "state.sqlite3"
    with SqliteStore(str(path)) as store:
        _fill(store)
    for damage in ("UPDATE changes SET n = 'x' WHERE kind = 'runs'", "DELETE FROM changes WHERE kind = 'runs'"):
        with sqlite3.connect(path) as db:
            db.execute(damage)
        db.close()
        with SqliteStore(str(path)) as store, pytest.raises(StateStoreError) as exc:
            store.change_counts()
        message = str(exc.value)
        assert "above any value it held, so that no reader's cached state looks current" in message
        found = re.search(r"\((sqlite3 .*)\) and the rest of the state stays$", message)
        assert found is not None, message
        subprocess.run(["bash", "-c", found.group(1)], check=True, capture_output=True)
        with SqliteStore(str(path)) as store:
            counts = dict(zip(CHANGE_KINDS, store.change_counts(), strict=True))
        assert counts["runs"] >= 10**15 and all(n < 10**6 for kind, n in counts.items() if kind != "runs")
        with sqlite3.connect(path) as db:
            db.execute("UPDATE changes SET n = 7 WHERE kind = 'runs'")
        db.close()


@pytest.mark.parametrize("prefix_tail", ["", "two  spaces\t\x1b[2J:"])
def test_redis_advice_for_a_hostile_field_or_key_removes_exactly_it_or_says_how_to_find_it(
        redis_url: str, redis_prefix: str, prefix_tail: str) -> None:
    # Before, the command went through one_line (a field 'issue\t42' became 'issue 42': another entry) and was cut
    # at 400 characters; escape sequences reached the terminal raw.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = redis_prefix + prefix_tail
    key = prefix + "breakers"
    try:
        with RedisStore(redis_url, key_prefix=prefix) as store:
            for name in HOSTILE_KEYS:
                client.hset(key, name, "not json")
            remaining = set(HOSTILE_KEYS)
            for name in HOSTILE_KEYS:
                with pytest.raises(StateStoreError) as exc:
                    store.get_breaker(name)
                message = str(exc.value)
                assert message.isprintable(), message
                fix = re.search(r"; remove it \((redis-cli .*), against that server\) and the rest", message)
                if fix is not None:
                    argv = shlex.split(fix.group(1))
                    assert argv[:2] == ["redis-cli", "HDEL"]
                    client.execute_command(*argv[1:])  # what redis-cli runs, on this test's server and database
                else:
                    assert "which a redis-cli command cannot carry exactly" in message, message
                    find = re.search(r"find (?:it|its entry starting .*?) with (redis-cli .*?), against", message)
                    assert find is not None, message
                    argv = shlex.split(find.group(1))
                    assert not prefix_tail or argv[1:3] == ["--scan", "--pattern"]
                    if argv[1] == "HSCAN":
                        cursor, matched = "0", []
                        for _ in range(100):
                            cursor, fields = client.execute_command(*argv[1:3], cursor, *argv[4:])
                            matched += list(fields)  # redis-py answers HSCAN with a dict
                            if cursor in ("0", 0):
                                break
                        assert name in matched
                    else:
                        assert key in set(client.scan_iter(match=argv[3], count=1000))
                    client.hdel(key, name)
                remaining.discard(name)
                assert set(client.hkeys(key)) == remaining, name  # exactly that field went
    finally:
        client.delete(key)
        client.close()
