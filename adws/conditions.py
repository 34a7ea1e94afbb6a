"""Rule conditions, compiled once at load into small predicate objects.

Each condition key (`priority`, `labels`, ...) is one `ConditionKind` in `KINDS` (its compiler and the JSON
Schema of its value); each comparison operator is one `Operator` in `OPERATORS`. Adding either is adding one
entry. A compiled condition is called with the prepared task (`TaskView`) and returns a bool; `expected()` and
`actual(view)` describe both sides for explain, so the trace is produced by the very objects that route, and
`index_keys()` tells the rule index which task values it admits.

Compilers raise `ConditionError` for anything they do not understand: a typo must never become a rule that
silently matches or silently never matches.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, time
from typing import Any, Protocol

from adws.cron import ALIASES, CronMatcher
from adws.dataclass_cache import dataclass, field
from adws.errors import suggest, toml_value
from adws.taskview import PRIORITY_RANK, TaskView
from adws.userregex import compile_user_regex


class ConditionError(Exception):
    """A condition that cannot be compiled. `loc` is relative to the condition key."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


@dataclass(frozen=True, slots=True)
class IndexKeys:
    """What a condition tells the rule index about the tasks it can admit.

    `field` names the TaskView field the condition constrains ("labels", "attrs", "attr_present",
    "specialization", "priority_rank", "hour", "retry_count", "context_tokens"). `values`: a matching task has
    one of these (a label, an `(attribute, value)` pair, an attribute name, a specialization). `admits`: for
    fields with a small domain, whether a value of the field satisfies the condition. `low`/`high`: the range a
    matching value lies in.
    """

    field: str
    values: frozenset[Any] | tuple[Any, ...] = ()
    admits: Callable[[Any], bool] | None = None
    low: float = 0
    high: float = math.inf


class Condition(Protocol):
    key: str

    def __call__(self, view: TaskView) -> bool: ...
    def expected(self) -> str: ...
    def actual(self, view: TaskView) -> str: ...
    def index_keys(self) -> IndexKeys | None: ...


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as written in TOML
    if isinstance(value, (frozenset, set)):
        value = sorted(value, key=repr)  # sets print in hash order, which changes between runs
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


# --- operators ----------------------------------------------------------------------------------------
#
# Each operator is declared once: how it compares, how explain words it, what its operand must be (checked at
# load, with the JSON Schema `adws schema` prints), how it bounds a range and which values it pins for the rule
# index. Adding an operator is adding one entry to OPERATORS. Named functions, not lambdas: compiled configs
# are cached.

def _same(value: Any, operand: Any) -> bool:
    # TOML and JSON keep booleans apart from numbers; Python's `True == 1` must not make them match.
    return isinstance(value, bool) == isinstance(operand, bool) and bool(value == operand)


def _not_same(value: Any, operand: Any) -> bool:
    return not _same(value, operand)


def _in(value: Any, options: Any) -> bool:
    return value in options


def _not_in(value: Any, options: Any) -> bool:
    return value not in options


def _in_same(value: Any, options: Any) -> bool:
    return any(_same(value, option) for option in options)


def _not_in_same(value: Any, options: Any) -> bool:
    return not _in_same(value, options)


def _regex_search(value: Any, pattern: Any) -> bool:
    return isinstance(value, str) and pattern.search(value) is not None


def _present(value: Any, wanted: Any) -> bool:
    return wanted is True  # called only for a present attribute: `exists = true` holds, `exists = false` not


@dataclass(frozen=True, slots=True)
class _Ordered:
    """An order operator for attrs: a boolean is not a number to compare (other wrong types raise TypeError)."""

    fn: Callable[[Any, Any], bool]

    def __call__(self, value: Any, operand: Any) -> bool:
        return not isinstance(value, bool) and self.fn(value, operand)


def _scalar_operand(operand: Any) -> Any:
    if isinstance(operand, (list, dict)):
        raise ValueError(f"expected a value, got {toml_value(operand)}")
    return _plain_scalar(operand)


def _number_operand(operand: Any) -> Any:
    if not _is_number(operand):
        raise ValueError(f"expected a number, got {toml_value(operand)}")
    return operand


