"""What a rule's compiled conditions admit, dimension by dimension, for `adws lint`.

The interface to `adws.conditions` is deliberately small: a compiled condition is called with a `TaskView` and
has a `key`; values worth trying come from the rule's conditions *as written* (`raw_conditions`, the config's
stable vocabulary). Each dimension (priority, labels, retry_count, time, specialization, context_tokens, one per
attrs.NAME) gets a finite set of representative values from the values both rules mention: boundaries and
their neighbours for numbers, every mentioned value plus an unmentioned one, every subset of the mentioned
labels, every minute of a week. The real predicates are evaluated on them, so lint and routing cannot disagree.

A dimension's answer is exact when the representatives cover every case (no regex, no glob, no cron with a day of
month or a month, few enough labels); otherwise a counterexample still decides, and its absence is "cannot
decide" (None) rather than a guess. Dimensions are independent: a task may give priority and specialization
directly, whatever its labels say.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adws.compiled import CompiledConfig, RuleSpec
from adws.dataclass_cache import dataclass
from adws.intake import prepare
from adws.task import Task
from adws.taskview import PRIORITY_RANK, TaskView

_MAX_LABELS_EXACT = 10  # 2^10 label sets per pair at most; beyond, sets of up to three labels (not exact)
_WEEK_MINUTES = 7 * 24 * 60
_MISSING = object()


def dimension(key: str) -> str:
    """The dimension a condition key constrains: hour_range and schedule are both time."""
    return "time" if key in ("hour_range", "schedule") else key


@dataclass(frozen=True, slots=True)
class Verdict:
    value: bool | None  # True / False decided, None: cannot decide
    why: str = ""  # for None: what made it undecidable


class Predicates:
    """Per-dimension questions about pairs of rules of one config."""

    def __init__(self, config: CompiledConfig) -> None:
        self.config = config
        tz = ZoneInfo(config.timezone)
        base = prepare(Task(), config.intake, tz, datetime(2026, 1, 5, tzinfo=tz), None)
        self.base = base
        # A reference week in January (no daylight-saving change), Monday 00:00 local time onwards.
        monday = datetime(2026, 1, 5, tzinfo=tz)
        self._week = [monday + timedelta(minutes=m) for m in range(_WEEK_MINUTES)]
        self._time: dict[str, frozenset[int]] = {}
        self._memo: dict[tuple[str, str, str, bool], Verdict] = {}

    # -- the two questions ------------------------------------------------------------------------------

    def covers(self, a: RuleSpec, b: RuleSpec) -> tuple[bool | None, list[str]]:
        """Does every task `b` matches also match `a`? With the dimensions that could not be decided."""
        unknown: list[str] = []
        for dim in self._dims(a, b):
            verdict = self._dim(dim, a, b, lambda pa, pb: pb <= pa, decisive=False)
            if verdict.value is False:
                return False, []
            if verdict.value is None:
                unknown.append(verdict.why)
        return (None, unknown) if unknown else (True, [])

    def overlap(self, a: RuleSpec, b: RuleSpec) -> tuple[bool | None, list[str]]:
        """Is there a task both rules match?"""
        unknown: list[str] = []
        for dim in self._dims(a, b):
            verdict = self._dim(dim, a, b, lambda pa, pb: bool(pa & pb), decisive=True)
            if verdict.value is False:
                return False, []
            if verdict.value is None:
                unknown.append(verdict.why)
        return (None, unknown) if unknown else (True, [])

    def covers_together(self, earlier: list[RuleSpec], b: RuleSpec) -> list[RuleSpec] | None:
        """Earlier rules that together match every task `b` matches, decided exactly, else None.

        Decided for the common shape: rules that each cover `b` in every dimension but one (say labels), and
        whose admitted values in that one dimension add up to all of `b`'s (`bug` and `feature` cover
        `labels = ["bug", "feature"]`). Only exhaustive representatives count here: no guess.
        """
        for dim in sorted({dimension(c.key) for c in b.conditions}
                          | {dimension(c.key) for a in earlier for c in a.conditions}):
            group = [a for a in earlier if all(
                self._dim(other, a, b, lambda pa, pb: pb <= pa, decisive=False).value is True
                for other in self._dims(a, b) if other != dim)]
            if len(group) < 2:
                continue
            if dim == "time":
                if not all(_cron_exact(e) for rule in (b, *group) for e in _schedules(rule)):
                    continue
                sets = {a.name: self._minutes(a) for a in group}
                pb = self._minutes(b)
            else:
                points, exact, _ = self._points(dim, [b, *group], exact_only=True)
                if not exact:
                    continue
                sets = {a.name: frozenset(i for i, v in enumerate(points) if _holds(a, dim, v)) for a in group}
                pb = frozenset(i for i, v in enumerate(points) if _holds(b, dim, v))
            union = frozenset().union(*sets.values())
            if pb and pb <= union:
                return [a for a in group if sets[a.name] & pb]
        return None

    # -- internals ----------------------------------------------------------------------------------------

    def _dims(self, a: RuleSpec, b: RuleSpec) -> list[str]:
        return sorted({dimension(c.key) for c in (*a.conditions, *b.conditions)})

    def _dim(self, dim: str, a: RuleSpec, b: RuleSpec,
             test: Callable[[frozenset[int], frozenset[int]], bool], *, decisive: bool) -> Verdict:
        # Memoised: lint asks the same pair about the same dimension alone and again for rules together.
        key = (dim, a.name, b.name, decisive)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._dim_uncached(dim, a, b, test, decisive=decisive)
        return found

    def _dim_uncached(self, dim: str, a: RuleSpec, b: RuleSpec,
                      test: Callable[[frozenset[int], frozenset[int]], bool], *, decisive: bool) -> Verdict:
        if dim == "time":
            pa, pb = self._minutes(a), self._minutes(b)
            exact = all(_cron_exact(e) for rule in (a, b) for e in _schedules(rule))
            return self._judge(test(pa, pb), exact, "schedule (a cron day of month or month)", decisive)
        points, exact, why = self._points(dim, [a, b])
        pa = frozenset(i for i, view in enumerate(points) if _holds(a, dim, view))
        pb = frozenset(i for i, view in enumerate(points) if _holds(b, dim, view))
        return self._judge(test(pa, pb), exact, why, decisive)

    @staticmethod
    def _judge(found: bool, exact: bool, why: str, decisive: bool) -> Verdict:
        # A counterexample (covers: False) or a witness (overlap: True) decides whatever the exactness; the other
        # answer decides only when the representatives were exhaustive.
        return Verdict(found) if exact or found == decisive else Verdict(None, why)

    def _minutes(self, rule: RuleSpec) -> frozenset[int]:
        cached = self._time.get(rule.name)
        if cached is None:
            conditions = [c for c in rule.conditions if dimension(c.key) == "time"]
            views = (dataclasses.replace(self.base, local_now=t, hour=t.hour) for t in self._week)
            cached = self._time[rule.name] = frozenset(
                i for i, view in enumerate(views) if all(c(view) for c in conditions))
        return cached

    def _points(self, dim: str, rules: list[RuleSpec], *,
                exact_only: bool = False) -> tuple[list[TaskView], bool, str]:
        """Representative views for one dimension, whether they are exhaustive, and if not why. With
        `exact_only`, views that would not be exhaustive are not built (the caller would discard them)."""
        raw = [_raw(rule, dim) for rule in rules]
        base = self.base
        if dim == "priority":
            return [dataclasses.replace(base, priority=n, priority_rank=r) for n, r in PRIORITY_RANK.items()], True, ""
        if dim == "specialization":
            names = {s.lower() for s in _scalars(raw) if isinstance(s, str)} | {"zz-unmentioned"}
            return [dataclasses.replace(base, specialization=s) for s in sorted(names)], True, ""
        if dim in ("retry_count", "context_tokens"):
            numbers = {int(n) for n in _scalars(raw) if isinstance(n, (int, float)) and not isinstance(n, bool)}
            near = {v for n in numbers for v in (n - 1, n, n + 1) if v >= 0}
            values = sorted({0, *near, max(numbers, default=0) + 10})
            field_name = "retry_count" if dim == "retry_count" else "context_tokens"
            views = [dataclasses.replace(base, retry_count=v) if field_name == "retry_count"
                     else dataclasses.replace(base, context_tokens=v) for v in values]
            return views, True, ""
        if dim == "labels":
            return self._label_points(raw, exact_only)
        if dim.startswith("attrs."):
            return self._attr_points(dim[len("attrs."):], raw)
        # A condition key lint does not know yet: only counterexamples among nothing; say so.
        return [base], False, f"{dim} (a condition lint does not know)"

    def _label_points(self, raw: list[Any], exact_only: bool = False) -> tuple[list[TaskView], bool, str]:
        names = {s.strip().lower() for s in _scalars(raw) if isinstance(s, str) and s.strip()}
        globs = {n for n in names if any(ch in n for ch in "*?[")}
        universe = sorted((names - globs) | {_sample(g) for g in globs} | {"zz-unmentioned"})
        exact = not globs and len(universe) <= _MAX_LABELS_EXACT
        if exact_only and not exact:
            return [], False, ""
        sizes: Iterable[int] = range(len(universe) + 1) if len(universe) <= _MAX_LABELS_EXACT else range(4)
        views = [dataclasses.replace(self.base, labels=frozenset(combo))
                 for size in sizes for combo in itertools.combinations(universe, size)]
        why = "labels (glob patterns)" if globs else "labels (too many to try every set)"
        return views, exact, "" if exact else why

    def _attr_points(self, name: str, raw: list[Any]) -> tuple[list[TaskView], bool, str]:
        values: list[Any] = [_MISSING, "zz-unmentioned"]
        for v in _scalars(raw):
            values.append(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values += [v - 1, v - 0.5, v + 0.5, v + 1]
        if any(isinstance(v, bool) for v in values):
            values += [True, False]
        regex = _has_op(raw, "regex")
        views = [dataclasses.replace(self.base, attrs={} if v is _MISSING else {name: v}) for v in _unique(values)]
        return views, not regex, f"attrs.{name} (a regex)" if regex else ""


def _holds(rule: RuleSpec, dim: str, view: TaskView) -> bool:
    return all(c(view) for c in rule.conditions if dimension(c.key) == dim)


def _raw(rule: RuleSpec, dim: str) -> Any:
    """The rule's conditions for one dimension as written in the file."""
    raw = rule.raw_conditions
    if dim.startswith("attrs."):
        name = dim[len("attrs."):]
        table = raw.get("attrs")
        return [raw.get(dim), table.get(name) if isinstance(table, Mapping) else None]
    return raw.get(dim)


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _scalars(v)]
    return [] if value is None else [value]


def _has_op(value: Any, op: str) -> bool:
    if isinstance(value, Mapping):
        return op in value or any(_has_op(v, op) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_op(v, op) for v in value)
    return False


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        # 1 and True and 1.0 are distinct task values here: adws keeps booleans apart from numbers.
        if not any(type(v) is type(o) and v == o for o in out):
            out.append(v)
    return out


def _sample(glob: str) -> str:
    """A label a glob matches: '*' and '?' become 'x', a bracket class its first character."""
    sample = re.sub(r"\[!?(.)[^\]]*\]", r"\1", glob).replace("*", "x").replace("?", "x")
    return sample if fnmatch.fnmatchcase(sample, glob) else glob


def _schedules(rule: RuleSpec) -> list[str]:
    value = rule.raw_conditions.get("schedule")
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def _cron_exact(expr: str) -> bool:
    fields = expr.split()
    return len(fields) == 5 and fields[2] == "*" and fields[3] == "*"
