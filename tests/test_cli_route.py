"""The `adws` command's contract for scripts: route (JSON, explain, GitHub issues), check, schema, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from adws import cli
from tests.helpers import FAKES_BIN, ROOT, TESTS

CONFIG = str(ROOT / "config.toml")
AT = "2026-11-18T13:00:00Z"
BUG = json.dumps({"number": 7, "title": "Null pointer in parser", "labels": ["bug"]})


@pytest.fixture(autouse=True)
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every agent CLI the shipped config names is on PATH (fakes), and the state store is a fresh path."""
    monkeypatch.setenv("PATH", str(FAKES_BIN))
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    monkeypatch.delenv("ADWS_CONFIG", raising=False)
    return tmp_path


def adws(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def route_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = adws(capsys, "route", "--config", CONFIG, "--at", AT, "--json", *args)
    assert err == ""
    return code, json.loads(out)


# -- adws route --json -----------------------------------------------------------------------------------


def test_route_json_as_a_whole_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "adws", "route", "--config", CONFIG, "--task-json", BUG, "--at", AT, "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    decision = json.loads(done.stdout)
    assert {k: decision[k] for k in ("provider", "model", "account", "rule")} == {
        "provider": "antigravity", "model": "claude-sonnet-4.6", "account": "ag-1", "rule": "code-sonnet"}
    assert [{k: step[k] for k in ("provider", "model", "account")} for step in decision["plan"]] == [
        {"provider": "antigravity", "model": "claude-sonnet-4.6", "account": "ag-1"},
        {"provider": "copilot", "model": "haiku-4.5", "account": None},
        {"provider": "cline", "model": "integrated", "account": None},
        {"provider": "opencode", "model": "built-in", "account": None},
        {"provider": "local", "model": "qwen2.5-coder:7b", "account": None},
    ]
    assert decision["skipped"] == []
    assert decision["at"] == "2026-11-18T14:00:00+01:00"  # shown in the routing timezone
    assert not (tmp_path / "state.sqlite3").exists()  # routing has no side effects


def test_route_json_lists_what_was_skipped(machine: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir = machine / "bin"
    bin_dir.mkdir()
    for name in ("opencode", "cline"):
        (bin_dir / name).symlink_to(FAKES_BIN / name)
    monkeypatch.setenv("PATH", str(bin_dir))
    code, decision = route_json(capsys, "--task-json", BUG)
    assert code == 0
    assert [step["provider"] for step in decision["plan"]] == ["antigravity", "cline", "opencode"]
    assert decision["skipped"] == [
        {"provider": "copilot", "reason": "command 'copilot' not on PATH"},
        {"provider": "local", "reason": "command 'ollama' not on PATH"},
    ]


def test_route_exits_1_when_nothing_is_usable(machine: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(machine))  # an empty directory
    code, decision = route_json(capsys, "--task-json", BUG)
    assert code == 1
    assert (decision["provider"], decision["model"], decision["account"], decision["plan"]) == (None, None, None, [])
    assert [s["provider"] for s in decision["skipped"]] == ["antigravity", "copilot", "cline", "opencode", "local"]


def test_assume_available_judges_the_rules_only(machine: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(machine))
    code, decision = route_json(capsys, "--task-json", BUG, "--assume-available")
    assert (code, decision["provider"], decision["rule"]) == (0, "antigravity", "code-sonnet")


def test_task_json_from_a_file_and_from_stdin(machine: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = machine / "task.json"
    path.write_text(json.dumps({"title": "Update the README", "labels": ["documentation"]}), encoding="utf-8")
    code, decision = route_json(capsys, "--task-json", f"@{path}")
    assert (code, decision["rule"], decision["model"]) == (0, "docs-flash", "gemini-3-flash")
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"title": "x", "retry_count": 2})))
    code, decision = route_json(capsys, "--task-json", "-")
    assert (code, decision["rule"], decision["provider"]) == (0, "repeated-failure-cline", "cline")


