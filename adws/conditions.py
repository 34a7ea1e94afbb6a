"""Rule conditions, compiled once at load into small predicate objects.

Each condition key (`priority`, `labels`, ...) has one compiler in `COMPILERS`; adding a condition is adding an
entry. A compiled condition is called with the prepared task (`TaskView`) and returns a bool; `expected()` and
`actual(view)` describe both sides for explain, so the trace is produced by the very objects that route.

Compilers raise `ConditionError` for anything they do not understand: a typo must never become a rule that
silently matches or silently never matches.
"""

from __future__ import annotations

import fnmatch
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adws.cron import CronMatcher
from adws.errors import suggest
from adws.taskview import PRIORITY_RANK, TaskView


class ConditionError(Exception):
    """A condition that cannot be compiled. `loc` is relative to the condition key."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class Condition(Protocol):
    key: str

    def __call__(self, view: TaskView) -> bool: ...
    def expected(self) -> str: ...
    def actual(self, view: TaskView) -> str: ...


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as written in TOML
    if isinstance(value, (frozenset, set)):
        value = sorted(value, key=repr)  # sets print in hash order, which changes between runs
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _toml(value: Any) -> str:
    """A value as it is written in TOML, for error messages (explain output keeps `_show`)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    return str(value)


# --- comparison operators, shared by every condition that compares values --------------------------------

def _regex_search(value: Any, pattern: Any) -> bool:
    return isinstance(value, str) and pattern.search(value) is not None


# Named functions, not lambdas: compiled configs are pickled into the config cache.
def _in(value: Any, options: Any) -> bool:
    return value in options


def _not_in(value: Any, options: Any) -> bool:
    return value not in options


_NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_ORDER_OPS = ("gt", "gte", "lt", "lte")
_ATTR_OPS: dict[str, Callable[[Any, Any], bool]] = {
    **_NUMERIC_OPS,
    "in": _in,
    "not_in": _not_in,
    "regex": _regex_search,
}


def _same(value: Any, operand: Any) -> bool:
    # TOML and JSON keep booleans apart from numbers; Python's `True == 1` must not make them match.
    return isinstance(value, bool) == isinstance(operand, bool) and bool(value == operand)


def _not_same(value: Any, operand: Any) -> bool:
    return not _same(value, operand)


def _in_same(value: Any, options: Any) -> bool:
    return any(_same(value, option) for option in options)


def _not_in_same(value: Any, options: Any) -> bool:
    return not _in_same(value, options)


@dataclass(frozen=True, slots=True)
class _Ordered:
    """An order operator for attrs: a boolean is not a number to compare (other wrong types raise TypeError)."""

    fn: Callable[[Any, Any], bool]

    def __call__(self, value: Any, operand: Any) -> bool:
        return not isinstance(value, bool) and self.fn(value, operand)


