"""CronMatcher: the fast set-lookup path agrees with croniter's own matcher, the `L`/`#` forms fall back to it,
and every bad expression is refused with a message naming the field at fault."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from adws.cron import CronMatcher

BERLIN = ZoneInfo("Europe/Berlin")

# Column forms, each valid for its column: lists, ranges, steps, names, `?`, `L` and `#`.
MINUTES = ["*", "0", "30", "*/15", "5,35", "10-20", "0-59/20"]
HOURS = ["*", "0", "22", "*/3", "1-5", "0,12", "22-23"]
DAYS = ["*", "1", "15", "*/2", "1-7", "L", "?", "1,15,31"]
MONTHS = ["*", "2", "*/3", "jan-mar", "11,12"]
WEEKDAYS = ["*", "0", "7", "1-5", "6,0", "mon-fri", "sun", "sat,sun", "5#2", "1#1", "?", "*/2", "5-7"]


@settings(max_examples=400, deadline=None)
@given(
    minute=st.sampled_from(MINUTES), hour=st.sampled_from(HOURS), day=st.sampled_from(DAYS),
    month=st.sampled_from(MONTHS), weekday=st.sampled_from(WEEKDAYS),
    offset=st.integers(min_value=0, max_value=2 * 366 * 24 * 60 - 1),
    zone=st.sampled_from([UTC, BERLIN, ZoneInfo("America/New_York")]),
)
def test_matches_agrees_with_croniter(minute: str, hour: str, day: str, month: str, weekday: str, offset: int,
                                      zone: ZoneInfo) -> None:
    expr = f"{minute} {hour} {day} {month} {weekday}"
    moment = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=offset)).astimezone(zone)
    assert CronMatcher(expr).matches(moment) == bool(croniter.match(expr, moment))


@pytest.mark.parametrize(("expr", "fallback"), [
    ("* * * * *", False),
    ("0 22 * * 1-5", False),
    ("@daily", False),
    ("0 12 L * *", True),
    ("0 9 * * 5#3", True),
])
def test_only_l_and_hash_use_croniter_at_match_time(expr: str, fallback: bool) -> None:
    assert CronMatcher(expr)._fallback is fallback


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Classic cron: "the 1st, and every Monday". 2026-06-01 is a Monday, 06-08 a Monday, 07-01 a Wednesday.
    matcher = CronMatcher("0 0 1 * 1")
    days = [datetime(2026, 6, d, tzinfo=UTC) for d in (1, 2, 8, 9)] + [datetime(2026, 7, 1, tzinfo=UTC)]
    assert [matcher.matches(d) for d in days] == [True, False, True, False, True]


def test_seven_and_zero_are_both_sunday() -> None:
    sunday = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert CronMatcher("* * * * 7").matches(sunday)
    assert CronMatcher("* * * * 0").matches(sunday)
    assert CronMatcher("* * * * sun").matches(sunday)
    assert not CronMatcher("* * * * 7").matches(sunday + timedelta(days=1))


def test_moment_is_read_in_its_own_timezone() -> None:
    # 23:30 UTC on Friday is 00:30 on Saturday in Berlin.
    saturday = CronMatcher("* * * * 6")
    utc = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert not saturday.matches(utc)
    assert saturday.matches(utc.astimezone(BERLIN))


def test_the_whole_minute_matches() -> None:
    matcher = CronMatcher("0 10 * * *")
    assert matcher.matches(datetime(2026, 11, 18, 10, 0, 59, 999_999, tzinfo=UTC))
    assert not matcher.matches(datetime(2026, 11, 18, 10, 1, tzinfo=UTC))
    fallback = CronMatcher("0 10 L * *")
    assert fallback.matches(datetime(2026, 11, 30, 10, 0, 59, tzinfo=UTC))


def test_aliases() -> None:
    assert CronMatcher("@daily").matches(datetime(2026, 11, 18, 0, 0, tzinfo=UTC))
    assert not CronMatcher("@daily").matches(datetime(2026, 11, 18, 0, 1, tzinfo=UTC))
    assert CronMatcher("@weekly").matches(datetime(2026, 11, 22, 0, 0, tzinfo=UTC))  # a Sunday


def test_pickles_by_expression() -> None:
    matcher = pickle.loads(pickle.dumps(CronMatcher("0 9 * * 5#3")))
    assert matcher.expr == "0 9 * * 5#3"
    assert matcher.matches(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))


FIELDS = "expected 5 fields (minute hour day-of-month month day-of-week)"


@pytest.mark.parametrize(("expr", "message"), [
    ("61 * * * *", 'the minute field "61" is not valid (0-59)'),
    ("0 24 * * *", 'the hour field "24" is not valid (0-23)'),
    ("* * 32 * *", 'the day-of-month field "32" is not valid (1-31)'),
    ("* * 0 * *", 'the day-of-month field "0" is not valid (1-31)'),
    ("0 0 * 13 *", 'the month field "13" is not valid (1-12 or jan-dec)'),
    ("* * * * 8", 'the day-of-week field "8" is not valid (0-7 or sun-sat)'),
    ("* * * * 1L", 'the day-of-week field "1L" is not valid (0-7 or sun-sat)'),
    ("*/0 * * * *", 'the minute field "*/0" is not valid (0-59)'),
    ("1-2-3 * * * *", 'the minute field "1-2-3" is not valid (0-59)'),
    ("H * * * *", 'the minute field "H" is not valid (0-59)'),  # hashed expressions: no hash id, no randomness
    ("* * *", f"{FIELDS}, got 3"),
    ("", f"{FIELDS}, got 0"),
    ("daily", f"{FIELDS}, got 1"),
    ("* * * * * 30", f"{FIELDS}, got 6"),  # a seconds column would (almost) never match a minute
    ("* * * * * * 2030", f"{FIELDS}, got 7"),
    ("@dialy", 'unknown alias (did you mean "@daily"?); known: @yearly, @annually, @monthly, @weekly, @daily, '
               "@midnight, @hourly"),
    ("@reboot", "unknown alias; known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
])
def test_bad_expressions(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        CronMatcher(expr)
    assert str(info.value) == f'bad cron expression "{expr}": {message}'
