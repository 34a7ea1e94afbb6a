"""A run's day: verify then escalate, what a failed tier leaves (real git repositories), the hand-off to the next
tier (`previous`), retry_at / retryable and --wait, retry_count from history, and `adws run` announcing attempts.

The agents here are small Python programs named in `command_template`: they edit the working tree the way a
half-finished agent does, so the workdir policies are tested on what they are for.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adws import audit
from adws.config.load import compile_config, parse_toml
from adws.engine import Engine
from adws.events import Event, EventKind
from adws.state import MemoryStore
from adws.workdir import WorkdirError
from tests.gitrepo import git, make_repo
from tests.helpers import FAKES_BIN, Clock

PY = sys.executable
NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

# An agent that leaves half-edits and fails; one that refuses to work on a tree holding them, else fixes it.
HALF = "import pathlib; pathlib.Path('app.py').write_text('broken'); pathlib.Path('half.txt').write_text('x'); " \
       "raise SystemExit(1)"
FIX = ("import pathlib, sys; p = sys.stdin.read(); pathlib.Path('prompt-seen.txt').write_text(p); "
       "sys.exit(3) if pathlib.Path('half.txt').exists() else None; "
       "pathlib.Path('app.py').write_text('fixed'); print('fixed it')")


def config(extra: str = "", *, first: str = HALF, second: str = FIX) -> str:
    return f"""
[routing]
chain = ["first", "second"]
[routing.actions]
error = "next_tier"
crashed = "next_tier"
[providers.first]
command_template = [{json.dumps(PY)}, "-c", {json.dumps(first)}]
prompt = "stdin"
output_format = "text"
[providers.second]
command_template = [{json.dumps(PY)}, "-c", {json.dumps(second)}]
prompt = "stdin"
output_format = "text"
[audit]
path = "audit.jsonl"
[run]
dir = "runs"
{extra}
"""


def engine(tmp_path: Path, text: str, **options: Any) -> Engine:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    compiled = compile_config(parse_toml(text), str(path), str(tmp_path))
    options.setdefault("store", MemoryStore())
    options.setdefault("clock", Clock(NOW))
    return Engine(compiled, **options)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"app.py": "original"})


# -- workdir policies in a run ------------------------------------------------------------------------------


def test_keep_leaves_the_half_edits_for_the_next_tier(tmp_path: Path, repo: Path) -> None:
    result = engine(tmp_path, config()).run({"number": 1}, prompt="Fix it", workdir=repo)
    assert not result.success  # the second tier found the first one's mess and refused
    assert [a.outcome for a in result.attempts] == ["error", "error"]
    assert (repo / "half.txt").exists()


@needs_git
def test_reset_saves_the_failed_tiers_patch_and_the_next_tier_starts_clean(tmp_path: Path, repo: Path) -> None:
    start = git(repo, "rev-parse", "HEAD").strip()
    result = engine(tmp_path, config('workdir = "reset"')).run({"number": 1}, prompt="Fix it", workdir=repo)
    assert result.success, result.message
    failed = result.attempts[0]
    assert failed.patch is not None and Path(failed.patch).parent == Path(result.run_dir or "") / Path(
        failed.patch).parent.name
    patch = Path(failed.patch).read_text(encoding="utf-8")
    assert "half.txt" in patch and "+broken" in patch
    assert (repo / "app.py").read_text(encoding="utf-8") == "fixed" and not (repo / "half.txt").exists()
    assert result.handoff == {"workdir": str(repo.resolve()), "worktree": None, "branch": None,
                              "base_commit": start}
    assert result.to_dict()["attempts"][0]["patch"] == failed.patch


@needs_git
def test_reset_refuses_a_dirty_tree_before_anything_runs(tmp_path: Path, repo: Path) -> None:
    (repo / "app.py").write_text("my own edit", encoding="utf-8")
    eng = engine(tmp_path, config('workdir = "reset"'))
    with pytest.raises(WorkdirError, match="has uncommitted changes"):
        eng.run({"number": 1}, prompt="Fix it", workdir=repo)
    assert (repo / "app.py").read_text(encoding="utf-8") == "my own edit"
    assert not (tmp_path / "audit.jsonl").exists()  # nothing ran, nothing to log


@needs_git
def test_worktree_names_the_branch_that_holds_the_success(tmp_path: Path, repo: Path) -> None:
    result = engine(tmp_path, config('workdir = "worktree"')).run({"number": 1}, prompt="Fix it", workdir=repo)
    assert result.success, result.message
    handoff = result.handoff or {}
    tree = Path(handoff["worktree"])
    assert (tree / "app.py").read_text(encoding="utf-8") == "fixed"
    assert git(tree, "symbolic-ref", "--short", "HEAD").strip() == handoff["branch"]
    assert handoff["branch"].startswith("adws/")
    # The user's tree is as it was; the failed attempt's worktree is gone, its patch kept.
    assert (repo / "app.py").read_text(encoding="utf-8") == "original"
    assert git(repo, "status", "--porcelain") == ""
    assert not Path(result.attempts[0].workdir or "").exists()
    assert "half.txt" in Path(result.attempts[0].patch or "").read_text(encoding="utf-8")


@needs_git
def test_a_rule_overrides_the_workdir_policy(tmp_path: Path, repo: Path) -> None:
    extra = """