def test_github_issue_file(machine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    issue = {"number": 101, "title": "Login fails", "body": "Since the last deploy.",
             "labels": [{"id": "LA_1", "name": "bug", "description": "", "color": "d73a4a"},
                        {"id": "LA_2", "name": "priority:P0", "description": "", "color": "b60205"}]}
    path = machine / "issue.json"
    path.write_text(json.dumps(issue), encoding="utf-8")
    code, decision = route_json(capsys, "--github-issue", str(path))
    assert (code, decision["rule"], decision["model"]) == (0, "critical-fast", "o3-mini")
    assert decision["task"] == {"id": "#101", "priority": "critical", "specialization": "code",
                                "context_tokens": 8, "context_estimated": True}


def test_prompt_file_sizes_the_context(machine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = machine / "prompt.txt"
    prompt.write_text("x" * 900_000, encoding="utf-8")
    code, decision = route_json(capsys, "--task-json", BUG, "--prompt-file", str(prompt))
    assert (code, decision["rule"], decision["model"]) == (0, "huge-context", "gemini-3-pro")
    assert decision["task"]["context_tokens"] == 225_000
    assert [step["provider"] for step in decision["plan"]] == ["antigravity", "copilot", "cline", "opencode"]
    assert decision["skipped"] == [
        {"provider": "local", "reason": "context too small: no model holds the task (largest window 8000)"}]


def test_a_naive_at_is_read_in_the_routing_timezone(capsys: pytest.CaptureFixture[str]) -> None:
    task = json.dumps({"title": "Tidy imports", "labels": ["priority:P3"]})
    code, out, _ = adws(capsys, "route", "--config", CONFIG, "--task-json", task, "--at", "2026-11-18T23:30:00",
                        "--json")
    decision = json.loads(out)
    assert (code, decision["rule"], decision["at"]) == (0, "night-low-opencode", "2026-11-18T23:30:00+01:00")


def test_explain_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = adws(capsys, "route", "--config", CONFIG, "--task-json", BUG, "--at", AT, "--explain")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    # The answer first, then the plan, the reasons, and the rule table.
    assert lines[0] == '→ antigravity claude-sonnet-4.6 (account ag-1), rule "code-sonnet"'
    assert "why (task #7 at 2026-11-18 14:00 CET):" in lines
    assert '  rule "code-sonnet" (priority 30) matched' in lines
    assert "  [  30] code-sonnet: MATCH (first match wins)" in lines
    assert ("  1. antigravity model=claude-sonnet-4.6 account=ag-1 — model claude-sonnet-4.6 as chosen; ~30,000 "
            "expected (fixed figure; only 0 code runs recorded, 5 needed to learn) + 3,000 margin") in lines
    # Without --explain: the same answer, plan and reasons, and no rule table.
    code, plain, _ = adws(capsys, "route", "--config", CONFIG, "--task-json", BUG, "--at", AT)
    assert code == 0
    assert plain.splitlines() == [*lines[:lines.index("rules (highest priority first):")],
                                  "(every rule and why: adws route --explain)"]


def test_route_text_fits_the_terminal_width(monkeypatch: pytest.MonkeyPatch, snapshot: SnapshotAssertion) -> None:
    import io

    from adws.cli import main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setenv("COLUMNS", "72")
    assert main(["route", "--config", CONFIG, "--task-json", BUG, "--at", AT, "--explain"]) == 0
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 72
    assert text == snapshot


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = adws(capsys, "route", "--config", CONFIG, "--task-json", BUG, "--at", AT, "--explain", "--json")
    explanation = json.loads(out)
    assert code == 0
    assert explanation["routing_enabled"] is True
    assert explanation["decision"]["rule"] == "code-sonnet"
    rules = {r["name"]: r for r in explanation["rules"]}
    assert rules["code-sonnet"] == {"name": "code-sonnet", "priority": 30, "status": "matched"}
    assert rules["experiment-copilot-first"]["status"] == "disabled"
    assert rules["critical-fast"] == {"name": "critical-fast", "priority": 100, "status": "failed",
                                      "condition": "priority", "task_value": "'normal'",
                                      "rule_value": "== 'critical'"}


# -- bad input: exit 2 with a clear message --------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--task-json", "nope"],
     "adws: invalid task: task is not valid JSON: Expecting value: line 1 column 1 (char 0)\n"),
    (["--task-json", "[1, 2]"], "adws: invalid task: task must be a JSON object, got an array\n"),
    (["--task-json", '{"retry_count": -1}'], "adws: invalid task: retry_count: must be >= 0, got -1\n"),
    (["--task-json", '{"title": "x", "retry_cont": 2}'],
     'adws: invalid task: unknown field "retry_cont" (did you mean "retry_count"?)\n'),
    (["--task-json", '{"priority": "P7"}'],
     'adws: invalid task: priority: unknown value "P7"; use critical, high, normal, low, P0-P3 or 0-3\n'),
    (["--task-json", '{"labels": ["route:nowhere"]}'],
     'adws: invalid task: label "route:nowhere": unknown provider "nowhere"; '
     "providers: antigravity, copilot, cline, opencode, local\n"),
    ([], "adws: no task given: give it with --task-json JSON or --github-issue FILE (- for stdin)\n"),
    (["--github-issue", "/nonexistent/issue.json"],
     "adws: invalid task: cannot read task: /nonexistent/issue.json: No such file or directory\n"),
    (["--task-json", "{}", "--at", "yesterday"], "adws: --at: not an ISO 8601 time: 'yesterday'\n"),
])
def test_bad_task_input_exits_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, out, err = adws(capsys, "route", "--config", CONFIG, "--json", *args)
    assert (code, out, err) == (2, "", message)


