"""Task input: what the coordinator hands to route() and run().

Accepts a `Task`, a plain dict with the fields below, or a GitHub issue exactly as
`gh issue view N --json number,title,body,labels` prints it (labels as objects with a `name`).
Malformed input is a `TaskError` that lists every problem: never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adws.errors import TaskError, suggest

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

    @property
    def key(self) -> str | None:
        """A stable identity for sticky accounts and logs: the id, else the issue number."""
        if self.id is not None:
            return self.id
        return None if self.number is None else f"#{self.number}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "number": self.number, "title": self.title, "body": self.body,
            "labels": list(self.labels), "priority": self.priority, "retry_count": self.retry_count,
            "specialization": self.specialization, "context_tokens": self.context_tokens,
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        if not isinstance(data, Mapping):
            raise TaskError([f"expected a JSON object, got {type(data).__name__}"])
        problems: list[str] = []
        attrs: dict[str, Any] = {}
        known = set(_FIELDS)
        for key in data:
            if key not in known and key not in GITHUB_FIELDS:
                problems.append(f'unknown field "{key}"{suggest(str(key), sorted(known))}')
        raw_attrs = data.get("attrs", {})
        if raw_attrs is None:
            raw_attrs = {}
        if not isinstance(raw_attrs, Mapping):
            problems.append(f"attrs: expected an object, got {type(raw_attrs).__name__}")
        else:
            attrs.update(raw_attrs)
        for key in GITHUB_FIELDS - known:
            if key in data:
                attrs.setdefault(key, data[key])

        def take(name: str, check: Any, default: Any) -> Any:
            value = data.get(name, default)
            if value is None:
                return default
            error = check(value)
            if error:
                problems.append(f"{name}: {error}")
                return default
            return value

        task_id = take("id", _id, None)
        number = take("number", _non_negative_int, None)
        title = take("title", _string, "")
        body = take("body", _string, "")
        labels = _labels(data.get("labels"), problems)
        priority = take("priority", _priority, None)
        retry_count = take("retry_count", _non_negative_int, 0)
        specialization = take("specialization", _string, None)
        context_tokens = take("context_tokens", _non_negative_int, None)
        if problems:
            raise TaskError(problems)
        return cls(
            id=None if task_id is None else str(task_id), number=number, title=title, body=body,
            labels=labels, priority=priority, retry_count=retry_count,
            specialization=specialization or None, context_tokens=context_tokens, attrs=attrs,
        )


_FIELDS = ("id", "number", "title", "body", "labels", "priority", "retry_count", "specialization",
           "context_tokens", "attrs")


def _kind(value: Any) -> str:
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {_kind(value)}"


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a string or an integer, got {_kind(value)}"
    return None


def _non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {_kind(value)} {value!r}"
    return None if value >= 0 else f"must be >= 0, got {value}"


def _priority(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a priority name or an integer, got {_kind(value)}"
    return None


def _labels(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"labels: expected a list, got {_kind(value)}")
        return ()
    out: list[str] = []
    for i, label in enumerate(value):
        name = label.get("name") if isinstance(label, Mapping) else label  # gh prints {"name": ..., ...}
        if not isinstance(name, str):
            problems.append(f"labels[{i}]: expected a label name or an object with a name, got {_kind(label)}")
        else:
            out.append(name)
    return tuple(out)


def coerce_task(task: Task | Mapping[str, Any]) -> Task:
    if isinstance(task, Task):
        return task
    return Task.from_dict(task)
