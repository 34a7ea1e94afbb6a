"""`adws run-many` and `Engine.run_many`: input validation, bounded concurrency, events, results, Ctrl-C.

Fake agent CLIs (tests/fakes/bin) on PATH; state and audit in a temp dir. The failing provider declares the
fake's `auth` scenario in its own `env`, so which task fails is decided by routing, not by the test harness.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adws import audit
from adws.batch import BatchInputError, BatchItem, Event, EventKind, _Batch, coerce_items, items_from_text, run_many
from adws.cli import main
from adws.engine import Engine, load
from adws.task import Task
from tests.helpers import FAKES_BIN, ROOT, fake_env
from tests.test_cli_signals import _live_members

GATE_AGENT = Path(__file__).resolve().parent / "fakes" / "gate_agent.py"

CONFIG = """
[routing]
chain = ["claude"]

[[routing.rules]]
name = "doomed-on-copilot"
conditions = { labels = ["doomed"] }
provider = "copilot"
fallback = false

[[routing.rules]]
name = "gated"
conditions = { labels = ["gated"] }
provider = "gated"
fallback = false

[providers.claude]
command_template = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
prompt = "stdin"
output_format = "claude-stream-json"
timeout = 60
kill_grace = 1

[providers.copilot]
command_template = ["copilot", "-p", "{{ prompt }}", "--output-format", "json"]
prompt = "arg"
output_format = "copilot-json"
env = { FAKE_SCENARIO = "auth" }
kill_grace = 1

[providers.gated]
command_template = ["PYTHON", "GATE_AGENT", "{{ prompt }}"]
prompt = "arg"
output_format = "text"
timeout = 60
kill_grace = 1