[[routing.rules]]
name = "isolated"
conditions = { labels = ["risky"] }
provider = "first"
workdir = "worktree"
"""
    eng = engine(tmp_path, config().replace("[audit]", extra + "[audit]"))
    result = eng.run({"number": 2, "labels": ["risky"]}, prompt="Fix it", workdir=repo)
    assert result.success and (result.handoff or {})["branch"]


# -- hand-off -------------------------------------------------------------------------------------------------


@needs_git
def test_the_next_tier_is_told_what_was_tried_and_why_it_failed(tmp_path: Path, repo: Path) -> None:
    extra = 'workdir = "reset"\n'
    text = config(extra).replace(
        'output_format = "text"\n[audit]',
        'output_format = "text"\nprompt_suffix = "Tried before: {{ previous.provider }} ({{ previous.outcome }}: '
        '{{ previous.reason }}). Its changes: {{ previous.patch }}"\n[audit]')
    result = engine(tmp_path, text).run({"number": 1}, prompt="Fix it", workdir=repo)
    assert result.success, result.message
    seen = (repo / "prompt-seen.txt").read_text(encoding="utf-8")
    first = result.attempts[0]
    assert seen == f"Fix it\n\nTried before: first (error: {first.reason}). Its changes: {first.patch}"


def test_previous_is_readable_in_command_templates(tmp_path: Path) -> None:
    text = config(second="import sys; print(sys.argv[1])").replace(
        f'command_template = [{json.dumps(PY)}, "-c", {json.dumps("import sys; print(sys.argv[1])")}]',
        f'command_template = [{json.dumps(PY)}, "-c", {json.dumps("import sys; print(sys.argv[1])")}, '
        '"after {{ previous.provider }} {{ previous.outcome }}"]')
    result = engine(tmp_path, text).run({"number": 1}, prompt="Fix it", workdir=tmp_path)
    assert result.success and result.final_text == "after first error"


# -- verify ---------------------------------------------------------------------------------------------------


def test_verify_failed_escalates_to_the_next_tier_and_keeps_its_output(tmp_path: Path) -> None:
    ok = "print('done')"
    text = config(first=ok, second=ok).replace(
        'output_format = "text"\n[providers.second]',
        'output_format = "text"\nverify = ["' + PY.replace("\\", "\\\\") + '", "-c", '
        '"print(\'2 failed\'); raise SystemExit(1)"]\nverify_timeout = 30\n[providers.second]', 1)
    result = engine(tmp_path, text).run({"number": 1}, prompt="Fix it", workdir=tmp_path)
    assert result.success and [a.outcome for a in result.attempts] == ["verify_failed", "success"]
    first = result.attempts[0]
    assert first.action == "next_tier"
    assert first.reason.endswith("exited 1: 2 failed")
    assert first.verify is not None and not first.verify["passed"]
    assert Path(first.verify["stdout_path"]).read_text(encoding="utf-8") == "2 failed\n"
    assert Path(first.verify["stdout_path"]).parent.parent == Path(first.stdout_path or "").parent


def test_a_rules_verify_and_a_declared_action_for_verify_failed(tmp_path: Path) -> None:
    ok = "print('done')"
    extra = f"""
