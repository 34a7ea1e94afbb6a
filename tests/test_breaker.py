"""The circuit breaker: its pure transitions, the one probe of a half-open breaker, and both in a real run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from adws import breaker
from adws.compiled import ProviderSpec
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.state import MemoryStore
from adws.state.base import FUTURE_TOLERANCE, BreakerState
from adws.task import Task
from tests.helpers import CLAUDE_CONFIG, Clock, claude_engine, fake_env
from tests.helpers import WEDNESDAY as T0

COOLDOWN = timedelta(minutes=10)
LEASE = timedelta(minutes=2)
OPEN = BreakerState("open", 3, T0)


def provider(timeout: float = 30) -> ProviderSpec:
    config = compile_config(parse_toml(CLAUDE_CONFIG.replace("TIMEOUT", str(timeout))), "t", base_dir="/tmp")
    return config.providers["claude"]


def test_closed_counts_failures_and_opens_at_the_threshold() -> None:
    one = breaker.after_attempt(breaker.CLOSED, True, T0, threshold=2)
    assert one == BreakerState("closed", 1, None)
    assert breaker.after_attempt(one, True, T0, threshold=2) == BreakerState("open", 2, T0)
    assert breaker.after_attempt(one, False, T0, threshold=2) == breaker.CLOSED  # any answer resets


def test_open_blocks_until_its_cooldown_then_admits_one_probe() -> None:
    just_before = T0 + COOLDOWN - timedelta(seconds=1)
    assert breaker.blocked(OPEN, just_before, COOLDOWN, LEASE) == (
        "circuit open after 3 infrastructure failures; probed again at 2026-11-18T13:10:00+00:00")
    assert breaker.probe(OPEN, just_before, COOLDOWN, LEASE) == OPEN  # too early: no probe
    at = T0 + COOLDOWN
    assert breaker.blocked(OPEN, at, COOLDOWN, LEASE) is None
    half = breaker.probe(OPEN, at, COOLDOWN, LEASE)
    assert half == BreakerState("half_open", 3, at)
    # While the probe runs, routing skips the provider and nobody else may probe.
    assert breaker.blocked(half, at + timedelta(seconds=5), COOLDOWN, LEASE) == (
        "circuit half-open: a probe is running since 2026-11-18T13:10:00+00:00")
    assert breaker.probe(half, at + timedelta(seconds=5), COOLDOWN, LEASE) == half
    assert breaker.expires(half, at, COOLDOWN, LEASE) == at + LEASE
    # A probe whose holder died frees the breaker when its lease ends: the next execution probes.
    late = at + LEASE
    assert breaker.blocked(half, late, COOLDOWN, LEASE) is None
    assert breaker.probe(half, late, COOLDOWN, LEASE) == BreakerState("half_open", 3, late)


def test_the_probes_verdict_closes_or_reopens() -> None:
    half = BreakerState("half_open", 3, T0 + COOLDOWN)
    later = T0 + COOLDOWN + timedelta(seconds=30)
    assert breaker.after_attempt(half, False, later, threshold=5) == breaker.CLOSED
    assert breaker.after_attempt(half, True, later, threshold=5) == BreakerState("open", 4, later)


def test_the_probe_lease_covers_the_longest_attempt() -> None:
    # timeout 300 s and kill_grace 0.5 s in CLAUDE_CONFIG
    assert breaker.probe_lease(provider(timeout=300)) == timedelta(seconds=300.5) + breaker.PROBE_MARGIN


def test_one_probe_is_claimed_and_an_unfinished_one_is_given_back() -> None:
    store = MemoryStore()
    store.update_breaker("claude", lambda _: OPEN)
    spec = provider()
    at = T0 + COOLDOWN
    with breaker.admission(store, spec, at, COOLDOWN) as first:
        assert first
        assert store.get_breaker("claude") == BreakerState("half_open", 3, at)
        with breaker.admission(store, spec, at, COOLDOWN) as second:
            assert not second  # one probe at a time
    # The probe reached no verdict (nothing recorded): the claim is given back, the next execution may probe.
    assert store.get_breaker("claude") == OPEN
    with breaker.admission(store, spec, at, COOLDOWN) as again:
        assert again
        breaker.record(store, "claude", False, at, compile_config(
            parse_toml(CLAUDE_CONFIG.replace("TIMEOUT", "30")), "t", base_dir="/tmp").breaker)
    assert store.get_breaker("claude") == breaker.CLOSED  # the verdict stays


def test_a_closed_breaker_is_admitted_without_a_write() -> None:
    store = MemoryStore()
    before = store.version()
    with breaker.admission(store, provider(), T0, COOLDOWN) as admitted:
        assert admitted
    assert store.version() == before


def test_a_run_while_another_execution_probes_falls_through(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    clock = Clock()
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="signal", copilot="success"), clock=clock)
    engine.run({"title": "t"}, prompt="p", workdir=tmp_path)  # opens claude's breaker
    clock.now = T0 + timedelta(minutes=11)
    decision = engine.route({"title": "t"})
    assert decision.provider == "claude"  # open past its cooldown: a probe may go
    # Another coordinator claims the probe between this decision and its run.
    claimed, _ = breaker.claim_probe(engine.store, "claude", clock.now, COOLDOWN,
                                     breaker.probe_lease(engine.config.providers["claude"]))
    assert claimed
    assert engine.store.get_breaker("claude").state == "half_open"
    result = engine.manager.run(Task(title="t"), decision, prompt="p", workdir=tmp_path)
    assert (result.attempts[0].provider, result.attempts[0].outcome, result.attempts[0].reason) == (
        "claude", "unavailable", "circuit half-open: another attempt is probing")
    assert result.success and result.provider == "backup"
    assert engine.store.get_breaker("claude").state == "half_open"  # the other probe's claim is untouched
    skipped = engine.route({"title": "t"}).skipped[0]
    assert (skipped.provider, skipped.reason.split(":")[0]) == ("claude", "circuit half-open")


@pytest.mark.parametrize("verdict", ["success", "signal"])
def test_a_probe_run_leaves_the_breaker_closed_or_open_again(
        tmp_path: Path, make_engine: Callable[..., Engine], verdict: str) -> None:
    clock = Clock()
    engine = claude_engine(make_engine, fake_env(tmp_path, claude="signal", copilot="success"), clock=clock)
    engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    clock.now = T0 + timedelta(minutes=11)
    engine.manager.environ = {**engine.manager.environ, "FAKE_SCENARIO_CLAUDE": verdict}
    engine.run({"title": "t"}, prompt="p", workdir=tmp_path)
    state = engine.store.get_breaker("claude")
    assert state.state == ("closed" if verdict == "success" else "open")
    if verdict == "signal":
        assert state.opened_at == clock.now  # a failed probe starts a fresh cooldown


# -- across processes (issue 9) ---------------------------------------------------------------------------


def test_three_coordinators_after_the_cooldown_make_one_probe(tmp_path: Path) -> None:
    """Three `adws run` processes start together on a provider whose breaker cooled down: one probes it, the
    other two see the claim and fall through to the next tier."""
    import json
    import os
    import sqlite3
    import subprocess
    import sys
    import time

    from adws.state import SqliteStore
    from tests.helpers import ROOT
    from tests.hostile import SECRETS, config_text

    state = tmp_path / "state.sqlite3"
    SqliteStore(str(state)).close()
    with sqlite3.connect(state) as db:  # opened a day ago: far past its cooldown
        db.execute("INSERT INTO breakers VALUES ('h', 'open', 3, ?)", (time.time() - 86400,))
    (tmp_path / "c.toml").write_text(config_text("gate"), encoding="utf-8")
    (tmp_path / "p.txt").write_text("go", encoding="utf-8")
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT), "ADWS_STATE_PATH": str(state),
           "HOSTILE_PIDFILE": str(tmp_path / "probes"), "HOSTILE_GATE": str(tmp_path / "gate")}
    runs = [subprocess.Popen(
        [sys.executable, "-m", "adws", "run", "--config", str(tmp_path / "c.toml"), "--task-json", f'{{"id": "{i}"}}',
         "--prompt-file", str(tmp_path / "p.txt"), "--workdir", str(tmp_path), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    try:
        # Two fall through at once; the probe waits at the gate until they are done.
        finished = []
        deadline = time.monotonic() + 60
        while len(finished) < 2 and time.monotonic() < deadline:
            finished = [p for p in runs if p.poll() is not None]
            time.sleep(0.05)
        (tmp_path / "gate").touch()
        results = [json.loads(p.communicate(timeout=60)[0]) for p in runs]
    finally:
        for p in runs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len((tmp_path / "probes").read_text().split()) == 1  # exactly one process reached provider h
    probes = [r for r in results if r["provider"] == "h"]
    assert [a["outcome"] for r in probes for a in r["attempts"]] == ["success"]
    others = [r for r in results if r["provider"] == "backup"]
    assert len(others) == 2
    for r in others:
        assert r["success"] and r["attempts"][0]["provider"] in ("h", "backup")
        if r["attempts"][0]["provider"] == "h":  # planned before the claim: refused at admission
            assert r["attempts"][0]["reason"] == "circuit half-open: another attempt is probing"
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT state FROM breakers WHERE provider = 'h'").fetchone() == ("closed",)


AHEAD = BreakerState("open", 3, T0 + timedelta(days=365))  # a host whose clock is a year ahead opened it


def test_an_open_time_beyond_the_tolerance_blocks_for_the_cooldown_from_the_readers_first_sighting() -> None:
    # Before 8f361ce..98d820f it held the provider open for a year and ten minutes; after, it blocked nobody.
    assert AHEAD.opened_at is not None and breaker.ahead(AHEAD, T0)
    seen = breaker.Sightings().first("p", AHEAD, T0)
    assert seen == T0
    later = T0 + COOLDOWN - timedelta(seconds=1)
    assert breaker.blocked(AHEAD, later, COOLDOWN, LEASE, seen) == (
        "circuit open after 3 infrastructure failures; probed again at 2026-11-18T13:10:00+00:00")
    assert breaker.probe(AHEAD, later, COOLDOWN, LEASE, seen) == AHEAD
    assert breaker.expires(AHEAD, T0, COOLDOWN, LEASE, seen) == T0 + COOLDOWN
    assert breaker.blocked(AHEAD, T0 + COOLDOWN, COOLDOWN, LEASE, seen) is None
    assert breaker.probe(AHEAD, T0 + COOLDOWN, COOLDOWN, LEASE, seen) == BreakerState("half_open", 3, T0 + COOLDOWN)


def test_a_probe_time_beyond_the_tolerance_is_live_for_the_lease_from_the_readers_first_sighting() -> None:
    state = BreakerState("half_open", 3, T0 + timedelta(minutes=6))
    sightings = breaker.Sightings()
    seen = sightings.first("p", state, T0)
    assert sightings.first("p", state, T0 + timedelta(minutes=1)) == seen == T0  # the first sighting is kept
    assert breaker.blocked(state, T0, COOLDOWN, LEASE, seen) == (
        "circuit half-open: a probe is running since 2026-11-18T13:00:00+00:00")
    assert breaker.probe(state, T0 + LEASE - timedelta(seconds=1), COOLDOWN, LEASE, seen) == state
    assert breaker.expires(state, T0, COOLDOWN, LEASE, seen) == T0 + LEASE
    assert breaker.probe(state, T0 + LEASE, COOLDOWN, LEASE, seen) == BreakerState("half_open", 3, T0 + LEASE)
    # Another state is a new sighting.
    assert sightings.first("p", AHEAD, T0 + LEASE) == T0 + LEASE


def test_a_decision_as_at_an_earlier_time_moves_no_sighting() -> None:
    # A host with a correct clock opened the breaker a minute ago; this reader saw it now. A route as at yesterday
    # (route(now=...), --at) sees that time far ahead of its own and counts from its own now, but must not make
    # "yesterday" the first sighting: the next decision on the real clock would count the cooldown from then and
    # probe at once.
    opened = BreakerState("open", 3, T0 - timedelta(minutes=1))
    sightings = breaker.Sightings()
    assert sightings.first("p", opened, T0) == T0
    yesterday = T0 - timedelta(days=1)
    assert sightings.first("p", opened, yesterday) == yesterday  # its own now, for that decision alone
    seen = sightings.first("p", opened, T0 + timedelta(seconds=1))
    assert seen == T0
    assert breaker.blocked(opened, T0 + timedelta(seconds=1), COOLDOWN, LEASE, seen) is not None  # still open


def test_a_breaker_time_within_the_tolerance_is_believed() -> None:
    state = BreakerState("open", 3, T0 + FUTURE_TOLERANCE)  # a host whose clock is 5 minutes ahead
    assert not breaker.ahead(state, T0)
    assert breaker.blocked(state, T0, COOLDOWN, LEASE) == (
        "circuit open after 3 infrastructure failures; probed again at 2026-11-18T13:15:00+00:00")
    assert breaker.probe(state, T0, COOLDOWN, LEASE) == state
    assert breaker.expires(state, T0, COOLDOWN, LEASE) == T0 + FUTURE_TOLERANCE + COOLDOWN
    # A closed breaker with a stray time is left closed.
    stray = BreakerState("closed", 1, T0 + timedelta(days=1))
    assert not breaker.ahead(stray, T0) and breaker.probe(stray, T0, COOLDOWN, LEASE) == stray
