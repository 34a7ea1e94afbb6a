"""Quota periods and limits: when an account's usage counter starts over, and how full it is.

A period is either a cron reset ("0 0 * * 0" = every Sunday 00:00, evaluated in a declared timezone, so
DST moves the instant but not the wall-clock time) or a rolling window ("5h" = the last five hours).
Periods are built once at config load, which is where a bad expression is refused, and are then
called on every routing decision, so the cron bounds are cached.

The compiled-config cache also keeps, for each cron reset of the config, the periods around the time the file
was validated, computed by `CronPeriod.bounds` itself (`stored_bounds`; `remember_bounds` reads them back): a
period that starts and ends as stored needs no croniter, which `adws route` would otherwise import for its first
decision. Outside the stored periods croniter answers, as without the cache.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from adws.attempt import Usage
from adws.dataclass_cache import dataclass
from adws.durations import UNITS
from adws.state.base import require_aware

_CRON_PROBE = datetime(2000, 1, 1, tzinfo=UTC)
# Units in descending order (adws.durations.UNITS), each at most once: "1h30m" reads one way only; "30m1h" is refused.
_WINDOW = re.compile("".join(rf"(?:(\d+){unit})?" for unit, _ in UNITS))


# The longest span `parse_window` reads unless told otherwise: ten years (3660 days). Any longer span is a typo,
# and one much longer overflows the dates it is added to (`now - window`, `opened_at + cooldown`).
MAX_WINDOW = timedelta(days=3660)
_MAX_DIGITS = 12  # per unit; more than that is refused before int() reads it (Python refuses 4,300+ itself)


def parse_window(text: str, most: timedelta = MAX_WINDOW, what: str = "window") -> timedelta:
    """Read a window such as "5h", "30m", "7d", "1h30m", "90s" or "2w", at most `most` (default `MAX_WINDOW`,
    ten years) long. ValueError, worded for one line, for anything else: another form, zero, or too long; `what`
    is the word the message calls the text by ("invalid window"; a command-line option's value is a duration)."""
    match = _WINDOW.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(
            f'invalid {what} "{text}": expected numbers with units w, d, h, m, s in that order, '
            'e.g. "5h", "30m", "7d", "1h30m"'
        )
    # Whole seconds as an int first: a timedelta of 99999999999 days cannot even be built (OverflowError).
    seconds = 0
    for n, (_, unit) in zip(match.groups(), UNITS, strict=True):
        if n is not None:
            digits = n.lstrip("0") or "0"
            seconds += int(digits) * unit if len(digits) <= _MAX_DIGITS else 10**30
    if seconds <= 0:
        raise ValueError(f'invalid {what} "{text}": must be longer than zero')
    if seconds > most.total_seconds():
        raise ValueError(f'invalid {what} "{text}": must be at most {format_window(most)}')
    return timedelta(seconds=seconds)


def format_window(window: timedelta) -> str:
    """The inverse of parse_window, for display: timedelta(hours=1, minutes=30) -> "1h30m"."""
    seconds = int(window.total_seconds())
    parts = []
    for suffix, unit in UNITS:
        if suffix == "w":
            continue  # "14d" reads better than "2w" next to cron periods that are weeks anyway
        count, seconds = divmod(seconds, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class QuotaLimits:
    """Per-account allowance for one period. A dimension left None is not limited."""

    tokens: int | None = None
    requests: int | None = None
    cost_usd: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("tokens", self.tokens), ("requests", self.requests), ("cost_usd", self.cost_usd)):
            if value is not None and value <= 0:
                raise ValueError(f"quota {name} must be > 0 (leave it out for no limit), got {value}")


def percent_used(usage: Usage, limits: QuotaLimits) -> float:
    """The fullest limited dimension, in percent (may exceed 100); 0 when nothing is limited."""
    # Judged once per account after every change of its usage: plain comparisons, no list of ratios.
    fullest: float | None = None
    if limits.tokens is not None:
        fullest = (usage.input_tokens + usage.output_tokens) / limits.tokens
    if limits.requests is not None:
        ratio = usage.requests / limits.requests
        if fullest is None or ratio > fullest:
            fullest = ratio
    if limits.cost_usd is not None:
        ratio = usage.cost_usd / limits.cost_usd
        if fullest is None or ratio > fullest:
            fullest = ratio
    return 0.0 if fullest is None else fullest * 100.0


class QuotaPeriod:
    """Where the period containing `now` starts, and when it resets. Calling it returns the start."""

    __slots__ = ()

    @classmethod
    def cron(cls, expr: str, tz: tzinfo) -> QuotaPeriod:
        return CronPeriod(expr, tz)

    @classmethod
    def rolling(cls, window: timedelta) -> QuotaPeriod:
        return RollingPeriod(window)

    @classmethod
    def unmetered(cls) -> QuotaPeriod:
        return UnmeteredPeriod()

    def start(self, now: datetime) -> datetime:
        raise NotImplementedError

    def next_reset(self, now: datetime) -> datetime | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __call__(self, now: datetime) -> datetime:
        return self.start(now)

    def __repr__(self) -> str:
        return f"<QuotaPeriod {self.describe()}>"


# (cron expression, zone key) -> (starts, ends) of consecutive periods as CronPeriod.bounds computed them.
_KNOWN: dict[tuple[str, str], tuple[list[datetime], list[datetime]]] = {}


def _zone_key(tz: tzinfo) -> str | None:
    key = getattr(tz, "key", None)  # a ZoneInfo's IANA name: what `timezone` in the config names
    return key if isinstance(key, str) else None


def stored_bounds(resets: Iterable[tuple[str, str]], around: datetime, *, span: timedelta = timedelta(days=40),
                  most: int = 64) -> list[list[Any]]:
    """For each (cron expression, IANA zone): the consecutive periods `CronPeriod.bounds` gives from `span`
    before `around` to `span` after it (at most `most` each way), as JSON data for `remember_bounds`:
    [[expr, zone, [[start, end], ...]], ...] with epoch seconds. Only back-to-back periods are kept."""
    from zoneinfo import ZoneInfo

    out: list[list[Any]] = []
    for expr, zone in dict.fromkeys(resets):
        period = CronPeriod(expr, ZoneInfo(zone))
        middle = period.bounds(around)
        periods = [middle]
        while len(periods) <= most and periods[0][0] > around - span:
            earlier = period.bounds(periods[0][0] - timedelta(seconds=1))
            if earlier[1] != periods[0][0]:
                break
            periods.insert(0, earlier)
        while len(periods) <= 2 * most and periods[-1][1] < around + span:
            later = period.bounds(periods[-1][1])
            if later[0] != periods[-1][1]:
                break
            periods.append(later)
        out.append([expr, zone, [[int(start.timestamp()), int(end.timestamp())] for start, end in periods]])
    return out


def valid_periods(value: Any) -> bool:
    """Whether `value` is one expression's periods as `stored_bounds` writes them: a non-empty list of
    [start, end] pairs of epoch seconds (ints), each ending after it starts and starting where the last ended."""
    if type(value) is not list or not value:
        return False
    end = None
    for pair in value:
        if type(pair) is not list or len(pair) != 2 or not all(type(v) is int for v in pair) \
                or not pair[0] < pair[1] or (end is not None and pair[0] != end):
            return False
        end = pair[1]
    return True


def remember_bounds(data: Any) -> bool:
    """Take periods `stored_bounds` wrote (from the compiled-config cache). False, and nothing taken, when the
    data is not exactly of that shape."""
    known: dict[tuple[str, str], tuple[list[datetime], list[datetime]]] = {}
    if type(data) is not list:
        return False
    for entry in data:
        if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str or type(entry[1]) is not str \
                or not valid_periods(entry[2]):
            return False
        known[(entry[0], entry[1])] = ([datetime.fromtimestamp(start, UTC) for start, _ in entry[2]],
                                       [datetime.fromtimestamp(end, UTC) for _, end in entry[2]])
    _KNOWN.update(known)
    return True


class CronPeriod(QuotaPeriod):
    """Resets at each time the cron expression names, read as wall-clock time in `tz`."""

    __slots__ = ("_bounds", "_known", "expr", "tz")

    def __init__(self, expr: str, tz: tzinfo) -> None:
        key = _zone_key(tz)
        self._known = _KNOWN.get((expr, key)) if key is not None else None
        if self._known is None:  # stored periods come from an expression that was checked when they were made
            from croniter import croniter  # on first use: `adws route` without cron quotas never imports it

            try:
                # Asking for one reset also refuses expressions that parse but never fire ("0 0 30 2 *").
                croniter(expr, _CRON_PROBE).get_next(datetime)
            except (ValueError, KeyError, TypeError) as exc:  # croniter's errors subclass ValueError
                raise ValueError(f'invalid cron expression "{expr}": {exc}') from exc
        self.expr = expr
        self.tz = tz
        # [start, next) of the last period asked about. croniter costs hundreds of µs per call and
        # routing asks on every decision, almost always inside the same period.
        self._bounds: tuple[datetime, datetime] | None = None

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        require_aware(now, "now")
        cached = self._bounds
        if cached is not None and cached[0] <= now < cached[1]:
            return cached
        known = self._known
        if known is not None:
            index = bisect_right(known[0], now) - 1
            if index >= 0 and now < known[1][index]:
                found = self._bounds = (known[0][index], known[1][index])
                return found
        from croniter import croniter

        local = now.astimezone(self.tz)
        # get_prev() from `now` is strict (a reset exactly at `now` would be skipped), so step to the
        # next reset first and come back: the reset before it is the latest one <= now.
        upcoming: datetime = croniter(self.expr, local).get_next(datetime)
        latest: datetime = croniter(self.expr, upcoming).get_prev(datetime)
        # UTC, and fold cleared: croniter leaves fold=1 on some results, which means nothing in UTC.
        fresh = (latest.astimezone(UTC).replace(fold=0), upcoming.astimezone(UTC).replace(fold=0))
        self._bounds = fresh
        return fresh

    def start(self, now: datetime) -> datetime:
        return self.bounds(now)[0]

    def next_reset(self, now: datetime) -> datetime:
        return self.bounds(now)[1]

    def describe(self) -> str:
        return f'cron "{self.expr}" in {self.tz}'


class RollingPeriod(QuotaPeriod):
    """The last `window` before now. It has no fixed reset: usage frees up as old records age out,
    so the caller derives the next reset from `StateStore.oldest_usage(...) + window`."""

    __slots__ = ("window",)

    def __init__(self, window: timedelta) -> None:
        if window <= timedelta():
            raise ValueError(f"rolling window must be longer than zero, got {window}")
        self.window = window

    def start(self, now: datetime) -> datetime:
        return require_aware(now, "now") - self.window

    def next_reset(self, now: datetime) -> None:
        require_aware(now, "now")
        return None

    def describe(self) -> str:
        return f"rolling {format_window(self.window)}"


class UnmeteredPeriod(QuotaPeriod):
    """The period of a quota that meters nothing itself: a quota with pools and no limits of its own, whose
    pools each have their own period. It counts nothing: every period is empty (it starts at `now`) and never
    resets."""

    __slots__ = ()

    def start(self, now: datetime) -> datetime:
        return require_aware(now, "now")

    def next_reset(self, now: datetime) -> None:
        require_aware(now, "now")
        return None

    def describe(self) -> str:
        return "not metered (only its pools are)"


# -- alerts, burn rate and exhaustion ---------------------------------------------------------------------------

_DIMENSIONS = ("tokens", "requests", "cost_usd")
# The furthest `burn_rate` projects an exhaustion: beyond it (or beyond the reset) the quota lasts.
_MAX_PROJECTION = MAX_WINDOW


def alert_level(percent: float, alerts: tuple[float, ...], hard_block: float) -> str | None:
    """The design's alert for a percent used: "exhausted" at 100 %, "blocked (>= 95%)" at the hard block,
    else the highest alert threshold passed (">= 80%"), else None."""
    if percent >= 100:
        return "exhausted"
    if percent >= hard_block:
        return f"blocked (>= {hard_block:g}%)"
    passed = [a for a in alerts if percent >= a]
    return f">= {passed[-1]:g}%" if passed else None


def countdown(delta: timedelta) -> str:
    """A span for people: "2d 3h04m", "0h05m" (never negative)."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return (f"{days}d " if days else "") + f"{hours}h{rest // 60:02d}m"


@dataclass(frozen=True, slots=True)
class Burn:
    """How fast a quota is being spent in its current period, and where that leads.

    Figures are in the unit of `dimension`, the fullest limited dimension (tokens, requests or cost_usd).
    """

    dimension: str
    used: float
    limit: float
    per_hour: float  # average over the period so far (the whole window for a rolling period)
    exhausts_at: datetime | None  # at this rate; None when nothing is being spent or it is already spent
    resets_at: datetime | None  # when capacity next returns (the period reset, or the oldest record aging out)

    @property
    def percent(self) -> float:
        return self.used / self.limit * 100.0

    @property
    def exhausts_before_reset(self) -> bool:
        return self.exhausts_at is not None and (self.resets_at is None or self.exhausts_at < self.resets_at)

    def describe(self, now: datetime) -> str:
        """"burning 21,400 tokens/h; exhausted in 1d 2h10m (capacity back in 3d 0h00m)"; with nothing used in the
        period, "no usage recorded this period (the period resets in 3d 0h00m)": no rate, nothing to come back."""
        if self.used == 0:
            # Nothing was spent, so nothing is "back" at the reset: only when the period starts again.
            when = f" (the period resets in {countdown(self.resets_at - now)})" if self.resets_at is not None else ""
            return "no usage recorded this period" + when
        unit = {"tokens": "tokens", "requests": "requests", "cost_usd": "USD"}[self.dimension]
        digits = {"tokens": 0, "requests": 1, "cost_usd": 2}[self.dimension]
        rate = f"{self.per_hour:,.{digits}f}"
        text = f"burning {rate} {unit}/h"
        if self.used >= self.limit:
            text += "; exhausted"
        elif self.exhausts_at is not None and self.exhausts_before_reset:
            text += f"; exhausted in {countdown(self.exhausts_at - now)}"
        else:
            text += "; lasts until the reset"
        if self.resets_at is not None:
            text += f" (capacity back in {countdown(self.resets_at - now)})"
        return text


def burn_rate(usage: Usage, limits: QuotaLimits, period_start: datetime, now: datetime,
              resets_at: datetime | None) -> Burn | None:
    """The burn rate over the current period [period_start, now] and the projected exhaustion; None when the
    quota limits nothing. A period younger than a minute counts as a minute, so the first record of a period
    does not project an absurd rate."""
    require_aware(now, "now")
    figures = {"tokens": (usage.total_tokens, limits.tokens), "requests": (usage.requests, limits.requests),
               "cost_usd": (usage.cost_usd, limits.cost_usd)}
    limited = [(name, float(used), float(limit)) for name, (used, limit) in figures.items() if limit is not None]
    if not limited:
        return None
    dimension, used, limit = max(limited, key=lambda item: item[1] / item[2])
    hours = max((now - period_start).total_seconds(), 60.0) / 3600.0
    per_hour = used / hours
    return Burn(dimension, used, limit, per_hour, _exhaustion(used, limit, per_hour, now), resets_at)


def _exhaustion(used: float, limit: float, per_hour: float, now: datetime) -> datetime | None:
    """When the quota runs out at `per_hour`; None when nothing is spent, it is spent already, or the projection
    lies past `_MAX_PROJECTION` (a generous limit at a slow rate is centuries away, past any date), which reads
    as "lasts until the reset" like any projection past the reset."""
    if used >= limit or not per_hour > 0:
        return None
    seconds = (limit - used) / per_hour * 3600.0
    if not seconds <= _MAX_PROJECTION.total_seconds():  # inf and NaN too
        return None
    return now + timedelta(seconds=seconds)
