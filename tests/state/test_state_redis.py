"""What only a networked store has to get right: several hosts, processes that die, a server that restarts
or cannot be reached, keys that expire on their own, and how stale routing may be. Against a real
redis-server (tests/redis_server.py); the contract every backend meets is in test_state.py."""

from __future__ import annotations

import math
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings

from adws.attempt import Usage
from adws.cli import main
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.state import Cooldown, RedisStore, StateStoreError, open_store
from adws.state.redis_store import redact
from tests.helpers import CLAUDE_CONFIG, NOW, Clock, fake_env
from tests.redis_server import RedisServer, delete_prefix, free_port, new_prefix
from tests.state.test_state import (
    T0,
    Records,
    assert_agrees_with_memory,
    rec,
    records_strategy,
    since_strategy,
    until_strategy,
    worker,
)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


def location(url: str, prefix: str) -> str:
    return f"{url}#{prefix}"


# -- two hosts ---------------------------------------------------------------------------------------------


def host(tmp_path: Path, name: str, url: str, prefix: str, clock: Clock) -> tuple[Engine, dict[str, str]]:
    """A coordinator with its own directory (config, audit log, run dirs) and the fleet's Redis."""
    home = tmp_path / name
    home.mkdir()
    text = CLAUDE_CONFIG.replace("TIMEOUT", "30") + f'[state]\nbackend = "redis"\nurl = "{url}"\n'
    config = compile_config(parse_toml(text), f"{name}/config.toml", base_dir=str(home))
    env = {**fake_env(home, claude_a="error_result_exit0", claude_b="success"), "KEY_A": "ka", "KEY_B": "kb"}
    store = RedisStore(url, key_prefix=prefix, clock=lambda: clock().timestamp())
    return Engine(config, store=store, environ=env, clock=clock, sleep=lambda s: None), env


