"""Issue 9, continued: a stop (a signal under adws.interrupts, a cancelled `arun` or run-many) that lands anywhere
after an agent started — its verify command, a usage command, the retry window, a parked `--wait`, an observer
that raises — still leaves the attempt in the result, the audit log and the ledger, stops the walk, tidies the
attempt's workspace, and leaves nothing running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adws import audit, interrupts
from adws.errors import Interrupted
from adws.events import Event, EventKind
from tests.gitrepo import git, make_repo
from tests.helpers import NOW, ROOT, alive
from tests.hostile import SECRETS, config_text, engine

SIG = signal.SIGUSR1  # what the in-process tests stop adws with (never the test runner's own SIGTERM/SIGINT)


@pytest.fixture
def stop_handler() -> Iterator[None]:
    restore = interrupts.install((SIG,))
    try:
        yield
    finally:
        restore()


def _cancel_arun_once_started(shared: Any, tmp_path: Path, pidfile: Path, must_start: str | None = None) -> None:
    """arun a task on `shared` and cancel it once `pidfile` names a process (waiting at most 10 s), expecting the
    cancellation to come back; with `must_start`, that process (the `must_start` command) must have started."""
    async def main() -> None:
        run = asyncio.create_task(shared.arun({"id": "T-1"}, prompt="go", workdir=tmp_path))
        for _ in range(500):
            if _pids(pidfile):
                break
            await asyncio.sleep(0.02)
        if must_start is not None:
            assert _pids(pidfile), f"{must_start} never started"
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())


def _pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except OSError:
        return []


def _wait_for(check: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _ledger(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        return db.execute("SELECT provider, account FROM usage ORDER BY rowid").fetchall()


def _on_h(text: str, line: str) -> str:
    """`text` (config_text's) with `line` added to provider h's table."""
    return text.replace('api_key_env = "H_API_KEY"', f'api_key_env = "H_API_KEY"\n{line}', 1)


def _stop_me(tmp_path: Path, then: str = "exec sleep 30") -> str:
    """A shell command (TOML string array) that notes its pid, sends SIG to adws (its parent), then `then`."""
    return (f'["/bin/sh", "-c", "echo $$ >> {tmp_path}/helpers; kill -{SIG.name.removeprefix("SIG")} $PPID; '
            f'{then}"]')


# -- 2. a signal while verify runs stops the walk --------------------------------------------------------------

def test_a_signal_during_verify_stops_the_walk_and_records_the_attempt(tmp_path: Path, stop_handler: None) -> None:
    text = _on_h(config_text("ok"), f'verify = {_stop_me(tmp_path)}')
    with pytest.raises(KeyboardInterrupt) as info:
        engine(tmp_path, text).run({"id": "T-1"}, prompt="go", workdir=tmp_path)
    assert isinstance(info.value, Interrupted)
    result = info.value.result
    [attempt] = result.attempts  # type: ignore[attr-defined]  # no fall-through to account b or backup
    assert (attempt.provider, attempt.account, attempt.outcome, attempt.action) == ("h", "a", "error", "stop")
    assert attempt.reason.startswith(f"interrupted by {SIG.name} while its verify command ran")
    assert attempt.usage is not None
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert [a["outcome"] for a in record["attempts"]] == ["error"]
    assert _ledger(tmp_path) == [("h", "a")]  # the agent ran to its end: its usage is booked
    assert not any(alive(pid) for pid in _pids(tmp_path / "helpers"))  # the verify command is gone


# -- 2. a signal while a usage command runs before routing ------------------------------------------------------

def test_a_signal_during_a_usage_command_stops_before_any_agent(tmp_path: Path, stop_handler: None) -> None:
    extra = f'usage_command = {_stop_me(tmp_path)}\nusage_sync_interval = "10m"\n'
    text = _on_h(config_text("hang"), extra)
    with pytest.raises(KeyboardInterrupt, match=SIG.name):
        engine(tmp_path, text).run({"id": "T-1"}, prompt="go", workdir=tmp_path)
    assert _pids(tmp_path / "pids") == []  # no agent started after the stop
    helpers = _pids(tmp_path / "helpers")
    assert helpers and not any(alive(pid) for pid in helpers)


def test_a_signal_as_a_usage_command_starts_waits_until_the_runner_can_end_it(tmp_path: Path,
                                                                             stop_handler: None) -> None:
    from adws.config.load import compile_config, parse_toml
    from adws.runner import run as run_process
    from adws.usage_sync import sync_account

    command = f'["/bin/sh", "-c", "echo $$ >> {tmp_path}/helpers; exec sleep 30"]'
    provider = compile_config(parse_toml(_on_h(config_text("ok"), f"usage_command = {command}")), "c.toml",
                              base_dir=str(tmp_path)).providers["h"]
    outcomes = []

    def signalled_at_start(request: Any) -> Any:
        os.kill(os.getpid(), SIG)  # lands before the runner waits on its child (as between spawn and wait)
        outcomes.append(run_process(request))
        return outcomes[-1]

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match=SIG.name):
        sync_account(provider, provider.accounts[0], config_dir=str(tmp_path), now=NOW, environ={},
                     runner=signalled_at_start)
    assert time.monotonic() - started < 10
    [outcome] = outcomes  # the runner started the command, took the stop and ended it
    assert outcome.interrupted == SIG.name
    assert not any(alive(pid) for pid in _pids(tmp_path / "helpers"))


def test_sync_account_raises_when_its_command_was_interrupted(tmp_path: Path) -> None:
    from adws.attempt import RunOutcome
    from adws.config.load import compile_config, parse_toml
    from adws.usage_sync import sync_account

    text = _on_h(config_text("ok"), 'usage_command = ["x"]')
    provider = compile_config(parse_toml(text), "c.toml", base_dir=str(tmp_path)).providers["h"]

    def interrupted(request: Any) -> RunOutcome:
        return RunOutcome(argv=["x"], exit_code=None, signal=9, timed_out=False, duration_ms=5, stdout_path=None,
                          stderr_path=None, stdout_tail="", stderr_tail="", stdout_bytes=0, stderr_bytes=0,
                          truncated=False, interrupted="SIGTERM")

    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        sync_account(provider, provider.accounts[0], config_dir=str(tmp_path), now=NOW, environ={},
                     runner=interrupted)


# -- 1 and 7. a cancelled arun while verify runs: the attempt is recorded, with its usage -----------------------

def test_cancelling_an_arun_during_verify_records_the_attempt_and_its_usage(tmp_path: Path) -> None:
    text = _on_h(config_text("ok"), f'verify = ["/bin/sh", "-c", "echo $$ >> {tmp_path}/helpers; exec sleep 30"]')
    shared = engine(tmp_path, text)

    started = time.monotonic()
    _cancel_arun_once_started(shared, tmp_path, tmp_path / "helpers", "verify")
    assert time.monotonic() - started < 20
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["message"] == "cancelled; the agent's process group was ended"
    [attempt] = record["attempts"]
    assert (attempt["provider"], attempt["outcome"], attempt["action"]) == ("h", "error", "stop")
    assert attempt["reason"].startswith("cancelled")
    assert _ledger(tmp_path) == [("h", "a")]
    assert shared.store.breakers() == {}
    assert not any(alive(pid) for pid in _pids(tmp_path / "helpers"))
    shared.close()


def test_cancelling_an_arun_while_the_agent_runs_books_its_usage(tmp_path: Path) -> None:
    shared = engine(tmp_path, config_text("hang"))

    _cancel_arun_once_started(shared, tmp_path, tmp_path / "pids")
    [record] = audit.read(tmp_path / "audit.jsonl")
    [attempt] = record["attempts"]
    assert attempt["usage"] is not None and attempt["usage"]["estimated"] is True
    assert _ledger(tmp_path) == [("h", "a")]  # as `adws run` interrupted books it
    shared.close()


def test_cancelling_an_arun_reaches_a_usage_command(tmp_path: Path) -> None:
    extra = (f'usage_command = ["/bin/sh", "-c", "echo $$ >> {tmp_path}/helpers; exec sleep 30"]\n'
             'usage_sync_interval = "10m"\n')
    text = _on_h(config_text("ok"), extra)
    shared = engine(tmp_path, text)

    started = time.monotonic()
    _cancel_arun_once_started(shared, tmp_path, tmp_path / "helpers")
    assert time.monotonic() - started < 15  # the usage command was ended, not waited for
    assert not any(alive(pid) for pid in _pids(tmp_path / "helpers"))
    assert _pids(tmp_path / "pids") == []
    shared.close()


# -- 3. an observer that raises --------------------------------------------------------------------------------

def test_an_observer_that_raises_loses_no_attempt(tmp_path: Path) -> None:
    heard: list[EventKind] = []

    def broken(event: Event) -> None:
        heard.append(event.kind)
        if event.kind is EventKind.ATTEMPT_FINISHED:
            raise BrokenPipeError(32, "Broken pipe")

    result = engine(tmp_path, config_text("ok")).run({"id": "T-1"}, prompt="go", workdir=tmp_path, on_event=broken)
    assert result.success and len(result.attempts) == 1
    assert heard == [EventKind.TASK_STARTED, EventKind.ATTEMPT_STARTED, EventKind.ATTEMPT_FINISHED,
                     EventKind.TASK_FINISHED]  # it still hears the task end
    [warning] = [w for w in result.warnings if "on_event" in w]
    assert "BrokenPipeError" in warning
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert len(record["attempts"]) == 1 and warning in record["warnings"]
    assert _ledger(tmp_path) == [("h", "a")]


def test_a_manager_observer_that_raises_loses_no_attempt(tmp_path: Path) -> None:
    eng = engine(tmp_path, config_text("ok"))
    from adws.result import Result
    from adws.task import Task

    def broken(event: Event) -> None:
        raise ValueError("display gone")

    task = Task(id="T-1")
    decision = eng.route(task)
    result = Result(False, decision)
    eng.manager.run(task, decision, prompt="go", workdir=tmp_path, result=result, observer=broken)
    assert result.success and len(result.attempts) == 1
    assert any("ValueError: display gone" in w for w in result.warnings)


def test_run_many_with_a_callback_that_always_raises_loses_nothing(tmp_path: Path) -> None:
    eng = engine(tmp_path, config_text("ok"))

    def broken(event: Event) -> None:
        raise OSError(5, "Input/output error")

    items = [{"task": {"id": f"T-{n}"}, "prompt": "go", "workdir": str(tmp_path)} for n in range(3)]
    outcomes = eng.run_many(items, concurrency=2, on_event=broken)
    assert [o.success for o in outcomes] == [True] * 3
    assert not any(o.interrupted for o in outcomes)
    for outcome in outcomes:
        assert outcome.result is not None
        [warning] = outcome.result.warnings
        assert warning.startswith("the event callback (on_event) raised OSError") and "task_started" in warning
    assert len(audit.read(tmp_path / "audit.jsonl")) == 3


# -- 4. a signal while parked by --wait ------------------------------------------------------------------------

RATE = (f'["{sys.executable}", "-c", "import sys; print(\'Error: rate limit exceeded\', file=sys.stderr); '
        'sys.exit(1)", "{{ prompt }}"]')


def _rate_config() -> str:
    text = config_text("ok")
    lines = [f"command_template = {RATE}" if line.startswith("command_template") else line
             for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def test_a_signal_while_waiting_for_capacity_carries_the_last_result(tmp_path: Path, stop_handler: None) -> None:
    eng = engine(tmp_path, _rate_config())

    def sleep(seconds: float) -> None:
        os.kill(os.getpid(), SIG)
        time.sleep(1)  # the handler raises here

    eng._sleep = sleep
    with pytest.raises(KeyboardInterrupt) as info:
        eng.run({"id": "T-1"}, prompt="go", workdir=tmp_path, wait=3600 * 24)
    assert isinstance(info.value, Interrupted)
    result: Any = info.value.result
    assert [a.outcome for a in result.attempts] == ["rate_limited"] * 3
    assert result.message.startswith(f"interrupted by {SIG.name} while waiting for capacity")
    assert info.value.adws_result is result  # type: ignore[attr-defined]
    assert len(audit.read(tmp_path / "audit.jsonl")) == 1


def test_cancelling_a_task_parked_by_wait_returns_its_last_result(tmp_path: Path) -> None:
    from adws.aio import CancelToken, running
    from adws.errors import RunCancelled

    eng = engine(tmp_path, _rate_config())
    eng._sleep = time.sleep  # a real wait, that the cancellation must cut short
    token = CancelToken()
    caught: list[BaseException] = []

    def work() -> None:
        with running(token):
            try:
                eng.run({"id": "T-1"}, prompt="go", workdir=tmp_path, wait=3600 * 24)
            except BaseException as exc:  # the test inspects it
                caught.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    _wait_for(lambda: (tmp_path / "audit.jsonl").exists(), "the first try never ended")
    time.sleep(0.2)
    token.cancel()
    worker.join(10)
    assert not worker.is_alive(), "a cancelled wait went on sleeping"
    [exc] = caught
    assert isinstance(exc, RunCancelled)
    result: Any = exc.adws_result  # type: ignore[attr-defined]
    assert [a.outcome for a in result.attempts] == ["rate_limited"] * 3
    assert result.message.startswith("cancelled while waiting for capacity")


# -- 5. a signal in the retry window, before the audit record --------------------------------------------------

def test_a_signal_during_the_retry_window_keeps_the_audit_record(tmp_path: Path, stop_handler: None) -> None:
    eng = engine(tmp_path, config_text("echo_prompt", backup="echo_prompt"))
    real = eng.store.cooldowns

    def cooldowns(now: Any) -> Any:
        os.kill(os.getpid(), SIG)
        return real(now)

    eng.store.cooldowns = cooldowns  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt) as info:
        eng.run({"id": "T-1"}, prompt="go", workdir=tmp_path)
    assert isinstance(info.value, Interrupted)
    result: Any = info.value.result
    assert len(result.attempts) == 2  # h/a, then backup
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert len(record["attempts"]) == 2


# -- 6. a stopped attempt's workspace --------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["reset", "worktree"])
def test_a_stopped_attempts_changes_are_saved_and_its_tree_tidied(tmp_path: Path, stop_handler: None,
                                                                  policy: str) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    agent = (f'["/bin/sh", "-c", "echo half > edited.txt; echo $$ >> {tmp_path}/helpers; kill -USR1 $PPID; '
             'exec sleep 30", "{{ prompt }}"]')
    text = config_text("ok", extra=f'workdir = "{policy}"')
    text = text.replace(text.splitlines()[6], f"command_template = {agent}", 1)
    with pytest.raises(KeyboardInterrupt) as info:
        engine(tmp_path, text).run({"id": "T-1"}, prompt="go", workdir=repo)
    assert isinstance(info.value, Interrupted)
    result: Any = info.value.result
    [attempt] = result.attempts
    assert attempt.patch is not None and "edited.txt" in Path(attempt.patch).read_text()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""  # the user's tree as it was
    assert git(repo, "worktree", "list").count("\n") == 1
    assert "adws/" not in git(repo, "branch", "--list")
    [record] = audit.read(tmp_path / "audit.jsonl")
    assert record["attempts"][0]["patch"] == attempt.patch


# -- 1 and 4 through the command line: run-many stopped while verify runs, and while parked ---------------------

def _adws(tmp_path: Path, text: str, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "c.toml").write_text(text, encoding="utf-8")
    (tmp_path / "p.txt").write_text("fix it", encoding="utf-8")
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT), "ADWS_STATE_PATH": str(tmp_path / "state.sqlite3"),
           "HOSTILE_PIDFILE": str(tmp_path / "pids")}
    return subprocess.Popen([sys.executable, "-m", "adws", *args, "--config", str(tmp_path / "c.toml")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def test_run_many_stopped_while_verify_runs_records_every_attempt(tmp_path: Path) -> None:
    text = _on_h(config_text("ok"), f'verify = ["/bin/sh", "-c", "echo $$ >> {tmp_path}/helpers; exec sleep 30"]')
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"task": {"id": f"T-{n}"}, "prompt": "go"}) + "\n" for n in (1, 2)))
    proc = _adws(tmp_path, text, "run-many", "--tasks", str(tasks), "--json", "--concurrency", "2",
                 "--workdir", str(tmp_path))
    try:
        _wait_for(lambda: len(_pids(tmp_path / "helpers")) >= 2, "verify never started twice")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    for line in lines:
        [attempt] = line["attempts"]
        assert (attempt["provider"], attempt["outcome"], attempt["action"]) == ("h", "error", "stop")
    records = audit.read(tmp_path / "audit.jsonl")
    assert sorted(len(r["attempts"]) for r in records) == [1, 1]
    assert len(_ledger(tmp_path)) == 2
    assert not any(alive(pid) for pid in _pids(tmp_path / "helpers"))


def test_run_stopped_while_parked_by_wait_prints_its_result(tmp_path: Path) -> None:
    proc = _adws(tmp_path, _rate_config(), "run", "--task-json", '{"id": "T-1"}', "--prompt-file",
                 str(tmp_path / "p.txt"), "--workdir", str(tmp_path), "--json", "--wait")
    try:
        _wait_for(lambda: (tmp_path / "audit.jsonl").exists(), "the first try never ended")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    result = json.loads(out)
    assert [a["outcome"] for a in result["attempts"]] == ["rate_limited"] * 3


def test_quota_sync_stopped_by_sigterm_ends_its_usage_command(tmp_path: Path) -> None:
    extra = f'usage_command = ["/bin/sh", "-c", "echo $$ >> {tmp_path}/helpers; exec sleep 30"]\n'
    text = _on_h(config_text("ok"), extra)
    proc = _adws(tmp_path, text, "quota", "--sync")
    try:
        _wait_for(lambda: bool(_pids(tmp_path / "helpers")), "the usage command never started")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert len(_pids(tmp_path / "helpers")) == 1  # the next account's command never started
    assert not any(alive(pid) for pid in _pids(tmp_path / "helpers"))