[audit]
path = "audit.jsonl"
""".replace("PYTHON", sys.executable).replace("GATE_AGENT", str(GATE_AGENT))

GH_LIST = [  # what `gh issue list --json number,title,body,labels` prints
    {"body": "Crash on empty input.", "labels": [{"id": "LA_1", "name": "bug", "description": "", "color": "d73a4a"}],
     "number": 7, "title": "Parser crashes"},
    {"body": "Document --wait.", "labels": [], "number": 8, "title": "Docs for wait"},
]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    monkeypatch.setenv("FAKE_AGENT_LOG", str(tmp_path / "agents.jsonl"))
    monkeypatch.setenv("GATE_DIR", str(tmp_path / "gate"))
    for name in ("FAKE_SCENARIO", "ADWS_CONFIG", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "gate").mkdir()
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "fix.md").write_text("Fix the parser.\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def jsonl(*items: dict[str, Any]) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


def agent_calls(here: Path) -> list[dict[str, Any]]:
    log = here / "agents.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


# -- input ----------------------------------------------------------------------------------------------------


def test_json_lines_items_with_prompt_prompt_file_and_workdir(here: Path) -> None:
    (here / "repo").mkdir()
    text = jsonl({"task": {"id": "a", "title": "one"}, "prompt": "Do one."},
                 {"task": {"number": 42, "title": "two", "labels": [{"name": "bug"}]},
                  "prompt_file": "prompts/fix.md", "workdir": "repo"})
    items = items_from_text("\n" + text, source="tasks.jsonl", base_dir=here)
    assert items == [
        BatchItem(Task(id="a", title="one"), "Do one.", ".", "tasks.jsonl line 2"),
        BatchItem(Task(number=42, title="two", labels=("bug",)), "Fix the parser.\n", str(here / "repo"),
                  "tasks.jsonl line 3"),
    ]
    assert [i.label for i in items] == ["a", "#42"]


def test_a_gh_issue_list_array_with_a_prompt_template(here: Path) -> None:
    template = "Fix issue #{{ task.number }}: {{ task.title }}\n\n{{ task.body }}\nLabels: {{ task.labels|join(', ') }}"
    items = items_from_text(json.dumps(GH_LIST), source="issues.json", prompt_template=template)
    assert [i.prompt for i in items] == [
        "Fix issue #7: Parser crashes\n\nCrash on empty input.\nLabels: bug",
        "Fix issue #8: Docs for wait\n\nDocument --wait.\nLabels: ",
    ]
    assert [i.where for i in items] == ["issues.json [0]", "issues.json [1]"]


def test_problems_are_listed_in_line_order_json_errors_among_the_others(here: Path) -> None:
    # A bad task on line 1 is listed before line 2's broken JSON (JSON errors were once collected first).
    text = "\n".join([json.dumps({"task": {"titel": "typo"}, "prompt": "x"}), "{not json",
                      json.dumps({"task": {"id": "b"}}), "[1,"])
    with pytest.raises(BatchInputError) as caught:
        items_from_text(text, source="t.jsonl", base_dir=here)
    assert [p.split(":")[0] for p in caught.value.problems] == \
        ["t.jsonl line 1", "t.jsonl line 2", "t.jsonl line 3", "t.jsonl line 4"]
    assert caught.value.problems[1] == ("t.jsonl line 2: not valid JSON: Expecting property name enclosed in "
                                        "double quotes: line 1 column 2 (char 1)")


def test_every_problem_is_reported_before_anything_runs(here: Path) -> None:
    text = "\n".join([
        json.dumps({"task": {"title": "ok"}, "prompt": "fine"}),
        "{not json",
        json.dumps({"task": {"titel": "typo"}, "prompt": "x"}),
        json.dumps({"task": {"id": "b"}}),
        json.dumps({"task": {"id": "c"}, "prompt": "x", "prompt_file": "p.md"}),
        json.dumps({"task": {"id": "d"}, "promt": "x", "workdir": "nowhere"}),
        json.dumps({"task": {"id": "e"}, "prompt_file": "missing.md"}),
        json.dumps({"task": {"id": "f"}, "prompt": "  \n"}),
        json.dumps({"task": {"id": "b"}, "prompt": "again"}),
        json.dumps(["a list"]),
    ])
    with pytest.raises(BatchInputError) as caught:
        items_from_text(text, source="t.jsonl", base_dir=here)
    problems = caught.value.problems
    assert problems[0].startswith("t.jsonl line 2: not valid JSON: Expecting property name")
    with pytest.raises(BatchInputError) as huge:  # an integer beyond Python's digit limit, in a line and in a list
        items_from_text('{"task": {"id": "a", "number": ' + "9" * 5000 + "}}", source="t.jsonl", base_dir=here)
    assert huge.value.problems[0].startswith("t.jsonl line 1: not valid JSON: Exceeds the limit (4300 digits)")
    with pytest.raises(BatchInputError) as huge:
        items_from_text("[" + "9" * 5000 + "]", source="t.json", base_dir=here)
    assert huge.value.problems[0].startswith("t.json: not valid JSON: Exceeds the limit (4300 digits)")
    assert problems[1:] == [
        't.jsonl line 3: task: unknown field "titel" (did you mean "title"?)',
        "t.jsonl line 4: no prompt: give prompt or prompt_file, or run with --prompt-template",
        "t.jsonl line 5: give prompt or prompt_file, not both",
        't.jsonl line 6: unknown key "promt" (did you mean "prompt"?); an item has task, prompt, prompt_file, '
        "workdir",
        "t.jsonl line 6: no prompt: give prompt or prompt_file, or run with --prompt-template",
        "t.jsonl line 6: workdir: nowhere is not a directory",
        "t.jsonl line 7: prompt_file missing.md: cannot read: No such file or directory",
        "t.jsonl line 8: the prompt is empty; an agent given no prompt would only guess",
        "t.jsonl line 10: expected an object with a task, got an array",
    ]
    assert str(caught.value).startswith("10 problems in the tasks; nothing was run\n  t.jsonl line 2:")


def test_a_duplicate_task_is_refused(here: Path) -> None:
    text = jsonl({"task": {"number": 7}, "prompt": "x"}, {"task": {"number": 7, "title": "again"}, "prompt": "y"})
    with pytest.raises(BatchInputError) as caught:
        items_from_text(text, source="t.jsonl")
    assert caught.value.problems == ["t.jsonl line 2: task #7 is also t.jsonl line 1; give each task once"]


def test_a_template_with_an_unknown_variable_is_refused(here: Path) -> None:
    with pytest.raises(BatchInputError) as caught:
        items_from_text(json.dumps(GH_LIST), source="i.json", prompt_template="Fix {{ issue.title }}")
    assert caught.value.problems[0].startswith(
        "--prompt-template: template 'Fix {{ issue.title }}' uses unknown variable \"issue\"")


def test_cli_bad_input_exits_2_and_runs_nothing(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "tasks.jsonl").write_text(jsonl({"task": {"id": "a"}, "prompt": "go"}, {"task": {"id": "b"}}),
                                      encoding="utf-8")
    assert main(["run-many", "--config", "config.toml", "--tasks", "tasks.jsonl", "--json"]) == 2
    err = capsys.readouterr().err
    assert err == ("adws: 1 problem in the tasks; nothing was run\n  tasks.jsonl line 2: no prompt: give prompt or "
                   "prompt_file, or run with --prompt-template\n")
    assert agent_calls(here) == []


# -- running --------------------------------------------------------------------------------------------------


def test_cli_json_prints_one_run_result_per_task_and_exits_1_when_any_failed(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "tasks.jsonl").write_text(jsonl(
        {"task": {"number": 1, "title": "fine"}, "prompt": "Do it."},
        {"task": {"number": 2, "title": "doomed", "labels": ["doomed"]}, "prompt": "Do it."},
        {"task": {"number": 3, "title": "fine too"}, "prompt_file": "prompts/fix.md"},
    ), encoding="utf-8")
    code = main(["run-many", "--config", "config.toml", "--tasks", "tasks.jsonl", "--json", "--concurrency", "2"])
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    by_number = {line["task"]["number"]: line for line in lines}
    assert sorted(by_number) == [1, 2, 3]
    for line in lines:  # the `adws run --json` shape, plus which task it is
        assert {"success", "provider", "model", "account", "rule", "attempts", "index", "task"} <= line.keys()
    assert by_number[1]["success"] and by_number[3]["success"]
    assert by_number[1]["provider"] == "claude"
    assert not by_number[2]["success"]
    assert by_number[2]["attempts"][0]["outcome"] == "auth" and by_number[2]["rule"] == "doomed-on-copilot"
    records = audit.read(str(here / "audit.jsonl"))
    assert sorted(r["task"]["number"] for r in records) == [1, 2, 3]


def test_cli_exits_0_when_every_task_succeeded_and_prints_a_line_each(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "issues.json").write_text(json.dumps(GH_LIST), encoding="utf-8")
    (here / "prompt.j2").write_text("Fix #{{ task.number }}: {{ task.title }}", encoding="utf-8")
    code = main(["run-many", "--config", "config.toml", "--tasks", "issues.json", "--prompt-template",
                 "prompt.j2"])
    captured = capsys.readouterr()
    assert code == 0
    assert sorted(captured.out.splitlines()) == ["OK #7: succeeded on claude", "OK #8: succeeded on claude"]
    # Off a terminal the progress is one plain line per event, without colour codes.
    progress = captured.err.splitlines()
    assert "\x1b[" not in captured.err
    assert sum(line.endswith("#7 started") for line in progress) == 1
    assert any(line.endswith("#7 attempt 1 tier 1 claude: started") for line in progress)
    assert any("#8 success" in line for line in progress)
    assert sorted(call["prompt"] for call in agent_calls(here)) == ["Fix #7: Parser crashes", "Fix #8: Docs for wait"]


def test_run_many_bounds_concurrency_and_reports_events_in_order(here: Path) -> None:
    engine = load("config.toml")
    events: list[Event] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def on_event(event: Event) -> None:
        nonlocal running, most
        with lock:
            events.append(event)
            if event.kind is EventKind.ATTEMPT_STARTED:
                running += 1
                most = max(most, running)
                if running == 2:
                    # Two agents hold the gate at once: concurrency really is 2. Let them all finish.
                    (here / "gate" / "open").touch()
            elif event.kind is EventKind.ATTEMPT_FINISHED:
                running -= 1

    items = [{"task": {"number": n, "title": f"t{n}", "labels": ["gated"]}, "prompt": f"task {n}"}
             for n in range(1, 5)]
    outcomes = engine.run_many(items, concurrency=2, on_event=on_event)
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert all(o.success for o in outcomes)
    assert most == 2
    for index in range(4):
        kinds = [e.kind for e in events if e.index == index]
        assert kinds == [EventKind.TASK_STARTED, EventKind.ATTEMPT_STARTED, EventKind.ATTEMPT_FINISHED,
                         EventKind.TASK_FINISHED]
    finished = [e for e in events if e.kind is EventKind.ATTEMPT_FINISHED]
    assert {e.outcome for e in finished} == {"success"} and {e.provider for e in finished} == {"gated"}
    assert {e.tier for e in finished} == {1} and {e.attempt for e in finished} == {1}


def test_run_many_with_a_memory_store_shares_it_between_workers(here: Path) -> None:
    (here / "config.toml").write_text(CONFIG + '\n[state]\nbackend = "memory"\n', encoding="utf-8")
    engine = load("config.toml")
    outcomes = engine.run_many([{"task": {"number": n}, "prompt": "go"} for n in range(3)], concurrency=3)
    assert all(o.success for o in outcomes)
    # Every worker wrote to the engine's own store: its usage counts all three attempts.
    totals = engine.store.usage_totals({"claude": datetime(2000, 1, 1, tzinfo=UTC)})
    assert totals[("claude", "default")].requests == 3


def test_a_task_that_cannot_start_fails_alone(here: Path) -> None:
    engine = load("config.toml")
    gone = here / "gone"
    gone.mkdir()
    items = [BatchItem(Task(number=1), "go", str(gone)), BatchItem(Task(number=2), "go", ".")]
    gone.rmdir()  # vanished between validation and running
    outcomes = engine.run_many(items, concurrency=1)
    assert outcomes[0].error == f"workdir: {gone} is not a directory"
    assert outcomes[0].to_dict()["success"] is False and outcomes[1].success


# -- Ctrl-C ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_ends_every_agent_group_and_records_every_task(here: Path) -> None:
    (here / "tasks.jsonl").write_text(jsonl(*({"task": {"number": n}, "prompt": "hang"} for n in (1, 2))),
                                      encoding="utf-8")
    env = {**os.environ, "FAKE_SCENARIO": "hang", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "adws", "run-many", "--config", "config.toml", "--tasks",
                             "tasks.jsonl", "--json", "--concurrency", "2"], cwd=here, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while len(agent_calls(here)) < 2:  # both agents (and the grandchildren they spawn) are running
        assert time.monotonic() < deadline, "agents never started"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pids = [call["pid"] for call in agent_calls(here)]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    for pid in pids:  # each agent led its own group; nothing of it survives, also the SIGTERM-ignoring child
        assert _live_members(pid) == []
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["task"]["number"] for line in lines) == [1, 2]
    assert all(line["interrupted"] and not line["success"] and len(line["attempts"]) == 1 for line in lines)
    records = audit.read(str(here / "audit.jsonl"))
    assert sorted(r["task"]["number"] for r in records) == [1, 2]
    for record in records:  # each killed attempt is recorded as interrupted, not as a crash of the provider
        assert [(a["outcome"], a["reason"], a["action"]) for a in record["attempts"]] == [
            ("error", "cancelled: the run was cancelled and the agent's process group ended", "stop")]
    from adws.state import SqliteStore

    store = SqliteStore(str(here / "state.sqlite3"))
    assert store.get_breaker("claude").failures == 0  # Ctrl-C is not the provider's failure


def test_cli_a_task_with_nothing_to_run_says_where_to_see_why(here: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(here / "empty-bin"))  # no agent CLI installed: every tier is skipped
    (here / "issues.json").write_text(json.dumps(GH_LIST[:1]), encoding="utf-8")
    (here / "prompt.j2").write_text("Fix #{{ task.number }}", encoding="utf-8")
    code = main(["run-many", "--config", "config.toml", "--tasks", "issues.json", "--prompt-template", "prompt.j2",
                 "--quiet"])
    assert code == 1
    # decision.skipped is a field of the JSON; a person is told what to run to see the reasons.
    assert capsys.readouterr().out == ("FAILED #7: nothing to run: every tier was skipped (why: adws route with "
                                       "this task, or run-many --json)\n")
    # The progress line on stderr says it the same way.
    assert main(["run-many", "--config", "config.toml", "--tasks", "issues.json", "--prompt-template",
                 "prompt.j2"]) == 1
    progress = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d #7 failed \(nothing to run: every tier was skipped \(why: adws route with "
                        r"this task, or run-many --json\)\) \d+\.\d s", progress[-1]), progress


def test_a_stop_after_task_finished_does_not_turn_its_failed_outcome_interrupted(
        tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    """The outcome is decided once, when task_finished is announced: a Ctrl-C landing between that event and the
    batch's own bookkeeping (here: the token cancelled by the event's callback) leaves both saying "failed"."""
    engine = make_engine(fake_env(tmp_path))
    events: list[Event] = []
    batch: _Batch | None = None

    def on_event(event: Event) -> None:
        events.append(event)
        if event.kind is EventKind.TASK_FINISHED:
            assert batch is not None
            batch.token.cancel()  # the stop arrives just after the event went out

    items = coerce_items([BatchItem(Task(title="t"), "fix it", str(tmp_path / "missing"))])
    batch = _Batch(engine, items, concurrency=1, on_event=on_event, on_result=None)
    outcome = batch._run_one(0)
    assert [e.outcome for e in events if e.kind is EventKind.TASK_FINISHED] == ["failed"]
    assert batch.token.cancelled.is_set()
    assert not outcome.interrupted and outcome.error is not None and "is not a directory" in outcome.error


def test_an_on_result_that_raises_stops_and_records_every_running_task(here: Path) -> None:
    # A caller whose output failed (its pipe closed, its disk full): the batch ends as on Ctrl-C, no agent is left
    # running behind it, every task is in the audit log, and the caller's exception goes on.
    engine = load(str(here / "config.toml"))
    items = [{"task": {"number": 1, "labels": ["doomed"]}, "prompt": "x"},
             {"task": {"number": 2, "labels": ["gated"]}, "prompt": "x"}]
    seen: list[int] = []

    def on_result(outcome: Any) -> None:
        seen.append(outcome.index)
        raise RuntimeError("stdout is gone")

    try:
        with pytest.raises(RuntimeError, match="stdout is gone"):
            run_many(engine, items, concurrency=2, on_result=on_result)
        assert seen == [0]  # not asked again once it failed
        started = [int(p.name.split("-")[1]) for p in (here / "gate").glob("started-*")]
        assert len(started) == 1 and _live_members(started[0]) == []
        records = {r["task"]["number"]: r for r in audit.read(str(here / "audit.jsonl"))}
        assert records[1]["success"] is False
        assert [a["reason"] for a in records[2]["attempts"]] == [
            "cancelled: the run was cancelled and the agent's process group ended"]
    finally:
        (here / "gate" / "open").touch()
        engine.close()


def test_a_stop_inside_on_result_still_hands_on_the_tasks_it_ends(here: Path) -> None:
    # Ctrl-C (or a held SIGTERM given back) landing while a result is printed: the tasks the stop ends are
    # printed too, as when it lands anywhere else.
    engine = load(str(here / "config.toml"))
    items = [{"task": {"number": 1, "labels": ["doomed"]}, "prompt": "x"},
             {"task": {"number": 2, "labels": ["gated"]}, "prompt": "x"}]
    seen: list[tuple[int, bool]] = []

    def on_result(outcome: Any) -> None:
        seen.append((outcome.index, outcome.interrupted))
        if len(seen) == 1:
            raise KeyboardInterrupt("SIGTERM")

    try:
        with pytest.raises(KeyboardInterrupt):
            run_many(engine, items, concurrency=2, on_result=on_result)
        assert seen == [(0, False), (1, True)]
    finally:
        (here / "gate" / "open").touch()
        engine.close()


def test_cli_a_bad_tasks_file_fails_before_the_engine_is_loaded(here: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (here / "tasks.jsonl").write_text(jsonl({"task": {"id": "b"}}), encoding="utf-8")
    problem = ("adws: 1 problem in the tasks; nothing was run\n  tasks.jsonl line 1: no prompt: give prompt or "
               "prompt_file, or run with --prompt-template\n")
    # The tasks file's problem, without loading the engine (the state store). A config that cannot be read is
    # reported instead: the tasks' text could hold its key variables' values, which only it names.
    assert main(["run-many", "--config", "missing.toml", "--tasks", "tasks.jsonl"]) == 2
    assert capsys.readouterr().err.startswith("missing.toml: config file not found")
    import adws.cli

    monkeypatch.setattr(adws.cli, "_engine", lambda args: pytest.fail("the engine was loaded for a bad tasks file"))
    assert main(["run-many", "--config", "config.toml", "--tasks", "tasks.jsonl"]) == 2
    assert capsys.readouterr().err == problem
    assert agent_calls(here) == []
