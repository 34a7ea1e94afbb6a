"""Matching a cron expression against a moment, fast.

croniter validates the expression and expands it once; matching is then a few set lookups, which keeps
`schedule` conditions cheap on the routing hot path. Expressions using features the sets cannot express
(`L`, `#`, seconds columns) fall back to croniter's own matcher.

croniter is imported on the first parse, not with this module. A config loaded from the compiled-config
cache was validated when it was stored, so its matchers are built inside `already_checked()` and parse on
their first match: `adws route` on a config whose rules have no schedule never imports croniter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from adws.errors import suggest

if TYPE_CHECKING:
    from croniter import croniter

_CHECKED: ContextVar[bool] = ContextVar("adws_cron_checked", default=False)
_KNOWN: ContextVar[Mapping[str, Any]] = ContextVar("adws_cron_known", default=MappingProxyType({}))
# Every expression parsed in this process -> its expansion as plain data, for the compiled-config cache.
_PARSED: dict[str, list[Any]] = {}
# Expansions (and refusals) made before, for a validation (adws.config.verdicts): given an expression and the
# function that asks croniter, the answer `_answer` gives — from memory, or by calling it.
Memo = Callable[[str, Callable[[], "list[Any] | str"]], "list[Any] | str"]
_MEMO: ContextVar[Memo | None] = ContextVar("adws_cron_memo", default=None)


@contextmanager
def remembering(memo: Memo) -> Iterator[None]:
    """CronMatchers built inside take croniter's verdict on their expression from `memo`: its expansion (the
    data `expansions` gives) or the ValueError message that refused it."""
    token = _MEMO.set(memo)
    try:
        yield
    finally:
        _MEMO.reset(token)


def remembered_answer(value: Any) -> list[Any] | str | None:
    """A stored answer as `remembering`'s memo gives it, or None when `value` is not of that shape."""
    if type(value) is str:
        return value
    return value if _columns(value) is not None else None


@contextmanager
def already_checked(expansions: Mapping[str, Any] | None = None) -> Iterator[None]:
    """CronMatchers built inside need no croniter: for expressions that validated before (the config cache).
    Each takes its expansion from `expansions` (as `expansions()` gave it) when it is there and well-formed,
    and otherwise parses on its first match. Without `expansions`, those of an enclosing call stand."""
    token = _CHECKED.set(True)
    known = _KNOWN.set(_KNOWN.get() if expansions is None else expansions)
    try:
        yield
    finally:
        _KNOWN.reset(known)
        _CHECKED.reset(token)


def expansions() -> dict[str, list[Any]]:
    """expression -> [fallback, minutes, hours, days of month, months, days of week] (sorted lists, null for
    any) of every expression parsed in this process: JSON data for `already_checked`."""
    return dict(_PARSED)


def _columns(value: Any) -> tuple[bool, tuple[frozenset[int] | None, ...]] | None:
    """An expansion read back, or None when it is not exactly the shape `expansions` writes."""
    if type(value) is not list or len(value) != 6 or type(value[0]) is not bool:
        return None
    columns: list[frozenset[int] | None] = []
    for column in value[1:]:
        if column is None:
            columns.append(None)
        elif type(column) is list and all(type(v) is int and 0 <= v <= 59 for v in column):
            columns.append(frozenset(column))
        else:
            return None
    return value[0], tuple(columns)

# The five columns, with what each accepts, for messages that name the column at fault.
_COLUMNS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"), ("month", "1-12 or jan-dec"),
            ("day-of-week", "0-7 or sun-sat"))
# The aliases croniter knows, and the five fields each stands for (the moment it names).
ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_ALIASES = tuple(ALIASES)


def _parse(expr: str) -> croniter:
    """croniter's parse, with errors that say which column is wrong. Only five columns: routing and quota
    periods work in minutes, and a seconds column would make a condition that (almost) never matches."""
    from croniter import croniter

    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise ValueError(f'bad cron expression "{expr}": unknown alias{suggest(text.lower(), _ALIASES)}; '
                             f"known: {', '.join(_ALIASES)}")
    elif len(text.split()) != 5:
        raise ValueError(f'bad cron expression "{expr}": expected 5 fields (minute hour day-of-month month '
                         f"day-of-week), got {len(text.split())}")
    try:
        return croniter(text)
    except (ValueError, KeyError, TypeError) as exc:  # CroniterBadCronError is a ValueError
        detail = str(exc)
    fields = text.split()
    for i, (name, allowed) in enumerate(_COLUMNS):
        probe = ["*"] * 5
        probe[i] = fields[i]
        try:
            croniter(" ".join(probe))
        except (ValueError, KeyError, TypeError):
            detail = f'the {name} field "{fields[i]}" is not valid ({allowed})'
            break
    raise ValueError(f'bad cron expression "{expr}": {detail}')


