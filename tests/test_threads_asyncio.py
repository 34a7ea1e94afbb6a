"""One Engine shared by a thread pool, and the asyncio API: concurrent runs through fake agents, nothing lost,
the event loop never blocked, and a cancelled `arun` ending its agent's whole process group."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adws import audit
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from tests.helpers import CLAUDE_CONFIG, NOW, Clock, fake_env

COPILOT = """
[routing]
chain = ["copilot"]
[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
[audit]
path = "audit.jsonl"
[state]
path = "state.sqlite3"
"""


def engine(tmp_path: Path, text: str, env: dict[str, str]) -> Engine:
    env = {k: v for k, v in env.items() if k != "ADWS_STATE_PATH"}  # the config's own file store
    return Engine(compile_config(parse_toml(text), "config.toml", base_dir=str(tmp_path)), environ=env,
                  clock=Clock(NOW), sleep=lambda s: None)


def processes_with(text: str) -> list[int]:
    """Processes whose environment holds `text` (the fake agents of one test, by their log file's path)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as handle:
                    if text.encode() in handle.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_thread_pool_of_8_shares_one_engine(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    text = COPILOT
    if backend == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        text = COPILOT.replace('path = "state.sqlite3"', f'backend = "redis"\nurl = "{url}"\nkey_prefix = "{prefix}"')
    shared = engine(tmp_path, text, fake_env(tmp_path, copilot="success"))
    tasks = [{"number": n, "title": f"task {n}"} for n in range(32)]

    def work(task: dict[str, Any]) -> tuple[str, bool]:
        assert shared.route(task).provider == "copilot"
        result = shared.run(task, prompt=f"do {task['number']}", workdir=tmp_path)
        return threading.current_thread().name, result.success

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(work, tasks))
    assert all(ok for _, ok in outcomes)
    assert len({name for name, _ in outcomes}) > 1  # really several threads
    totals = shared.store.usage_totals({"copilot": NOW - timedelta(days=1)})
    assert totals[("copilot", "default")].requests == 32  # every run's usage, none lost
    records = audit.read(tmp_path / "audit.jsonl")
    assert sorted(r["task"]["number"] for r in records) == list(range(32))
    shared.close()


def test_ten_concurrent_aruns_do_not_block_the_event_loop(tmp_path: Path) -> None:
    shared = engine(tmp_path, COPILOT, fake_env(tmp_path, copilot="success"))

    async def main() -> tuple[list[bool], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.create_task(ticker())
        decision = await shared.aroute({"title": "t"})
        assert decision.provider == "copilot"
        results = await asyncio.gather(*(shared.arun({"number": n, "title": "t"}, prompt=f"p{n}", workdir=tmp_path)
                                         for n in range(10)))
        done.set()
        await beat
        return [r.success for r in results], ticks

    successes, ticks = asyncio.run(main())
    assert successes == [True] * 10
    assert ticks > 1  # the loop kept turning while the runs were in flight
    assert len(audit.read(tmp_path / "audit.jsonl")) == 10
    shared.close()


def test_cancelling_an_arun_ends_the_agents_process_group_and_records_the_attempt(tmp_path: Path) -> None:
    env = {**fake_env(tmp_path, claude="hang", copilot="success"), "KEY_A": "ka", "KEY_B": "kb"}
    text = CLAUDE_CONFIG.replace("TIMEOUT", "60") + '[state]\npath = "state.sqlite3"\n'
    shared = engine(tmp_path, text, env)
    log = tmp_path / "agents.jsonl"

    async def main() -> None:
        run = asyncio.create_task(shared.arun({"title": "t"}, prompt="p", workdir=tmp_path))
        for _ in range(500):  # until the agent (and the child it spawns) is up: at most 10 s
            if log.exists() and log.read_text().strip() and len(processes_with(str(log))) >= 2:
                break
            await asyncio.sleep(0.02)
        assert processes_with(str(log)), "the fake agent never started"
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())
    assert processes_with(str(log)) == []  # the agent and the child that ignores SIGTERM: both gone
    (record,) = audit.read(tmp_path / "audit.jsonl")
    assert record["message"] == "cancelled; the agent's process group was ended"
    (attempt,) = record["attempts"]
    assert (attempt["provider"], attempt["outcome"], attempt["action"]) == ("claude", "error", "stop")
    assert attempt["reason"] == "cancelled: the run was cancelled and the agent's process group ended"
    assert len(json.loads("[" + ",".join(log.read_text().splitlines()) + "]")) == 1  # no fall-through after it
    assert shared.store.breakers() == {}  # a cancellation is not an infrastructure failure
    shared.close()


_WAITING_AGENT = """
import os, sys, time
prompt, where = sys.argv[1], sys.argv[2]
tag = prompt.split()[0]
open(os.path.join(where, "started-" + tag), "w").close()
deadline = time.monotonic() + 30
while not os.path.exists(os.path.join(where, "go-" + tag)) and time.monotonic() < deadline:
    time.sleep(0.01)
print("error: could not handle: " + prompt, file=sys.stderr)
sys.exit(1)
"""


def test_concurrent_runs_on_one_engine_each_clean_their_records_of_their_own_prompt(tmp_path: Path) -> None:
    # Run A's agent quotes A's prompt in its error only after run B (another prompt) has started and ended on
    # the same engine: A's record must still be cleaned of A's prompt, not of B's.
    import sys

    text = f"""
[routing]
chain = ["w"]
[routing.retry]
max_retries = 0
[providers.w]
command_template = [{json.dumps(sys.executable)}, "-c", {json.dumps(_WAITING_AGENT)}, "{{{{ prompt }}}}",
                    {json.dumps(str(tmp_path))}]
prompt = "arg"
output_format = "text"
[audit]
path = "audit.jsonl"
[state]
path = "state.sqlite3"
"""
    shared = engine(tmp_path, text, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    alpha, beta = "alpha: the first prompt, long enough to clean", "beta: the second prompt, long enough to clean"
    (tmp_path / "go-beta:").touch()
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.update(a=shared.run({"id": "a"}, prompt=alpha, workdir=tmp_path)))
    first.start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "started-alpha:").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    results["b"] = shared.run({"id": "b"}, prompt=beta, workdir=tmp_path)
    (tmp_path / "go-alpha:").touch()
    first.join(60)
    for key, prompt in (("a", alpha), ("b", beta)):
        [attempt] = results[key].attempts
        assert "<prompt>" in attempt.reason and prompt not in attempt.reason, attempt.reason