def _list_operand(operand: Any) -> Any:
    if not isinstance(operand, list) or not operand:
        raise ValueError(f"expected a non-empty list, got {toml_value(operand)}")
    return tuple(_scalar_operand(v) for v in operand)


def _regex_operand(operand: Any) -> Any:
    if not isinstance(operand, str):
        raise ValueError(f"expected a regular expression, got {_got(operand)}")
    return compile_user_regex(operand, allow_universal=False)


def _bool_operand(operand: Any) -> Any:
    if not isinstance(operand, bool):
        raise ValueError(f"expected true or false, got {toml_value(operand)}")
    return operand


def _pins_one(operand: Any) -> tuple[Any, ...] | None:
    return (operand,) if _hashable(operand) else None


def _pins_any(operand: Any) -> tuple[Any, ...] | None:
    return tuple(operand) if all(_hashable(v) for v in operand) else None


def _pins_none(operand: Any) -> tuple[Any, ...] | None:
    return None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


_SCALAR_SCHEMA: dict[str, Any] = {"type": ["string", "number", "boolean"]}


@dataclass(frozen=True, slots=True)
class Operator:
    """One comparison operator of conditions.

    `test(value, operand)` compares typed task fields (priority ranks, counts); `attr_test` compares attrs, which
    hold whatever the coordinator sent, so it keeps types apart. `operand` checks and prepares an attrs operand
    at load (ValueError with the message); `schema` is that operand's JSON Schema. `bound` is "low", "high" or
    "both" when the operator bounds a range (`strict`: the operand itself is excluded); `pins` gives the values
    a satisfying task value is one of, or None. `when_missing` is the result for an attribute the task lacks.
    """

    name: str
    word: str
    test: Callable[[Any, Any], bool]
    attr_test: Callable[[Any, Any], bool]
    operand: Callable[[Any], Any]
    schema: Mapping[str, Any]
    bound: str = ""
    strict: bool = False
    pins: Callable[[Any], tuple[Any, ...] | None] = _pins_none
    attrs_only: bool = False

    def when_missing(self, operand: Any) -> bool:
        return self.name == "exists" and operand is False


OPERATORS: dict[str, Operator] = {op.name: op for op in (
    Operator("eq", "==", operator.eq, _same, _scalar_operand, _SCALAR_SCHEMA, bound="both", pins=_pins_one),
    Operator("ne", "!=", operator.ne, _not_same, _scalar_operand, _SCALAR_SCHEMA),
    Operator("gt", ">", operator.gt, _Ordered(operator.gt), _number_operand, {"type": "number"}, "low", True),
    Operator("gte", ">=", operator.ge, _Ordered(operator.ge), _number_operand, {"type": "number"}, "low"),
    Operator("lt", "<", operator.lt, _Ordered(operator.lt), _number_operand, {"type": "number"}, "high", True),
    Operator("lte", "<=", operator.le, _Ordered(operator.le), _number_operand, {"type": "number"}, "high"),
    Operator("in", "in", _in, _in_same, _list_operand, {"type": "array", "minItems": 1, "items": _SCALAR_SCHEMA},
             pins=_pins_any),
    Operator("not_in", "not in", _not_in, _not_in_same, _list_operand,
             {"type": "array", "minItems": 1, "items": _SCALAR_SCHEMA}),
    Operator("regex", "~", _regex_search, _regex_search, _regex_operand, {"type": "string"}, attrs_only=True),
    Operator("exists", "exists =", _present, _present, _bool_operand, {"type": "boolean"}, attrs_only=True),
)}
_COMPARE = tuple(name for name, op in OPERATORS.items() if not op.attrs_only)  # eq ... not_in
_NUMERIC = tuple(name for name in _COMPARE if OPERATORS[name].operand is not _list_operand)  # eq, ne, gt ... lte
_ORDER = tuple(name for name, op in OPERATORS.items() if op.bound in ("low", "high"))
_PRIORITY_OPERATORS = ("eq", "ne", "in", "not_in", *_ORDER)  # the order messages list them in

