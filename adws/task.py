"""Task input: what the coordinator hands to route() and run().

Accepts a `Task`, a plain dict with the fields below, or a GitHub issue exactly as
`gh issue view N --json number,title,body,labels` prints it (labels as objects with a `name`).
Malformed input is a `TaskError` that lists every problem: never a silent default.

A task is JSON data throughout, whether it came as JSON text or was built in Python: `attrs` holds only strings,
finite numbers, booleans, null, lists (or tuples) and objects (mappings with string keys), nested at most
ATTRS_DEPTH_MOST deep and without cycles; every integer (the fields' and attrs') has at most INT_DIGITS_MOST digits.
So whatever a task carries reads back from the audit log as it was given, and writing it cannot fail after an
agent ran.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from adws.arguments import INT_DIGITS_MOST, shown
from adws.dataclass_cache import dataclass, field
from adws.errors import TaskError, json_kind, suggest

_INT_BOUND = 10**INT_DIGITS_MOST  # INT_DIGITS_MOST: the most digits an integer in a task may have
# How deep arrays and objects may nest inside `attrs` (gh's own output nests 3 deep).
ATTRS_DEPTH_MOST = 64
# The most problems of `attrs` one TaskError lists (a huge malformed value is not a huge message).
_ATTRS_PROBLEMS_MOST = 20

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
            raise TaskError([f"expected a JSON object, got {kind_of(data)}"])
        problems: list[str] = []
        if data.keys() - _ACCEPTED:  # a set operation first: this runs on every route() given a dict
            for key in data:  # then the input's own order, for stable messages
                if key not in _ACCEPTED:
                    # No near miss: most likely a field of the coordinator's own, which belongs under attrs.
                    hint = suggest(str(key), _FIELDS) or ' (fields of your own go under "attrs")'
                    problems.append(f'unknown field "{key}"{hint}')
        attrs: dict[str, Any] = {}
        raw_attrs = data.get("attrs")
        if raw_attrs is not None:
            if isinstance(raw_attrs, Mapping):
                attrs.update(raw_attrs)
            else:
                problems.append(f"attrs: expected an object, got {kind_of(raw_attrs)}")
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
    elif type(retry_count) is not int or not 0 <= retry_count < _INT_BOUND:
        return None
    task_id = get("id")
    if task_id is not None and type(task_id) is not str:
        return None
    number = get("number")
    if number is not None and (type(number) is not int or not 0 <= number < _INT_BOUND):
        return None
    priority = get("priority")
    if priority is not None and type(priority) is not str and \
            (type(priority) is not int or not -_INT_BOUND < priority < _INT_BOUND):
        return None
    spec = get("specialization")
    if spec == "":
        spec = None
    elif spec is not None and type(spec) is not str:
        return None
    tokens = get("context_tokens")
    if tokens is not None and (type(tokens) is not int or not 0 <= tokens < _INT_BOUND):
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


def kind_of(value: Any) -> str:
    """What `value` is, for "got ..." in a task's messages: a value JSON can hold in JSON's words ("a string",
    "an array", "an object"), anything else by its Python type ("a tuple", "a set", "a datetime"), so a message
    never says "expected an array, got an array"."""
    kind = type(value)
    if kind in _JSON_TYPES or isinstance(value, Mapping):
        return json_kind(value)
    if kind is bytes:
        return "bytes"
    name = kind.__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


_JSON_TYPES = frozenset({str, int, float, bool, list, dict, type(None)})


def _too_long(value: int) -> str | None:
    """The problem of an integer past INT_DIGITS_MOST digits, or None."""
    if -_INT_BOUND < value < _INT_BOUND:
        return None
    return f"an integer of more than {INT_DIGITS_MOST} digits (at most {INT_DIGITS_MOST})"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {kind_of(value)}"


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a string or an integer, got {kind_of(value)}"
    return _too_long(value) if isinstance(value, int) else None


def _non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {kind_of(value)} {shown(value)}"
    return _too_long(value) or (None if value >= 0 else f"must be >= 0, got {value}")


def _priority(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a priority name or an integer, got {kind_of(value)}"
    return _too_long(value) if isinstance(value, int) else None


def attrs_problems(attrs: Mapping[Any, Any]) -> list[str]:
    """What keeps `attrs` from being JSON data (see the module docstring), each problem named by its place
    ("attrs.author.login", "attrs.list[2]"); at most _ATTRS_PROBLEMS_MOST of them, then how many more. Empty
    when it is JSON data."""
    found = _Found()
    _json_problems(attrs, "attrs", 0, set(), found)
    if found.more:
        found.listed.append(f"attrs: {found.more} more problem{'s' if found.more > 1 else ''} not listed")
    return found.listed


class _Found:
    """The problems `_json_problems` lists (at most _ATTRS_PROBLEMS_MOST, each worded only then) and how many more
    it counted past them."""

    __slots__ = ("listed", "more")

    def __init__(self) -> None:
        self.listed: list[str] = []
        self.more = 0

    def wants(self) -> bool:
        """Is there room to list one more problem? When not, the problem is counted."""
        if len(self.listed) < _ATTRS_PROBLEMS_MOST:
            return True
        self.more += 1
        return False


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _json_problems(value: Any, place: str, depth: int, open_ids: set[int], found: _Found) -> None:
    """Add to `found` what keeps `value` at `place` from being JSON data. `open_ids`: the containers the walk is
    inside (one met again is a cycle). Past what it will list, it only counts (a place's name is not built)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        error = _too_long(value)
        if error and found.wants():
            found.listed.append(f"{place}: {error}")
        return
    if isinstance(value, float):
        if not math.isfinite(value) and found.wants():
            found.listed.append(f"{place}: expected a finite number, got {value!r} (JSON has no NaN or Infinity)")
        return
    is_mapping = isinstance(value, Mapping)
    if not is_mapping and not isinstance(value, (list, tuple)):
        if found.wants():
            found.listed.append(f"{place}: expected JSON data (a string, a number, a boolean, null, a list or a "
                                f"dict), got {kind_of(value)}")
        return
    if depth >= ATTRS_DEPTH_MOST:
        if found.wants():
            found.listed.append(f"{place}: nested too deeply (arrays and objects at most {ATTRS_DEPTH_MOST} deep in "
                                "attrs)")
        return
    if id(value) in open_ids:
        if found.wants():
            found.listed.append(f"{place}: holds itself (a cycle): JSON data is a tree")
        return
    open_ids.add(id(value))
    listing = len(found.listed) < _ATTRS_PROBLEMS_MOST  # else children's places are never shown: not built
    try:
        if is_mapping:
            for key, item in value.items():
                if not isinstance(key, str):
                    if found.wants():
                        found.listed.append(f"{place}: key {shown(key)}: expected a string, got {kind_of(key)}")
                    continue
                child = (f"{place}.{key}" if _PLAIN_KEY.match(key) else f"{place}[{shown(key)}]") if listing else ""
                _json_problems(item, child, depth + 1, open_ids, found)
        else:
            for i, item in enumerate(value):
                _json_problems(item, f"{place}[{i}]" if listing else "", depth + 1, open_ids, found)
    finally:
        open_ids.discard(id(value))


def _plain_json(value: Any, depth: int) -> bool:
    """Is `value` JSON data as `attrs_problems` judges it, in exact type checks and no string built (a gh issue's
    attrs hold its comments: this runs on every route of one)? False for anything else, including what
    `attrs_problems` would accept (a tuple, another Mapping): the caller then asks it. A cycle ends too deep."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_INT_BOUND < value < _INT_BOUND)
    if kind is float:
        return math.isfinite(value)
    if depth >= ATTRS_DEPTH_MOST:
        return False
    if kind is dict:
        return all(type(key) is str and _plain_json(item, depth + 1) for key, item in value.items())
    if kind is list:
        return all(_plain_json(item, depth + 1) for item in value)
    return False


def _plain_scalars(task_id: object, number: object, title: object, body: object, priority: object,
                   retry_count: object, spec: object, tokens: object) -> bool:
    """The scalar fields in a few exact type checks (defaults already applied): the common case, for
    `_plainly_valid` (`common_fields` writes the same checks out); anything else goes to `_field_problems`, which
    says what is wrong."""
    return (type(title) is str and type(body) is str and type(retry_count) is int and 0 <= retry_count < _INT_BOUND
            and (task_id is None or type(task_id) is str)
            and (number is None or (type(number) is int and 0 <= number < _INT_BOUND))
            and (priority is None or type(priority) is str
                 or (type(priority) is int and -_INT_BOUND < priority < _INT_BOUND))
            and (spec is None or type(spec) is str)
            and (tokens is None or (type(tokens) is int and 0 <= tokens < _INT_BOUND)))


def _plainly_valid(t: Task) -> bool:
    """The common case in a few exact type checks (route() builds a Task per call); else `_field_problems`."""
    return (
        _plain_scalars(t.id, t.number, t.title, t.body, t.priority, t.retry_count, t.specialization,
                       t.context_tokens)
        and type(t.labels) is tuple and all(type(label) is str for label in t.labels)
        and ((type(t.attrs) is dict and (not t.attrs or _plain_json(t.attrs, 0)))
             or (isinstance(t.attrs, Mapping) and not attrs_problems(t.attrs)))
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
        problems.append(f"labels: expected an array, got {kind_of(task.labels)}")
    else:
        for i, label in enumerate(task.labels):
            if not isinstance(label, str):
                problems.append(f"labels[{i}]: expected a label name, got {kind_of(label)}")
    if not isinstance(task.attrs, Mapping):
        problems.append(f"attrs: expected an object, got {kind_of(task.attrs)}")
    else:
        problems.extend(attrs_problems(task.attrs))
    return problems


def _labels(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):  # a tuple too: Task itself takes one, as a Python caller may pass
        problems.append(f"labels: expected an array, got {kind_of(value)}")
        return ()
    out: list[str] = []
    for i, label in enumerate(value):
        name = label.get("name") if isinstance(label, Mapping) else label  # gh prints {"name": ..., ...}
        if isinstance(label, Mapping) and "name" in label and not isinstance(name, str):
            problems.append(f"labels[{i}].name: expected a string, got {kind_of(name)}")
        elif not isinstance(name, str):
            problems.append(f"labels[{i}]: expected a label name or an object with a name, got {kind_of(label)}")
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
    if not text.strip():
        raise TaskError(["the task is empty: give a JSON object such as {\"title\": \"...\", \"labels\": [...]}"])
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
        raise TaskError([f"task must be a JSON object, got {kind_of(data)}"])
    return data
