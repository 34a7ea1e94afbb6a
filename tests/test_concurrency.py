"""`max_concurrency` across coordinators: slot leases in the shared store, the busy outcome, the busy skip.

The gated provider runs tests/fakes/gate_agent.py, which stays running until the test creates GATE_DIR/open:
a slot is held exactly as long as a test needs, with no guessed sleeps. Coordinators are threads with an
Engine (and so a SQLite connection) each, or a real `adws run` process, all on one state file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.manager import Result
from adws.router import Clock, utc_now
from adws.runner import RunRequest
from adws.state import BreakerState, SqliteStore
from adws.task import coerce_task
from tests.helpers import FAKES_BIN, ROOT

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
TASK: dict[str, Any] = {"number": 5, "title": "Tidy the parser"}
GATE_AGENT = Path(__file__).resolve().parent / "fakes" / "gate_agent.py"
WAIT_S = 20.0  # an upper bound for a child to start, never a measured duration

# unavailable = "stop" and a breaker that opens on the first counted failure: a busy provider must be neither.
CONFIG = """
[routing]
chain = ["gated", "backup"]
[routing.actions]
unavailable = "stop"
[routing.circuit_breaker]
failure_threshold = 1
[providers.gated]
command_template = ["PYTHON", "GATE_AGENT", "{{ prompt }}"]
prompt = "arg"
output_format = "text"
timeout = 60
kill_grace = 1
max_concurrency = 1
[providers.backup]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
""".replace("PYTHON", sys.executable).replace("GATE_AGENT", str(GATE_AGENT))


class FixedClock:
    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    """Several coordinators sharing one state file, and the gate that holds the gated provider's run."""

    tmp: Path
    env: dict[str, str]
    engines: list[Engine] = field(default_factory=list)

    @property
    def gate(self) -> Path:
        return Path(self.env["GATE_DIR"])

    @property
    def state_path(self) -> str:
        return self.env["ADWS_STATE_PATH"]

    def engine(self, clock: Clock | None = None, runner: Callable[[RunRequest], Any] | None = None) -> Engine:
        config = compile_config(parse_toml(CONFIG), "test-config", base_dir=str(self.tmp))
        engine = Engine(config, environ=self.env, clock=clock or FixedClock(), sleep=lambda s: None, runner=runner)
        self.engines.append(engine)
        return engine

    def started(self) -> int:
        return len(list(self.gate.glob("started-*")))

    def wait_started(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.started() < count:
            assert time.monotonic() < deadline, f"the gated agent did not start within {WAIT_S} s"
            time.sleep(0.01)

    def open_gate(self) -> None:
        (self.gate / "open").touch()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    (tmp_path / "gate").mkdir()
    env = {
        "PATH": f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),
        "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "FAKE_AGENT_LOG": str(tmp_path / "agents.jsonl"),
        "FAKE_SCENARIO_COPILOT": "success",
        "GATE_DIR": str(tmp_path / "gate"),
    }
    made = Rig(tmp_path, env)
    yield made
    made.open_gate()  # never leave a gated child waiting
    for engine in made.engines:
        engine.close()


class Coordinator:
    """A coordinator running one task in a thread. Its Engine is built in that thread: a SQLite connection
    belongs to the thread that opened it."""

    def __init__(self, rig: Rig) -> None:
        self.result: Result | None = None
        self.error: BaseException | None = None
        config = compile_config(parse_toml(CONFIG), "test-config", base_dir=str(rig.tmp))
        self._thread = threading.Thread(target=self._run, args=(config, rig), daemon=True)
        self._thread.start()

    def _run(self, config: Any, rig: Rig) -> None:
        engine = Engine(config, environ=rig.env, clock=FixedClock(), sleep=lambda s: None)
        try:
            self.result = engine.run(TASK, prompt="tidy it", workdir=rig.tmp)
        except BaseException as exc:  # handed to the test thread by join()
            self.error = exc
        finally:
            engine.close()

    def join(self) -> Result:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the coordinator thread did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def summary(result: Result) -> list[tuple[str, str, str]]:
    return [(a.provider, a.outcome, a.action) for a in result.attempts]