def test_a_cooldown_learned_on_one_host_stops_the_other_at_once(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    clock = Clock(NOW)
    first, _ = host(tmp_path, "host-a", redis_url, redis_prefix, clock)
    second, _ = host(tmp_path, "host-b", redis_url, redis_prefix, clock)
    assert second.route({"title": "t"}).account == "a"

    result = first.run({"title": "t"}, prompt="p", workdir=tmp_path)
    assert [(a.account, a.outcome) for a in result.attempts] == [("a", "rate_limited"), ("b", "success")]

    # Host B's snapshot was read before A wrote: it sees the change within its staleness bound.
    deadline = time.monotonic() + second.store.staleness_s
    while time.monotonic() <= deadline:
        time.sleep(second.store.staleness_s / 4)
    decision = second.route({"title": "t"})
    assert decision.account == "b"
    reset = result.attempts[0].reset_at
    assert reset is not None
    assert second.store.cooldowns(NOW) == first.store.cooldowns(NOW)
    assert second.store.cooldowns(NOW)[("claude", "a")].until == reset
    # Both attempts' usage (the refused one counts a request too) is in the shared ledger.
    assert set(second.store.usage_totals({"claude": NOW - timedelta(days=1)})) == {("claude", "a"), ("claude", "b")}
    # What stays local: each host's audit log (and run directories) under its own directory.
    assert (tmp_path / "host-a" / "audit.jsonl").exists()
    assert not (tmp_path / "host-b" / "audit.jsonl").exists()
    first.close()
    second.close()


def test_engine_opens_redis_from_config_and_env_url_wins(
    tmp_path: Path, redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    text = (CLAUDE_CONFIG.replace("TIMEOUT", "30")
            + f'[state]\nbackend = "redis"\nurl = "redis://127.0.0.1:{free_port()}/0"\nkey_prefix = "{redis_prefix}"\n')
    config = compile_config(parse_toml(text), "config.toml", base_dir=str(tmp_path))
    engine = Engine(config, environ={"ADWS_STATE_URL": redis_url})
    assert isinstance(engine.store, RedisStore)
    engine.store.set_sticky("k", "v")
    assert client.hget(f"{redis_prefix}sticky", "k") == "v"
    assert not (tmp_path / ".adws").exists()  # no private SQLite file next to the config
    engine.close()


# -- a process that dies (four processes at once: test_state.py) ---------------------------------------------


@pytest.mark.slow
def test_a_coordinator_killed_mid_run_leaves_a_lease_that_expires_at_its_end(
    redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    proc = worker("lease", location(redis_url, redis_prefix), "dead-host", "1.5")
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[0] == "leased"
    end = float(line[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    key = f"{redis_prefix}slots:prov"
    assert client.pexpiretime(key) == math.ceil(end * 1000)  # the key ends exactly with the lease
    with RedisStore(redis_url, key_prefix=redis_prefix) as store:
        before_end = datetime.fromtimestamp(end, UTC) - timedelta(milliseconds=1)
        assert not store.acquire_slot("prov", "live", 1, before_end, before_end + timedelta(minutes=1))
        deadline = time.monotonic() + 10
        while client.exists(key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.exists(key)  # Redis dropped it on its own: no process was left to release it
        now = datetime.now(UTC)
        assert store.active_slots(now) == {}
        assert store.acquire_slot("prov", "live", 1, now, now + timedelta(minutes=1))
    proc.stdout.close()


def test_cooldown_key_expires_exactly_at_the_reset(redis_prefix: str, redis_url: str, client: redis.Redis) -> None:
    with RedisStore(redis_url, key_prefix=redis_prefix) as store:
        until = datetime.now(UTC).replace(microsecond=123456) + timedelta(hours=1)
        store.set_cooldown("p", "a:1", Cooldown(until, "rate_limited"))
        assert client.pexpiretime(f"{redis_prefix}cooldown:p:a%3A1") == math.ceil(until.timestamp() * 1000)
        # Re-cooling replaces the deadline, key and expiry together (a later one and a shorter one alike).
        shorter = until - timedelta(minutes=30)
        store.set_cooldown("p", "a:1", Cooldown(shorter, "again"))
        assert client.pexpiretime(f"{redis_prefix}cooldown:p:a%3A1") == math.ceil(shorter.timestamp() * 1000)
        assert store.cooldowns(datetime.now(UTC)) == {("p", "a:1"): Cooldown(shorter, "again")}
        # A cooldown that already ended by the wall clock leaves no key behind.
        store.set_cooldown("p", "b", Cooldown(datetime.now(UTC) - timedelta(seconds=1), "old"))
        assert not client.exists(f"{redis_prefix}cooldown:p:b")


# -- the server restarts or cannot be reached --------------------------------------------------------------


@pytest.mark.slow
def test_server_restarted_mid_run_keeps_what_was_committed(tmp_path: Path) -> None:
    server = RedisServer.start(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    try:
        with RedisStore(server.url, key_prefix="fleet:", poll_interval_s=0) as store:
            store.record_usage(rec("p", "a", T0, input_tokens=5))
            store.next_cursor("rr")
            seen = store.version()
            server.stop()
            with pytest.raises(StateStoreError) as exc:
                store.record_usage(rec("p", "a", T0, input_tokens=7))
            assert str(exc.value).startswith(f"state store {server.url}: cannot reach the server: ")
            server.run()
            # The same store object carries on: the dropped connection is replaced on the next call.
            store.record_usage(rec("p", "a", T0, input_tokens=7))
            assert store.usage_totals({"p": T0}) == {("p", "a"): Usage(requests=2, input_tokens=12)}
            assert store.next_cursor("rr") == 1
            assert store.version() != seen
    finally:
        server.stop()


def test_a_server_that_lost_its_data_never_looks_unchanged(tmp_path: Path) -> None:
    # No persistence: after a restart the change counter starts over. Its random generation tells a
    # reader that "1 write" now is not the "1 write" it saw before.
    server = RedisServer.start(tmp_path / "redis")
    try:
        with RedisStore(server.url, poll_interval_s=0) as reader, RedisStore(server.url) as writer:
            writer.set_sticky("k", "v1")
            seen = reader.version()
            server.stop()
            server.run()
            writer.set_sticky("k", "v2")
            assert reader.version() != seen
            assert reader.get_sticky("k") == "v2"
    finally:
        server.stop()


def test_unreachable_server_is_one_line_naming_the_url_without_its_password() -> None:
    port = free_port()
    with pytest.raises(StateStoreError) as exc:
        RedisStore(f"redis://:hunter2@127.0.0.1:{port}/0")
    assert str(exc.value) == (f"state store redis://:***@127.0.0.1:{port}/0: cannot reach the server: "
                              f"Error 111 connecting to 127.0.0.1:{port}. Connection refused.")


def test_server_that_never_answers_fails_after_the_declared_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"redis://127.0.0.1:{port}/0?socket_timeout=0.2"
        with pytest.raises(StateStoreError) as exc:
            RedisStore(url)
        silent.setblocking(False)
        accepted = []
        while True:  # the connections the client opened: a timeout is not retried on a new one
            try:
                accepted.append(silent.accept()[0])
            except BlockingIOError:
                break
        for conn in accepted:
            conn.close()
    assert str(exc.value) == f"state store {url}: no answer within 0.2 s (socket timeout)"
    assert len(accepted) == 1  # one wait of the declared bound, not two


def test_bad_urls_are_refused_by_name() -> None:
    with pytest.raises(StateStoreError) as exc:
        RedisStore("http://127.0.0.1:1/0")
    assert str(exc.value) == ("cannot open state store http://127.0.0.1:1/0: it is not a redis://, rediss:// or "
                              "unix:// URL")
    with pytest.raises(StateStoreError) as exc:
        open_store("redis", env={})
    assert str(exc.value) == 'state backend "redis" needs a location: set [state] url or ADWS_STATE_URL'
    with pytest.raises(StateStoreError) as exc:  # the same from a config that names no server
        Engine(compile_config(parse_toml(CLAUDE_CONFIG.replace("TIMEOUT", "30") + '[state]\nbackend = "redis"\n'),
                              "c.toml"), environ={})
    assert str(exc.value) == 'state backend "redis" needs a location: set [state] url or ADWS_STATE_URL'


def test_tls_and_password_through_the_url(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH: cannot make a certificate for the TLS server")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls_port = free_port()
    server = RedisServer.start(tmp_path / "redis", "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
                               "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                               "--requirepass", "s3cret")
    try:
        url = f"rediss://:s3cret@127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        with RedisStore(url) as store:
            store.set_sticky("k", "v")
            assert store.get_sticky("k") == "v"
        with pytest.raises(StateStoreError) as exc:
            RedisStore(url.replace("s3cret", "wrong"))
        assert str(exc.value) == (f"state store rediss://:***@127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}: the server "
                                  "refused the credentials: invalid username-password pair or user is disabled.")
        with pytest.raises(StateStoreError) as exc:  # the server's certificate is not from a CA the client trusts
            RedisStore(f"rediss://:s3cret@127.0.0.1:{tls_port}/0")
        assert "certificate verify failed" in str(exc.value)
        assert "s3cret" not in str(exc.value)
    finally:
        server.stop()


def test_passwords_are_redacted_from_urls() -> None:
    assert redact("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact("rediss://user:pw@h/2") == "rediss://user:***@h/2"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_cli_with_redis_down_fails_in_one_line_and_creates_no_private_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(CLAUDE_CONFIG.replace("TIMEOUT", "30")
                      + f'[state]\nbackend = "redis"\nurl = "redis://127.0.0.1:{port}/0"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADWS_STATE_URL", raising=False)
    code = main(["route", "--config", str(config), "--task-json", "{\"title\": \"t\"}"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1
    assert f"state store redis://127.0.0.1:{port}/0: cannot reach the server" in err
    assert not list(tmp_path.rglob("*.sqlite3"))


# -- freshness ---------------------------------------------------------------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_another_hosts_write_is_seen_within_the_staleness_bound_and_own_writes_at_once(
    redis_url: str, redis_prefix: str
) -> None:
    ticks = Ticks()
    with RedisStore(redis_url, key_prefix=redis_prefix, poll_interval_s=0.005, monotonic=ticks) as mine, \
            RedisStore(redis_url, key_prefix=redis_prefix) as theirs:
        assert mine.staleness_s == 0.005
        first = mine.version()
        theirs.set_sticky("k", "v")
        ticks.now = 0.004
        assert mine.version() == first  # inside the bound: answered from memory, no round trip
        ticks.now = 0.005
        second = mine.version()
        assert second != first  # at the bound: seen
        mine.set_sticky("k", "w")
        assert mine.version() != second  # own write: at once, whatever the clock says


def test_steady_state_version_makes_no_round_trip(redis_url: str, redis_prefix: str, client: redis.Redis) -> None:
    ticks = Ticks()
    with RedisStore(redis_url, key_prefix=redis_prefix, monotonic=ticks) as store:
        store.version()
        before = int(client.info("stats")["total_commands_processed"])
        for _ in range(100):
            store.version()
        after = int(client.info("stats")["total_commands_processed"])
        assert after - before == 1  # only the INFO call above itself


# -- the same answers as the reference --------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=records_strategy, since=since_strategy, until=until_strategy)
def test_redis_and_memory_agree_on_totals(redis_url: str, records: Records, since: dict[str, int],
                                          until: int | None) -> None:
    prefix = new_prefix()  # one per example: the fixture's would be shared by all of them
    try:
        with RedisStore(redis_url, key_prefix=prefix) as store:
            assert_agrees_with_memory(store, records, since, until)
    finally:
        delete_prefix(redis_url, prefix)


def test_names_with_separators_cannot_collide(redis_url: str, redis_prefix: str) -> None:
    with RedisStore(redis_url, key_prefix=redis_prefix) as store:
        store.record_usage(rec("p:x", "a", T0, input_tokens=1))
        store.record_usage(rec("p", "x:a", T0, input_tokens=2))
        assert store.usage_totals({"p:x": T0, "p": T0}) == {
            ("p:x", "a"): Usage(requests=1, input_tokens=1),
            ("p", "x:a"): Usage(requests=1, input_tokens=2),
        }


def test_key_prefixes_keep_fleets_apart(redis_url: str, redis_prefix: str) -> None:
    with RedisStore(redis_url, key_prefix=redis_prefix + "one:") as one, \
            RedisStore(redis_url, key_prefix=redis_prefix + "two:") as two:
        one.set_cooldown("p", "a", Cooldown(datetime.now(UTC) + timedelta(hours=1), "x"))
        one.next_cursor("rr")
        assert two.cooldowns(datetime.now(UTC)) == {}
        assert two.peek_cursor("rr") == 0