[[routing.rules]]
name = "tested"
conditions = {{ labels = ["bug"] }}
provider = "first"
verify = [{json.dumps(PY)}, "-c", "import sys; sys.exit(int('{{{{ task.number }}}}') != 7)"]
"""
    text = config(first=ok, second=ok).replace("[audit]", extra + "[audit]").replace(
        'error = "next_tier"', 'error = "next_tier"\nverify_failed = "stop"')
    eng = engine(tmp_path, text)
    assert eng.run({"number": 7, "labels": ["bug"]}, prompt="Fix it", workdir=tmp_path).success
    stopped = eng.run({"number": 8, "labels": ["bug"]}, prompt="Fix it", workdir=tmp_path)
    assert [(a.outcome, a.action) for a in stopped.attempts] == [("verify_failed", "stop")]


# -- retry_at, retryable, wait --------------------------------------------------------------------------------


def busy_config() -> str:
    return config(first="print('done')", second="print('done')").replace(
        'chain = ["first", "second"]', 'chain = ["first"]').replace(
        'output_format = "text"\n[providers.second]', 'output_format = "text"\nmax_concurrency = 1\n'
        "[providers.second]", 1)


def test_a_plan_spent_by_busy_slots_says_when_to_retry(tmp_path: Path) -> None:
    store = MemoryStore()
    store.acquire_slot("first", "someone-else", 1, NOW, NOW + timedelta(seconds=10))
    result = engine(tmp_path, busy_config(), store=store).run({"number": 1}, prompt="go", workdir=tmp_path)
    assert not result.success and result.retryable
    assert result.retry_at == NOW + timedelta(seconds=10)
    data = result.to_dict()
    assert data["retry_at"] == "2026-11-18T13:00:10+00:00" and data["retryable"] is True


def test_wait_parks_the_task_until_capacity_returns(tmp_path: Path) -> None:
    store = MemoryStore()
    store.acquire_slot("first", "someone-else", 1, NOW, NOW + timedelta(seconds=10))
    clock = Clock(NOW)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += timedelta(seconds=seconds)
        store.release_slot("first", "someone-else")  # the other coordinator finished meanwhile

    events: list[Event] = []
    eng = engine(tmp_path, busy_config(), store=store, clock=clock, sleep=sleep)
    result = eng.run({"number": 1}, prompt="go", workdir=tmp_path, wait=60, on_event=events.append)
    assert result.success and slept == [10.0]
    waiting = [e for e in events if e.kind is EventKind.TASK_WAITING]
    assert len(waiting) == 1 and waiting[0].until == NOW + timedelta(seconds=10)
    assert len(audit.read(str(tmp_path / "audit.jsonl"))) == 2  # the busy run and the one that ran


def test_wait_gives_up_when_capacity_returns_after_max(tmp_path: Path) -> None:
    store = MemoryStore()
    store.acquire_slot("first", "someone-else", 1, NOW, NOW + timedelta(seconds=10))
    slept: list[float] = []
    result = engine(tmp_path, busy_config(), store=store, sleep=slept.append).run(
        {"number": 1}, prompt="go", workdir=tmp_path, wait=5)
    assert not result.success and result.retryable and slept == []


def test_bad_credentials_are_not_retryable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = f"""
[routing]
chain = ["claude"]
[providers.claude]
command_template = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
prompt = "stdin"
output_format = "claude-stream-json"
env = {{ FAKE_SCENARIO = "auth", PATH = {json.dumps(f"{FAKES_BIN}{os.pathsep}{os.environ['PATH']}")} }}
executable = {json.dumps(str(FAKES_BIN / "claude"))}
[audit]
enabled = false
[run]
dir = "runs"
"""
    result = engine(tmp_path, text).run({"number": 1}, prompt="go", workdir=tmp_path, wait=3600)
    assert [a.outcome for a in result.attempts] == ["auth"]
    assert result.retryable is False and result.retry_at is None


def test_a_run_given_another_time_records_on_the_engines_clock(tmp_path: Path) -> None:
    """`run(now=...)` decides as at that time but runs now: the agent's real reset (40 minutes after the real
    moment) is recorded as it is, so coordinators on the real clock see the cooldown end when it really ends (a
    run 13 days back would otherwise have written it, already over, or one ahead a month-long block)."""
    wall = NOW + timedelta(days=13)
    epoch = int((wall + timedelta(minutes=40)).timestamp())
    text = config(first=f"print('Claude AI usage limit reached|{epoch}'); raise SystemExit(1)").replace(
        'chain = ["first", "second"]', 'chain = ["first"]')
    store = MemoryStore()
    result = engine(tmp_path, text, store=store, clock=Clock(wall)).run(
        {"number": 1}, prompt="go", workdir=tmp_path, now=NOW)
    back = wall + timedelta(minutes=40)
    [attempt] = result.attempts
    assert (attempt.outcome, attempt.reset_at) == ("rate_limited", back)
    assert store.cooldowns(wall)[("first", "default")].until == back
    assert result.retry_at == back


# -- retry_count from history -------------------------------------------------------------------------------


def test_retry_count_from_the_audit_log_lets_the_retry_rule_match(tmp_path: Path) -> None:
    extra = """
