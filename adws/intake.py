"""From task input to the `TaskView` that conditions read: priority, specialization, context size, local time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from adws.compiled import IntakeSpec
from adws.errors import TaskError, suggest
from adws.task import Task
from adws.taskview import NO_PRIORITY_RANK, PRIORITY_RANK, TaskView

_P_NUMBER = re.compile(r"^p(\d+)$")


def _priority(given: str | int | None, lowered: tuple[str, ...], intake: IntakeSpec) -> tuple[str | None, str]:
    if given is None:
        best: tuple[int, str, str] | None = None
        for label in lowered:
            mapped = intake.priority_labels.get(label)
            if mapped is not None and (best is None or PRIORITY_RANK[mapped] > best[0]):
                best = (PRIORITY_RANK[mapped], mapped, label)
        if best is not None:
            return best[1], f'label "{best[2]}"'
        if intake.default_priority is None:
            return None, "none given; no default_priority declared"
        return intake.default_priority, "default"
    if isinstance(given, int):
        if 0 <= given < len(intake.priority_numbers):
            return intake.priority_numbers[given], f"number {given}"
        raise TaskError([f"priority: {given} is out of range 0-{len(intake.priority_numbers) - 1}"])
    text = given.strip().lower()
    if text in PRIORITY_RANK:
        return text, "given"
    if text in intake.priority_labels:
        return intake.priority_labels[text], f'given as "{given}"'
    number = _P_NUMBER.match(text)
    if number and int(number.group(1)) < len(intake.priority_numbers):
        return intake.priority_numbers[int(number.group(1))], f'given as "{given}"'
    raise TaskError([f'priority: unknown value "{given}"{suggest(text, PRIORITY_RANK)}; '
                     f"use {', '.join(PRIORITY_RANK)}, P0-P{len(intake.priority_numbers) - 1} or 0-"
                     f"{len(intake.priority_numbers) - 1}"])


def _given_specialization(given: str, intake: IntakeSpec) -> tuple[str, str]:
    spec = given.strip().lower()
    if spec not in intake.known_specializations:
        raise TaskError([f'specialization: unknown value "{given}"'
                         f"{suggest(spec, intake.known_specializations)}; "
                         f"known: {', '.join(sorted(intake.known_specializations))}"])
    return spec, "given"


def _label_specialization(labels: frozenset[str], intake: IntakeSpec) -> tuple[str, str] | None:
    """The specialization the (lowercased) labels map to, with its source; None when none does."""
    if not labels:
        return None
    # Exact labels by lookup; only glob entries are tested one by one. The earliest declaration wins.
    best: tuple[int, str] | None = None
    for label in labels:
        hit = intake.exact_specialization_labels.get(label)
        if hit is not None and (best is None or hit < best):
            best = hit
    for order, label_set, spec in intake.glob_specialization_labels:
        if best is not None and order >= best[0]:
            break
        if label_set.hits(labels):
            best = (order, spec)
            break
    if best is None:
        return None
    return best[1], f'label "{intake.specialization_labels[best[0]][0].shown[0]}"'


# The source of a keyword decision by its number of hits, written once (index 0 is never used).
_KEYWORD_SOURCES = ("", "keywords (1 hit)", *(f"keywords ({hits} hits)" for hits in range(2, 64)))


# What a task's labels alone decide, by the labels as given, per intake (a config's): the labels lowercased, as a
# set, the priority they map to (or the default) and the specialization they map to (None: the classifier or the
# default decides). A coordinator's tasks carry few distinct label lists, so this is mostly a lookup. Keyed by
# the intake's id, each entry holding its intake, so an id cannot be reused while its entry lives; a process with
# a few engines (configs) keeps one memo each. Emptied when they grow past _LABEL_MEMO_SIZE / _INTAKES_KEPT.
# Labels are tuples of str (Task and common_fields check them), so they hash.
_LabelFacts = tuple[tuple[str, ...], frozenset[str], tuple[str | None, str], tuple[str, str] | None]
_label_memos: dict[int, tuple[IntakeSpec, dict[tuple[str, ...], _LabelFacts]]] = {}
_LABEL_MEMO_SIZE = 1024
_INTAKES_KEPT = 8
_MEMO_LABELS_MOST = 64  # labels in a list the memo keeps
_MEMO_CHARS_MOST = 2048  # characters in all its labels


def _label_facts(task_labels: tuple[str, ...], intake: IntakeSpec) -> _LabelFacts:
    """(lowercased labels, their set, the priority from labels or the default with its source, the
    specialization from labels with its source or None); memoized (see _label_memos)."""
    entry = _label_memos.get(id(intake))
    if entry is None or entry[0] is not intake:
        if len(_label_memos) >= _INTAKES_KEPT:
            _label_memos.clear()
        entry = _label_memos[id(intake)] = (intake, {})
    memo = entry[1]
    facts = memo.get(task_labels)
    if facts is None:
        lowered = tuple([label.strip().lower() for label in task_labels])
        labels = frozenset(lowered)
        facts = (lowered, labels, _priority(None, lowered, intake), _label_specialization(labels, intake))
        if len(task_labels) <= _MEMO_LABELS_MOST and sum(map(len, task_labels)) <= _MEMO_CHARS_MOST:
            # Only label lists of the size real ones have are kept: task input is anyone's, and the memo must stay
            # small (GitHub caps a label name at 50 characters).
            if len(memo) >= _LABEL_MEMO_SIZE:
                memo.clear()
            memo[task_labels] = facts
    return facts


# The last conversion: (now, tz, now in tz). A coordinator routing a batch at one instant passes the same `now`
# object every time, and `astimezone` with a ZoneInfo is a good part of a decision. Compared by identity (the
# cache holds both objects, so neither id can be reused); swapped as one tuple, so threads read a whole entry.
# The first entry matches nothing: `now` is never None.
_last_local: tuple[object, object, datetime] = (None, None, datetime.min)


def local_time(now: datetime, tz: ZoneInfo) -> datetime:
    """`now` in the routing timezone. A naive datetime is taken as already in that timezone."""
    global _last_local
    last = _last_local
    if now is last[0] and tz is last[1]:
        return last[2]
    local = now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)
    _last_local = (now, tz, local)
    return local


def prepare(task: Task, intake: IntakeSpec, tz: ZoneInfo, now: datetime, prompt: str | None = None) -> TaskView:
    """The task's view: priority, specialization, context size and local time decided once (see TaskView).
    Raises TaskError listing every problem (an unknown priority or specialization)."""
    return prepare_fields(task.key, task.number, task.title, task.body, task.labels, task.priority, task.retry_count,
                          task.specialization, task.context_tokens, task.attrs, intake, tz, now, prompt)


def prepare_fields(key: str | None, number: int | None, title: str, body: str, task_labels: tuple[str, ...],
                   given_priority: str | int | None, retry_count: int, given_spec: str | None,
                   context_tokens: int | None, attrs: Mapping[str, Any], intake: IntakeSpec, tz: ZoneInfo,
                   now: datetime, prompt: str | None = None) -> TaskView:
    """`prepare` from a task's fields (`key` as Task.key), for a caller that has them without a Task."""
    # _label_facts' memo read here first (a hit is the common case): one call less per decision.
    entry = _label_memos.get(id(intake))
    facts = entry[1].get(task_labels) if entry is not None and entry[0] is intake else None
    lowered, labels, from_labels, spec_from_labels = facts if facts is not None else _label_facts(task_labels, intake)
    # Every problem of the task at once, not the first only. A tuple: the empty one is a constant, where a list
    # would be built (and freed) on every decision, most of which have no problem.
    problems: tuple[str, ...] = ()
    if given_priority is None:
        priority, priority_from = from_labels
    elif given_priority in PRIORITY_RANK:  # a priority's own name, as most coordinators send it: _priority's answer
        priority, priority_from = given_priority, "given"
    else:
        try:
            priority, priority_from = _priority(given_priority, lowered, intake)
        except TaskError as exc:
            problems += tuple(exc.problems)
    if given_spec is not None:
        try:
            specialization, spec_from = _given_specialization(given_spec, intake)
        except TaskError as exc:
            problems += tuple(exc.problems)
    elif spec_from_labels is not None:
        specialization, spec_from = spec_from_labels
    else:  # the keyword classifier reads title and body (written out here: one call less per decision)
        keywords = intake.keywords
        found = keywords.classify(title, body) if keywords is not None and (title or body) else None
        if found is None:
            specialization, spec_from = intake.default_specialization, "default"
        else:  # most hits wins; a tie goes to the specialization declared first
            specialization, hits = found
            spec_from = _KEYWORD_SOURCES[hits] if hits < len(_KEYWORD_SOURCES) else f"keywords ({hits} hits)"
    if problems:
        raise TaskError(problems)
    if context_tokens is not None:
        tokens, estimated, tokens_from = context_tokens, False, "given"
    else:
        # The length of the prompt, or of "{title}\n{body}" without building that string (a copy of the body).
        chars = len(prompt) if prompt is not None else len(title) + 1 + len(body)
        tokens, estimated = int(chars / intake.chars_per_token), True
        tokens_from = "estimated from the prompt" if prompt is not None else "estimated from title and body"
    last = _last_local  # local_time's memo, read here first: the call is most of the cost of a hit
    local = last[2] if now is last[0] and tz is last[1] else local_time(now, tz)
    rank = PRIORITY_RANK[priority] if priority is not None else NO_PRIORITY_RANK
    # Positional, in TaskView's field order: this runs once per decision.
    return TaskView(key, number, title, labels, priority, rank, retry_count, specialization,
                    tokens, estimated, attrs, local, local.hour,
                    {"priority": priority_from, "specialization": spec_from, "context_tokens": tokens_from})
