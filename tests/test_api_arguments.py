"""The Python API at its boundary: a wrong argument is adws's own error naming it, never an AttributeError from
deep inside; prompt and workdir problems name the prompt and the workdir; run() tells its task's events as
run_many does; task JSON is read with a BOM, JSON's type names and a hint for a forgotten `@`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import adws
from adws.batch import BatchInputError, BatchItem, items_from_text
from adws.cli import main
from adws.config import load_config
from adws.engine import Engine
from adws.errors import ArgumentError, MissingWorkdirError, PromptError, TaskError, WorkdirError
from adws.events import Event, EventKind
from adws.task import Task, parse_task_json
from tests.helpers import NOW, ROOT, fake_env

TASK = {"title": "Fix the parser", "number": 42}
WORKDIR_TAKES = "workdir: expected a directory's path (a non-empty str or a pathlib.Path)"


@pytest.fixture
def engine(tmp_path: Path, make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(fake_env(tmp_path, opencode="success"))


# -- wrong types: ArgumentError naming the argument, before anything runs ----------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"prompt": ...}, "prompt: expected the prompt's text (a str), got ... (Ellipsis: a placeholder, not a value)"),
    ({"prompt": None}, "prompt: expected the prompt's text (a str), got None"),
    ({"prompt": 5}, "prompt: expected the prompt's text (a str), got int 5"),
    ({"prompt": b"fix it"}, "prompt: expected the prompt's text (a str), got bytes b'fix it'"),
    ({"prompt": "p", "workdir": 5}, f"{WORKDIR_TAKES}, got int 5"),
    ({"prompt": "p", "workdir": ""}, f"{WORKDIR_TAKES}, got str ''"),
    ({"prompt": "p", "now": "2026-11-18T23:30"},
     "now: expected a datetime or None, got str '2026-11-18T23:30' (parse it with datetime.fromisoformat(...); "
     "without an offset it is read in the routing timezone)"),
    ({"prompt": "p", "now": 1_700_000_000}, "now: expected a datetime or None, got int 1700000000"),
    ({"prompt": "p", "wait": "1h"}, "wait: expected seconds, a number >= 0 or None, got str '1h'"),
    ({"prompt": "p", "wait": -1}, "wait: expected seconds, a number >= 0 or None, got int -1"),
    ({"prompt": "p", "wait": float("nan")}, "wait: expected seconds, a number >= 0 or None, got float nan"),
    ({"prompt": b"x" * 100}, "prompt: expected the prompt's text (a str), got bytes " + repr(b"x" * 100)[:57] + "..."),
    ({"prompt": "p", "on_event": "print"},
     "on_event: expected a callable (called with an adws.events.Event) or None, got str 'print'"),
])
def test_run_refuses_a_wrong_argument_by_name_before_anything(
        engine: Engine, tmp_path: Path, options: dict[str, Any], message: str) -> None:
    events: list[Event] = []
    options = {"workdir": tmp_path, **options}
    if "on_event" not in options:
        options["on_event"] = events.append
    with pytest.raises(ArgumentError) as caught:
        engine.run(TASK, **options)
    assert str(caught.value) == message
    # adws's own error, and the Python error such a mistake is: either catches it.
    assert isinstance(caught.value, adws.AdwsError) and isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ValueError)
    assert events == []  # a call refused is not a task started
    assert not (tmp_path / "agents.jsonl").exists()


def test_route_explain_and_the_router_refuse_a_string_for_now_and_a_number_for_prompt(engine: Engine) -> None:
    for call in (engine.route, engine.explain, engine.router.route, engine.router.explain):
        with pytest.raises(ArgumentError, match=r"^now: expected a datetime or None, got str '2026-11-18T23:30'"):
            call(TASK, now="2026-11-18T23:30")  # type: ignore[operator]
        with pytest.raises(ArgumentError, match=r"^prompt: expected the prompt's text \(a str, or None\), got int 3$"):
            call(TASK, prompt=3)  # type: ignore[operator]
    with pytest.raises(ArgumentError, match=r"^now: "):
        engine.router.prepare(TASK, now="2026-11-18")  # type: ignore[arg-type]


def test_route_takes_a_naive_datetime_in_the_routing_timezone_and_a_datetime_subclass(engine: Engine) -> None:
    class FakeDatetime(datetime):  # as freezegun and pendulum make: still a datetime
        pass

    naive = engine.route(TASK, now=datetime(2026, 11, 18, 23, 30))
    assert naive.now.replace(tzinfo=None) == datetime(2026, 11, 18, 23, 30)
    assert str(naive.now.tzinfo) == engine.config.timezone
    sub = engine.route(TASK, now=FakeDatetime(2026, 11, 18, 23, 30, tzinfo=UTC))
    assert sub.now == datetime(2026, 11, 18, 23, 30, tzinfo=UTC)


def test_engine_takes_a_config_path_as_load_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    path = ROOT / "config.toml"
    for given in (str(path), path):
        engine = adws.Engine(given, environ={"ADWS_STATE_PATH": str(tmp_path / "state.sqlite3")})
        try:
            loaded = adws.load(path, environ={"ADWS_STATE_PATH": str(tmp_path / "state.sqlite3")})
            assert engine.config.source == loaded.config.source == str(given)
            assert engine.route(TASK, now=NOW).to_dict() == loaded.route(TASK, now=NOW).to_dict()
            assert engine.reload().state == "ok"  # built from a file: it can read it again
            loaded.close()
        finally:
            engine.close()


@pytest.mark.parametrize(("build", "message"), [
    (lambda: adws.Engine(5), "config: expected a config file's path or a CompiledConfig "  # type: ignore[arg-type]
                             "(from adws.config.load_config), got int 5"),
    (lambda: adws.Engine({"routing": {}}), "config: expected a config file's path or a CompiledConfig "  # type: ignore[arg-type]
                                           "(from adws.config.load_config), got dict {'routing': {}}"),
    (lambda: adws.Engine(load_config(ROOT / "config.toml"), environ=["A=1"]),  # type: ignore[arg-type]
     "environ: expected a mapping of names to values (a dict, os.environ) or None, got list ['A=1']"),
    (lambda: adws.Engine(load_config(ROOT / "config.toml"), clock="utc"),  # type: ignore[arg-type]
     "clock: expected a callable (called with no arguments, returning an aware datetime), got str 'utc'"),
    (lambda: adws.Engine(load_config(ROOT / "config.toml"), clock=None),  # type: ignore[arg-type]
     "clock: expected a callable (called with no arguments, returning an aware datetime), got None"),
    (lambda: adws.Engine(load_config(ROOT / "config.toml"), sleep=None),  # type: ignore[arg-type]
     "sleep: expected a callable (called with seconds, as time.sleep), got None"),
    (lambda: adws.ModelRouter(load_config(ROOT / "config.toml"), clock=None),  # type: ignore[arg-type]
     "clock: expected a callable (called with no arguments, returning an aware datetime), got None"),
    (lambda: adws.Engine(load_config(ROOT / "config.toml"), store="state.sqlite3"),  # type: ignore[arg-type]
     "store: expected a state store (adws.state.MemoryStore, SqliteStore, RedisStore, or one that keeps the "
     "StateStore contract) or None, got str 'state.sqlite3'"),
    (lambda: adws.Engine(load_config(ROOT / "config.toml"), strict="yes"),  # type: ignore[arg-type]
     "strict: expected True or False, got str 'yes'"),
    (lambda: adws.load(None), "path: expected a file's path (a non-empty str or a pathlib.Path), got None"),  # type: ignore[arg-type]
    (lambda: adws.load(ROOT / "config.toml", reload="yes"), "reload: expected True or False, got str 'yes'"),  # type: ignore[arg-type]
    (lambda: adws.load(ROOT / "config.toml", reload_interval="1s"),  # type: ignore[arg-type]
     "reload_interval: expected seconds, a number >= 0, got str '1s'"),
    (lambda: adws.ModelRouter("config.toml"),  # type: ignore[arg-type]
     "config: expected a CompiledConfig (from adws.config.load_config(path)), got str 'config.toml'"),
])
def test_load_engine_and_router_refuse_wrong_arguments_by_name(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        build()
    assert str(caught.value) == message


@pytest.mark.parametrize(("options", "message"), [
    ({"clok": lambda: NOW}, 'clok: not an option of load (did you mean "clock"?); '),
    ({"auto_reload": True}, 'auto_reload: not an option of load (did you mean "reload"?); '),
    ({"watcher": None}, "watcher: not an option of load; "),
], ids=["typo of an Engine option", "an Engine keyword load sets itself", "no near miss"])
def test_load_refuses_an_unknown_option_by_name(options: dict[str, object], message: str) -> None:
    # Python's own TypeError ("unexpected keyword argument") came from inside Engine, without a "did you mean".
    with pytest.raises(ArgumentError) as caught:
        adws.load(ROOT / "config.toml", **options)  # type: ignore[arg-type]
    assert str(caught.value) == message + ("it takes path, reload, reload_interval, strict and Engine's store, "
                                           "clock, sleep, runner, environ, which")


def test_load_options_are_the_engine_keywords_load_does_not_set() -> None:
    import inspect

    from adws.engine import LOAD_OPTIONS

    keywords = [p.name for p in inspect.signature(Engine).parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert set(LOAD_OPTIONS) == set(keywords) - {"watcher", "auto_reload", "strict"}


def test_the_provider_manager_checks_what_it_is_given(engine: Engine, tmp_path: Path) -> None:
    decision = engine.route(TASK)
    with pytest.raises(ArgumentError, match=r"^task: expected an adws.Task, got dict"):
        engine.manager.run(TASK, decision, prompt="p", workdir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"^decision: expected an adws.Decision \(from engine.route\), got None"):
        engine.manager.run(Task(title="t"), None, prompt="p", workdir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"^prompt: "):
        engine.manager.run(Task(title="t"), decision, prompt=..., workdir=tmp_path)  # type: ignore[arg-type]
    assert not (tmp_path / "agents.jsonl").exists()


def test_run_many_refuses_wrong_arguments_by_name(engine: Engine, tmp_path: Path) -> None:
    item = {"task": TASK, "prompt": "p", "workdir": str(tmp_path)}
    # A ValueError, as before this check was ArgumentError.
    with pytest.raises(ValueError, match=r"^concurrency: expected an integer >= 1, got int 0$"):
        engine.run_many([item], concurrency=0)
    with pytest.raises(ArgumentError, match=r"^concurrency: expected an integer >= 1, got str '2'$"):
        engine.run_many([item], concurrency="2")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"^items: expected an iterable of items .*, got None$"):
        engine.run_many(None)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"^items: expected an iterable of items .*, got dict"):
        engine.run_many(item)  # type: ignore[arg-type]  # one item, not a list of them
    with pytest.raises(ArgumentError, match=r"^wait: "):
        engine.run_many([item], wait="1h")  # type: ignore[arg-type]
    with pytest.raises(BatchInputError) as caught:
        engine.run_many([Task(title="t")])  # type: ignore[list-item]
    assert caught.value.problems == [
        'item 0: expected an object with a task, got Task (give a Task as BatchItem(task, prompt, workdir) or '
        '{"task": task, "prompt": text})']
    assert not (tmp_path / "agents.jsonl").exists()


def test_run_many_takes_paths_and_checks_batch_items_types(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "fix.md").write_text("fix it", encoding="utf-8")
    outcomes = engine.run_many([{"task": TASK, "prompt_file": tmp_path / "fix.md", "workdir": tmp_path}])
    assert outcomes[0].success and outcomes[0].item.workdir == str(tmp_path)
    with pytest.raises(BatchInputError) as caught:
        engine.run_many([BatchItem(TASK, ..., 5)])  # type: ignore[arg-type]
    assert caught.value.problems == [
        "item 0: task: expected an adws.Task (a dict goes in {\"task\": ...} items), got dict "
        "{'title': 'Fix the parser', 'number': 42}",
        "item 0: prompt: expected the prompt's text (a str), got ... (Ellipsis: a placeholder, not a value)",
        "item 0: workdir: expected a directory's path (a non-empty str or a pathlib.Path), got int 5"]


class _BytesPath:
    """An os.PathLike whose path is bytes: run() refuses it, so run_many must refuse it before any task starts."""

    def __init__(self, path: bytes) -> None:
        self.path = path

    def __fspath__(self) -> bytes:
        return self.path

    def __repr__(self) -> str:
        return "_BytesPath()"


def test_run_many_refuses_a_bytes_path_workdir_up_front(engine: Engine, tmp_path: Path) -> None:
    events: list[Event] = []
    workdir = _BytesPath(bytes(tmp_path))
    with pytest.raises(ArgumentError, match=f"^{re.escape(WORKDIR_TAKES)}, got _BytesPath"):
        engine.run(Task(title="t"), prompt="fix it", workdir=workdir)  # type: ignore[arg-type]
    with pytest.raises(BatchInputError) as caught:
        engine.run_many([BatchItem(Task(title="t"), "fix it", workdir)], on_event=events.append)  # type: ignore[arg-type]
    assert caught.value.problems == [f"item 0: {WORKDIR_TAKES}, got _BytesPath _BytesPath()"]
    assert events == []


def test_run_many_speaks_to_a_python_caller_not_of_command_line_flags(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(BatchInputError) as caught:
        engine.run_many([{"task": TASK, "workdir": str(tmp_path)}])
    assert caught.value.problems == ["item 0: no prompt: give prompt or prompt_file"]
    assert "--" not in str(caught.value)
    # The tasks file of `adws run-many` still names the flag that gives a prompt to every task.
    with pytest.raises(BatchInputError) as from_file:
        items_from_text('{"task": {"title": "t"}}\n', source="t.jsonl")
    assert from_file.value.problems == ["t.jsonl line 1: no prompt: give prompt or prompt_file, or run with "
                                        "--prompt-template"]


def _cli_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prompt_text: str) -> Path:
    """Fake agents on PATH (opencode succeeds) and a prompt file holding `prompt_text`, for `main(["run", ...])`."""
    for name, value in fake_env(tmp_path, opencode="success").items():
        monkeypatch.setenv(name, value)
    prompt = tmp_path / "prompt.md"
    prompt.write_text(prompt_text, encoding="utf-8")
    return prompt


# -- what is wrong is named: the prompt, the workdir ----------------------------------------------------------


def test_prompt_and_workdir_problems_name_themselves_on_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = _cli_world(tmp_path, monkeypatch, "  \n")
    config = str(ROOT / "config.toml")
    assert main(["run", "--config", config, "--task-json", "{}", "--prompt-file", str(prompt),
                 "--workdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "adws: prompt: empty; an agent given no prompt would only guess\n"
    prompt.write_text("fix it", encoding="utf-8")
    assert main(["run", "--config", config, "--task-json", "{}", "--prompt-file", str(prompt),
                 "--workdir", "/nonexistent/dir"]) == 2
    assert capsys.readouterr().err == "adws: workdir: /nonexistent/dir is not a directory\n"
    assert main(["run", "--config", config, "--task-json", "{}", "--prompt-file", str(tmp_path / "none.md")]) == 2
    assert capsys.readouterr().err == f"adws: cannot read prompt: {tmp_path / 'none.md'}: No such file or directory\n"


def test_the_new_error_classes_are_caught_as_the_old_ones(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(TaskError) as caught:  # code written for run()'s documented TaskError still catches both
        engine.run(TASK, prompt="", workdir=tmp_path)
    assert caught.type is PromptError
    with pytest.raises(TaskError) as caught:
        engine.run(TASK, prompt="p", workdir=tmp_path / "nope")
    assert caught.type is MissingWorkdirError
    assert issubclass(PromptError, TaskError) and issubclass(MissingWorkdirError, WorkdirError)
    assert adws.WorkdirError is WorkdirError
    from adws.workdir import WorkdirError as PolicyError  # where it was first: the same class

    assert PolicyError is WorkdirError


# -- events: run() as run_many --------------------------------------------------------------------------------


def test_run_tells_its_task_started_and_finished_around_the_attempts(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = []
    with caplog.at_level(logging.INFO, logger="adws.events"):
        result = engine.run(TASK, prompt="fix it", workdir=tmp_path, on_event=events.append)
    assert result.success
    assert [e.kind for e in events] == [EventKind.TASK_STARTED, EventKind.ATTEMPT_STARTED,
                                        EventKind.ATTEMPT_FINISHED, EventKind.TASK_FINISHED]
    assert {(e.index, e.task) for e in events} == {(0, "#42")}
    last = events[-1]
    assert (last.outcome, last.reason, last.provider, last.model) == ("success", None, result.provider, result.model)
    assert last.duration_ms is not None and last.duration_ms >= 0
    # Each event once on the logger too.
    logged = [r.adws_event["kind"] for r in caplog.records if r.name == "adws.events"]  # type: ignore[attr-defined]
    assert logged == ["task_started", "attempt_started", "attempt_finished", "task_finished"]


def test_a_run_refused_once_started_still_tells_its_end(engine: Engine, tmp_path: Path) -> None:
    events: list[Event] = []
    with pytest.raises(MissingWorkdirError):
        engine.run(TASK, prompt="fix it", workdir=tmp_path / "gone", on_event=events.append)
    assert [e.kind for e in events] == [EventKind.TASK_STARTED, EventKind.TASK_FINISHED]
    assert (events[-1].outcome, events[-1].reason) == ("failed", f"workdir: {tmp_path / 'gone'} is not a directory")


def test_a_task_the_config_refuses_is_refused_once_started(engine: Engine, tmp_path: Path) -> None:
    """A field of the wrong type is an error before any event; a value only the config refuses (a priority it
    does not know) is found by routing, after task_started, and task_finished says so (run() docstring)."""
    events: list[Event] = []
    with pytest.raises(TaskError, match="title"):
        engine.run({**TASK, "title": 5}, prompt="fix it", workdir=tmp_path, on_event=events.append)
    assert events == []
    with pytest.raises(TaskError, match="priority"):
        engine.run({**TASK, "priority": "bogus"}, prompt="fix it", workdir=tmp_path, on_event=events.append)
    assert [e.kind for e in events] == [EventKind.TASK_STARTED, EventKind.TASK_FINISHED]
    assert events[-1].outcome == "failed"


def test_a_failed_run_tells_failed_with_the_results_message(tmp_path: Path, make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(fake_env(tmp_path, opencode="auth", copilot="auth", cline="auth", ollama="auth"))
    events: list[Event] = []
    result = engine.run(TASK, prompt="fix it", workdir=tmp_path, on_event=events.append)
    assert not result.success
    assert events[0].kind is EventKind.TASK_STARTED and events[-1].kind is EventKind.TASK_FINISHED
    assert (events[-1].outcome, events[-1].reason) == ("failed", result.message)
    assert sum(e.kind is EventKind.TASK_FINISHED for e in events) == 1


def test_adws_run_prints_the_attempts_not_the_task_events(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = _cli_world(tmp_path, monkeypatch, "fix it")
    # A copy: the shipped config keeps its audit log and run directories beside it, which is the checkout.
    config = tmp_path / "config.toml"
    config.write_bytes((ROOT / "config.toml").read_bytes())
    main(["run", "--config", str(config), "--task-json", '{"number": 42}', "--prompt-file",
          str(prompt), "--workdir", str(tmp_path)])
    err = capsys.readouterr().err
    assert re.search(r"#42 attempt 1 .*: started", err)
    assert "#42 started" not in err and "#42 success" not in err


# -- task JSON ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind"), [
    ("null", "null"), ("[1]", "an array"), ('"t"', "a string"), ("3", "an integer"), ("2.5", "a number"),
    ("true", "a boolean"),
])
def test_task_json_that_is_not_an_object_is_named_in_jsons_words(text: str, kind: str) -> None:
    with pytest.raises(TaskError) as caught:
        parse_task_json(text)
    assert str(caught.value) == f"invalid task: task must be a JSON object, got {kind}"


def test_task_json_may_start_with_a_bom() -> None:
    assert parse_task_json('\ufeff{"title": "x"}') == {"title": "x"}


@pytest.mark.parametrize("text", ["", "  \n", "\ufeff"])
def test_empty_task_json_is_named_empty_not_bad_json(text: str) -> None:
    with pytest.raises(TaskError) as caught:
        parse_task_json(text)
    assert str(caught.value) == ('invalid task: the task is empty: give a JSON object such as '
                                 '{"title": "...", "labels": [...]}')


def test_a_file_name_given_as_task_json_gets_the_at_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t1.json").write_text('{"title": "x"}', encoding="utf-8")
    with pytest.raises(TaskError) as caught:
        parse_task_json("t1.json")
    assert str(caught.value) == ("invalid task: task is not valid JSON: Expecting value: line 1 column 1 (char 0); "
                                 "t1.json is a file: to read the task from it, write @t1.json")
    with pytest.raises(TaskError) as plain:  # no such file: no hint
        parse_task_json("t2.json")
    assert str(plain.value) == "invalid task: task is not valid JSON: Expecting value: line 1 column 1 (char 0)"


def test_the_command_line_reads_task_files_with_a_bom(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADWS_STATE_PATH", str(tmp_path / "state.sqlite3"))
    task = tmp_path / "task.json"
    task.write_bytes(b'\xef\xbb\xbf{"title": "Fix the parser", "number": 42}')
    config = str(ROOT / "config.toml")
    for args in (["--task-json", f"@{task}"], ["--github-issue", str(task)]):
        main(["route", "--config", config, *args, "--json"])
        captured = capsys.readouterr()
        assert captured.err == "" and json.loads(captured.out)["rule"] == "code-sonnet"


@pytest.mark.parametrize("text", [
    '\ufeff{"task": {"number": 1}, "prompt": "p"}\n{"task": {"number": 2}, "prompt": "p"}\n',
    '\ufeff[{"task": {"number": 1}, "prompt": "p"}, {"task": {"number": 2}, "prompt": "p"}]',
])
def test_run_many_input_may_start_with_a_bom(text: str) -> None:
    items = items_from_text(text, source="t.jsonl")
    assert [item.task.number for item in items] == [1, 2]


def test_run_many_input_names_json_types(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError) as caught:
        items_from_text('null\n{"task": {"number": 1}, "prompt": 5}\n', source="t.jsonl")
    assert caught.value.problems == ["t.jsonl line 1: expected an object with a task, got null",
                                     "t.jsonl line 2: prompt: expected a string, got an integer"]


# -- the README ---------------------------------------------------------------------------------------------


def test_the_readmes_python_example_passes_no_placeholder_as_an_argument() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("```python", readme.index("### From Python"))
    section = readme[start:readme.index("```\n", start + 1)]
    # `prompt=...` reads as a placeholder, but Python runs it as Ellipsis: copied, it would fail.
    assert not re.search(r"\w=\.\.\.[,)]", section)
    assert "prompt=..." not in adws.__doc__  # type: ignore[operator]



# -- a task that is not JSON data: refused before anything runs, and the audit log stays JSON ------------------


def _loop() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["me"] = loop
    return loop


@pytest.mark.parametrize(("task", "problem"), [
    ({"number": 5, "attrs": {(1, 2): 3}}, "attrs: key (1, 2): expected a string, got a tuple"),
    ({"number": 5, "attrs": _loop()}, "attrs.me.me: holds itself (a cycle): JSON data is a tree"),
    ({"number": 6, "attrs": {"n": 10**5000}}, "attrs.n: an integer of more than 4300 digits (at most 4300)"),
    ({"attrs": {"x": float("inf")}}, "attrs.x: expected a finite number, got inf (JSON has no NaN or Infinity)"),
    ({"number": 10**5000}, "number: an integer of more than 4300 digits (at most 4300)"),
])
def test_a_task_that_is_not_json_data_is_refused_before_it_runs(engine: Engine, tmp_path: Path, task: dict[str, Any],
                                                                 problem: str) -> None:
    events: list[Event] = []
    for call in (lambda: engine.route(task, now=NOW), lambda: engine.explain(task, now=NOW),
                 lambda: engine.run(task, prompt="fix it", workdir=tmp_path, on_event=events.append)):
        with pytest.raises(TaskError) as caught:
            call()
        assert caught.value.problems == [problem]
    assert events == []  # nothing ran


def test_the_audit_record_of_a_run_is_written_whatever_attrs_became(engine: Engine, tmp_path: Path) -> None:
    """Intake admits JSON data only; a caller that changes attrs after building the Task still gets its run
    recorded, as valid JSON (no NaN, no Infinity), rather than an error after the agent ran."""
    attrs: dict[Any, Any] = {"ok": 1}
    task = Task(number=7, attrs=attrs)
    attrs.update({(1, 2): 3, "loop": attrs, "big": 10**5000, "x": float("inf"), "y": float("nan")})
    result = engine.run(task, prompt="fix it", workdir=tmp_path)
    assert result.success
    audit_path = engine.config.audit_path
    assert audit_path is not None
    line = Path(audit_path).read_text(encoding="utf-8").splitlines()[-1]
    record = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in the audit line"))
    written = record["task"]["attrs"]
    assert written == {"ok": 1, "(1, 2)": 3, "loop": written["loop"], "big": "<integer of 16610 bits>", "x": "inf",
                       "y": "nan"}
    assert written["loop"]["loop"] == "<cycle>"  # (the record holds a copy of attrs, and the copy holds attrs)


def test_an_integer_too_long_to_print_is_named_by_its_size() -> None:
    """repr() of an integer past Python's digit limit raises ValueError: a message shows its size instead."""
    from adws.arguments import checked_now, checked_prompt

    for check in (checked_prompt, checked_now):
        with pytest.raises(ArgumentError, match="got int an integer of more than 4300 digits"):
            check(10**5000)
