"""`adws run --json` end to end: in-process CLI, fake agent CLIs on PATH, state and audit in a temp dir.

Exit codes (the CLI contract): 0 success, 1 plan spent (or nothing to run), 2 bad config or input.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from adws import audit
from adws.cli import main
from tests.helpers import FAKES_BIN, ROOT

AT = "2026-11-18T13:00:00Z"  # a Wednesday afternoon: no night or weekend rule applies

SMALL_CONFIG = """
[routing]
chain = ["claude", "copilot"]

[[routing.rules]]
name = "bugs-on-claude"
conditions = { labels = ["bug"] }
provider = "claude"

[providers.claude]
command_template = ["claude", "-p", "--output-format", "stream-json", "--verbose", "--model", "{{ model }}"]
prompt = "stdin"
output_format = "claude-stream-json"
[providers.claude.models.sonnet]
context_window = 200000
[[providers.claude.accounts]]
name = "a"
[[providers.claude.accounts]]
name = "b"

[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
[providers.copilot.models.raptor-mini]
context_window = 264000
"""

# What `gh issue view 42 --json number,title,body,labels` prints.
GH_ISSUE = {
    "body": "The login page returns 500 when the password contains a quote.\n\nSteps: ...",
    "labels": [
        {"id": "LA_kwDOAbc123", "name": "bug", "description": "Something isn't working", "color": "d73a4a"},
        {"id": "LA_kwDOAbc456", "name": "priority:P1", "description": "", "color": "fbca04"},
    ],
    "number": 42,
    "title": "Login fails on quotes",
}

ATTEMPT_KEYS = {"provider", "model", "account", "outcome", "exit_code", "duration_ms"}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    monkeypatch.setenv("ADWS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_AGENT_LOG", str(tmp_path / "agents.jsonl"))
    for name in ("FAKE_SCENARIO", "ADWS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "prompt.txt").write_text("Fix the login bug.\n", encoding="utf-8")
    (tmp_path / "issue.json").write_text(json.dumps(GH_ISSUE), encoding="utf-8")
    (tmp_path / "small.toml").write_text(SMALL_CONFIG, encoding="utf-8")
    return tmp_path


def scenario(monkeypatch: pytest.MonkeyPatch, **scenarios: str) -> None:
    for key, value in scenarios.items():
        monkeypatch.setenv(f"FAKE_SCENARIO_{key.upper()}", value)


def run_cli(capsys: pytest.CaptureFixture[str], workdir: Path, *args: str,
            config: str = "small.toml") -> tuple[int, dict[str, Any] | None, str]:
    code = main(["run", "--config", str(workdir / config), "--prompt-file", str(workdir / "prompt.txt"),
                 "--workdir", str(workdir), "--at", AT, "--json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else None, captured.err


def test_success_prints_the_contract_keys_and_exits_0(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, workdir, "--github-issue", str(workdir / "issue.json"))
    assert (code, err) == (0, "")
    assert out is not None
    assert {k: out[k] for k in ("success", "provider", "model", "account", "rule")} == {
        "success": True, "provider": "claude", "model": "sonnet", "account": "a", "rule": "bugs-on-claude"}
    [attempt] = out["attempts"]
    assert attempt.keys() >= ATTEMPT_KEYS
    assert {k: attempt[k] for k in ATTEMPT_KEYS - {"duration_ms"}} == {
        "provider": "claude", "model": "sonnet", "account": "a", "outcome": "success", "exit_code": 0}
    assert isinstance(attempt["duration_ms"], int) and attempt["duration_ms"] >= 0
    assert out["final_text"]


def test_github_issue_from_gh_is_taken_as_is(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, workdir, "--github-issue", str(workdir / "issue.json"))
    assert code == 0 and out is not None
    # Label objects became label names: "bug" matched the rule, "priority:P1" set the priority.
    assert out["decision"]["task"] == {"id": "#42", "priority": "high", "specialization": "general",
                                       "context_tokens": out["decision"]["task"]["context_tokens"],
                                       "context_estimated": True}
    record = audit.read(workdir / ".adws" / "audit.jsonl")[-1]
    assert {k: record["task"][k] for k in ("id", "number", "labels", "retry_count")} == {
        "id": "#42", "number": 42, "labels": ["bug", "priority:P1"], "retry_count": 0}
    assert "title" not in record["task"] and "body" not in record["task"]  # task text is prompt text
    assert "Fix the login bug" not in json.dumps(record)  # the prompt stays out of the audit log
    [call] = audit.read(workdir / "agents.jsonl")
    assert (call["prog"], call["prompt_source"], call["prompt"]) == ("claude", "stdin", "Fix the login bug.\n")


def test_github_issue_on_stdin(workdir: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(GH_ISSUE)))
    code, out, _ = run_cli(capsys, workdir, "--github-issue", "-")
    assert code == 0 and out is not None and out["rule"] == "bugs-on-claude"


def test_fall_through_is_listed_attempt_by_attempt(
        workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    scenario(monkeypatch, claude_a="limit_reset", claude_b="auth", copilot="success")
    code, out, _ = run_cli(capsys, workdir, "--task-json", json.dumps({"number": 7, "title": "Fix it",
                                                                         "labels": ["bug"]}))
    assert code == 0 and out is not None
    assert {k: out[k] for k in ("success", "provider", "model", "account", "rule")} == {
        "success": True, "provider": "copilot", "model": "raptor-mini", "account": None, "rule": "bugs-on-claude"}
    assert [(a["provider"], a["model"], a["account"], a["outcome"], a["exit_code"]) for a in out["attempts"]] == [
        ("claude", "sonnet", "a", "rate_limited", 1),
        ("claude", "sonnet", "b", "auth", 1),
        ("copilot", "raptor-mini", None, "success", 0),
    ]
    # auth's declared action is next_account; on the tier's last account the walk moves to the next tier,
    # and the attempt records the move it really made.
    assert [a["action"] for a in out["attempts"]] == ["next_account", "next_tier", "stop"]


def test_plan_spent_exits_1_and_still_prints_every_attempt(
        workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    scenario(monkeypatch, claude="context", copilot="auth")
    code, out, err = run_cli(capsys, workdir, "--task-json", '{"title": "t"}')
    assert (code, err) == (1, "")
    assert out is not None and out["success"] is False
    assert [(a["provider"], a["outcome"]) for a in out["attempts"]] == [
        ("claude", "context_overflow"), ("copilot", "auth")]
    assert out["message"].startswith("plan spent after 2 attempt(s); last: exit 1: ")


def test_nothing_to_run_exits_1(workdir: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(workdir / "empty-bin"))  # no agent CLI installed
    code, out, _ = run_cli(capsys, workdir, "--task-json", '{"title": "t"}')
    assert code == 1 and out is not None
    assert (out["success"], out["provider"], out["attempts"]) == (False, None, [])
    assert out["message"] == "nothing to run: every tier was skipped (see decision.skipped)"
    assert out["decision"]["skipped"] == [
        {"provider": "claude", "reason": "command 'claude' not on PATH"},
        {"provider": "copilot", "reason": "command 'copilot' not on PATH"},
    ]


def test_shipped_config_runs_on_tier_1(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "config.toml", workdir / "config.toml")  # state, audit and runs land in the temp dir
    code, out, _ = run_cli(capsys, workdir, "--github-issue", str(workdir / "issue.json"), config="config.toml")
    assert code == 0 and out is not None
    assert {k: out[k] for k in ("success", "provider", "model", "account", "rule")} == {
        "success": True, "provider": "antigravity", "model": "claude-sonnet-4.6", "account": "ag-1",
        "rule": "code-sonnet"}
    assert (workdir / ".adws" / "audit.jsonl").exists()


@pytest.mark.parametrize(("task_json", "message"), [
    ('{"title": ', "task is not valid JSON: Expecting value: line 1 column 11 (char 10)"),
    ("[1, 2]", "task must be a JSON object, got an array"),
    ('{"titel": "x"}', 'unknown field "titel" (did you mean "title"?)'),
    ('{"title": "x", "retry_count": -1}', "retry_count: must be >= 0, got -1"),
])
def test_bad_task_exits_2_with_a_clear_message(workdir: Path, capsys: pytest.CaptureFixture[str],
                                               task_json: str, message: str) -> None:
    code, out, err = run_cli(capsys, workdir, "--task-json", task_json)
    assert (code, out) == (2, None)
    assert err == f"adws: invalid task: {message}\n"
    assert not (workdir / "agents.jsonl").exists()  # nothing ran


def test_missing_inputs_exit_2(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, workdir, "--github-issue", str(workdir / "nope.json"))
    assert code == 2
    assert err == f"adws: invalid task: cannot read task: {workdir / 'nope.json'}: No such file or directory\n"
    code = main(["run", "--config", str(workdir / "small.toml"), "--task-json", "{}", "--json"])
    assert code == 2
    assert capsys.readouterr().err == "adws: give the prompt with --prompt-file FILE (- for stdin)\n"


def test_bad_config_exits_2(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SMALL_CONFIG.replace('prompt = "arg"', 'promt = "arg"')
    (workdir / "bad.toml").write_text(text, encoding="utf-8")
    line = text.splitlines().index('promt = "arg"') + 1
    code, out, err = run_cli(capsys, workdir, "--task-json", "{}", config="bad.toml")
    assert (code, out) == (2, None)
    assert err == (f"{workdir / 'bad.toml'}: 1 problem in config\n"
                   f'  {workdir / "bad.toml"}:{line}: providers.copilot: unknown key "promt" '
                   '(did you mean "prompt"?)\n')