def _field(values: list[Any]) -> frozenset[int] | None:
    """None means "any value" (a `*` column)."""
    if values == ["*"]:
        return None
    return frozenset(values)


class CronMatcher:
    """Does a moment fall in a minute that a five-column cron expression names? ValueError for a bad one."""

    __slots__ = ("_dom", "_dow", "_fallback", "_hours", "_minutes", "_months", "_parsed", "expr")

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self._parsed = False
        if not _CHECKED.get():
            self._parse()
            return
        known = _columns(_KNOWN.get().get(expr))
        if known is not None:
            self._fallback, (self._minutes, self._hours, self._dom, self._months, self._dow) = known
            self._parsed = not self._fallback  # croniter itself matches the fallback forms

    def _parse(self) -> None:
        memo = _MEMO.get()
        if memo is None:
            self._expand()
            return
        answer = memo(self.expr, self._answer)
        columns = _columns(answer)
        if columns is None:  # a refusal (the memo gives only the two shapes)
            raise ValueError(answer)
        self._fallback, (self._minutes, self._hours, self._dom, self._months, self._dow) = columns
        _PARSED[self.expr] = list(answer)
        self._parsed = True

    def _answer(self) -> list[Any] | str:
        """croniter's verdict as data: the expansion `_expand` records, or the message of its ValueError."""
        try:
            self._expand()
        except ValueError as exc:
            return str(exc)
        return _PARSED[self.expr]

    def _expand(self) -> None:
        from croniter import croniter

        expr = self.expr
        parsed = _parse(expr)
        expanded = parsed.expanded
        simple = (
            len(expanded) == 5
            and not getattr(parsed, "nth_weekday_of_month", None)
            and all(v == "*" or isinstance(v, int) for column in expanded for v in column)
        )
        if simple and expanded[2] != ["*"] and expanded[4] == ["*"]:
            # A day of month that no month has ("0 0 30 2 *") parses but never fires: a schedule or quota
            # reset that never comes would silently never match. (L and # forms are left to croniter, whose
            # own search is not reliable for them.)
            try:
                croniter(expr, datetime(2000, 1, 1)).get_next(datetime)
            except Exception as exc:  # croniter raises its own error types for "no next date"
                raise ValueError(f'"{expr}" never fires: no date matches it ({exc})') from None
        self._fallback = not simple
        if simple:
            self._minutes = _field(expanded[0])
            self._hours = _field(expanded[1])
            self._dom = _field(expanded[2])
            self._months = _field(expanded[3])
            dow = _field(expanded[4])
            self._dow = None if dow is None else frozenset(d % 7 for d in dow)  # 7 is Sunday too
            _PARSED[expr] = [False, *(None if c is None else sorted(c) for c in
                                      (self._minutes, self._hours, self._dom, self._months, self._dow))]
        else:
            _PARSED[expr] = [True, None, None, None, None, None]
        self._parsed = True

    def matches(self, moment: datetime) -> bool:
        """Does the minute containing `moment` (in its own timezone) match?"""
        if not self._parsed:
            self._parse()
        if self._fallback:
            from croniter import croniter

            return bool(croniter.match(self.expr, moment.replace(second=0, microsecond=0)))
        if self._minutes is not None and moment.minute not in self._minutes:
            return False
        if self._hours is not None and moment.hour not in self._hours:
            return False
        if self._months is not None and moment.month not in self._months:
            return False
        dom_ok = self._dom is None or moment.day in self._dom
        dow_ok = self._dow is None or (moment.weekday() + 1) % 7 in self._dow
        if self._dom is not None and self._dow is not None:
            return dom_ok or dow_ok  # classic cron: when both day columns are restricted, either matches
        return dom_ok and dow_ok

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronMatcher) and other.expr == self.expr

    def __hash__(self) -> int:
        return hash(self.expr)

    def __reduce__(self) -> tuple[Any, ...]:
        return (CronMatcher, (self.expr,))