Check = tuple[Operator, Callable[[Any, Any], bool], Any]  # the operator, its test for this field, the operand


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _got(value: Any) -> str:
    """A wrong value as the config wrote it, for "expected X, got ..." where X is text (labels, priorities,
    specializations, regexes, cron): an unquoted TOML date (`2026-12-01` is a date to TOML, not text) also
    gets the hint to quote it."""
    shown = toml_value(value)
    dates = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, (date, time))]
    if dates:
        return f'{shown} (an unquoted TOML date: quote it, "{dates[0].isoformat()}", to mean the text)'
    return shown


def _plain_scalar(value: Any) -> Any:
    """A value that can meet task data: TOML dates cannot (a task from JSON holds dates as strings)."""
    if isinstance(value, (date, time)):
        raise ValueError(f"{value.isoformat()} is a TOML date, and a task from JSON never holds one: "
                         f'write it as a string, "{value.isoformat()}"')
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {toml_value(value)}")
    return value


def _ops_table(value: Any, allowed: Sequence[str], what: str, *, text: bool = False) -> dict[str, Any]:
    """`value` checked as a table of `allowed` operators; `text`: the condition also takes text (a date hint)."""
    if not isinstance(value, Mapping):
        raise ConditionError((), f"expected {what}, got {_got(value) if text else toml_value(value)}")
    if not value:
        raise ConditionError((), f"empty operator table: give one of {', '.join(allowed)}")
    for op in value:
        if op not in allowed:
            raise ConditionError((op,), f'unknown operator "{op}"{suggest(op, allowed)}; '
                                 f"allowed: {', '.join(allowed)}")
    return dict(value)


def _words(checks: Sequence[Check], show: Callable[[Any], str] = _show) -> str:
    return " and ".join(f"{op.word} {show(getattr(operand, 'pattern', operand))}" for op, _, operand in checks)


def _bounds(checks: Sequence[Check], *, integer: bool,
            within: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, bool, float, bool]:
    """The range the checks leave for a value: (low, low excluded, high, high excluded)."""
    (low, high), low_open, high_open = within, False, False
    for op, _, operand in checks:
        if not op.bound or not _is_number(operand):
            continue
        bound, is_open = operand, op.strict
        if integer and is_open:  # for integers, > 5 is >= 6 and < 5 is <= 4
            bound, is_open = operand + (1 if op.bound == "low" else -1), False
        if op.bound in ("low", "both") and (bound > low or (bound == low and is_open)):
            low, low_open = bound, is_open
        if op.bound in ("high", "both") and (bound < high or (bound == high and is_open)):
            high, high_open = bound, is_open
    return low, low_open, high, high_open


def _refuse_empty(checks: Sequence[Check], *, integer: bool, within: tuple[float, float] = (-math.inf, math.inf),
                  show: Callable[[Any], str] = str) -> None:
    """Refuse bounds that no value can satisfy, such as `{ gt = 5, lt = 3 }` (or `{ gt = 5, lt = 6 }` for an
    integer, or `{ lt = 0 }` for a count, whose values lie `within` [0, inf])."""
    low, low_open, high, high_open = _bounds(checks, integer=integer, within=within)
    if low > high or (low == high and (low_open or high_open)):
        raise ConditionError((), f"empty range: no {'integer' if integer else 'value'} satisfies " +
                             " and ".join(f"{op.word} {show(operand)}" for op, _, operand in checks))


@dataclass(slots=True)
class _Compare:
    """`value OP operand` for each check, all of which must hold. `field` is the TaskView field read."""

    key: str
    field: str
    getter: Callable[[TaskView], Any]
    checks: tuple[Check, ...]

    def __call__(self, view: TaskView) -> bool:
        value = self.getter(view)
        try:  # holds(), inlined: one call less per condition on the hot path of routing
            for _, fn, operand in self.checks:
                if not fn(value, operand):
                    return False
        except TypeError:
            return False
        return True

    def holds(self, value: Any) -> bool:
        try:
            for _, fn, operand in self.checks:  # a loop, not all(genexpr): this is the hot path of routing
                if not fn(value, operand):
                    return False
        except TypeError:  # a task attribute of the wrong type for the operator: it does not satisfy it
            return False
        return True

    def expected(self) -> str:
        return _words(self.checks)

    def actual(self, view: TaskView) -> str:
        return _show(self.getter(view))

    def index_keys(self) -> IndexKeys | None:
        if self.field == "specialization":
            return IndexKeys(self.field, values=self.checks[0][2])
        low, _, high, _ = _bounds(self.checks, integer=True)
        return IndexKeys(self.field, admits=self.holds, low=low, high=high)