[[routing.rules]]
name = "retries-on-second"
conditions = { retry_count = { gte = 2 } }
provider = "second"
"""
    text = config(first="print('done')", second="print('done')").replace("[audit]", extra + "[audit]").replace(
        "[providers.first]", '[routing.intake]\nretry_count = "history"\nhistory_window = "1d"\n[providers.first]')
    log = tmp_path / "audit.jsonl"
    for hours in (30, 5, 2):  # one outside the window
        audit.append(str(log), {"at": (NOW - timedelta(hours=hours)).isoformat(), "task": {"id": "#7"},
                                "success": False})
    eng = engine(tmp_path, text)
    assert eng.run({"number": 7}, prompt="go", workdir=tmp_path).decision.rule == "retries-on-second"
    # A task that says its retry_count keeps it; another task has no history.
    assert eng.run({"number": 7, "retry_count": 0}, prompt="go", workdir=tmp_path).decision.rule == "default"
    assert eng.run({"number": 8}, prompt="go", workdir=tmp_path).decision.rule == "default"
    # The window ends at the run's time: a given `now` (naive: in the routing timezone, UTC here) counts the two
    # failures before it, none after (a naive `now` was once compared with the log's aware times: TypeError).
    later = engine(tmp_path, text, clock=Clock(NOW + timedelta(days=30)))
    assert later.run({"number": 7}, prompt="go", workdir=tmp_path,
                     now=NOW.replace(tzinfo=None)).decision.rule == "retries-on-second"
    assert later.run({"number": 7}, prompt="go", workdir=tmp_path).decision.rule == "default"


# -- adws run announces attempts ----------------------------------------------------------------------------


def test_adws_run_prints_each_attempt_then_where_things_are(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from adws.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    (tmp_path / "config.toml").write_text(config(second="print('fixed it')"), encoding="utf-8")
    (tmp_path / "prompt.md").write_text("Fix it", encoding="utf-8")
    args = ["run", "--config", "config.toml", "--task-json", '{"number": 4}', "--prompt-file", "prompt.md"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    progress = [line.split(" ", 1)[1] for line in err.splitlines()]
    assert progress[0] == "#4 attempt 1 tier 1 first: started"
    assert progress[1].startswith("#4 attempt 1 tier 1 first: error (exit 1")
    assert progress[2] == "#4 attempt 2 tier 2 second: started"
    assert progress[3].startswith("#4 attempt 2 tier 2 second: success")
    lines = out.splitlines()
    assert lines[-3] == "OK: succeeded on second"
    assert lines[-2].startswith("final text: ") and lines[-2].endswith("output.txt")
    assert lines[-1].startswith("run directory: ")
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_events_go_to_the_callback_and_to_logging_once_each(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = []
    with caplog.at_level("INFO", logger="adws.events"):
        result = engine(tmp_path, config(second="print('ok')")).run({"number": 3}, prompt="go", workdir=tmp_path,
                                                                     on_event=events.append)
    assert result.success
    assert [(e.kind, e.attempt, e.tier, e.provider) for e in events] == [
        (EventKind.TASK_STARTED, None, None, None),
        (EventKind.ATTEMPT_STARTED, 1, 1, "first"), (EventKind.ATTEMPT_FINISHED, 1, 1, "first"),
        (EventKind.ATTEMPT_STARTED, 2, 2, "second"), (EventKind.ATTEMPT_FINISHED, 2, 2, "second"),
        (EventKind.TASK_FINISHED, None, None, "second")]
    assert events[-1].outcome == "success"
    logged = [r for r in caplog.records if r.name == "adws.events"]
    assert [r.getMessage() for r in logged] == [e.describe() for e in events]


def test_the_new_keys_are_checked_at_load_with_their_place() -> None:
    from adws.errors import ConfigError

    text = config('workdir = "tree"').replace(
        'output_format = "text"\n[providers.second]',
        'output_format = "text"\nverify = ["make", "{{ previus.patch }}"]\nprompt_suffix = "{{ previous.reason"\n'
        "[providers.second]", 1)
    with pytest.raises(ConfigError) as caught:
        compile_config(parse_toml(text), "c.toml")
    problems = [str(p) for p in caught.value.problems]
    assert problems[0] == 'run → workdir: expected "keep", "reset" or "worktree", got "tree" (did you mean "worktree"?)'
    assert problems[1].startswith("providers.first → verify[1]: template '{{ previus.patch }}' uses unknown "
                                  'variable "previus" (did you mean "previous"?)')
    assert problems[2] == ("providers.first → prompt_suffix: template '{{ previous.reason' does not parse: "
                           "unexpected end of template, expected 'end of print statement'")
    assert len(problems) == 3
