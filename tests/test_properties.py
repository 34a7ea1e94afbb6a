"""Properties of routing over generated input (hypothesis).

- Any well-formed task routes on the shipped config without raising, and the same input always gives the same
  decision, whether the router is fresh or has served thousands of other tasks (plan and ranking caches).
- The rule index finds exactly the rules a linear scan over every rule finds, on generated many-rule configs.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adws.availability import Availability
from adws.compiled import CompiledConfig, RuleSpec
from adws.config import load_config
from adws.config.load import compile_config
from adws.errors import TaskError
from adws.router import ModelRouter
from adws.scenarios import scenario_router
from adws.taskview import TaskView
from tests.helpers import ROOT

SHIPPED = load_config(ROOT / "config.toml")
WARM = scenario_router(SHIPPED)  # shared by every example: it accumulates cached plans

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TIMES = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                     timezones=st.sampled_from([UTC, None]))  # None: naive, read in the routing timezone
TEXT = st.text(max_size=200) | st.sampled_from([
    "{{ 7*7 }}", "{% for x in range(9) %}", "; rm -rf ~", "$(reboot)", "Fix the parser", "Write the README",
    "Investigate the root cause", "System design for queues", "implement the endpoint", "",
])


# -- the shipped config ----------------------------------------------------------------------------------


def _overrides(config: CompiledConfig) -> list[str]:
    out = []
    for name, provider in config.providers.items():
        out.append(name)
        out.extend(f"{name}/{model}" for model in provider.models)
    return out


SHIPPED_LABELS = st.sampled_from([
    "bug", "Bug", "enhancement", "documentation", "docs", "area:docs-site", "area:api", "refactor", "ready",
    "multi-file", "wip", "WIP", "incident", "hotfix", "chore", "dependencies", "interactive", "large-document",
    "type:architecture", "architecture", "type:reasoning", "type:code", "priority:P0", "priority:P1",
    "priority:P2", "priority:P3", "urgent", "experiment", "question",
]) | st.text(min_size=1, max_size=20) | st.sampled_from(_overrides(SHIPPED)).map(lambda t: f"route:{t}")

PRIORITIES = st.sampled_from([None, "critical", "high", "normal", "low", "HIGH", "P0", "p1", "P2", "P3",
                              "priority:P1", "urgent", 0, 1, 2, 3])
ATTRS = st.fixed_dictionaries({}, optional={
    "offline": st.booleans(),
    "repo": st.sampled_from(["acme/infra-core", "acme/web", "other/infra-x"]) | st.text(max_size=20),
    "team": st.sampled_from(["infra", "platform", "web"]) | st.integers(),
    "force": st.sampled_from(_overrides(SHIPPED)),
    "anything": st.none() | st.integers() | st.text(max_size=10) | st.lists(st.integers(), max_size=3),
})
SHIPPED_TASKS = st.fixed_dictionaries({}, optional={
    "id": st.text(min_size=1, max_size=12),
    "number": st.integers(min_value=0, max_value=10**6),
    "title": TEXT,
    "body": TEXT,
    "labels": st.lists(SHIPPED_LABELS | st.builds(lambda n: {"name": n, "color": "ffffff"}, SHIPPED_LABELS),
                       max_size=6),
    "priority": PRIORITIES,
    "retry_count": st.integers(min_value=0, max_value=10),
    "specialization": st.sampled_from(sorted(SHIPPED.intake.known_specializations)),
    "context_tokens": st.integers(min_value=0, max_value=3_000_000),
    "attrs": ATTRS,
})


@SETTINGS
@given(task=SHIPPED_TASKS, now=TIMES, prompt=st.none() | st.text(max_size=50))
def test_any_well_formed_task_routes_deterministically(task: dict[str, Any], now: datetime,
                                                       prompt: str | None) -> None:
    first = WARM.route(task, now=now, prompt=prompt).to_dict()
    assert WARM.route(task, now=now, prompt=prompt).to_dict() == first
    assert scenario_router(SHIPPED).route(task, now=now, prompt=prompt).to_dict() == first
    json.dumps(first)
    # Task text is data: "{{ 7*7 }}" stays as written.
    assert WARM.prepare(task, now).title == task.get("title", "")
    # Every enabled provider counts as installed, so something is always in the plan unless the context
    # is too big for every model or a rule turns fall-through off.
    assert first["plan"] or all("context too small" in s["reason"] for s in first["skipped"])
    explanation = WARM.explain(task, now=now, prompt=prompt)
    assert explanation.decision.to_dict() == first
    matched = [t.rule.name for t in explanation.traces if t.status == "matched"]
    if first["rule"] not in ("default", "override"):
        assert matched[0] == first["rule"]  # explain and route agree on the first match
    elif first["rule"] == "default":
        assert matched == []



# Dicts of the common shape (no attrs, labels as names), well-formed or not: route() reads these straight into
# the view; a read-only mapping of the same fields takes the general path through a Task.
COMMON_TASKS = st.fixed_dictionaries({}, optional={
    "id": st.none() | st.text(min_size=1, max_size=12) | st.integers(min_value=0, max_value=99),
    "number": st.none() | st.integers(min_value=-1, max_value=10**6) | st.booleans(),
    "title": st.none() | TEXT, "body": st.none() | TEXT,
    "labels": st.none() | st.lists(SHIPPED_LABELS, max_size=6) | st.lists(st.integers(), max_size=1),
    "priority": PRIORITIES | st.sampled_from(["urgent!", ""]),
    "retry_count": st.none() | st.integers(min_value=-1, max_value=10),
    "specialization": st.none() | st.sampled_from([*sorted(SHIPPED.intake.known_specializations), "", "Code ",
                                                   "nonsense"]),
    "context_tokens": st.none() | st.integers(min_value=-1, max_value=3_000_000),
})


@SETTINGS
@given(task=COMMON_TASKS, now=TIMES, prompt=st.none() | st.text(max_size=50))
def test_a_dict_routes_as_the_same_task_read_the_general_way(task: dict[str, Any], now: datetime,
                                                             prompt: str | None) -> None:
    def outcome(given: Any) -> Any:
        try:
            decision = WARM.route(given, now=now, prompt=prompt)
        except TaskError as exc:
            return str(exc)
        return decision.to_dict(), decision.view, decision.reasons

    assert outcome(task) == outcome(MappingProxyType(task))


# -- the rule index against a linear scan ----------------------------------------------------------------

LABELS = ["bug", "feature", "docs", "ready", "wip", "area:api", "area:web", "area:db", "chore", "p1", "x"]
GLOBS = ["area:*", "a*", "*s", "p?"]
SPECS = ["code", "reasoning", "architecture", "large_document", "fast_response", "docs", "general"]
PRIORITY_NAMES = ["critical", "high", "normal", "low"]
PROVIDERS = {name: {"command_template": [f"{name}-cli"], "prompt": "stdin"} for name in ("p1", "p2", "p3")}


def _label_group(rng: random.Random) -> list[str]:
    return rng.sample(LABELS + GLOBS, rng.randint(1, 3))


def _condition(rng: random.Random) -> tuple[str, Any]:
    kind = rng.choice(["labels", "labels_table", "specialization", "priority", "retry_count", "hour_range",
                       "context_tokens", "attrs", "schedule"])
    if kind == "labels":
        return "labels", _label_group(rng)
    if kind == "labels_table":
        table = {op: _label_group(rng) for op in rng.sample(["any", "all", "none"], rng.randint(1, 3))}
        return "labels", table
    if kind == "specialization":
        return "specialization", rng.choice([rng.choice(SPECS), rng.sample(SPECS, rng.randint(1, 3))])
    if kind == "priority":
        return "priority", rng.choice([
            rng.choice(PRIORITY_NAMES), rng.sample(PRIORITY_NAMES, rng.randint(1, 3)),
            {rng.choice(["gte", "lte", "gt", "lt", "eq", "ne"]): rng.choice(PRIORITY_NAMES[1:3])},
            {"in": rng.sample(PRIORITY_NAMES, 2)}, {"not_in": rng.sample(PRIORITY_NAMES, 2)}])
    if kind == "retry_count":
        return "retry_count", rng.choice([rng.randint(0, 3), {"gte": rng.randint(0, 3)}, {"lt": rng.randint(1, 3)}])
    if kind == "hour_range":
        start = rng.randint(0, 23)
        return "hour_range", [start, (start + rng.randint(1, 23)) % 24]
    if kind == "context_tokens":
        low = rng.randint(0, 100_000)
        return "context_tokens", rng.choice([{"gt": low}, [low, low + rng.randint(0, 200_000)]])
    if kind == "schedule":
        return "schedule", rng.choice(["* * * * 6,0", "* 9-17 * * 1-5", ["0 * * * *", "30 * * * *"]])
    return "attrs", {"team": rng.choice([{"in": ["infra", "web"]}, {"eq": "infra"}, {"exists": True},
                                         {"exists": False}, {"regex": "^in"}])}


def generate_config(seed: int, count: int) -> CompiledConfig:
    rng = random.Random(seed)
    rules = []
    for i in range(count):
        conditions: dict[str, Any] = {}
        for _ in range(rng.randint(0 if rng.random() < 0.02 else 1, 3)):
            key, value = _condition(rng)
            conditions[key] = value
        rules.append({"name": f"r{i}", "priority": rng.randint(0, 20), "enabled": rng.random() > 0.1,
                      "conditions": conditions, "provider": rng.choice(list(PROVIDERS))})
    raw = {"routing": {"chain": list(PROVIDERS), "timezone": "Europe/Berlin", "rules": rules,
                       "intake": {"specialization_labels": {"docs": "docs", "bug": "code"}}},
           "providers": PROVIDERS}
    return compile_config(raw, f"<generated seed={seed}>")


MANY = generate_config(20261118, 600)
MANY_ROUTER = ModelRouter(MANY, availability=Availability({}, lambda name: f"/bin/{name}"))

INDEX_TASKS = st.fixed_dictionaries({}, optional={
    "labels": st.lists(st.sampled_from([*LABELS, "Area:API", "BUG", "pr", "also", "zzz"]), max_size=5),
    "priority": st.sampled_from(PRIORITY_NAMES),
    "specialization": st.sampled_from(SPECS),
    "retry_count": st.integers(min_value=0, max_value=4),
    "context_tokens": st.integers(min_value=0, max_value=400_000),
    "attrs": st.fixed_dictionaries({}, optional={"team": st.sampled_from(["infra", "web", "data"])}),
})


def linear_matches(rules: tuple[RuleSpec, ...], view: TaskView) -> list[str]:
    return [r.name for r in rules if r.enabled and all(condition(view) for condition in r.conditions)]


def test_the_generated_config_exercises_every_bucket() -> None:
    index = MANY_ROUTER.index
    assert index.by_label and index.by_spec and index.by_priority and index.always
    assert len(index.rules) < len(MANY.rules)  # some rules are disabled


@SETTINGS
@given(task=INDEX_TASKS, now=TIMES)
def test_rule_index_agrees_with_a_linear_scan(task: dict[str, Any], now: datetime) -> None:
    view = MANY_ROUTER.prepare(task, now)
    expected = linear_matches(MANY.rules, view)
    candidates = MANY_ROUTER.index.candidates(view)
    # The index may return extra candidates, never miss one, and keeps priority order.
    found = [r.name for r in candidates if all(condition(view) for condition in r.conditions)]
    assert found == expected
    assert MANY_ROUTER.route(task, now=now).rule == (expected[0] if expected else "default")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32), tasks=st.lists(INDEX_TASKS, min_size=1, max_size=15),
       now=TIMES)
def test_rule_index_agrees_on_many_generated_configs(seed: int, tasks: list[dict[str, Any]], now: datetime) -> None:
    config = generate_config(seed, 60)
    router = ModelRouter(config, availability=Availability({}, lambda name: f"/bin/{name}"))
    for task in tasks:
        expected = linear_matches(config.rules, router.prepare(task, now))
        assert router.route(task, now=now).rule == (expected[0] if expected else "default")


@pytest.mark.parametrize("hours", [0, 7, 13, 22])
def test_the_index_does_not_depend_on_the_time(hours: int) -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC) + timedelta(hours=hours)
    task = {"labels": ["area:api", "ready"], "priority": "high"}
    view = MANY_ROUTER.prepare(task, now)
    assert MANY_ROUTER.route(task, now=now).rule == (linear_matches(MANY.rules, view) or ["default"])[0]
