"""Matching a cron expression against a moment, fast.

croniter validates the expression and expands it once; matching is then a few set lookups, which keeps
`schedule` conditions cheap on the routing hot path. Expressions using features the sets cannot express
(`L`, `#`, seconds columns) fall back to croniter's own matcher.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import croniter

from adws.errors import suggest

# The five columns, with what each accepts, for messages that name the column at fault.
_COLUMNS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"), ("month", "1-12 or jan-dec"),
            ("day-of-week", "0-7 or sun-sat"))
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _parse(expr: str) -> croniter:
    """croniter's parse, with errors that say which column is wrong. Only five columns: routing and quota
    periods work in minutes, and a seconds column would make a condition that (almost) never matches."""
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
    __slots__ = ("_dom", "_dow", "_fallback", "_hours", "_minutes", "_months", "expr")

    def __init__(self, expr: str) -> None:
        self.expr = expr
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

    def matches(self, moment: datetime) -> bool:
        """Does the minute containing `moment` (in its own timezone) match?"""
        if self._fallback:
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

    def __reduce__(self) -> tuple[Any, ...]:
        return (CronMatcher, (self.expr,))