def _numeric(key: str, value: Any, *, integer: bool) -> _Compare:
    kind = "integer" if integer else "number"
    check_type = _is_int if integer else _is_number
    getter = operator.attrgetter(key)
    if check_type(value):
        if value < 0:
            raise ConditionError((), f"must be >= 0, got {value}")
        return _Compare(key, key, getter, ((OPERATORS["eq"], operator.eq, value),))
    table = _ops_table(value, _NUMERIC, f"an {kind} or a table of operators")
    checks = []
    for op, operand in table.items():
        if not check_type(operand):
            raise ConditionError((op,), f"expected an {kind}, got {toml_value(operand)}")
        if operand < 0:
            raise ConditionError((op,), f"must be >= 0, got {operand}")
        checks.append((OPERATORS[op], OPERATORS[op].test, operand))
    _refuse_empty(checks, integer=integer, within=(0, math.inf))  # counts and sizes are never negative
    return _Compare(key, key, getter, tuple(checks))


# --- the condition keys ----------------------------------------------------------------------------------

_RANK_NAME = {rank: name for name, rank in PRIORITY_RANK.items()}


def _priority(value: Any) -> Condition:
    names = list(PRIORITY_RANK)

    def rank_of(name: Any, loc: tuple[str | int, ...]) -> int:
        if not isinstance(name, str) or name not in PRIORITY_RANK:
            hint = suggest(name, names) if isinstance(name, str) else ""
            raise ConditionError(loc, f"unknown priority {toml_value(name)}{hint}; allowed: {', '.join(names)}")
        return PRIORITY_RANK[name]

    getter = operator.attrgetter("priority_rank")
    if isinstance(value, str):
        return _PriorityCompare("priority", "priority_rank", getter,
                                ((OPERATORS["eq"], operator.eq, rank_of(value, ())),))
    if isinstance(value, list):
        if not value:
            raise ConditionError((), "empty list: the rule could never match")
        ranks = frozenset(rank_of(v, (i,)) for i, v in enumerate(value))
        return _PriorityCompare("priority", "priority_rank", getter, ((OPERATORS["in"], _in, ranks),))
    table = _ops_table(value, _PRIORITY_OPERATORS, "a priority, a list of priorities or a table of operators",
                       text=True)
    checks: list[Check] = []
    for op, operand in table.items():
        if OPERATORS[op].operand is _list_operand:
            if not isinstance(operand, list) or not operand:
                raise ConditionError((op,), f"expected a non-empty list of priorities, got {_got(operand)}")
            ranks = frozenset(rank_of(v, (op, i)) for i, v in enumerate(operand))
            checks.append((OPERATORS[op], OPERATORS[op].test, ranks))
        else:
            checks.append((OPERATORS[op], OPERATORS[op].test, rank_of(operand, (op,))))
    _refuse_empty(checks, integer=True, within=(min(_RANK_NAME), max(_RANK_NAME)),
                  show=lambda rank: toml_value(_RANK_NAME[rank]))
    return _PriorityCompare("priority", "priority_rank", getter, tuple(checks))


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
            parts.append(f"{op.word} {_show(shown)}")
        return " and ".join(parts)

    def actual(self, view: TaskView) -> str:
        return _show(view.priority)


