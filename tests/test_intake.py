"""Task intake: priority, specialization and context size as routing sees them, and where each came from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adws.compiled import CompiledConfig
from adws.config import load_config
from adws.config.load import compile_config, parse_toml
from adws.errors import TaskError
from adws.intake import local_time, prepare
from adws.task import Task
from adws.taskview import TaskView
from tests.helpers import ROOT

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")

INTAKE = """
[routing]
timezone = "UTC"

[routing.intake]
priority_labels = { "priority:P0" = "critical", "priority:P1" = "high", "P3" = "low", "Urgent" = "critical" }
chars_per_token = 2.0
default_priority = "normal"

[routing.intake.specialization_labels]
"type:docs" = "docs"
"area:docs*" = "docs"
"bug" = "code"
"design" = "architecture"

[routing.intake.specialization_keywords]
reasoning = ["root cause", "investigate"]
code = ["fix", "implement"]

[providers.only]
command_template = ["only-cli"]
prompt = "stdin"
"""


@pytest.fixture(scope="module")
def config() -> CompiledConfig:
    return compile_config(parse_toml(INTAKE))


def view_of(config: CompiledConfig, task: dict[str, Any] | Task, prompt: str | None = None) -> TaskView:
    task = task if isinstance(task, Task) else Task.from_dict(task)
    return prepare(task, config.intake, UTC_ZONE, NOW, prompt)


# -- priority --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "priority", "source"), [
    ({}, "normal", "default"),
    ({"labels": ["priority:P1"]}, "high", 'label "priority:p1"'),
    ({"labels": ["PRIORITY:p1"]}, "high", 'label "priority:p1"'),  # labels are case-insensitive
    ({"labels": [{"name": "priority:P0"}]}, "critical", 'label "priority:p0"'),
    # Several priority labels: the highest wins, whatever their order.
    ({"labels": ["P3", "priority:P1"]}, "high", 'label "priority:p1"'),
    ({"labels": ["priority:P1", "urgent", "P3"]}, "critical", 'label "urgent"'),
    ({"priority": "low"}, "low", "given"),
    ({"priority": "High"}, "high", "given"),
    ({"priority": "P1"}, "high", 'given as "P1"'),
    ({"priority": "p0"}, "critical", 'given as "p0"'),
    ({"priority": "priority:P0"}, "critical", 'given as "priority:P0"'),
    ({"priority": 0}, "critical", "number 0"),
    ({"priority": 3}, "low", "number 3"),
    # A given priority wins over labels.
    ({"priority": "low", "labels": ["urgent"]}, "low", "given"),
])
def test_priority(config: CompiledConfig, task: dict[str, Any], priority: str, source: str) -> None:
    view = view_of(config, task)
    assert (view.priority, view.sources["priority"]) == (priority, source)
    assert view.priority_rank == {"critical": 3, "high": 2, "normal": 1, "low": 0}[priority]


def test_no_priority_without_a_declared_default() -> None:
    # As in the older router: a task without a priority has none unless default_priority is declared.
    config = compile_config(parse_toml(INTAKE.replace('default_priority = "normal"\n', "")))
    view = view_of(config, {"title": "no priority"})
    assert (view.priority, view.priority_rank, view.sources["priority"]) == (
        None, -1, "none given; no default_priority declared")
    assert view_of(config, {"labels": ["priority:P1"]}).priority == "high"


@pytest.mark.parametrize(("priority", "message"), [
    ("urgnt", 'invalid task: priority: unknown value "urgnt"; use critical, high, normal, low, P0-P3 or 0-3'),
    ("hihg", 'invalid task: priority: unknown value "hihg" (did you mean "high"?); '
             "use critical, high, normal, low, P0-P3 or 0-3"),
    ("P4", 'invalid task: priority: unknown value "P4"; use critical, high, normal, low, P0-P3 or 0-3'),
    (4, "invalid task: priority: 4 is out of range 0-3"),
    (-1, "invalid task: priority: -1 is out of range 0-3"),
])
def test_unknown_priority(config: CompiledConfig, priority: Any, message: str) -> None:
    with pytest.raises(TaskError) as caught:
        view_of(config, {"priority": priority})
    assert str(caught.value) == message


def test_priority_numbers_are_declared() -> None:
    config = compile_config(parse_toml(INTAKE.replace("chars_per_token = 2.0",
                                                      'priority_numbers = ["critical", "normal"]')))
    assert view_of(config, {"priority": 1}).priority == "normal"
    assert view_of(config, {"priority": "P1"}).priority == "normal"
    with pytest.raises(TaskError) as caught:
        view_of(config, {"priority": 2})
    assert str(caught.value) == "invalid task: priority: 2 is out of range 0-1"


def test_default_priority_is_declared() -> None:
    config = compile_config(parse_toml(INTAKE.replace('default_priority = "normal"', 'default_priority = "low"')))
    assert view_of(config, {}).priority == "low"


# -- specialization --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "specialization", "source"), [
    ({}, "general", "default"),
    ({"specialization": "docs"}, "docs", "given"),
    ({"specialization": " Reasoning "}, "reasoning", "given"),
    ({"labels": ["bug"]}, "code", 'label "bug"'),
    ({"labels": ["BUG"]}, "code", 'label "bug"'),
    ({"labels": ["area:docs-site"]}, "docs", 'label "area:docs*"'),
    # Two labels that decide: the one declared first in the config wins, whatever the task's order.
    ({"labels": ["design", "bug"]}, "code", 'label "bug"'),
    ({"labels": ["bug", "area:docs-site"]}, "docs", 'label "area:docs*"'),
    ({"labels": ["design", "type:docs"]}, "docs", 'label "type:docs"'),
    # Keywords when no label decides: the specialization with the most hits.
    ({"title": "Investigate", "body": "Find the root cause, then fix it"}, "reasoning", "keywords (2 hits)"),
    ({"title": "Fix the login", "body": "and implement retries; investigate later"}, "code", "keywords (2 hits)"),
    ({"title": "INVESTIGATE this"}, "reasoning", "keywords (1 hit)"),
    # A label wins over keywords; a given specialization wins over labels.
    ({"title": "investigate the root cause", "labels": ["bug"]}, "code", 'label "bug"'),
    ({"specialization": "general", "labels": ["bug"]}, "general", "given"),
    # Unrelated labels fall through to keywords, then to the default.
    ({"labels": ["question"], "title": "fix"}, "code", "keywords (1 hit)"),
    ({"labels": ["question"], "title": "hello"}, "general", "default"),
])
def test_specialization(config: CompiledConfig, task: dict[str, Any], specialization: str, source: str) -> None:
    view = view_of(config, task)
    assert (view.specialization, view.sources["specialization"]) == (specialization, source)


def test_keyword_ties_go_to_the_first_declared(config: CompiledConfig) -> None:
    view = view_of(config, {"title": "investigate and fix"})
    assert (view.specialization, view.sources["specialization"]) == ("reasoning", "keywords (1 hit)")


def test_unknown_specialization(config: CompiledConfig) -> None:
    with pytest.raises(TaskError) as caught:
        view_of(config, {"specialization": "cod"})
    assert str(caught.value) == (
        'invalid task: specialization: unknown value "cod" (did you mean "code"?); '
        "known: architecture, code, docs, fast_response, general, large_document, reasoning")


def test_specializations_a_config_adds_are_known() -> None:
    config = compile_config(parse_toml(INTAKE.replace('"bug" = "code"', '"bug" = "triage"')))
    assert view_of(config, {"specialization": "triage"}).specialization == "triage"
    assert view_of(config, {"labels": ["bug"]}).specialization == "triage"


# -- context size ----------------------------------------------------------------------------------------


def test_context_tokens_given(config: CompiledConfig) -> None:
    view = view_of(config, {"context_tokens": 12345, "title": "x" * 1000})
    assert (view.context_tokens, view.context_estimated, view.sources["context_tokens"]) == (12345, False, "given")


def test_context_tokens_estimated_from_title_and_body(config: CompiledConfig) -> None:
    # chars_per_token = 2: "abcd" + newline + "efghij" is 11 characters, 5 tokens (rounded down).
    view = view_of(config, {"title": "abcd", "body": "efghij"})
    assert (view.context_tokens, view.context_estimated) == (5, True)
    assert view.sources["context_tokens"] == "estimated from title and body"


def test_context_tokens_estimated_from_the_prompt(config: CompiledConfig) -> None:
    view = view_of(config, {"title": "short"}, prompt="p" * 9000)
    assert (view.context_tokens, view.context_estimated) == (4500, True)
    assert view.sources["context_tokens"] == "estimated from the prompt"
    # A given size wins over the prompt.
    assert view_of(config, {"context_tokens": 7}, prompt="p" * 9000).context_tokens == 7


def test_default_chars_per_token_is_four() -> None:
    config = load_config(ROOT / "config.toml")
    view = prepare(Task(), config.intake, UTC_ZONE, NOW, "x" * 4000)
    assert view.context_tokens == 1000


# -- the rest of the view --------------------------------------------------------------------------------


def test_labels_are_lowercased_and_stripped(config: CompiledConfig) -> None:
    view = view_of(config, {"labels": [" Bug ", "READY", "ready"]})
    assert view.labels == frozenset({"bug", "ready"})


def test_what_labels_decide_is_remembered_per_intake(config: CompiledConfig) -> None:
    labels = {"labels": [" Type:Docs ", "P3"]}
    first = view_of(config, labels)
    assert (first.labels, first.priority, first.specialization) == (frozenset({"type:docs", "p3"}), "low", "docs")
    again = view_of(config, labels)  # from the memo: the same answers and sources
    assert (again.labels, again.priority, again.sources) == (first.labels, first.priority, first.sources)
    # Another config's intake (a reload) is not answered from the first one's memo.
    other = compile_config(parse_toml(INTAKE.replace('"type:docs" = "docs"', '"type:docs" = "architecture"')
                                      .replace('"P3" = "low"', '"P3" = "high"')))
    view = view_of(other, labels)
    assert (view.priority, view.specialization) == ("high", "architecture")
    assert view_of(config, labels).specialization == "docs"
    # A given priority or specialization still wins over the remembered label answers.
    view = view_of(config, {**labels, "priority": "critical", "specialization": "code"})
    assert (view.priority, view.specialization, view.sources["priority"]) == ("critical", "code", "given")


def test_the_labels_memo_stays_bounded(config: CompiledConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from adws import intake

    monkeypatch.setattr(intake, "_LABEL_MEMO_SIZE", 8)
    for i in range(50):
        assert view_of(config, {"labels": [f"l{i}", "bug"]}).specialization == "code"
    assert all(len(memo) <= 8 for _, memo in intake._label_memos.values())


def test_label_lists_larger_than_real_ones_are_answered_but_not_remembered(config: CompiledConfig) -> None:
    from adws import intake

    huge = ["bug", "x" * 5000]
    many = ["bug", *(f"l{i}" for i in range(100))]
    for labels in (huge, many):
        assert view_of(config, {"labels": labels}).specialization == "code"
    kept = [key for _, memo in intake._label_memos.values() for key in memo]
    assert tuple(huge) not in kept and tuple(many) not in kept
    view_of(config, {"labels": ["bug", "ready"]})
    assert ("bug", "ready") in [key for _, memo in intake._label_memos.values() for key in memo]


def test_view_carries_the_task_fields(config: CompiledConfig) -> None:
    view = view_of(config, {"id": "T-1", "number": 9, "title": "t", "retry_count": 2, "attrs": {"team": "infra"}})
    assert (view.task_id, view.number, view.title, view.retry_count) == ("T-1", 9, "t", 2)
    assert dict(view.attrs) == {"team": "infra"}


def test_local_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert local_time(NOW, berlin).isoformat() == "2026-11-18T14:00:00+01:00"
    assert local_time(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), berlin).hour == 14  # summer time
    assert local_time(datetime(2026, 11, 18, 9, 30), berlin).isoformat() == "2026-11-18T09:30:00+01:00"


def test_view_time_is_local(config: CompiledConfig) -> None:
    view = prepare(Task(), config.intake, ZoneInfo("Asia/Tokyo"), NOW)
    assert (view.local_now.isoformat(), view.hour) == ("2026-11-18T22:00:00+09:00", 22)
