"""Task input: dicts, Task objects, `gh issue view --json` output, and exact messages for bad input."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adws.errors import TaskError
from adws.task import COMMON_FIELDS, Task, coerce_task, common_task

# `gh issue view 42 --json number,title,body,labels`, as gh prints it (labels are objects).
GH_ISSUE = json.loads("""
{
  "body": "Steps to reproduce:\\n1. open the app",
  "labels": [
    {"id": "LA_kwDOAbc123", "name": "bug", "description": "Something isn't working", "color": "d73a4a"},
    {"id": "LA_kwDOAbc456", "name": "priority:P1", "description": "", "color": "b60205"}
  ],
  "number": 42,
  "title": "Crash when saving"
}
""")


def test_a_plain_dict() -> None:
    task = Task.from_dict({
        "id": "T-7", "number": 7, "title": "Fix it", "body": "now", "labels": ["bug", "ready"],
        "priority": "high", "retry_count": 2, "specialization": "code", "context_tokens": 1200,
        "attrs": {"repo": "acme/web"},
    })
    assert task == Task(id="T-7", number=7, title="Fix it", body="now", labels=("bug", "ready"), priority="high",
                        retry_count=2, specialization="code", context_tokens=1200, attrs={"repo": "acme/web"})


def test_an_empty_dict_gives_the_defaults() -> None:
    assert Task.from_dict({}) == Task()


def test_json_null_means_not_given() -> None:
    task = Task.from_dict({"id": None, "title": None, "labels": None, "retry_count": None, "attrs": None,
                           "priority": None, "specialization": None})
    assert task == Task()


def test_an_empty_specialization_means_not_given() -> None:
    assert Task.from_dict({"specialization": ""}).specialization is None


def test_a_numeric_id_becomes_a_string() -> None:
    assert Task.from_dict({"id": 12345}).id == "12345"


def test_gh_issue_view_json_is_accepted_directly() -> None:
    task = Task.from_dict(GH_ISSUE)
    assert task.number == 42
    assert task.title == "Crash when saving"
    assert task.body == "Steps to reproduce:\n1. open the app"
    assert task.labels == ("bug", "priority:P1")
    assert task.key == "#42"
    assert dict(task.attrs) == {}


def test_other_gh_fields_are_kept_in_attrs() -> None:
    issue = {**GH_ISSUE, "state": "OPEN", "url": "https://github.invalid/acme/web/issues/42",
             "author": {"login": "octo"}, "attrs": {"state": "given explicitly"}}
    task = Task.from_dict(issue)
    # An explicit attrs entry wins over the gh field of the same name.
    assert dict(task.attrs) == {"state": "given explicitly", "url": "https://github.invalid/acme/web/issues/42",
                                "author": {"login": "octo"}}


def test_key_prefers_the_id_then_the_number() -> None:
    assert Task(id="abc", number=3).key == "abc"
    assert Task(number=3).key == "#3"
    assert Task().key is None


def test_to_dict_round_trips() -> None:
    task = Task(id="x", number=1, title="t", body="b", labels=("a",), priority=2, retry_count=1,
                specialization="docs", context_tokens=5, attrs={"k": [1, 2]})
    assert Task.from_dict(task.to_dict()) == task
    assert json.loads(json.dumps(task.to_dict()))["labels"] == ["a"]


def test_coerce_task_passes_a_task_through() -> None:
    task = Task(title="same object")
    assert coerce_task(task) is task
    assert coerce_task({"title": "from a dict"}) == Task(title="from a dict")


def test_a_list_of_labels_becomes_a_tuple() -> None:
    assert Task(labels=["a", "b"]).labels == ("a", "b")  # type: ignore[arg-type]


def test_a_task_is_immutable() -> None:
    with pytest.raises(AttributeError):
        Task().title = "changed"  # type: ignore[misc]


# -- bad input: one TaskError listing every problem ------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), [
    ({"retry_count": -1}, "invalid task: retry_count: must be >= 0, got -1"),
    ({"retry_count": "2"}, "invalid task: retry_count: expected an integer, got a string '2'"),
    ({"retry_count": True}, "invalid task: retry_count: expected an integer, got a boolean True"),
    ({"retry_count": 1.0}, "invalid task: retry_count: expected an integer, got a number 1.0"),
    ({"number": -3}, "invalid task: number: must be >= 0, got -3"),
    ({"context_tokens": -1}, "invalid task: context_tokens: must be >= 0, got -1"),
    ({"title": 3}, "invalid task: title: expected a string, got an integer"),
    ({"body": ["a"]}, "invalid task: body: expected a string, got an array"),
    ({"id": [1]}, "invalid task: id: expected a string or an integer, got an array"),
    ({"id": False}, "invalid task: id: expected a string or an integer, got a boolean"),
    ({"priority": 1.5}, "invalid task: priority: expected a priority name or an integer, got a number"),
    ({"priority": True}, "invalid task: priority: expected a priority name or an integer, got a boolean"),
    ({"specialization": 5}, "invalid task: specialization: expected a string, got an integer"),
    ({"labels": "bug"}, "invalid task: labels: expected an array, got a string"),
    ({"labels": ["ok", 3]},
     "invalid task: labels[1]: expected a label name or an object with a name, got an integer"),
    ({"labels": [{"title": "bug"}]},
     "invalid task: labels[0]: expected a label name or an object with a name, got an object"),
    ({"attrs": ["x"]}, "invalid task: attrs: expected an object, got an array"),
    ({"retry_cont": 1}, 'invalid task: unknown field "retry_cont" (did you mean "retry_count"?)'),
    ({"lables": ["bug"]}, 'invalid task: unknown field "lables" (did you mean "labels"?)'),
    ({"zzz": 1}, 'invalid task: unknown field "zzz" (fields of your own go under "attrs")'),
    ({"labels": [{"name": 5}]}, "invalid task: labels[0].name: expected a string, got an integer"),
])
def test_bad_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskError) as caught:
        Task.from_dict(data)
    assert str(caught.value) == message


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(TaskError) as caught:
        Task.from_dict({"retry_count": -1, "title": 3, "lables": [], "labels": "bug", "attrs": 1})
    assert caught.value.problems == [
        'unknown field "lables" (did you mean "labels"?)',
        "attrs: expected an object, got an integer",
        "labels: expected an array, got a string",
        "title: expected a string, got an integer",
        "retry_count: must be >= 0, got -1",
    ]


@pytest.mark.parametrize("data", [[1, 2], "title", None, 3])
def test_not_an_object(data: Any) -> None:
    kind = {list: "an array", str: "a string", type(None): "null", int: "an integer"}[type(data)]
    with pytest.raises(TaskError) as caught:
        Task.from_dict(data)
    assert str(caught.value) == f"invalid task: expected a JSON object, got {kind}"


@pytest.mark.parametrize(("fields", "message"), [
    ({"retry_count": -1}, "invalid task: retry_count: must be >= 0, got -1"),
    ({"labels": "bug"}, "invalid task: labels: expected an array, got a string"),
    ({"labels": ("bug", 3)}, "invalid task: labels[1]: expected a label name, got an integer"),
    ({"priority": True}, "invalid task: priority: expected a priority name or an integer, got a boolean"),
    ({"context_tokens": -5}, "invalid task: context_tokens: must be >= 0, got -5"),
    ({"title": None}, "invalid task: title: expected a string, got null"),
    ({"id": 5}, "invalid task: id: expected a string, got an integer"),
    ({"attrs": [("a", 1)]}, "invalid task: attrs: expected an object, got an array"),
])
def test_a_task_built_directly_is_checked_too(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskError) as caught:
        Task(**fields)
    assert str(caught.value) == message


# -- the common dict shape: read on its own fast path, with the general path's answers --------------------------

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-3, max_value=3), st.floats(allow_nan=False),
                    st.sampled_from(["", "P1", "high", "code", " Bug "]),
                    st.lists(st.one_of(st.sampled_from(["bug", "Docs", ""]), st.integers(), st.none(),
                                       st.fixed_dictionaries({"name": st.sampled_from(["bug", "wip"])})),
                             max_size=3))
_COMMON_DICTS = st.dictionaries(st.sampled_from(sorted(COMMON_FIELDS)), _VALUES, max_size=len(COMMON_FIELDS))


@settings(max_examples=400, deadline=None)
@given(data=_COMMON_DICTS)
def test_the_common_shape_gives_the_general_paths_answer(data: dict[str, Any]) -> None:
    # A read-only mapping is not a dict: from_dict reads it on the general path, the definition.
    try:
        expected: Task | None = Task.from_dict(MappingProxyType(data))
    except TaskError:
        expected = None
    fast = common_task(Task, data)
    if fast is not None:  # when the fast path answers, it is the general path's Task (with its own attrs dict)
        assert fast == expected
        assert type(fast.labels) is tuple and fast.attrs == {} and fast.attrs is not common_task(Task, data).attrs
    else:  # else from_dict falls through to the general path: the same Task, or the same TaskError
        assert expected is None or Task.from_dict(data) == expected
    if expected is None:
        assert fast is None
        with pytest.raises(TaskError):
            Task.from_dict(data)


def test_the_common_shape_leaves_gh_labels_integer_ids_and_attrs_to_the_general_path() -> None:
    assert common_task(Task, {"labels": [{"name": "bug"}]}) is None
    assert common_task(Task, {"id": 7}) is None
    assert common_task(Task, {"labels": ["bug"], "title": "x"}) == Task(title="x", labels=("bug",))
    assert Task.from_dict({"id": 7, "labels": [{"name": "bug"}], "attrs": {"a": 1}}) == \
        Task(id="7", labels=("bug",), attrs={"a": 1})


# -- a task is JSON data: attrs and every number, whether given as JSON or built in Python --------------------

def _cycle() -> dict[str, Any]:
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    return loop


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("data", "problems"), [
    ({"number": 5, "attrs": {(1, 2): 3}}, ["attrs: key (1, 2): expected a string, got a tuple"]),
    ({"number": 5, "attrs": {"loop": _cycle()}}, ["attrs.loop.self: holds itself (a cycle): JSON data is a tree"]),
    ({"number": 6, "attrs": {"n": 10**5000}}, ["attrs.n: an integer of more than 4300 digits (at most 4300)"]),
    ({"attrs": {"x": 1e400, "y": float("nan")}},
     ["attrs.x: expected a finite number, got inf (JSON has no NaN or Infinity)",
      "attrs.y: expected a finite number, got nan (JSON has no NaN or Infinity)"]),
    ({"attrs": {"deep": _nested(64)}},
     ["attrs.deep" + "[0]" * 63 + ": nested too deeply (arrays and objects at most 64 deep in attrs)"]),
    ({"attrs": {"when": {1, 2}, "odd key": [b"x"]}},
     ["attrs.when: expected JSON data (a string, a number, a boolean, null, a list or a dict), got a set",
      "attrs['odd key'][0]: expected JSON data (a string, a number, a boolean, null, a list or a dict), got bytes"]),
    ({"author": {"login": float("inf")}},  # a gh field lands in attrs, and is checked there
     ["attrs.author.login: expected a finite number, got inf (JSON has no NaN or Infinity)"]),
    ({"number": 10**5000}, ["number: an integer of more than 4300 digits (at most 4300)"]),
    ({"number": -10**5000}, ["number: an integer of more than 4300 digits (at most 4300)"]),
    ({"id": 10**5000}, ["id: an integer of more than 4300 digits (at most 4300)"]),
    ({"retry_count": 10**5000}, ["retry_count: an integer of more than 4300 digits (at most 4300)"]),
    ({"context_tokens": 10**5000}, ["context_tokens: an integer of more than 4300 digits (at most 4300)"]),
    ({"priority": 10**5000}, ["priority: an integer of more than 4300 digits (at most 4300)"]),
    ({"context_tokens": float("inf")}, ["context_tokens: expected an integer, got a number inf"]),
    ({"retry_count": float("nan")}, ["retry_count: expected an integer, got a number nan"]),
    ({"number": float("-inf")}, ["number: expected an integer, got a number -inf"]),
    ({"priority": float("nan")}, ["priority: expected a priority name or an integer, got a number"]),
])
def test_a_task_is_json_data(data: dict[str, Any], problems: list[str]) -> None:
    with pytest.raises(TaskError) as caught:
        Task.from_dict(data)
    assert caught.value.problems == problems
    fields = {k: v for k, v in data.items() if k in ("number", "retry_count", "context_tokens", "priority", "attrs")}
    if fields:  # built in Python: the same problems
        with pytest.raises(TaskError) as built:
            Task(**fields)
        assert built.value.problems == problems


def test_attrs_may_hold_any_json_data_and_tuples() -> None:
    attrs = {"s": "x", "i": 10**4299, "f": -1.5, "b": True, "n": None, "l": [1, {"k": [2]}], "t": (1, 2),
             "deep": _nested(63)}
    assert dict(Task(attrs=attrs).attrs) == attrs
    assert Task.from_dict({"attrs": MappingProxyType(attrs)}).attrs == attrs


def test_a_long_list_of_attrs_problems_is_cut_short() -> None:
    with pytest.raises(TaskError) as caught:
        Task(attrs={"l": [float("nan")] * 1000})
    assert len(caught.value.problems) == 21
    assert caught.value.problems[-1] == "attrs: 980 more problems not listed"  # every one counted, not the 21st


@pytest.mark.parametrize(("data", "message"), [
    # Python's own types are named as such: never "expected an array, got an array".
    ({"labels": {"bug"}}, "invalid task: labels: expected an array, got a set"),
    ({"labels": ["bug", ("x",)]},
     "invalid task: labels[1]: expected a label name or an object with a name, got a tuple"),
    ({"title": ("a",)}, "invalid task: title: expected a string, got a tuple"),
    ({"retry_count": (1,)}, "invalid task: retry_count: expected an integer, got a tuple (1,)"),
    ({"attrs": ("a", 1)}, "invalid task: attrs: expected an object, got a tuple"),
    ({"id": b"x"}, "invalid task: id: expected a string or an integer, got bytes"),
])
def test_python_values_are_named_in_pythons_words(data: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskError) as caught:
        Task.from_dict(data)
    assert str(caught.value) == message


def test_labels_may_be_a_tuple_in_python() -> None:
    assert Task.from_dict({"labels": ("bug", "docs")}).labels == ("bug", "docs")
    assert Task.from_dict({"labels": ({"name": "bug"},)}).labels == ("bug",)


def _cycle() -> dict[str, object]:
    loop: dict[str, object] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize("attrs", [
    {}, {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "l": [1, {"k": [2]}]}, {"deep": _nested(63)},
    {"deep": _nested(64)}, {"f": float("nan")}, {"i": 10**4400}, {"t": (1, 2)}, {1: "x"}, {"c": _cycle()},
    {"set": {1}}, {"l": [float("inf")]},
])
def test_the_quick_attrs_check_agrees_with_the_full_one(attrs: dict[object, object]) -> None:
    """`_plain_json` (every route of a gh issue runs it) never passes what `attrs_problems` refuses, and passes
    all plain JSON data (dicts with string keys, lists, finite numbers) that it accepts."""
    from adws.task import _plain_json, attrs_problems

    quick, full = _plain_json(attrs, 0), not attrs_problems(attrs)
    assert quick <= full
    plain = "t" not in attrs  # a tuple is JSON data to attrs_problems, but not "plain" to the quick check
    assert quick == full or not plain