@dataclass(slots=True)
class LabelSet:
    """Labels: exact names (lowercased) and glob patterns, matched case-insensitively as GitHub does."""

    exact: frozenset[str]
    globs: tuple[re.Pattern[str], ...]
    shown: tuple[str, ...]

    def hits(self, labels: frozenset[str]) -> bool:
        if not self.exact.isdisjoint(labels):
            return True
        # Plain loops, not any(genexpr): this runs for every label condition of every route, and most label sets
        # have no globs, where building a generator cost more than the set test above.
        for glob in self.globs:
            for label in labels:
                if glob.match(label):
                    return True
        return False

    def all_in(self, labels: frozenset[str]) -> bool:
        return self.exact <= labels and all(any(g.match(label) for label in labels) for g in self.globs)


def _unclosed_set(glob: str) -> bool:
    """Whether a `[` of a glob has no `]` to close its set. fnmatch then reads the `[` as itself, so
    `area:docs[` would match only a label with a bracket in it. The set's own syntax is fnmatch's: a `!` and then
    a `]` right after the `[` are members, not its end."""
    i = 0
    while (start := glob.find("[", i)) >= 0:
        j = start + 1
        j += glob.startswith("!", j)
        j += glob.startswith("]", j)
        end = glob.find("]", j)
        if end < 0:
            return True
        i = end + 1
    return False


def make_label_set(values: Any, loc: tuple[str | int, ...] = ()) -> LabelSet:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        raise ConditionError(loc, f"expected a non-empty list of labels, got {_got(values)}")
    exact: set[str] = set()
    globs: list[re.Pattern[str]] = []
    for i, label in enumerate(values):
        if not isinstance(label, str) or not label.strip():
            raise ConditionError((*loc, i), f"expected a label name, got {_got(label)}")
        lowered = label.strip().lower()
        if _unclosed_set(lowered):
            raise ConditionError((*loc, i), f'"[" without its "]" in the label glob {toml_value(label)}: "[...]" '
                                 'matches one of the characters inside; for a "[" itself write "[[]"')
        if any(c in lowered for c in "*?["):
            globs.append(re.compile(fnmatch.translate(lowered)))  # fnmatch's own translation: linear, adws's
        else:
            exact.add(lowered)
    return LabelSet(frozenset(exact), tuple(globs), tuple(values))


@dataclass(slots=True)
class _Labels:
    key: str
    any_of: LabelSet | None
    all_of: LabelSet | None
    none_of: LabelSet | None
    # The most common form, `labels = ["a", "b"]` (any of exact names): its set, tested in one step; else None.
    only_any_exact: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        only = self.any_of is not None and not self.any_of.globs and self.all_of is None and self.none_of is None
        self.only_any_exact = self.any_of.exact if only and self.any_of is not None else None

    def __call__(self, view: TaskView) -> bool:
        labels = view.labels
        if self.only_any_exact is not None:
            return not self.only_any_exact.isdisjoint(labels)
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

    def index_keys(self) -> IndexKeys | None:
        """Exact labels one of which a matching task must carry, when such a set exists."""
        if self.any_of is not None and not self.any_of.globs and self.any_of.exact:
            return IndexKeys("labels", values=self.any_of.exact)
        if self.all_of is not None and self.all_of.exact:
            return IndexKeys("labels", values=frozenset(sorted(self.all_of.exact)[:1]))
        return None


def _labels(value: Any) -> Condition:
    if isinstance(value, (list, str)):
        return _Labels("labels", make_label_set(value), None, None)
    table = _ops_table(value, ["any", "all", "none"], "a list of labels or a table with any/all/none", text=True)
    groups = {op: make_label_set(v, (op,)) for op, v in table.items()}
    return _Labels("labels", groups.get("any"), groups.get("all"), groups.get("none"))


def _retry_count(value: Any) -> Condition:
    return _numeric("retry_count", value, integer=True)


def _context_tokens(value: Any) -> Condition:
    if isinstance(value, list):
        if len(value) != 2 or not all(_is_int(v) for v in value):
            raise ConditionError((), f"expected [min, max] with two integers, got {toml_value(value)}")
        low, high = value
        if low < 0:
            raise ConditionError((0,), f"must be >= 0, got {low}")
        if low > high:
            raise ConditionError((), f"empty range [{low}, {high}]: min is above max")
        value = {"gte": low, "lte": high}
    elif not isinstance(value, Mapping):
        raise ConditionError((), f"expected [min, max] or a table with gt/gte/lt/lte, got {toml_value(value)}")
    else:
        _ops_table(value, _ORDER, "a table with gt/gte/lt/lte")
    return _numeric("context_tokens", value, integer=True)


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

    def index_keys(self) -> IndexKeys | None:
        return IndexKeys("hour", admits=self.hours.__getitem__)