def test_bad_config_exits_2(machine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = machine / "bad.toml"
    path.write_text("""
[routing]
default_provider = "alfa"
[[routing.rules]]
name = "r"
conditions = { retry_count = { gte = -1 }, labls = ["x"] }
provider = "alpha"
[providers.alpha]
command_template = ["alpha-cli"]
prompt = "stdin"
""", encoding="utf-8")
    code, out, err = adws(capsys, "route", "--config", str(path), "--task-json", "{}", "--json")
    assert (code, out) == (2, "")
    assert err == (
        f"{path}: 3 problems in config\n"  # in the file's order
        f'  {path}:3: routing → default_provider: unknown provider "alfa" (did you mean "alpha"?); providers: alpha\n'
        f'  {path}:6: routing.rules[0] (name="r") → conditions → retry_count → gte: must be >= 0, got -1\n'
        f'  {path}:6: routing.rules[0] (name="r") → conditions → labls: unknown condition "labls" (did you mean '
        '"labels"?); '
        "allowed: priority, labels, retry_count, hour_range, schedule, specialization, context_tokens, attrs, "
        "attrs.NAME\n"
    )


def test_missing_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = adws(capsys, "route", "--config", "/nonexistent/adws.toml", "--task-json", "{}", "--json")
    assert (code, out) == (2, "")
    assert "config file not found" in err
    assert err.startswith("/nonexistent/adws.toml")


# -- adws check ------------------------------------------------------------------------------------------


def test_check_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = adws(capsys, "check", CONFIG)
    assert (code, err) == (0, "")
    assert out == f"{CONFIG}: OK — 5 providers, 14 rules (13 enabled), 19 scenarios\n"
    assert adws(capsys, "check", "--config", CONFIG)[0] == 0


def test_check_reports_a_failing_scenario_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # The config is valid, but a scenario it declares does not hold: that is not OK (as show-routing says).
    path = str(TESTS / "data" / "configs" / "scenarios_failing.toml")
    code, out, err = adws(capsys, "check", path, "--at", AT)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == f"{path}: valid, but 3 of 3 scenarios not as expected (2 providers, 2 rules (2 enabled), " \
                       "3 scenarios)"
    assert lines[1:5] == ["  scenarios without `at` judged at 2026-11-18 13:00 UTC (to choose the time: adws check "
                          "--at ISO8601)",
                          "  FAIL docs go to copilot: claude via default",
                          "         provider: expected 'copilot', got 'claude'",
                          "         rule: expected 'docs', got 'default'"]
    assert sum(line.startswith("  FAIL ") for line in lines) == 3


OFFICE_HOURS = """
[routing]
default_provider = "claude"
chain = ["claude", "copilot"]
timezone = "Europe/Berlin"
[[routing.rules]]
name = "office-hours"
conditions = { hour_range = [9, 17] }
provider = "copilot"
[providers.claude]
command_template = ["claude", "-p"]
prompt = "stdin"
[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}"]
prompt = "arg"
[[scenarios]]
name = "a task goes to copilot"
task = { title = "Fix it" }
expect = { provider = "copilot" }
"""


def test_check_judges_scenarios_without_at_at_the_time_given(machine: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # A scenario whose rule depends on the hour: --at makes the verdict the same whenever check runs, a time
    # without an offset is read in the routing timezone, and a failure says the time it was judged at.
    path = machine / "office.toml"
    path.write_text(OFFICE_HOURS, encoding="utf-8")
    assert adws(capsys, "check", str(path), "--at", "2026-11-18T10:00") == (
        0, f"{path}: OK — 2 providers, 1 rule (1 enabled), 1 scenario\n", "")
    code, out, err = adws(capsys, "check", str(path), "--at", "2026-11-18T20:00")
    assert (code, out) == (1, "")
    assert err.splitlines()[:3] == [
        f"{path}: valid, but 1 of 1 scenario not as expected (2 providers, 1 rule (1 enabled), 1 scenario)",
        "  scenarios without `at` judged at 2026-11-18 20:00 CET (to choose the time: adws check --at ISO8601)",
        "  FAIL a task goes to copilot: claude via default"]
    # A scenario that gives its own `at` is judged at that time: no line about check's.
    timed = OFFICE_HOURS.replace('task = { title = "Fix it" }', 'task = { title = "Fix it" }\nat = '
                                 '"2026-11-18T20:00:00+01:00"')
    path.write_text(timed, encoding="utf-8")
    code, out, err = adws(capsys, "check", str(path), "--at", "2026-11-18T10:00")
    assert (code, out) == (1, "")
    assert err.splitlines()[1] == "  FAIL a task goes to copilot: claude via default"


def test_check_refuses_a_time_that_is_not_iso_8601(capsys: pytest.CaptureFixture[str]) -> None:
    assert adws(capsys, "check", CONFIG, "--at", "noon") == (2, "", "adws: --at: not an ISO 8601 time: 'noon'\n")


@pytest.mark.parametrize("command", ["check", "lint"])
def test_the_config_given_twice_is_refused(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    other = str(TESTS / "data" / "configs" / "scenarios_failing.toml")
    assert adws(capsys, command, CONFIG, "--config", other) == (
        2, "", f"adws: give the config once: as the CONFIG argument ({CONFIG}) or as --config ({other}), not both\n")


# Deliberately failing files are not: tests/data/configs/broken/* (not under configs/ itself) and this one.
FAILING_ON_PURPOSE = {"scenarios_failing.toml"}
SHIPPED_CONFIGS = [ROOT / "config.toml", TESTS / "data" / "views.toml",
                   *sorted(p for p in (TESTS / "data" / "configs").glob("*.toml") if p.name not in FAILING_ON_PURPOSE)]


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[p.name for p in SHIPPED_CONFIGS])
def test_every_config_in_the_repository_passes_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = adws(capsys, "check", str(path), "--at", AT)
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: OK — ")


@pytest.mark.parametrize("command", ["check", "lint"])
def test_help_lists_config_as_an_option_too(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "--config CONFIG" in capsys.readouterr().out


def test_check_reads_adws_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ADWS_CONFIG", CONFIG)
    assert adws(capsys, "check")[0] == 0


def test_check_an_invalid_config_exits_1(machine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = machine / "bad.toml"
    path.write_text('[routing]\nenabeld = true\n[providers.a]\ncommand_template = ["a"]\nprompt = "stdin"\n',
                    encoding="utf-8")
    code, out, err = adws(capsys, "check", str(path))
    assert (code, out) == (1, "")
    assert err == f'{path}: 1 problem in config\n  {path}:2: routing: unknown key "enabeld" (did you mean "enabled"?)\n'


def test_check_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = adws(capsys, "check", "/nonexistent/adws.toml")  # cannot be read: a usage error (README)
    assert (code, out) == (2, "")
    assert "config file not found" in err
    assert "--config" not in err  # the person named the file: nothing to explain


def test_a_config_not_found_where_nobody_named_it_says_where_adws_looked(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADWS_CONFIG", raising=False)
    for argv in (["check"], ["route", "--task-json", "{}"]):
        code, _, err = adws(capsys, *argv)
        assert (code, err) == (2, "config.toml: config file not found\n  (that path is the default, in the current "
                                  "directory: name the config with --config FILE or ADWS_CONFIG)\n")
    monkeypatch.setenv("ADWS_CONFIG", str(tmp_path / "gone.toml"))
    code, _, err = adws(capsys, "check")
    assert err.endswith("config file not found\n  (that path is from $ADWS_CONFIG: name the config with --config "
                        "FILE or ADWS_CONFIG)\n")


# -- adws schema -----------------------------------------------------------------------------------------


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = adws(capsys, "schema")
    assert (code, err) == (0, "")
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "adws config.toml"
    assert schema["type"] == "object"
    assert {"routing", "providers", "state", "audit", "scenarios"} <= set(schema["properties"])
    assert "providers" in schema["required"]
    assert schema["additionalProperties"] is False  # unknown keys are errors in editors too
    # Every $ref points at a definition that exists.
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert refs
    assert {ref.removeprefix("#/$defs/") for ref in refs} <= set(schema["$defs"])


def test_the_command_moves_what_outlives_loading_out_of_the_collectors_sight(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """As the process's entry point (arguments from sys.argv) the command freezes what is alive once its engine
    is built (gc.freeze), and routes as when called by a program, which keeps its collector as it was."""
    import gc

    args = ["route", "--config", CONFIG, "--at", AT, "--task-json", BUG, "--json"]
    gc.unfreeze()
    monkeypatch.setattr(cli, "_OWN_PROCESS", False)
    called = adws(capsys, *args)
    assert called[0] == 0 and gc.get_freeze_count() == 0
    monkeypatch.setattr(sys, "argv", ["adws", *args])
    at_exit: list[Any] = []
    monkeypatch.setattr("atexit.register", at_exit.append)
    try:
        entry = cli.main()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert (entry, capsys.readouterr().out) == called[:2]
    # Frozen objects are not finalized at exit: the engine is closed by an exit handler instead.
    assert len(at_exit) == 1 and at_exit[0].__name__ == "close"
    at_exit[0]()


def test_the_command_leaves_no_sqlite_journal_files_behind(tmp_path: Path) -> None:
    """A frozen engine is not finalized by the collection at exit, and the SQLite store is in a reference cycle:
    the command closes it at exit, so SQLite checkpoints and removes its -wal and -shm files, run after run."""
    config = tmp_path / "config.toml"
    config.write_text('[providers.c]\ncommand_template = ["copilot", "-p", "{{ prompt }}", "--output-format", '
                      '"json"]\nprompt = "arg"\noutput_format = "copilot-json"\n')
    (tmp_path / "p.md").write_text("Fix it")
    state = tmp_path / "state"
    state.mkdir()
    # (`machine` left the fakes alone on PATH; the fake's shell script also needs dirname and a python3.)
    env = {**os.environ, "PATH": f"{FAKES_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "FAKE_AGENT_PYTHON": sys.executable, "ADWS_STATE_PATH": str(state / "state.sqlite3"),
           "ADWS_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):  # the second run opens a store that exists: the case that left the files
        done = subprocess.run([sys.executable, "-m", "adws", "run", "--config", str(config), "--task-json", "{}",
                               "--prompt-file", str(tmp_path / "p.md"), "--workdir", str(tmp_path), "--json",
                               "--quiet"], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["success"] is True
        assert sorted(path.name for path in state.iterdir()) == ["state.sqlite3"]


def test_check_notes_a_redis_backend_this_python_cannot_use(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Valid, so exit 0; but every route on this host would fail: said now, not at the first route.
    import importlib.util

    path = tmp_path / "c.toml"
    path.write_text('[state]\nbackend = "redis"\nurl = "redis://127.0.0.1:1/0"\n[providers.a]\n'
                    'command_template = ["a"]\nprompt = "stdin"\n', encoding="utf-8")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a))
    code, out, err = adws(capsys, "check", str(path))
    assert (code, out) == (0, f"{path}: OK — 1 provider, 0 rules (0 enabled), 0 scenarios\n")
    assert err == ("  note: the redis backend needs the redis package, which this Python lacks "
                   "(pip install 'adws[redis]')\n")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert adws(capsys, "check", str(path))[2] == ""  # installed: nothing to note
