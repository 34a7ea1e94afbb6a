"""Task input: what the coordinator hands to route() and run().

Accepts a `Task`, a plain dict with the fields below, or a GitHub issue exactly as
`gh issue view N --json number,title,body,labels` prints it (labels as objects with a `name`).
Malformed input is a `TaskError` that lists every problem: never a silent default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from adws.dataclass_cache import dataclass, field
from adws.errors import TaskError, json_kind, suggest

# Fields `gh issue view --json` can print that are not task fields: kept in attrs, so a coordinator can pass
# gh's output through whole and rules can still look at them (attrs.state, attrs.author ...).
GITHUB_FIELDS = frozenset({
    "assignees", "author", "body", "closed", "closedAt", "comments", "createdAt", "id", "isPinned",
    "labels", "milestone", "number", "projectCards", "projectItems", "reactionGroups", "state",
    "stateReason", "title", "updatedAt", "url",
})


@dataclass(frozen=True, slots=True)
class Task:
    id: str | None = None
    number: int | None = None
    title: str = ""
    body: str = ""
    labels: tuple[str, ...] = ()
    priority: str | int | None = None  # a name, a P-label value ("P1") or an index into priority_numbers
    retry_count: int = 0
    specialization: str | None = None
    context_tokens: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A Task built in Python gets the checks a dict gets: a negative retry count or labels="bug" (which
        # would iterate as the labels "b", "u", "g") must not route silently.
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        if not _plainly_valid(self):
            problems = _field_problems(self)
            if problems:
                raise TaskError(problems)

    @property
    def key(self) -> str | None:
        """A stable identity for sticky accounts and logs: the id, else the issue number."""
        return task_key(self.id, self.number)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "number": self.number, "title": self.title, "body": self.body,
            "labels": list(self.labels), "priority": self.priority, "retry_count": self.retry_count,
            "specialization": self.specialization, "context_tokens": self.context_tokens,
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        """A task from JSON-like data. Every problem is collected into one TaskError."""
        common = common_task(cls, data)
        if common is not None:
            return common
        if not isinstance(data, Mapping):
            raise TaskError([f"expected a JSON object, got {json_kind(data)}"])
        problems: list[str] = []
        if data.keys() - _ACCEPTED:  # a set operation first: this runs on every route() given a dict
            for key in data:  # then the input's own order, for stable messages
                if key not in _ACCEPTED:
                    problems.append(f'unknown field "{key}"{suggest(str(key), _FIELDS)}')
        attrs: dict[str, Any] = {}
        raw_attrs = data.get("attrs")
        if raw_attrs is not None:
            if isinstance(raw_attrs, Mapping):
                attrs.update(raw_attrs)
            else:
                problems.append(f"attrs: expected an object, got {json_kind(raw_attrs)}")
        for key in data.keys() & _GITHUB_ONLY:
            attrs.setdefault(key, data[key])
        task_id = data.get("id")
        if task_id is not None:
            error = _id(task_id)
            if error:
                problems.append(f"id: {error}")
                task_id = None
            else:
                task_id = str(task_id)  # gh and coordinators may send numbers
        labels = _labels(data.get("labels"), problems)
        # JSON null means "not given": the field's default.
        values: dict[str, Any] = {name: data[name] for name in _PLAIN if data.get(name) is not None}
        if values.get("specialization") == "":
            del values["specialization"]
        try:
            task = cls(id=task_id, labels=labels, attrs=attrs, **values)
        except TaskError as exc:
            problems.extend(exc.problems)
        if problems:
            raise TaskError(problems, _partial(cls, task_id, labels, attrs, values, problems))
        return task


def task_key(task_id: str | None, number: int | None) -> str | None:
    """Task.key of a task with this id and number. (`Router.route` writes this rule out on its hot path;
    tests/test_router.py checks that its decisions carry this key.)"""
    if task_id is not None:
        return task_id
    return None if number is None else f"#{number}"


_FIELDS = ("id", "number", "title", "body", "labels", "priority", "retry_count", "specialization",
           "context_tokens", "attrs")
_PLAIN = ("number", "title", "body", "priority", "retry_count", "specialization", "context_tokens")
_ACCEPTED = frozenset(_FIELDS) | GITHUB_FIELDS
_GITHUB_ONLY = tuple(sorted(GITHUB_FIELDS - set(_FIELDS)))
# The fields of the shape a coordinator usually sends: no attrs, no other gh fields (which go into attrs).
COMMON_FIELDS = frozenset(_FIELDS) - {"attrs"}
# A task's fields as common_fields gives them: id, number, title, body, labels, priority, retry_count,
# specialization, context_tokens (attrs: none, in the common shape).
CommonFields = tuple[str | None, int | None, str, str, tuple[str, ...], str | int | None, int, str | None, int | None]


def common_fields(data: object) -> CommonFields | None:
    """The fields of a task sent in the usual shape (a dict with `data.keys() <= COMMON_FIELDS`), checked one by
    one with exact types, in Task's field order without attrs; None for anything else (labels as gh's objects,
    an integer id, a wrong type), which `Task.from_dict` then reads, and reports on, as always. The answers are
    `from_dict`'s: JSON null is the default; an empty specialization is none. route() given a dict reads it with
    this alone, without building a Task (unless the task may name an override, or fails: then a Task is built,
    which says what is wrong)."""
    if type(data) is not dict or not data.keys() <= COMMON_FIELDS:
        return None
    get = data.get
    labels = get("labels")
    if labels is None:
        labels = ()
    elif type(labels) is list:
        for label in labels:
            if type(label) is not str:
                return None
        labels = tuple(labels)
    else:
        return None
    # _plain_scalars' checks written out, each next to its field's default (one test per field, no call):
    # route() reads every dict task with this.
    title = get("title")
    if title is None:
        title = ""
    elif type(title) is not str:
        return None
    body = get("body")
    if body is None:
        body = ""
    elif type(body) is not str:
        return None
    retry_count = get("retry_count")
    if retry_count is None:
        retry_count = 0
    elif type(retry_count) is not int or retry_count < 0:
        return None
    task_id = get("id")
    if task_id is not None and type(task_id) is not str:
        return None
    number = get("number")
    if number is not None and (type(number) is not int or number < 0):
        return None
    priority = get("priority")
    if priority is not None and type(priority) is not str and type(priority) is not int:
        return None
    spec = get("specialization")
    if spec == "":
        spec = None
    elif spec is not None and type(spec) is not str:
        return None
    tokens = get("context_tokens")
    if tokens is not None and (type(tokens) is not int or tokens < 0):
        return None
    return task_id, number, title, body, labels, priority, retry_count, spec, tokens


_new_task = object.__new__
# Each field's slot setter, bound once: cheaper per call than object.__setattr__ (Task is frozen).
_SETTERS = tuple(Task.__dict__[name].__set__ for name in _FIELDS)


def common_task(cls: type[Task], data: object) -> Task | None:
    """`from_dict` for the usual shape (see `common_fields`), built without a second check; None for anything
    else, and for a subclass of Task as `cls`."""
    fields = common_fields(data) if cls is Task else None
    if fields is None:
        return None
    task = _new_task(cls)
    values: tuple[Any, ...] = (*fields, {})
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(task, value)
    return task


def _partial(cls: type[Task], task_id: str | None, labels: tuple[str, ...], attrs: dict[str, Any],
             values: dict[str, Any], problems: list[str]) -> Task | None:
    """The task without the fields named in `problems` (each starts "field:" or "field[i]:"), so a caller can
    still check the rest against the config; None when even that does not build."""
    bad = {re.split(r"[:\[.]", p, maxsplit=1)[0] for p in problems}
    kept = {name: value for name, value in values.items() if name not in bad}
    try:
        return cls(id=task_id, labels=tuple(x for x in labels if isinstance(x, str)) if isinstance(labels, tuple)
                   else (), attrs={} if "attrs" in bad else attrs,
                   **kept)
    except TaskError:
        return None




def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {json_kind(value)}"


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a string or an integer, got {json_kind(value)}"
    return None


def _non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {json_kind(value)} {value!r}"
    return None if value >= 0 else f"must be >= 0, got {value}"


def _priority(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a priority name or an integer, got {json_kind(value)}"
    return None


def _plain_scalars(task_id: object, number: object, title: object, body: object, priority: object,
                   retry_count: object, spec: object, tokens: object) -> bool:
    """The scalar fields in a few exact type checks (defaults already applied): the common case, for
    `_plainly_valid` (`common_fields` writes the same checks out); anything else goes to `_field_problems`, which
    says what is wrong."""
    return (type(title) is str and type(body) is str and type(retry_count) is int and retry_count >= 0
            and (task_id is None or type(task_id) is str)
            and (number is None or (type(number) is int and number >= 0))
            and (priority is None or type(priority) is str or type(priority) is int)
            and (spec is None or type(spec) is str)
            and (tokens is None or (type(tokens) is int and tokens >= 0)))


def _plainly_valid(t: Task) -> bool:
    """The common case in a few exact type checks (route() builds a Task per call); else `_field_problems`."""
    return (
        _plain_scalars(t.id, t.number, t.title, t.body, t.priority, t.retry_count, t.specialization,
                       t.context_tokens)
        and type(t.labels) is tuple and all(type(label) is str for label in t.labels)
        and (type(t.attrs) is dict or isinstance(t.attrs, Mapping))
    )


def _field_problems(task: Task) -> list[str]:
    problems = []
    for name, check, value, optional in (
        ("id", _string, task.id, True),
        ("number", _non_negative_int, task.number, True),
        ("title", _string, task.title, False),
        ("body", _string, task.body, False),
        ("priority", _priority, task.priority, True),
        ("retry_count", _non_negative_int, task.retry_count, False),
        ("specialization", _string, task.specialization, True),
        ("context_tokens", _non_negative_int, task.context_tokens, True),
    ):
        if value is None and optional:
            continue
        error = check(value)
        if error:
            problems.append(f"{name}: {error}")
    if not isinstance(task.labels, tuple):
        problems.append(f"labels: expected an array, got {json_kind(task.labels)}")
    else:
        for i, label in enumerate(task.labels):
            if not isinstance(label, str):
                problems.append(f"labels[{i}]: expected a label name, got {json_kind(label)}")
    if not isinstance(task.attrs, Mapping):
        problems.append(f"attrs: expected an object, got {json_kind(task.attrs)}")
    return problems


def _labels(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"labels: expected an array, got {json_kind(value)}")
        return ()
    out: list[str] = []
    for i, label in enumerate(value):
        name = label.get("name") if isinstance(label, Mapping) else label  # gh prints {"name": ..., ...}
        if not isinstance(name, str):
            problems.append(f"labels[{i}]: expected a label name or an object with a name, got {json_kind(label)}")
        else:
            out.append(name)
    return tuple(out)


def coerce_task(task: Task | Mapping[str, Any]) -> Task:
    if isinstance(task, Task):
        return task
    return Task.from_dict(task)


BOM = "\ufeff"


def without_bom(text: str) -> str:
    """`text` without a leading byte order mark. Windows editors and PowerShell's redirection write one before
    UTF-8 text; JSON (RFC 8259 section 8.1) lets a parser ignore it, and Python's json module refuses it."""
    return text[1:] if text.startswith(BOM) else text


def parse_task_json(text: str) -> dict[str, Any]:
    """The task object in JSON text, as `adws route` and `adws run` read `--task-json` and `--github-issue`:
    a dict for `Task.from_dict`. A leading BOM is ignored. Raises TaskError: not JSON (with a hint when the text
    is the name of an existing file, which the command line reads as `@FILE`), nested too deeply, or not an
    object (named in JSON's words: "got an array")."""
    import json

    text = without_bom(text)
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer beyond Python's digit limit (sys.int_info)
        import os

        name = text.strip()
        hint = f"; {name} is a file: to read the task from it, write @{name}" \
            if name and "\n" not in name and len(name) < 4096 and os.path.isfile(name) else ""
        raise TaskError([f"task is not valid JSON: {exc}{hint}"]) from None
    except RecursionError:
        raise TaskError(["task JSON is nested too deeply"]) from None
    if not isinstance(data, dict):
        raise TaskError([f"task must be a JSON object, got {json_kind(data)}"])
    return data