def _hour_range(value: Any) -> Condition:
    if not isinstance(value, list) or len(value) != 2:
        raise ConditionError((), f"expected [start, end] with two hours, got {toml_value(value)}")
    for i, hour in enumerate(value):
        if not _is_int(hour):
            raise ConditionError((i,), f"expected an integer hour, got {toml_value(hour)}")
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
        moment = view.local_now
        for matcher in self.matchers:  # noqa: SIM110  (a loop, not any(genexpr): the hot path of routing)
            if matcher.matches(moment):
                return True
        return False

    def expected(self) -> str:
        return "cron " + " or ".join(repr(m.expr) for m in self.matchers)

    def actual(self, view: TaskView) -> str:
        return f"{view.local_now:%a %Y-%m-%d %H:%M %Z}"

    def index_keys(self) -> IndexKeys | None:
        return None  # minutes of a calendar: not a dimension worth bucketing


def _schedule(value: Any) -> Condition:
    exprs = [value] if isinstance(value, str) else value
    if not isinstance(exprs, list) or not exprs:
        raise ConditionError((), f"expected a cron expression or a list of them, got {_got(value)}")
    matchers = []
    for i, expr in enumerate(exprs):
        loc: tuple[str | int, ...] = (i,) if isinstance(value, list) else ()
        if not isinstance(expr, str):
            raise ConditionError(loc, f"expected a cron expression, got {_got(expr)}")
        if expr.strip().startswith("@"):  # an alias names a moment (a quota reset): as a condition, one minute
            fields = ALIASES.get(expr.strip().lower())
            what = f'is the moment "{fields}", so as a condition it holds one minute in each period' if fields \
                else "is not a cron expression"
            raise ConditionError(loc, f'"{expr}" {what}; a schedule takes the 5 fields of the minutes it holds in '
                                 '(e.g. "* * * * *" every day, "* 9-17 * * 1-5" working hours)')
        try:
            matchers.append(CronMatcher(expr))
        except ValueError as exc:  # the message already quotes the expression and names the bad field
            raise ConditionError(loc, str(exc)) from None
    return _Schedule("schedule", tuple(matchers))


def _specialization(value: Any) -> Condition:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise ConditionError((), f"expected a specialization or a non-empty list of them, got {_got(value)}")
    return _Compare("specialization", "specialization", operator.attrgetter("specialization"),
                    ((OPERATORS["in"], _in, frozenset(v.lower() for v in values)),))


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"

    def __reduce__(self) -> str:
        return "_MISSING"  # one instance, also after unpickling: `is` compares against it


_MISSING: Any = _Missing()


@dataclass(slots=True)
class _AttrGetter:
    """The value at an attribute path: `author.login` reads `attrs["author"]["login"]`, as GitHub nests objects;
    a number indexes a list (`assignees.0.login`).

    A key that itself holds dots (`attrs["author.login"]`) is taken first, so flat coordinators keep working.
    """

    name: str
    path: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.path = tuple(self.name.split("."))

    def __call__(self, view: TaskView) -> Any:
        attrs = view.attrs
        value = attrs.get(self.name, _MISSING)
        if value is not _MISSING or len(self.path) == 1:
            return value
        node: Any = attrs
        for part in self.path:
            if isinstance(node, Mapping):
                node = node.get(part, _MISSING)
                if node is _MISSING:
                    return _MISSING
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return _MISSING
        return node