# attrs hold whatever the coordinator sent, so their operators keep types apart. Named callables, not lambdas:
# compiled configs are pickled.
_ATTR_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _same,
    "ne": _not_same,
    **{op: _Ordered(_NUMERIC_OPS[op]) for op in _ORDER_OPS},
    "in": _in_same,
    "not_in": _not_in_same,
    "regex": _regex_search,
}
_OP_WORDS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in",
             "not_in": "not in", "regex": "~", "exists": "exists"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ops_table(value: Any, allowed: Sequence[str], what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConditionError((), f"expected {what}, got {_toml(value)}")
    if not value:
        raise ConditionError((), f"empty operator table: give one of {', '.join(allowed)}")
    for op in value:
        if op not in allowed:
            raise ConditionError((op,), f'unknown operator "{op}"{suggest(op, allowed)}; '
                                 f"allowed: {', '.join(allowed)}")
    return dict(value)


@dataclass(slots=True)
class _Compare:
    """`value OP operand` for each (op, operand), all of which must hold."""

    key: str
    getter: Callable[[TaskView], Any]
    checks: tuple[tuple[str, Callable[[Any, Any], bool], Any], ...]

    def __call__(self, view: TaskView) -> bool:
        value = self.getter(view)
        try:
            return all(fn(value, operand) for _, fn, operand in self.checks)
        except TypeError:  # a task attribute of the wrong type for the operator: it does not satisfy it
            return False

    def expected(self) -> str:
        return " and ".join(f"{_OP_WORDS[op]} {_show(getattr(operand, 'pattern', operand))}"
                            for op, _, operand in self.checks)

    def actual(self, view: TaskView) -> str:
        return _show(self.getter(view))


def _numeric(key: str, getter: Callable[[TaskView], Any], value: Any, *, integer: bool) -> _Compare:
    kind = "integer" if integer else "number"
    check_type = _is_int if integer else _is_number
    if check_type(value):
        if value < 0:
            raise ConditionError((), f"must be >= 0, got {value}")
        return _Compare(key, getter, (("eq", operator.eq, value),))
    table = _ops_table(value, list(_NUMERIC_OPS), f"an {kind} or a table of operators")
    checks = []
    for op, operand in table.items():
        if not check_type(operand):
            raise ConditionError((op,), f"expected an {kind}, got {_toml(operand)}")
        if operand < 0:
            raise ConditionError((op,), f"must be >= 0, got {operand}")
        checks.append((op, _NUMERIC_OPS[op], operand))
    _refuse_empty(checks, integer=integer, within=(0, float("inf")))  # counts and sizes are never negative
    return _Compare(key, getter, tuple(checks))


def _refuse_empty(checks: Sequence[tuple[str, Callable[[Any, Any], bool], Any]], *, integer: bool,
                  within: tuple[float, float] = (float("-inf"), float("inf")),
                  show: Callable[[Any], str] = str) -> None:
    """Refuse bounds that no value can satisfy, such as `{ gt = 5, lt = 3 }` (or `{ gt = 5, lt = 6 }` for an
    integer, or `{ lt = 0 }` for a count, whose values lie `within` [0, inf])."""
    (low, high), low_open, high_open = within, False, False
    for op, _, operand in checks:
        if op not in ("eq", *_ORDER_OPS) or not _is_number(operand):
            continue
        bound, is_open = operand, op in ("gt", "lt")
        if integer and is_open:  # for integers, > 5 is >= 6 and < 5 is <= 4
            bound, is_open = operand + (1 if op == "gt" else -1), False
        if op in ("gt", "gte", "eq") and (bound > low or (bound == low and is_open)):
            low, low_open = bound, is_open
        if op in ("lt", "lte", "eq") and (bound < high or (bound == high and is_open)):
            high, high_open = bound, is_open
    if low > high or (low == high and (low_open or high_open)):
        raise ConditionError((), f"empty range: no {'integer' if integer else 'value'} satisfies " +
                             " and ".join(f"{_OP_WORDS[op]} {show(operand)}" for op, _, operand in checks))


# --- the condition keys ----------------------------------------------------------------------------------

def _priority(value: Any) -> Condition:
    names = list(PRIORITY_RANK)

    def rank_of(name: Any, loc: tuple[str | int, ...]) -> int:
        if not isinstance(name, str) or name not in PRIORITY_RANK:
            hint = suggest(name, names) if isinstance(name, str) else ""
            raise ConditionError(loc, f"unknown priority {_toml(name)}{hint}; allowed: {', '.join(names)}")
        return PRIORITY_RANK[name]

    getter = _get_priority_rank
    if isinstance(value, str):
        return _PriorityCompare("priority", getter, (("eq", operator.eq, rank_of(value, ())),))
    if isinstance(value, list):
        if not value:
            raise ConditionError((), "empty list: the rule could never match")
        ranks = frozenset(rank_of(v, (i,)) for i, v in enumerate(value))
        return _PriorityCompare("priority", getter, (("in", _ATTR_OPS["in"], ranks),))
    table = _ops_table(value, ["eq", "ne", "in", "not_in", *_ORDER_OPS],
                       "a priority, a list of priorities or a table of operators")
    checks: list[tuple[str, Callable[[Any, Any], bool], Any]] = []
    for op, operand in table.items():
        if op in ("in", "not_in"):
            if not isinstance(operand, list) or not operand:
                raise ConditionError((op,), f"expected a non-empty list of priorities, got {_toml(operand)}")
            checks.append((op, _ATTR_OPS[op], frozenset(rank_of(v, (op, i)) for i, v in enumerate(operand))))
        else:
            checks.append((op, _NUMERIC_OPS[op], rank_of(operand, (op,))))
    _refuse_empty(checks, integer=True, within=(min(_RANK_NAME), max(_RANK_NAME)),
                  show=lambda rank: _toml(_RANK_NAME[rank]))
    return _PriorityCompare("priority", getter, tuple(checks))


def _get_priority_rank(view: TaskView) -> int:
    return view.priority_rank


class _PriorityCompare(_Compare):
    """Shows ranks as priority names in explain output. A task without a priority (none given and no
    `default_priority` declared) matches no priority condition, as in the older router: not even `ne`."""

    def __call__(self, view: TaskView) -> bool:
        return view.priority is not None and _Compare.__call__(self, view)

    def expected(self) -> str:
        parts = []
        for op, _, operand in self.checks:
            shown = ([_RANK_NAME[r] for r in sorted(operand, reverse=True)]
                     if isinstance(operand, frozenset) else _RANK_NAME[operand])
            parts.append(f"{_OP_WORDS[op]} {_show(shown)}")
        return " and ".join(parts)

    def actual(self, view: TaskView) -> str:
        return _show(view.priority)


_RANK_NAME = {rank: name for name, rank in PRIORITY_RANK.items()}


@dataclass(slots=True)
class LabelSet:
    """Labels: exact names (lowercased) and glob patterns, matched case-insensitively as GitHub does."""

    exact: frozenset[str]
    globs: tuple[re.Pattern[str], ...]
    shown: tuple[str, ...]

    def hits(self, labels: frozenset[str]) -> bool:
        if not self.exact.isdisjoint(labels):
            return True
        return any(g.match(label) for g in self.globs for label in labels)

    def all_in(self, labels: frozenset[str]) -> bool:
        return self.exact <= labels and all(any(g.match(label) for label in labels) for g in self.globs)


def make_label_set(values: Any, loc: tuple[str | int, ...] = ()) -> LabelSet:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        raise ConditionError(loc, f"expected a non-empty list of labels, got {_toml(values)}")
    exact: set[str] = set()
    globs: list[re.Pattern[str]] = []
    for i, label in enumerate(values):
        if not isinstance(label, str) or not label.strip():
            raise ConditionError((*loc, i), f"expected a label name, got {_toml(label)}")
        lowered = label.strip().lower()
        if any(c in lowered for c in "*?["):
            globs.append(re.compile(fnmatch.translate(lowered)))
        else:
            exact.add(lowered)
    return LabelSet(frozenset(exact), tuple(globs), tuple(values))


@dataclass(slots=True)
class _Labels:
    key: str
    any_of: LabelSet | None
    all_of: LabelSet | None
    none_of: LabelSet | None

    def __call__(self, view: TaskView) -> bool:
        labels = view.labels
        if self.any_of is not None and not self.any_of.hits(labels):
            return False
        if self.all_of is not None and not self.all_of.all_in(labels):
            return False
        return not (self.none_of is not None and self.none_of.hits(labels))

    def expected(self) -> str:
        parts = []
        for word, group in (("any of", self.any_of), ("all of", self.all_of), ("none of", self.none_of)):
            if group is not None:
                parts.append(f"{word} {_show(group.shown)}")
        return " and ".join(parts)

    def actual(self, view: TaskView) -> str:
        return _show(sorted(view.labels))

    def index_keys(self) -> frozenset[str] | None:
        """Exact labels one of which a matching task must carry, or None when no such set exists."""
        if self.any_of is not None and not self.any_of.globs:
            return self.any_of.exact
        if self.all_of is not None and self.all_of.exact:
            return frozenset(sorted(self.all_of.exact)[:1])
        return None


def _labels(value: Any) -> Condition:
    if isinstance(value, (list, str)):
        return _Labels("labels", make_label_set(value), None, None)
    table = _ops_table(value, ["any", "all", "none"], "a list of labels or a table with any/all/none")
    groups = {op: make_label_set(v, (op,)) for op, v in table.items()}
    return _Labels("labels", groups.get("any"), groups.get("all"), groups.get("none"))


def _retry_count(value: Any) -> Condition:
    return _numeric("retry_count", _get_retry_count, value, integer=True)


def _get_retry_count(view: TaskView) -> int:
    return view.retry_count


def _context_tokens(value: Any) -> Condition:
    if isinstance(value, list):
        if len(value) != 2 or not all(_is_int(v) for v in value):
            raise ConditionError((), f"expected [min, max] with two integers, got {_toml(value)}")
        low, high = value
        if low < 0:
            raise ConditionError((0,), f"must be >= 0, got {low}")
        if low > high:
            raise ConditionError((), f"empty range [{low}, {high}]: min is above max")
        value = {"gte": low, "lte": high}
    elif not isinstance(value, Mapping):
        raise ConditionError((), f"expected [min, max] or a table with gt/gte/lt/lte, got {_toml(value)}")
    else:
        _ops_table(value, list(_ORDER_OPS), "a table with gt/gte/lt/lte")
    return _numeric("context_tokens", _get_context_tokens, value, integer=True)


def _get_context_tokens(view: TaskView) -> int:
    return view.context_tokens


@dataclass(slots=True)
class _HourRange:
    key: str
    start: int
    end: int
    hours: tuple[bool, ...]  # 24 entries, precomputed so a call is one index

    def __call__(self, view: TaskView) -> bool:
        return self.hours[view.hour]

    def expected(self) -> str:
        return f"hour in [{self.start}, {self.end})"

    def actual(self, view: TaskView) -> str:
        return f"hour {view.hour} ({view.local_now:%a %H:%M %Z})"


def _hour_range(value: Any) -> Condition:
    if not isinstance(value, list) or len(value) != 2:
        raise ConditionError((), f"expected [start, end] with two hours, got {_toml(value)}")
    for i, hour in enumerate(value):
        if not _is_int(hour):
            raise ConditionError((i,), f"expected an integer hour, got {_toml(hour)}")
        if not 0 <= hour <= 24:
            raise ConditionError((i,), f"hour must be within 0-24, got {hour}")
    start, end = value
    if start % 24 == end % 24 and not (start == 0 and end == 24):
        raise ConditionError((), f"empty range [{start}, {end}]: start equals end (use [0, 24] for all day)")
    if start < end:
        hours = tuple(start <= h < end for h in range(24))
    else:  # wraps past midnight: [22, 6] is 22:00-05:59
        hours = tuple(h >= start or h < end for h in range(24))
    return _HourRange("hour_range", start, end, hours)


@dataclass(slots=True)
class _Schedule:
    key: str
    matchers: tuple[CronMatcher, ...]

    def __call__(self, view: TaskView) -> bool:
        return any(m.matches(view.local_now) for m in self.matchers)

    def expected(self) -> str:
        return "cron " + " or ".join(repr(m.expr) for m in self.matchers)

    def actual(self, view: TaskView) -> str:
        return f"{view.local_now:%a %Y-%m-%d %H:%M %Z}"


def _schedule(value: Any) -> Condition:
    exprs = [value] if isinstance(value, str) else value
    if not isinstance(exprs, list) or not exprs:
        raise ConditionError((), f"expected a cron expression or a list of them, got {_toml(value)}")
    matchers = []
    for i, expr in enumerate(exprs):
        loc: tuple[str | int, ...] = (i,) if isinstance(value, list) else ()
        if not isinstance(expr, str):
            raise ConditionError(loc, f"expected a cron expression, got {_toml(expr)}")
        try:
            matchers.append(CronMatcher(expr))
        except ValueError as exc:  # the message already quotes the expression and names the bad field
            raise ConditionError(loc, str(exc)) from None
    return _Schedule("schedule", tuple(matchers))


def _specialization(value: Any) -> Condition:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise ConditionError((), f"expected a specialization or a non-empty list of them, got {_toml(value)}")
    return _Compare("specialization", _get_specialization,
                    (("in", _ATTR_OPS["in"], frozenset(v.lower() for v in values)),))


def _get_specialization(view: TaskView) -> str:
    return view.specialization


@dataclass(slots=True)
class _AttrGetter:
    name: str

    def __call__(self, view: TaskView) -> Any:
        return view.attrs.get(self.name, _MISSING)


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()


@dataclass(slots=True)
class _Attr(_Compare):
    """attrs.NAME: a missing attribute fails every operator except `exists = false`."""

    exists: bool | None = None

    def __call__(self, view: TaskView) -> bool:
        value = self.getter(view)
        if value is _MISSING:
            return self.exists is False
        if self.exists is False:
            return False
        return _Compare.__call__(self, view)

    def expected(self) -> str:
        parts = [] if self.exists is None else [f"exists = {str(self.exists).lower()}"]
        if self.checks:
            parts.append(_Compare.expected(self))
        return " and ".join(parts)


def compile_attr(name: str, value: Any) -> Condition:
    key = f"attrs.{name}"
    getter = _AttrGetter(name)
    if not isinstance(value, Mapping):
        if isinstance(value, (list, dict)) or value is None:
            raise ConditionError((), f"expected a value or a table of operators, got {_toml(value)}")
        return _Attr(key, getter, (("eq", _same, value),))
    table = _ops_table(value, [*_ATTR_OPS, "exists"], "a table of operators")
    checks: list[tuple[str, Callable[[Any, Any], bool], Any]] = []
    exists: bool | None = None
    for op, operand in table.items():
        if op == "exists":
            if not isinstance(operand, bool):
                raise ConditionError((op,), f"expected true or false, got {_toml(operand)}")
            exists = operand
        elif op in ("in", "not_in"):
            if not isinstance(operand, list) or not operand:
                raise ConditionError((op,), f"expected a non-empty list, got {_toml(operand)}")
            checks.append((op, _ATTR_COMPARE[op], tuple(operand)))
        elif op == "regex":
            if not isinstance(operand, str):
                raise ConditionError((op,), f"expected a regular expression, got {_toml(operand)}")
            try:
                checks.append((op, _ATTR_COMPARE[op], re.compile(operand)))
            except re.error as exc:
                raise ConditionError((op,), f"bad regex {_toml(operand)}: {exc}") from None
        elif op in _ORDER_OPS:
            if not _is_number(operand):
                raise ConditionError((op,), f"expected a number, got {_toml(operand)}")
            checks.append((op, _ATTR_COMPARE[op], operand))
        else:
            checks.append((op, _ATTR_COMPARE[op], operand))
    if exists is False and checks:
        raise ConditionError((), "exists = false cannot be combined with other operators")
    _refuse_empty(checks, integer=False)
    return _Attr(key, getter, tuple(checks), exists)


COMPILERS: dict[str, Callable[[Any], Condition]] = {
    "priority": _priority,
    "labels": _labels,
    "retry_count": _retry_count,
    "hour_range": _hour_range,
    "schedule": _schedule,
    "specialization": _specialization,
    "context_tokens": _context_tokens,
}
KEYS: tuple[str, ...] = (*COMPILERS, "attrs")


def compile_conditions(table: Mapping[str, Any]) -> tuple[list[Condition], list[ConditionError]]:
    """Compile a rule's `conditions` table. Returns the conditions and every error (loc relative to it)."""
    conditions: list[Condition] = []
    errors: list[ConditionError] = []

    def add(loc: tuple[str | int, ...], build: Callable[[], Condition]) -> None:
        try:
            conditions.append(build())
        except ConditionError as exc:
            errors.append(ConditionError((*loc, *exc.loc), exc.message))

    for key, value in table.items():
        if key in COMPILERS:
            compiler = COMPILERS[key]
            add((key,), lambda compiler=compiler, value=value: compiler(value))  # type: ignore[misc]
        elif key == "attrs":
            if not isinstance(value, Mapping) or not value:
                errors.append(ConditionError((key,), f"expected a table of attribute conditions, got {_toml(value)}"))
                continue
            for name, spec in value.items():
                add((key, name), lambda name=name, spec=spec: compile_attr(name, spec))  # type: ignore[misc]
        elif key.startswith("attrs.") and len(key) > len("attrs."):
            name = key[len("attrs."):]
            add((key,), lambda name=name, value=value: compile_attr(name, value))  # type: ignore[misc]
        else:
            head, dot, rest = key.partition(".")
            hint = suggest(key, KEYS) or (suggest(head, ["attrs"]).replace('"attrs"', f'"attrs.{rest}"')
                                          if dot and rest else "")
            errors.append(ConditionError((key,), f'unknown condition "{key}"{hint}; '
                                         f"allowed: {', '.join(KEYS)}, attrs.NAME"))
    return conditions, errors