def test_busy_provider_is_not_started_and_the_walk_moves_to_the_next_tier(rig: Rig) -> None:
    second = rig.engine()
    assert second.store.active_slots(NOW) == {}  # opened (created) as Engine.run would before the walk
    stale = second.route(TASK)  # decided while the slot was free: the race the lease settles
    assert [s.provider for s in stale.plan] == ["gated", "backup"]

    first = Coordinator(rig)
    rig.wait_started(1)
    result = second.manager.run(coerce_task(TASK), stale, prompt="tidy it", workdir=rig.tmp)

    busy = result.attempts[0]
    assert (busy.provider, busy.outcome, busy.reason) == (
        "gated", "unavailable", "busy: max_concurrency 1 reached on gated")
    assert (busy.exit_code, busy.signal, busy.duration_ms, busy.usage, busy.command) == (None, None, 0, None, [])
    # unavailable = "stop" is declared, yet the walk goes on: nothing ran, so nothing failed.
    assert summary(result) == [("gated", "unavailable", "next_tier"), ("backup", "success", "stop")]
    assert result.success and rig.started() == 1  # the busy attempt never started a process

    rig.open_gate()
    assert summary(first.join()) == [("gated", "success", "stop")]
    store = second.store
    # Busy outcomes leave no trace in the state: no breaker (threshold 1), no cooldown, no usage.
    assert store.breakers() == {} and store.get_breaker("gated") == BreakerState()
    assert store.cooldowns(NOW) == {}
    assert store.usage_totals({"gated": NOW - timedelta(days=1)})[("gated", "default")].requests == 1
    assert store.active_slots(NOW) == {}


def test_route_skips_a_full_provider_until_its_slot_is_released(rig: Rig) -> None:
    second = rig.engine()
    assert second.route(TASK).provider == "gated"

    first = Coordinator(rig)
    rig.wait_started(1)
    decision = second.route(TASK)
    assert decision.provider == "backup"
    assert [(s.provider, s.reason) for s in decision.skipped] == [("gated", "busy: 1 of 1 slots in use")]
    result = second.run(TASK, prompt="tidy it", workdir=rig.tmp)
    assert summary(result) == [("backup", "success", "stop")]

    rig.open_gate()
    first.join()
    # The release was a write: the next decision sees the free slot without any clock moving.
    decision = second.route(TASK)
    assert decision.provider == "gated" and decision.skipped == []
    result = second.run(TASK, prompt="tidy it", workdir=rig.tmp)
    assert summary(result) == [("gated", "success", "stop")]
    assert rig.started() == 2
    assert second.store.active_slots(NOW) == {}


def test_lease_of_a_coordinator_that_died_is_reclaimed_when_it_ends(rig: Rig) -> None:
    clock = FixedClock()
    engine = rig.engine(clock)
    assert engine.store.active_slots(NOW) == {}  # creates the file, as a running coordinator would have
    with SqliteStore(rig.state_path) as dead:  # another process that took the slot and was killed
        assert dead.acquire_slot("gated", "4242-dead", 1, NOW - timedelta(minutes=30), NOW + timedelta(minutes=5))

    assert engine.route(TASK).skipped[0].reason == "busy: 1 of 1 slots in use"
    clock.now = NOW + timedelta(minutes=5)
    # No write announced it: the lease's end, kept in the routing snapshot, is what frees the provider.
    assert engine.route(TASK).provider == "gated"
    rig.open_gate()
    result = engine.run(TASK, prompt="tidy it", workdir=rig.tmp)
    assert summary(result) == [("gated", "success", "stop")]
    assert engine.store.active_slots(NOW) == {}  # the dead lease was dropped when the slot was taken


def test_slot_is_released_when_the_attempt_raises(rig: Rig) -> None:
    def explode(request: RunRequest) -> Any:
        raise RuntimeError("runner exploded")

    engine = rig.engine(runner=explode)
    with pytest.raises(RuntimeError, match="runner exploded"):
        engine.run(TASK, prompt="tidy it", workdir=rig.tmp)
    assert engine.store.active_slots(NOW) == {}
    assert engine.route(TASK).provider == "gated"


def test_the_limit_holds_against_another_adws_process(rig: Rig) -> None:
    # Real clocks on both sides: the lease is judged by the time the other process wrote it with.
    config = rig.tmp / "config.toml"
    config.write_text(CONFIG)
    prompt = rig.tmp / "prompt.txt"
    prompt.write_text("tidy it")
    env = {**os.environ, **rig.env, "PYTHONPATH": str(ROOT)}
    other = subprocess.Popen(
        [sys.executable, "-m", "adws", "run", "--config", str(config), "--task-json", json.dumps(TASK),
         "--prompt-file", str(prompt), "--workdir", str(rig.tmp), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=rig.tmp,
    )
    try:
        rig.wait_started(1)
        engine = rig.engine(clock=utc_now)
        decision = engine.route(TASK)
        assert [(s.provider, s.reason) for s in decision.skipped] == [("gated", "busy: 1 of 1 slots in use")]
        assert summary(engine.run(TASK, prompt="tidy it", workdir=rig.tmp)) == [("backup", "success", "stop")]
    finally:
        rig.open_gate()
        out, err = other.communicate(timeout=WAIT_S)
    assert other.returncode == 0, err
    ran = json.loads(out)
    assert (ran["provider"], [a["outcome"] for a in ran["attempts"]]) == ("gated", ["success"])
    assert engine.store.active_slots(utc_now()) == {}