@dataclass(slots=True)
class _Attr(_Compare):
    """attrs.NAME (NAME may be a dotted path): a missing attribute fails every operator except `exists = false`."""

    when_missing: bool = False

    def __call__(self, view: TaskView) -> bool:
        value = self.getter(view)
        if value is _MISSING:
            return self.when_missing
        return self.holds(value)

    def actual(self, view: TaskView) -> str:
        value = _show(self.getter(view))
        path = self.key[len("attrs."):]
        return f"{value} at {path}" if "." in path else value

    def index_keys(self) -> IndexKeys | None:
        if self.when_missing:
            return None  # `exists = false`: the tasks it admits are those without the attribute
        name = self.key[len("attrs."):]
        if "." in name:  # a nested value: index by the presence of its top-level key (or of the dotted key)
            return IndexKeys("attr_present", values=(name.split(".")[0], name))
        for op, _, operand in self.checks:
            pinned = op.pins(operand)
            if pinned is not None:
                return IndexKeys("attrs", values=tuple((name, v) for v in pinned))
        return IndexKeys("attr_present", values=(name,))


_ATTR_OPERATORS = tuple(OPERATORS)


def compile_attr(name: str, value: Any) -> Condition:
    key = f"attrs.{name}"
    if any(not part for part in name.split(".")):
        raise ConditionError((), f'"{key}" has an empty part in its path; write attrs.NAME or attrs.NAME.FIELD')
    getter = _AttrGetter(name)
    if not isinstance(value, Mapping):
        if isinstance(value, list) or value is None:
            raise ConditionError((), f"expected a value or a table of operators, got {toml_value(value)}")
        try:
            operand = _plain_scalar(value)
        except ValueError as exc:
            raise ConditionError((), str(exc)) from None
        return _Attr(key, "attrs", getter, ((OPERATORS["eq"], _same, operand),))
    table = _ops_table(value, _ATTR_OPERATORS, "a table of operators")
    checks: list[Check] = []
    for op_name, raw in table.items():
        op = OPERATORS[op_name]
        try:
            operand = op.operand(raw)
        except ValueError as exc:
            raise ConditionError((op_name,), str(exc)) from None
        checks.append((op, op.attr_test, operand))
    when_missing = all(op.when_missing(operand) for op, _, operand in checks)
    if any(op.when_missing(operand) for op, _, operand in checks) and len(checks) > 1:
        raise ConditionError((), "exists = false cannot be combined with other operators")
    _refuse_empty(checks, integer=False)
    return _Attr(key, "attrs", getter, tuple(checks), when_missing)


@dataclass(frozen=True, slots=True)
class ConditionKind:
    """One condition key: its compiler and the JSON Schema of the values it accepts."""

    name: str
    compile: Callable[[Any], Condition]
    schema: Mapping[str, Any]


def _ops_schema(names: Sequence[str], operand: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "minProperties": 1, "additionalProperties": False,
            "properties": {n: dict(operand if operand is not None else OPERATORS[n].schema) for n in names}}


_PRIORITY_NAME: dict[str, Any] = {"enum": list(PRIORITY_RANK)}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_LABELS: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]}
_PRIORITY_OPS = _ops_schema(_PRIORITY_OPERATORS)
for _name in _PRIORITY_OPERATORS:
    _PRIORITY_OPS["properties"][_name] = ({"type": "array", "minItems": 1, "items": _PRIORITY_NAME}
                                          if OPERATORS[_name].operand is _list_operand else _PRIORITY_NAME)
ATTR_SCHEMA: dict[str, Any] = {"anyOf": [_SCALAR_SCHEMA, _ops_schema(_ATTR_OPERATORS)]}

