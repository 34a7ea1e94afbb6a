"""Every form of every condition key, compiled with `compile_conditions` and called on TaskViews; the
`expected()`/`actual()` strings explain shows; and the exact error for each mistake."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adws.conditions import Condition, compile_conditions
from adws.config.load import compile_config, parse_toml
from adws.errors import toml_value
from adws.intake import prepare
from adws.task import Task
from adws.taskview import PRIORITY_RANK, TaskView

WEDNESDAY_1PM = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)


def view(**fields: Any) -> TaskView:
    """A prepared task with neutral values, as intake would build it (labels lowercased)."""
    local_now = fields.pop("now", WEDNESDAY_1PM)
    base = TaskView(task_id=None, number=None, title="", labels=frozenset(), priority="normal", priority_rank=1,
                    retry_count=0, specialization="general", context_tokens=0, context_estimated=False, attrs={},
                    local_now=local_now, hour=local_now.hour, sources={})
    if "labels" in fields:
        fields["labels"] = frozenset(label.lower() for label in fields["labels"])
    if "priority" in fields:
        fields["priority_rank"] = PRIORITY_RANK[fields["priority"]]
    return replace(base, **fields)


def one(key: str, value: Any) -> Condition:
    conditions, errors = compile_conditions({key: value})
    assert errors == []
    assert len(conditions) == 1
    return conditions[0]


def errors_of(table: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    conditions, errors = compile_conditions(table)
    assert conditions == [] or len(conditions) < len(table) or errors == []
    return [(error.loc, error.message) for error in errors]


def matching(condition: Condition, views: dict[str, TaskView]) -> list[str]:
    return [name for name, v in views.items() if condition(v)]


# --- priority ------------------------------------------------------------------------------------------------

PRIORITIES = {name: view(priority=name) for name in ("critical", "high", "normal", "low")}


@pytest.mark.parametrize(("value", "matches", "expected"), [
    ("critical", ["critical"], "== 'critical'"),
    (["high", "normal"], ["high", "normal"], "in ['high', 'normal']"),
    (["low", "critical"], ["critical", "low"], "in ['critical', 'low']"),
    ({"gte": "high"}, ["critical", "high"], ">= 'high'"),
    ({"gt": "normal"}, ["critical", "high"], "> 'normal'"),
    ({"lte": "normal"}, ["normal", "low"], "<= 'normal'"),
    ({"lt": "high"}, ["normal", "low"], "< 'high'"),
    ({"eq": "low"}, ["low"], "== 'low'"),
    ({"ne": "low"}, ["critical", "high", "normal"], "!= 'low'"),
    ({"in": ["normal", "high"]}, ["high", "normal"], "in ['high', 'normal']"),
    ({"not_in": ["normal", "high"]}, ["critical", "low"], "not in ['high', 'normal']"),
    ({"gte": "normal", "ne": "high"}, ["critical", "normal"], ">= 'normal' and != 'high'"),
])
def test_priority(value: Any, matches: list[str], expected: str) -> None:
    condition = one("priority", value)
    assert condition.key == "priority"
    assert matching(condition, PRIORITIES) == matches
    assert condition.expected() == expected
    assert condition.actual(PRIORITIES["high"]) == "'high'"


@pytest.mark.parametrize(("value", "errors"), [
    ("urgent", [(("priority",), 'unknown priority "urgent"; allowed: critical, high, normal, low')]),
    ("Critical", [(("priority",), 'unknown priority "Critical" (did you mean "critical"?); allowed: critical, '
                   "high, normal, low")]),
    (["high", "hihg"], [(("priority", 1), 'unknown priority "hihg" (did you mean "high"?); allowed: critical, '
                         "high, normal, low")]),
    ([], [(("priority",), "empty list: the rule could never match")]),
    (3, [(("priority",), "expected a priority, a list of priorities or a table of operators, got 3")]),
    ({}, [(("priority",), "empty operator table: give one of eq, ne, in, not_in, gt, gte, lt, lte")]),
    ({"gtee": "high"}, [(("priority", "gtee"), 'unknown operator "gtee" (did you mean "gte"?); allowed: eq, ne, '
                         "in, not_in, gt, gte, lt, lte")]),
    ({"gte": "hgh"}, [(("priority", "gte"), 'unknown priority "hgh" (did you mean "high"?); allowed: critical, '
                       "high, normal, low")]),
    ({"in": []}, [(("priority", "in"), "expected a non-empty list of priorities, got []")]),
    ({"in": "high"}, [(("priority", "in"), 'expected a non-empty list of priorities, got "high"')]),
    ({"gt": "high", "lt": "critical"}, [(("priority",), 'empty range: no integer satisfies > "high" and < '
                                         '"critical"')]),
    ({"gt": "critical"}, [(("priority",), 'empty range: no integer satisfies > "critical"')]),
])
def test_priority_errors(value: Any, errors: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert errors_of({"priority": value}) == errors


# --- labels --------------------------------------------------------------------------------------------------

LABELS = {
    "bug": view(labels=["bug"]),
    "BUG-upper": view(labels=["BUG"]),
    "bug+wip": view(labels=["bug", "wip"]),
    "area:docs": view(labels=["area:docs", "ready"]),
    "type:a1": view(labels=["type:a1"]),
    "none": view(labels=[]),
}


@pytest.mark.parametrize(("value", "matches", "expected"), [
    (["bug", "incident"], ["bug", "BUG-upper", "bug+wip"], "any of ['bug', 'incident']"),
    ("bug", ["bug", "BUG-upper", "bug+wip"], "any of ['bug']"),
    (["Bug"], ["bug", "BUG-upper", "bug+wip"], "any of ['Bug']"),  # GitHub compares labels case-insensitively
    (["area:*"], ["area:docs"], "any of ['area:*']"),
    (["AREA:*"], ["area:docs"], "any of ['AREA:*']"),
    (["type:[ab]?"], ["type:a1"], "any of ['type:[ab]?']"),
    ({"any": ["bug"], "none": ["wip"]}, ["bug", "BUG-upper"], "any of ['bug'] and none of ['wip']"),
    ({"all": ["bug", "wip"]}, ["bug+wip"], "all of ['bug', 'wip']"),
    ({"all": ["ready", "area:*"]}, ["area:docs"], "all of ['ready', 'area:*']"),
    ({"all": ["bug", "area:*"]}, [], "all of ['bug', 'area:*']"),
    ({"none": ["bug", "area:*"]}, ["type:a1", "none"], "none of ['bug', 'area:*']"),
    ({"any": "bug"}, ["bug", "BUG-upper", "bug+wip"], "any of ['bug']"),
])
def test_labels(value: Any, matches: list[str], expected: str) -> None:
    condition = one("labels", value)
    assert condition.key == "labels"
    assert matching(condition, LABELS) == matches
    assert condition.expected() == expected
    assert condition.actual(LABELS["area:docs"]) == "['area:docs', 'ready']"


def test_labels_are_matched_case_insensitively_from_task_input() -> None:
    config = compile_config(parse_toml(MINIMAL))
    prepared = prepare(Task(labels=("Needs-Review", "AREA:Docs")), config.intake, ZoneInfo("UTC"), WEDNESDAY_1PM)
    assert one("labels", ["needs-review"])(prepared)
    assert one("labels", {"all": ["Area:*", "NEEDS-REVIEW"]})(prepared)


@pytest.mark.parametrize(("value", "errors"), [
    ([], [(("labels",), "expected a non-empty list of labels, got []")]),
    (5, [(("labels",), "expected a list of labels or a table with any/all/none, got 5")]),
    ([5], [(("labels", 0), "expected a label name, got 5")]),
    (["bug", "  "], [(("labels", 1), 'expected a label name, got "  "')]),
    ({"any": []}, [(("labels", "any"), "expected a non-empty list of labels, got []")]),
    ({"some": ["bug"]}, [(("labels", "some"), 'unknown operator "some"; allowed: any, all, none')]),
    ({"nonе": ["bug"]}, [(("labels", "nonе"), 'unknown operator "nonе" (did you mean "none"?); allowed: any, all, '
                         "none")]),  # a Cyrillic "е"
    ({}, [(("labels",), "empty operator table: give one of any, all, none")]),
])
def test_labels_errors(value: Any, errors: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert errors_of({"labels": value}) == errors


# --- retry_count ---------------------------------------------------------------------------------------------

RETRIES = {str(n): view(retry_count=n) for n in range(5)}


@pytest.mark.parametrize(("value", "matches", "expected"), [
    (0, ["0"], "== 0"),
    (2, ["2"], "== 2"),
    ({"eq": 1}, ["1"], "== 1"),
    ({"ne": 1}, ["0", "2", "3", "4"], "!= 1"),
    ({"gt": 2}, ["3", "4"], "> 2"),
    ({"gte": 2}, ["2", "3", "4"], ">= 2"),
    ({"lt": 2}, ["0", "1"], "< 2"),
    ({"lte": 2}, ["0", "1", "2"], "<= 2"),
    ({"gte": 1, "lt": 3}, ["1", "2"], ">= 1 and < 3"),
    ({"gte": 2, "lte": 2}, ["2"], ">= 2 and <= 2"),
])
def test_retry_count(value: Any, matches: list[str], expected: str) -> None:
    condition = one("retry_count", value)
    assert matching(condition, RETRIES) == matches
    assert condition.expected() == expected
    assert condition.actual(RETRIES["3"]) == "3"


@pytest.mark.parametrize(("value", "errors"), [
    (-1, [(("retry_count",), "must be >= 0, got -1")]),
    ("2", [(("retry_count",), 'expected an integer or a table of operators, got "2"')]),
    (True, [(("retry_count",), "expected an integer or a table of operators, got true")]),
    (1.5, [(("retry_count",), "expected an integer or a table of operators, got 1.5")]),
    ({"gte": -1}, [(("retry_count", "gte"), "must be >= 0, got -1")]),
    ({"gte": 1.5}, [(("retry_count", "gte"), "expected an integer, got 1.5")]),
    ({"gte": "2"}, [(("retry_count", "gte"), 'expected an integer, got "2"')]),
    ({"ge": 2}, [(("retry_count", "ge"), 'unknown operator "ge" (did you mean "gte"?); allowed: eq, ne, gt, gte, '
                  "lt, lte")]),
    ({"gt": 5, "lt": 3}, [(("retry_count",), "empty range: no integer satisfies > 5 and < 3")]),
    ({"gt": 5, "lt": 6}, [(("retry_count",), "empty range: no integer satisfies > 5 and < 6")]),
    ({"eq": 3, "gt": 5}, [(("retry_count",), "empty range: no integer satisfies == 3 and > 5")]),
    ({"lt": 0}, [(("retry_count",), "empty range: no integer satisfies < 0")]),
])
def test_retry_count_errors(value: Any, errors: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert errors_of({"retry_count": value}) == errors


# --- hour_range ----------------------------------------------------------------------------------------------

def at_hour(hour: int) -> TaskView:
    return view(now=datetime(2026, 11, 18, hour, 30, tzinfo=UTC))


HOURS = {hour: at_hour(hour) for hour in range(24)}


@pytest.mark.parametrize(("value", "hours"), [
    ([9, 17], list(range(9, 17))),
    ([22, 6], [0, 1, 2, 3, 4, 5, 22, 23]),  # wraps past midnight; the end is excluded
    ([0, 24], list(range(24))),
    ([22, 24], [22, 23]),
    ([0, 1], [0]),
    ([23, 0], [23]),
    ([24, 6], [0, 1, 2, 3, 4, 5]),
])
def test_hour_range(value: list[int], hours: list[int]) -> None:
    condition = one("hour_range", value)
    assert [hour for hour, v in HOURS.items() if condition(v)] == hours
    assert condition.expected() == f"hour in [{value[0]}, {value[1]})"
    assert condition.actual(HOURS[22]) == "hour 22 (Wed 22:30 UTC)"


MINIMAL = """
[routing]
timezone = "Asia/Kolkata"
[providers.local]
command_template = ["ollama", "run", "{{ model }}"]
prompt = "stdin"
models.qwen = { context_window = 8000 }
"""


@pytest.mark.parametrize(("utc", "local", "night", "all_day"), [
    (datetime(2026, 11, 18, 16, 29, tzinfo=UTC), "hour 21 (Wed 21:59 IST)", False, True),
    (datetime(2026, 11, 18, 16, 30, tzinfo=UTC), "hour 22 (Wed 22:00 IST)", True, True),
    (datetime(2026, 11, 18, 0, 29, tzinfo=UTC), "hour 5 (Wed 05:59 IST)", True, True),
    (datetime(2026, 11, 18, 0, 30, tzinfo=UTC), "hour 6 (Wed 06:00 IST)", False, True),
    (datetime(2026, 11, 18, 23, 0, tzinfo=UTC), "hour 4 (Thu 04:30 IST)", True, True),
])
def test_hour_range_is_read_in_the_declared_timezone(utc: datetime, local: str, night: bool, all_day: bool) -> None:
    config = compile_config(parse_toml(MINIMAL))
    prepared = prepare(Task(title="x"), config.intake, ZoneInfo(config.timezone), utc)
    night_rule, all_day_rule = one("hour_range", [22, 6]), one("hour_range", [0, 24])
    assert night_rule.actual(prepared) == local
    assert (night_rule(prepared), all_day_rule(prepared)) == (night, all_day)


@pytest.mark.parametrize(("value", "errors"), [
    ([5, 5], [(("hour_range",), "empty range [5, 5]: start equals end (use [0, 24] for all day)")]),
    ([24, 0], [(("hour_range",), "empty range [24, 0]: start equals end (use [0, 24] for all day)")]),
    ([0, 0], [(("hour_range",), "empty range [0, 0]: start equals end (use [0, 24] for all day)")]),
    ([5, 25], [(("hour_range", 1), "hour must be within 0-24, got 25")]),
    ([-1, 5], [(("hour_range", 0), "hour must be within 0-24, got -1")]),
    ([5], [(("hour_range",), "expected [start, end] with two hours, got [5]")]),
    ([1, 2, 3], [(("hour_range",), "expected [start, end] with two hours, got [1, 2, 3]")]),
    ("22-6", [(("hour_range",), 'expected [start, end] with two hours, got "22-6"')]),
    ([5.5, 6], [(("hour_range", 0), "expected an integer hour, got 5.5")]),
    ([True, 6], [(("hour_range", 0), "expected an integer hour, got true")]),
])
def test_hour_range_errors(value: Any, errors: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert errors_of({"hour_range": value}) == errors


# --- schedule ------------------------------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(day: int, hour: int, minute: int = 0) -> TaskView:
    """A moment in November 2026 (the 16th is a Monday), as intake hands it over: in the routing timezone."""
    return view(now=datetime(2026, 11, day, hour, minute, tzinfo=BERLIN))


def test_schedule_single_expression_weekends() -> None:
    weekend = one("schedule", "* * * * 6,0")
    assert [weekend(berlin(day, 10)) for day in range(16, 23)] == [False] * 5 + [True, True]
    assert weekend.expected() == "cron '* * * * 6,0'"
    assert weekend.actual(berlin(21, 10)) == "Sat 2026-11-21 10:00 CET"


def test_schedule_list_weekday_nights() -> None:
    # Monday to Friday nights: 22:00-23:59 on the weekday, 00:00-05:59 on the morning after.
    nights = one("schedule", ["* 22-23 * * 1-5", "* 0-5 * * 2-6"])
    assert nights.expected() == "cron '* 22-23 * * 1-5' or '* 0-5 * * 2-6'"
    cases = [
        (berlin(16, 23, 15), True),   # Monday night
        (berlin(17, 3), True),        # Tuesday early morning: Monday's night
        (berlin(21, 3), True),        # Saturday early morning: Friday's night
        (berlin(16, 3), False),       # Monday early morning: Sunday's night
        (berlin(21, 23), False),      # Saturday night
        (berlin(18, 21, 59), False),  # Wednesday evening, before the night
        (berlin(18, 6), False),       # Wednesday 06:00, after the night
    ]
    assert [nights(v) for v, _ in cases] == [want for _, want in cases]


def test_schedule_is_matched_in_the_routing_timezone() -> None:
    # 22:30 UTC on Friday is 23:30 in Berlin: still Friday night there, but 22:30 UTC is no "hour 23".
    late = one("schedule", "* 23 * * 5")
    assert late(view(now=datetime(2026, 11, 20, 22, 30, tzinfo=UTC).astimezone(BERLIN)))
    assert not late(view(now=datetime(2026, 11, 20, 22, 30, tzinfo=UTC)))


def test_schedule_last_day_of_month_and_nth_weekday_fall_back_to_croniter() -> None:
    last_day = one("schedule", "* 12 L * *")
    assert [last_day(berlin(day, 12)) for day in (28, 29, 30)] == [False, False, True]
    third_friday = one("schedule", "* * * * 5#3")
    assert [third_friday(berlin(day, 9)) for day in (13, 20, 27)] == [False, True, False]


@pytest.mark.parametrize(("value", "errors"), [
    ("bad", [(("schedule",), 'bad cron expression "bad": expected 5 fields (minute hour day-of-month month '
              "day-of-week), got 1")]),
    (["* * * * *", "* 24 * * *"], [(("schedule", 1), 'bad cron expression "* 24 * * *": the hour field "24" is not '
                                    "valid (0-23)")]),
    ([], [(("schedule",), "expected a cron expression or a list of them, got []")]),
    ([5], [(("schedule", 0), "expected a cron expression, got 5")]),
    (5, [(("schedule",), "expected a cron expression or a list of them, got 5")]),
])
def test_schedule_errors(value: Any, errors: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert errors_of({"schedule": value}) == errors


# --- specialization ------------------------------------------------------------------------------------------

SPECIALIZATIONS = {name: view(specialization=name) for name in ("code", "reasoning", "docs", "general")}


@pytest.mark.parametrize(("value", "matches", "expected"), [
    ("docs", ["docs"], "in ['docs']"),
    ("Docs", ["docs"], "in ['docs']"),
    (["reasoning", "code"], ["code", "reasoning"], "in ['code', 'reasoning']"),
])
def test_specialization(value: Any, matches: list[str], expected: str) -> None:
    condition = one("specialization", value)
    assert matching(condition, SPECIALIZATIONS) == matches
    assert condition.expected() == expected
    assert condition.actual(SPECIALIZATIONS["docs"]) == "'docs'"


@pytest.mark.parametrize("value", [[], 5, [""], ["code", 5]])
def test_specialization_errors(value: Any) -> None:
    assert errors_of({"specialization": value}) == [
        (("specialization",), f"expected a specialization or a non-empty list of them, got {toml_value(value)}")]


# --- context_tokens ------------------------------------------------------------------------------------------

TOKENS = {n: view(context_tokens=n) for n in (0, 5, 10, 200_000, 200_001)}


@pytest.mark.parametrize(("value", "matches", "expected"), [
    ({"gt": 200_000}, [200_001], "> 200000"),
    ({"gte": 200_000}, [200_000, 200_001], ">= 200000"),
    ({"lt": 10}, [0, 5], "< 10"),
    ({"lte": 10}, [0, 5, 10], "<= 10"),
    ({"gt": 0, "lte": 10}, [5, 10], "> 0 and <= 10"),
    ([5, 10], [5, 10], ">= 5 and <= 10"),
    ([10, 10], [10], ">= 10 and <= 10"),
])
def test_context_tokens(value: Any, matches: list[int], expected: str) -> None:
    condition = one("context_tokens", value)
    assert [n for n, v in TOKENS.items() if condition(v)] == matches
    assert condition.expected() == expected
    assert condition.actual(TOKENS[5]) == "5"


@pytest.mark.parametrize(("value", "errors"), [
    ([10, 5], [(("context_tokens",), "empty range [10, 5]: min is above max")]),
    ([-1, 5], [(("context_tokens", 0), "must be >= 0, got -1")]),
    ([1], [(("context_tokens",), "expected [min, max] with two integers, got [1]")]),
    ([1, 2.5], [(("context_tokens",), "expected [min, max] with two integers, got [1, 2.5]")]),
    (5, [(("context_tokens",), "expected [min, max] or a table with gt/gte/lt/lte, got 5")]),
    ({"eq": 5}, [(("context_tokens", "eq"), 'unknown operator "eq"; allowed: gt, gte, lt, lte')]),
    ({"gt": 5, "lt": 3}, [(("context_tokens",), "empty range: no integer satisfies > 5 and < 3")]),
    ({"gt": 1.5}, [(("context_tokens", "gt"), "expected an integer, got 1.5")]),
])
def test_context_tokens_errors(value: Any, errors: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert errors_of({"context_tokens": value}) == errors


# --- attrs ---------------------------------------------------------------------------------------------------

ATTRS = {
    "missing": view(attrs={}),
    "infra": view(attrs={"repo": "acme/infra-core", "team": "platform", "size": 7, "offline": True}),
    "web": view(attrs={"repo": "acme/web", "team": "web", "size": 2.5, "offline": False}),
    "odd": view(attrs={"repo": 42, "team": None, "size": "big", "offline": 1}),
}


@pytest.mark.parametrize(("key", "value", "matches", "expected"), [
    ("attrs.offline", True, ["infra"], "== true"),  # 1 is not true: booleans are not numbers
    ("attrs.offline", {"eq": False}, ["web"], "== false"),
    ("attrs.offline", {"eq": 1}, ["odd"], "== 1"),
    ("attrs.team", "platform", ["infra"], "== 'platform'"),
    ("attrs.team", {"ne": "web"}, ["infra", "odd"], "!= 'web'"),  # a missing attribute fails every operator
    ("attrs.team", {"in": ["platform", "infra"]}, ["infra"], "in ['platform', 'infra']"),
    ("attrs.team", {"not_in": ["platform", "infra"]}, ["web", "odd"], "not in ['platform', 'infra']"),
    ("attrs.offline", {"in": [1, 2]}, ["odd"], "in [1, 2]"),
    ("attrs.size", {"gt": 5}, ["infra"], "> 5"),  # "big" is the wrong type: no match, no error
    ("attrs.size", {"gte": 2.5}, ["infra", "web"], ">= 2.5"),
    ("attrs.size", {"lt": 5}, ["web"], "< 5"),
    ("attrs.size", {"lte": 7, "gt": 2.5}, ["infra"], "<= 7 and > 2.5"),
    ("attrs.offline", {"gte": 0}, ["odd"], ">= 0"),  # 1 is; true and false are not numbers to compare
    ("attrs.repo", {"regex": "^acme/infra-"}, ["infra"], "~ '^acme/infra-'"),  # 42 is not text: no match
    ("attrs.repo", {"regex": "infra"}, ["infra"], "~ 'infra'"),  # search, not a full match
    ("attrs.repo", {"exists": True}, ["infra", "web", "odd"], "exists = true"),
    ("attrs.repo", {"exists": False}, ["missing"], "exists = false"),
    ("attrs.team", {"exists": True}, ["infra", "web", "odd"], "exists = true"),  # null counts as present
    ("attrs.size", {"exists": True, "gt": 2}, ["infra", "web"], "exists = true and > 2"),
])
def test_attrs(key: str, value: Any, matches: list[str], expected: str) -> None:
    condition = one(key, value)
    assert condition.key == key
    assert matching(condition, ATTRS) == matches
    assert condition.expected() == expected


def test_attrs_actual_shows_the_value_or_missing() -> None:
    condition = one("attrs.repo", {"regex": "^acme/"})
    assert condition.actual(ATTRS["infra"]) == "'acme/infra-core'"
    assert condition.actual(ATTRS["odd"]) == "42"
    assert condition.actual(ATTRS["missing"]) == "(missing)"


def test_attrs_table_form_compiles_one_condition_per_attribute() -> None:
    conditions, errors = compile_conditions({"attrs": {"repo": {"regex": "^acme/infra-"},
                                                       "team": {"in": ["infra", "platform"]}}})
    assert errors == []
    assert [c.key for c in conditions] == ["attrs.repo", "attrs.team"]
    assert [all(c(v) for c in conditions) for v in ATTRS.values()] == [False, True, False, False]


@pytest.mark.parametrize(("table", "errors"), [
    ({"attrs.repo": {"regx": "^a"}}, [(("attrs.repo", "regx"), 'unknown operator "regx" (did you mean "regex"?); '
                                       "allowed: eq, ne, gt, gte, lt, lte, in, not_in, regex, exists")]),
    ({"attrs.repo": {"regex": "(unclosed"}}, [(("attrs.repo", "regex"), 'bad regex "(unclosed": missing ), '
                                               "unterminated subpattern at position 0")]),
    ({"attrs.repo": {"regex": 5}}, [(("attrs.repo", "regex"), "expected a regular expression, got 5")]),
    ({"attrs.size": {"gt": "5"}}, [(("attrs.size", "gt"), 'expected a number, got "5"')]),
    ({"attrs.size": {"gt": True}}, [(("attrs.size", "gt"), "expected a number, got true")]),
    ({"attrs.size": {"gt": 5, "lt": 3}}, [(("attrs.size",), "empty range: no value satisfies > 5 and < 3")]),
    ({"attrs.size": {"gt": 5, "lte": 5}}, [(("attrs.size",), "empty range: no value satisfies > 5 and <= 5")]),
    ({"attrs.team": {"in": "web"}}, [(("attrs.team", "in"), 'expected a non-empty list, got "web"')]),
    ({"attrs.team": {"not_in": []}}, [(("attrs.team", "not_in"), "expected a non-empty list, got []")]),
    ({"attrs.team": {"exists": "yes"}}, [(("attrs.team", "exists"), 'expected true or false, got "yes"')]),
    ({"attrs.team": {"exists": False, "eq": "web"}},
     [(("attrs.team",), "exists = false cannot be combined with other operators")]),
    ({"attrs.team": ["web"]}, [(("attrs.team",), 'expected a value or a table of operators, got ["web"]')]),
    ({"attrs.team": {}}, [(("attrs.team",), "empty operator table: give one of eq, ne, gt, gte, lt, lte, in, not_in, "
                           "regex, exists")]),
    ({"attrs": {}}, [(("attrs",), "expected a table of attribute conditions, got {}")]),
    ({"attrs": 5}, [(("attrs",), "expected a table of attribute conditions, got 5")]),
    ({"attrs": {"repo": {"regex": "("}, "team": {"in": []}}},
     [(("attrs", "repo", "regex"), 'bad regex "(": missing ), unterminated subpattern at position 0'),
      (("attrs", "team", "in"), "expected a non-empty list, got []")]),
])
def test_attrs_errors(table: dict[str, Any], errors: list[tuple[tuple[str | int, ...], str]]) -> None:
    assert errors_of(table) == errors


# --- compile_conditions as a whole ---------------------------------------------------------------------------

def test_unknown_condition_key() -> None:
    allowed = "priority, labels, retry_count, hour_range, schedule, specialization, context_tokens, attrs, attrs.NAME"
    assert errors_of({"label": ["bug"], "attrs.": 1, "weekday": 3}) == [
        (("label",), f'unknown condition "label" (did you mean "labels"?); allowed: {allowed}'),
        (("attrs.",), f'unknown condition "attrs." (did you mean "attrs"?); allowed: {allowed}'),
        (("weekday",), f'unknown condition "weekday"; allowed: {allowed}'),
    ]


def test_every_error_of_a_table_is_reported_and_the_good_conditions_still_compile() -> None:
    conditions, errors = compile_conditions({"priority": "high", "retry_count": {"gtee": 1}, "labels": ["bug"],
                                             "hour_range": [3, 3]})
    assert [c.key for c in conditions] == ["priority", "labels"]
    assert [(e.loc, e.message) for e in errors] == [
        (("retry_count", "gtee"), 'unknown operator "gtee" (did you mean "gte"?); allowed: eq, ne, gt, gte, lt, lte'),
        (("hour_range",), "empty range [3, 3]: start equals end (use [0, 24] for all day)"),
    ]


def test_empty_table_compiles_to_no_conditions() -> None:
    assert compile_conditions({}) == ([], [])


def test_compiled_conditions_survive_pickling() -> None:
    # Compiled configs are cached with pickle: every condition kind must round-trip and keep deciding the same.
    table = {"priority": {"gte": "normal"}, "labels": {"any": ["bug", "area:*"], "none": ["wip"]},
             "retry_count": {"lt": 3}, "hour_range": [8, 20], "schedule": ["* * * * 1-5", "* * L * *"],
             "specialization": ["code"], "context_tokens": [0, 1000],
             "attrs": {"repo": {"regex": "^acme/", "exists": True}, "team": {"in": ["a"], "ne": "b"},
                       "size": {"gt": 1, "not_in": [5]}}}
    conditions, errors = compile_conditions(table)
    assert errors == []
    task = view(priority="high", labels=["bug"], retry_count=1, specialization="code", context_tokens=10,
                attrs={"repo": "acme/x", "team": "a", "size": 2})
    restored = pickle.loads(pickle.dumps(conditions))
    assert [c(task) for c in restored] == [c(task) for c in conditions] == [True] * len(conditions)
    assert [c.expected() for c in restored] == [c.expected() for c in conditions]



def test_a_memo_shares_conditions_written_alike_and_keeps_apart_those_that_differ() -> None:
    memo: dict[Any, Condition] = {}
    first, _ = compile_conditions({"labels": ["bug"], "attrs.size": {"gt": 1, "lt": 9}, "hour_range": [8, 20]}, memo)
    again, _ = compile_conditions({"hour_range": [8, 20], "attrs": {"size": {"gt": 1, "lt": 9}},
                                   "labels": ["bug"]}, memo)
    assert [id(c) for c in again] == [id(first[2]), id(first[1]), id(first[0])]  # attrs.X and attrs = {X} alike
    # Alike to Python's ==, yet compiled or shown differently: each gets its own condition.
    variants = [{"attrs.flag": True}, {"attrs.flag": 1}, {"attrs.flag": 1.0}, {"attrs.flag": -0.0},
                {"attrs.flag": 0.0}, {"attrs.size": {"gt": 1, "lt": 9}}, {"attrs.size": {"lt": 9, "gt": 1}},
                {"labels": "bug"}, {"labels": ["Bug"]}]
    compiled = [compile_conditions(table, memo)[0][0] for table in variants]
    assert len({id(c) for c in compiled}) == len(variants)
    assert [c.expected() for c in compiled[:5]] == ["== true", "== 1", "== 1.0", "== -0.0", "== 0.0"]
    assert compiled[5].expected() == "> 1 and < 9" and compiled[6].expected() == "< 9 and > 1"
    # A value that cannot be a key is compiled without the memo; errors are never remembered.
    assert compile_conditions({"hour_range": [3, 3]}, memo)[1] and compile_conditions({"hour_range": [3, 3]}, memo)[1]
    # A value that cannot be a key (from the Python API: TOML gives none) compiles, each time on its own.
    size = len(memo)
    odd = [compile_conditions({"attrs.blob": {"in": [{1, 2}]}}, memo)[0][0] for _ in range(2)]
    assert odd[0] is not odd[1] and len(memo) == size
    task = view(labels=["bug"], attrs={"size": 2, "flag": True})
    assert [c(task) for c in again] == [c(task) for c in first] == [True, True, True]


def test_rules_of_one_config_share_conditions_written_alike() -> None:
    rules = "".join(f'[[routing.rules]]\nname = "r{i}"\nprovider = "p"\nconditions = {{ labels = ["bug"], '
                    f'attrs.team = "t{i % 2}" }}\n' for i in range(4))
    config = compile_config(parse_toml('[routing]\ndefault_provider = "p"\n' + rules +
                                       '[providers.p]\ncommand_template = ["p", "{{ prompt_file }}"]\n'))
    labels = {id(rule.conditions[0]) for rule in config.rules}
    teams = {id(rule.conditions[1]) for rule in config.rules}
    assert len(labels) == 1 and len(teams) == 2


# --- the operator registry -----------------------------------------------------------------------------------

OPERANDS = {"eq": "web", "ne": "web", "gt": 1, "gte": 1, "lt": 9, "lte": 9, "in": ["web", 2], "not_in": ["x"],
            "regex": "^w", "exists": True}


def test_every_operator_is_one_entry_that_compiles_explains_and_has_a_schema() -> None:
    from adws.conditions import OPERATORS

    assert set(OPERATORS) == set(OPERANDS)  # a new operator needs an example operand here, nothing else
    for name, op in OPERATORS.items():
        condition = one("attrs.team", {name: OPERANDS[name]})
        assert condition.expected().startswith(op.word + " ")
        assert isinstance(condition(ATTRS["web"]), bool) and condition(ATTRS["missing"]) is False
        assert condition.actual(ATTRS["web"]) == "'web'"
        assert op.schema and condition.index_keys() is not None


def test_conditions_tell_the_index_their_keys() -> None:
    from adws.conditions import IndexKeys

    assert one("labels", ["Bug"]).index_keys() == IndexKeys("labels", values=frozenset({"bug"}))
    assert one("attrs.team", {"in": ["a", "b"]}).index_keys() == IndexKeys("attrs", values=(("team", "a"),
                                                                                          ("team", "b")))
    assert one("attrs.team", {"regex": "a"}).index_keys() == IndexKeys("attr_present", values=("team",))
    assert one("attrs.team", {"exists": False}).index_keys() is None
    hint = one("retry_count", {"gte": 2, "ne": 3}).index_keys()
    assert hint is not None and hint.admits is not None
    assert [n for n in range(6) if hint.admits(n)] == [2, 4, 5] and hint.low == 2
    hint = one("context_tokens", [100, 5000]).index_keys()
    assert hint is not None and (hint.low, hint.high) == (100, 5000)


@pytest.mark.parametrize(("table", "loc", "expected"), [
    ({"labels": [date(2026, 12, 1)]}, ("labels", 0), "expected a label name, got 2026-12-01"),
    ({"labels": {"any": [date(2026, 12, 1)]}}, ("labels", "any", 0), "expected a label name, got 2026-12-01"),
    ({"priority": date(2026, 12, 1)}, ("priority",),
     "expected a priority, a list of priorities or a table of operators, got 2026-12-01"),
    ({"specialization": date(2026, 12, 1)}, ("specialization",),
     "expected a specialization or a non-empty list of them, got 2026-12-01"),
    ({"schedule": date(2026, 12, 1)}, ("schedule",), "expected a cron expression or a list of them, got 2026-12-01"),
])
def test_an_unquoted_toml_date_where_text_goes_gets_the_quote_it_hint(
        table: dict[str, Any], loc: tuple[str | int, ...], expected: str) -> None:
    assert errors_of(table) == [(loc, expected + ' (an unquoted TOML date: quote it, "2026-12-01", to mean the text)')]


def test_a_toml_date_where_a_number_goes_gets_no_quote_hint() -> None:
    # Quoting would not help there: the number is what is missing.
    assert errors_of({"retry_count": {"gte": date(2026, 12, 1)}}) == [
        (("retry_count", "gte"), "expected an integer, got 2026-12-01")]


def test_a_user_regex_reads_text_with_a_lone_surrogate() -> None:
    # JSON may carry one; RE2 cannot take it, so it is read as U+FFFD, one character for one.
    from adws.userregex import compile_user_regex

    found = compile_user_regex("b+").search("a\ud800bb")
    assert found is not None and (found.start(), found.end()) == (2, 4)
