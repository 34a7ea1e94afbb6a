"""Quota windows, cron and rolling periods, and how full a quota is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from adws.attempt import Usage
from adws.quota import QuotaLimits, QuotaPeriod, format_window, parse_window, percent_used
from adws.state import MemoryStore, UsageRecord

SUNDAYS = "0 0 * * 0"
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- windows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5h", timedelta(hours=5)),
        ("30m", timedelta(minutes=30)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 5h ", timedelta(hours=5)),
    ],
)
def test_window_parses(text: str, expected: timedelta) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "5", "h", "5x", "5 h", "-5h", "1.5h", "30m1h", "5h5h", "5H"])
def test_window_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_window(text)
    assert str(exc.value) == (
        f'invalid window "{text}": expected numbers with units w, d, h, m, s in that order, '
        'e.g. "5h", "30m", "7d", "1h30m"'
    )


def test_window_refuses_zero() -> None:
    with pytest.raises(ValueError) as exc:
        parse_window("0h0m")
    assert str(exc.value) == 'invalid window "0h0m": must be longer than zero'


@pytest.mark.parametrize(
    ("window", "text"), [("5h", "5h"), ("1h30m", "1h30m"), ("2w", "14d"), ("90s", "1m30s")]
)
def test_window_formats_back(window: str, text: str) -> None:
    assert format_window(parse_window(window)) == text


# -- cron periods ----------------------------------------------------------------------------------


def test_weekly_reset_sunday_midnight_utc() -> None:
    period = QuotaPeriod.cron(SUNDAYS, UTC)
    wednesday = utc(2025, 3, 5, 15, 30)

    assert period.start(wednesday) == utc(2025, 3, 2)
    assert period.next_reset(wednesday) == utc(2025, 3, 9)
    assert period(wednesday) == utc(2025, 3, 2)


def test_weekly_reset_at_and_around_the_boundary_utc() -> None:
    period = QuotaPeriod.cron(SUNDAYS, UTC)
    boundary = utc(2025, 3, 9)
    just_before = boundary - timedelta(microseconds=1)

    assert (period.start(just_before), period.next_reset(just_before)) == (utc(2025, 3, 2), boundary)
    assert (period.start(boundary), period.next_reset(boundary)) == (boundary, utc(2025, 3, 16))


def test_weekly_reset_in_a_zone_follows_wall_clock_across_dst() -> None:
    period = QuotaPeriod.cron(SUNDAYS, BERLIN)
    # Berlin moves to summer time on Sunday 2024-03-31 at 02:00: midnight that day is still CET (UTC+1),
    # the next Sunday midnight is CEST (UTC+2), so this period is 6 days 23 hours long.
    midweek = utc(2024, 4, 3, 12)
    assert period.start(midweek) == utc(2024, 3, 30, 23)
    assert period.next_reset(midweek) == utc(2024, 4, 6, 22)

    just_before = utc(2024, 3, 30, 22, 59, 59)
    assert period.start(just_before) == utc(2024, 3, 23, 23)
    assert period.next_reset(just_before) == utc(2024, 3, 30, 23)


def test_daily_reset_across_the_autumn_change_is_25_hours() -> None:
    period = QuotaPeriod.cron("0 0 * * *", NEW_YORK)
    noon = utc(2024, 11, 3, 17)  # New York falls back from EDT to EST at 02:00 that morning

    assert period.start(noon) == utc(2024, 11, 3, 4)
    assert period.next_reset(noon) == utc(2024, 11, 4, 5)


def test_cron_results_are_utc_whatever_zone_now_is_given_in() -> None:
    period = QuotaPeriod.cron(SUNDAYS, BERLIN)
    now = datetime(2024, 4, 3, 14, tzinfo=BERLIN)

    start = period.start(now)
    assert start.tzinfo is UTC
    assert start == utc(2024, 3, 30, 23)


def test_cron_period_cache_is_recomputed_only_when_now_leaves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = croniter
    calls: list[datetime] = []

    def counting(expr: str, start: Any = None, *args: Any, **kwargs: Any) -> Any:
        calls.append(start)
        return real(expr, start, *args, **kwargs)

    period = QuotaPeriod.cron(SUNDAYS, UTC)  # validated with the real croniter
    monkeypatch.setattr("croniter.croniter", counting)  # adws.quota imports it on use

    first = period.start(utc(2025, 3, 3))
    computed = len(calls)
    assert computed > 0
    for day in range(3, 10):
        assert period.start(utc(2025, 3, day)) == (first if day < 9 else utc(2025, 3, 9))
    assert len(calls) == 2 * computed  # once for the first week, once on crossing into the next
    assert period.next_reset(utc(2025, 3, 12)) == utc(2025, 3, 16)
    assert len(calls) == 2 * computed
    assert period.start(utc(2025, 3, 5)) == utc(2025, 3, 2)  # going back recomputes, correctly
    assert len(calls) == 3 * computed


@pytest.mark.parametrize(
    ("expr", "detail"),
    [
        ("0 0 * *", "Exactly 5, 6 or 7 columns has to be specified for iterator expression."),
        ("61 0 * * *", "[61 0 * * *] is not acceptable, out of range"),
        ("0 0 30 2 *", "failed to find next date"),
    ],
)
def test_bad_cron_expression_is_refused_when_built(expr: str, detail: str) -> None:
    with pytest.raises(ValueError) as exc:
        QuotaPeriod.cron(expr, UTC)
    assert str(exc.value) == f'invalid cron expression "{expr}": {detail}'


def test_periods_refuse_naive_now() -> None:
    with pytest.raises(ValueError) as exc:
        QuotaPeriod.cron(SUNDAYS, UTC).start(datetime(2025, 3, 5))
    assert str(exc.value) == "now must be timezone-aware, got naive datetime 2025-03-05T00:00:00"
    with pytest.raises(ValueError) as exc:
        QuotaPeriod.rolling(timedelta(hours=5)).start(datetime(2025, 3, 5))
    assert str(exc.value) == "now must be timezone-aware, got naive datetime 2025-03-05T00:00:00"


def test_periods_describe_themselves() -> None:
    assert QuotaPeriod.cron(SUNDAYS, BERLIN).describe() == 'cron "0 0 * * 0" in Europe/Berlin'
    assert repr(QuotaPeriod.rolling(parse_window("5h"))) == "<QuotaPeriod rolling 5h>"


# -- rolling periods -------------------------------------------------------------------------------


def test_rolling_window_starts_one_window_before_now_and_has_no_fixed_reset() -> None:
    period = QuotaPeriod.rolling(timedelta(hours=5))
    now = utc(2025, 3, 5, 15, 30)

    assert period.start(now) == utc(2025, 3, 5, 10, 30)
    assert period.next_reset(now) is None


def test_rolling_window_resets_when_its_oldest_record_ages_out() -> None:
    window = timedelta(hours=5)
    period = QuotaPeriod.rolling(window)
    store = MemoryStore()
    now = utc(2025, 3, 5, 15)
    for at in (utc(2025, 3, 5, 9), utc(2025, 3, 5, 11), utc(2025, 3, 5, 14)):
        store.record_usage(UsageRecord("oc", "a", at, Usage(input_tokens=100)))

    assert store.usage_totals({"oc": period.start(now)}) == {("oc", "a"): Usage(requests=2, input_tokens=200)}
    oldest = store.oldest_usage("oc", "a", period.start(now))
    assert oldest is not None
    assert oldest + window == utc(2025, 3, 5, 16)


def test_rolling_window_must_be_positive() -> None:
    with pytest.raises(ValueError) as exc:
        QuotaPeriod.rolling(timedelta())
    assert str(exc.value) == "rolling window must be longer than zero, got 0:00:00"


# -- periods and the ledger together ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make_period",
    [lambda: QuotaPeriod.cron(SUNDAYS, UTC), lambda: QuotaPeriod.rolling(timedelta(days=3))],
)
def test_usage_before_the_period_start_is_not_counted(make_period: Callable[[], QuotaPeriod]) -> None:
    period = make_period()
    now = utc(2025, 3, 5, 12)  # Wednesday: both periods start on Sunday, after the first record
    store = MemoryStore()
    store.record_usage(UsageRecord("anti", "a", utc(2025, 3, 1, 23, 59), Usage(input_tokens=1000)))
    store.record_usage(UsageRecord("anti", "a", period.start(now), Usage(input_tokens=7)))
    store.record_usage(UsageRecord("anti", "a", now, Usage(input_tokens=3)))

    assert store.usage_totals({"anti": period.start(now)}) == {
        ("anti", "a"): Usage(requests=2, input_tokens=10)
    }


# -- limits ----------------------------------------------------------------------------------------


def test_percent_used_is_the_fullest_limited_dimension() -> None:
    usage = Usage(requests=10, input_tokens=200_000, output_tokens=50_000, cost_usd=1.0)

    assert percent_used(usage, QuotaLimits(tokens=500_000)) == 50.0
    assert percent_used(usage, QuotaLimits(tokens=500_000, requests=16)) == 62.5
    assert percent_used(usage, QuotaLimits(cost_usd=0.5)) == 200.0
    assert percent_used(usage, QuotaLimits()) == 0.0
    assert percent_used(Usage(requests=0), QuotaLimits(tokens=10, requests=10)) == 0.0


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError) as exc:
        QuotaLimits(tokens=0)
    assert str(exc.value) == "quota tokens must be > 0 (leave it out for no limit), got 0"


# -- alerts, burn rate, exhaustion -----------------------------------------------------------------------------


def test_alert_levels() -> None:
    from adws.quota import alert_level

    assert [alert_level(p, (80.0, 95.0), 95.0) for p in (10, 80, 94.9, 95, 100)] == [
        None, ">= 80%", ">= 80%", "blocked (>= 95%)", "exhausted"]


def test_burn_rate_projects_exhaustion_before_the_reset() -> None:
    from adws.quota import burn_rate

    start, now, reset = utc(2026, 11, 15), utc(2026, 11, 17), utc(2026, 11, 22)
    burn = burn_rate(Usage(input_tokens=240000, output_tokens=0), QuotaLimits(tokens=500000), start, now, reset)
    assert burn is not None
    assert (burn.dimension, burn.per_hour, burn.percent) == ("tokens", 5000.0, 48.0)
    assert burn.exhausts_at == now + timedelta(hours=52)
    assert burn.exhausts_before_reset
    assert burn.describe(now) == "burning 5,000 tokens/h; exhausted in 2d 4h00m (capacity back in 5d 0h00m)"


def test_burn_rate_that_lasts_until_the_reset_and_the_fullest_dimension() -> None:
    from adws.quota import burn_rate

    start, now, reset = utc(2026, 11, 15), utc(2026, 11, 16), utc(2026, 11, 22)
    usage = Usage(requests=40, input_tokens=1000)
    burn = burn_rate(usage, QuotaLimits(tokens=500000, requests=50), start, now, reset)
    assert burn is not None and burn.dimension == "requests"  # 80% of requests beats 0.2% of tokens
    assert burn.describe(now) == "burning 1.7 requests/h; exhausted in 6h00m (capacity back in 6d 0h00m)"
    slow = burn_rate(Usage(input_tokens=24000), QuotaLimits(tokens=500000), start, now, reset)
    assert slow is not None and not slow.exhausts_before_reset
    assert slow.describe(now) == "burning 1,000 tokens/h; lasts until the reset (capacity back in 6d 0h00m)"
    idle = burn_rate(Usage(requests=0), QuotaLimits(tokens=500000), start, now, None)
    assert idle is not None and idle.describe(now) == "no usage recorded this period"
    # Nothing spent: nothing is "back" at the reset, the period merely starts again.
    unused = burn_rate(Usage(requests=0), QuotaLimits(tokens=500000), start, now, reset)
    assert unused is not None and unused.describe(now) == "no usage recorded this period (the period resets in " \
                                                          "6d 0h00m)"
    spent = burn_rate(Usage(input_tokens=500000), QuotaLimits(tokens=500000), start, now, reset)
    assert spent is not None and spent.exhausts_at is None
    assert spent.describe(now).startswith("burning 20,833 tokens/h; exhausted (capacity back in 6d")
    assert burn_rate(usage, QuotaLimits(), start, now, reset) is None


def test_a_period_younger_than_a_minute_counts_as_a_minute() -> None:
    from adws.quota import burn_rate

    start = utc(2026, 11, 15)
    burn = burn_rate(Usage(input_tokens=1000), QuotaLimits(tokens=500000), start, start + timedelta(seconds=1), None)
    assert burn is not None and burn.per_hour == 60000.0


@pytest.mark.parametrize(("expr", "zone"), [("0 0 * * 0", "Europe/Berlin"), ("0 0 1 * *", "UTC"),
                                            ("30 2 * * *", "America/New_York"), ("0 */6 * * *", "Australia/Lord_Howe")])
def test_stored_periods_answer_as_croniter_does(expr: str, zone: str) -> None:
    """The compiled-config cache keeps the periods around validation (adws.quota.stored_bounds): a period read
    back from them is the one croniter gives, at every instant, DST changes included; outside them croniter
    answers."""
    import json

    from adws import quota

    around = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # Berlin, New York and Lord Howe change clocks nearby
    stored = json.loads(json.dumps(quota.stored_bounds([(expr, zone)], around)))
    assert stored[0][:2] == [expr, zone] and len(stored[0][2]) > 2
    fresh = QuotaPeriod.cron(expr, ZoneInfo(zone))
    saved = dict(quota._KNOWN)
    try:
        assert quota.remember_bounds(stored)
        from_cache = QuotaPeriod.cron(expr, ZoneInfo(zone))
        moment = around - timedelta(days=60)
        while moment < around + timedelta(days=60):
            assert from_cache.start(moment) == fresh.start(moment), moment
            assert from_cache.next_reset(moment) == fresh.next_reset(moment), moment
            moment += timedelta(minutes=97)
        for bad in ([[expr, zone, [[1, 0]]]], [[expr, zone, [[0, 60], [61, 120]]]], [[expr, zone, []]], {}):
            assert not quota.remember_bounds(bad)
    finally:
        quota._KNOWN.clear()
        quota._KNOWN.update(saved)