KINDS: dict[str, ConditionKind] = {kind.name: kind for kind in (
    ConditionKind("priority", _priority, {"anyOf": [
        _PRIORITY_NAME, {"type": "array", "minItems": 1, "items": _PRIORITY_NAME}, _PRIORITY_OPS]}),
    ConditionKind("labels", _labels, {"anyOf": [_LABELS, {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {"any": _LABELS, "all": _LABELS, "none": _LABELS}}]}),
    ConditionKind("retry_count", _retry_count, {"anyOf": [_COUNT, _ops_schema(_NUMERIC, _COUNT)]}),
    ConditionKind("hour_range", _hour_range, {"type": "array", "minItems": 2, "maxItems": 2,
                                              "items": {"type": "integer", "minimum": 0, "maximum": 24}}),
    ConditionKind("schedule", _schedule, {"anyOf": [
        {"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]}),
    ConditionKind("specialization", _specialization, {"anyOf": [
        {"type": "string", "minLength": 1}, {"type": "array", "minItems": 1,
                                             "items": {"type": "string", "minLength": 1}}]}),
    ConditionKind("context_tokens", _context_tokens, {"anyOf": [
        {"type": "array", "minItems": 2, "maxItems": 2, "items": _COUNT}, _ops_schema(_ORDER, _COUNT)]}),
)}
KEYS: tuple[str, ...] = (*KINDS, "attrs")


def conditions_schema() -> dict[str, Any]:
    """The JSON Schema of a rule's `conditions` table: the keys and operators `compile_conditions` accepts."""
    return {
        "type": "object",
        "properties": {**{name: dict(kind.schema) for name, kind in KINDS.items()},
                       "attrs": {"type": "object", "minProperties": 1, "additionalProperties": ATTR_SCHEMA}},
        "patternProperties": {r"^attrs\.[^.]+(\.[^.]+)*$": ATTR_SCHEMA},
        "additionalProperties": False,
    }


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a condition's value as written, equal only for values that compile alike and read
    alike in explain: types are kept apart (`true` is not `1`, `1` is not `1.0`), as is the order of tables
    (the order checks run and are shown in), and floats compare by their text (`-0.0` is not `0.0`)."""
    kind = type(value)
    if kind is dict:
        return kind, tuple([(k, _frozen(v)) for k, v in value.items()])
    if kind is list:
        return kind, tuple([_frozen(v) for v in value])
    if kind is float:
        return kind, repr(value)
    return kind, value


ConditionMemo = dict[Any, Condition]


def compile_conditions(table: Mapping[str, Any],
                       memo: ConditionMemo | None = None) -> tuple[list[Condition], list[ConditionError]]:
    """Compile a rule's `conditions` table. Returns the conditions and every error (loc relative to it).

    `memo`: shared by the rules of one config, so that a condition written alike in many rules (the same labels,
    the same hours) is compiled once and its one object is shared. Conditions are immutable after compiling,
    so sharing changes no answer; with 10,000 generated rules it keeps a third of the engine's memory.
    """
    conditions: list[Condition] = []
    errors: list[ConditionError] = []

    def add(loc: tuple[str | int, ...], build: Callable[[], Condition], key: str = "", value: Any = None) -> None:
        lookup: Any = None
        if memo is not None:
            try:
                lookup = (key, _frozen(value))
                found = memo.get(lookup)
            except (TypeError, RecursionError):  # a value that cannot be a key (an odd type, deep nesting)
                lookup = found = None
            if found is not None:
                conditions.append(found)
                return
        try:
            built = build()
        except ConditionError as exc:
            errors.append(ConditionError((*loc, *exc.loc), exc.message))
            return
        conditions.append(built)
        if memo is not None and lookup is not None:
            memo[lookup] = built

    for key, value in table.items():
        if key in KINDS:
            kind = KINDS[key]
            add((key,), lambda kind=kind, value=value: kind.compile(value), key, value)  # type: ignore[misc]
        elif key == "attrs":
            if not isinstance(value, Mapping) or not value:
                errors.append(ConditionError((key,), "expected a table of attribute conditions, got "
                                             f"{toml_value(value)}"))
                continue
            for name, spec in value.items():
                add((key, name), lambda name=name, spec=spec: compile_attr(name, spec),  # type: ignore[misc]
                    f"attrs.{name}", spec)
        elif key.startswith("attrs.") and len(key) > len("attrs."):
            name = key[len("attrs."):]
            add((key,), lambda name=name, value=value: compile_attr(name, value), key, value)  # type: ignore[misc]
        else:
            head, dot, rest = key.partition(".")
            hint = suggest(key, KEYS) or (suggest(head, ["attrs"]).replace('"attrs"', f'"attrs.{rest}"')
                                          if dot and rest else "")
            errors.append(ConditionError((key,), f'unknown condition "{key}"{hint}; '
                                         f"allowed: {', '.join(KEYS)}, attrs.NAME"))
    return conditions, errors
