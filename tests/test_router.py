"""ModelRouter end to end: rule order, overrides, the plan down the chain, model choice, skips, caching."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from syrupy.assertion import SnapshotAssertion

from adws.accounts import StatefulAccounts
from adws.availability import Availability
from adws.compiled import CompiledConfig
from adws.config import load_config
from adws.config.load import compile_config, parse_toml
from adws.decision import Decision, Skip
from adws.engine import Engine
from adws.errors import TaskError
from adws.router import ModelRouter, RuleIndex
from adws.state import Cooldown, MemoryStore
from adws.task import Task
from tests.helpers import ROOT

NOW = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)  # a Wednesday afternoon

ROUTING = """
[routing]
default_provider = "alpha"
chain = {chain}
timezone = "{timezone}"
"""

# alpha: `small` is best at code but holds little; `big` holds more and is best at general work.
# beta: no scores of its own on b1, so the provider's table decides; b2 is a docs model.
# gamma: one small model.
PROVIDERS = """
[providers.alpha]
command_template = ["alpha-cli", "--model", "{{ model }}", "--effort", "{{ effort }}"]
prompt = "stdin"
vars = { effort = "low" }
[providers.alpha.models.small]
context_window = 1000
latency_ms = 100
specializations = { code = 90, general = 60 }
[providers.alpha.models.big]
context_window = 100000
latency_ms = 300
vars = { effort = "high" }
specializations = { code = 70, general = 80 }

[providers.beta]
command_template = ["beta-cli", "{{ model }}"]
prompt = "stdin"
specializations = { code = 80, general = 70 }
[providers.beta.models.b1]
context_window = 50000
latency_ms = 50
[providers.beta.models.b2]
context_window = 50000
latency_ms = 80
specializations = { docs = 95 }

[providers.gamma]
command_template = ["gamma-cli", "{{ model }}"]
prompt = "stdin"
[providers.gamma.models.g1]
context_window = 8000
"""


def make_config(rules: str = "", *, routing: str = "", providers: str = PROVIDERS,
                chain: str = '["alpha", "beta", "gamma"]', timezone: str = "UTC") -> CompiledConfig:
    """A config from TOML pieces: [routing] keys, then [[routing.rules]] blocks, then providers."""
    head = ROUTING.replace("{chain}", chain).replace("{timezone}", timezone)
    return compile_config(parse_toml(head + routing + "\n" + rules + "\n" + providers))


def everything_installed(name: str) -> str | None:
    return f"/bin/{name}"


def make_router(config: CompiledConfig, *, which: Callable[[str], str | None] = everything_installed,
                environ: Mapping[str, str] | None = None, store: MemoryStore | None = None,
                clock: Callable[[], datetime] = lambda: NOW) -> ModelRouter:
    availability = Availability({} if environ is None else environ, which)
    accounts = StatefulAccounts(dict(config.providers), availability, store)
    return ModelRouter(config, availability=availability, accounts=accounts, clock=clock)


def route(config: CompiledConfig, task: Task | dict[str, Any], **options: Any) -> Decision:
    return make_router(config).route(task, now=options.pop("now", NOW), **options)


def plan_of(decision: Decision) -> list[tuple[str, str | None]]:
    return [(step.provider, step.model) for step in decision.plan]


def skips_of(decision: Decision) -> list[tuple[str, str]]:
    return [(skip.provider, skip.reason) for skip in decision.skipped]


# -- the order rules are tried in --------------------------------------------------------------------------


def test_highest_priority_wins_whatever_the_file_order() -> None:
    config = make_config("""
[[routing.rules]]
name = "low"
priority = 10
conditions = { labels = ["bug"] }
provider = "gamma"

[[routing.rules]]
name = "high"
priority = 90
conditions = { labels = ["bug"] }
provider = "beta"
""")
    decision = route(config, {"labels": ["bug"]})
    assert (decision.rule, decision.provider, decision.via) == ("high", "beta", "rule")
    assert [r.name for r in config.rules] == ["high", "low"]


def test_equal_priorities_keep_file_order() -> None:
    config = make_config("""
[[routing.rules]]
name = "first-in-file"
priority = 40
conditions = { labels = ["bug"] }
provider = "gamma"

[[routing.rules]]
name = "second-in-file"
priority = 40
conditions = { labels = ["bug"] }
provider = "beta"
""")
    assert route(config, {"labels": ["bug"]}).rule == "first-in-file"


def test_first_match_wins_and_explain_shows_the_later_matches() -> None:
    config = make_config("""
[[routing.rules]]
name = "bugs"
priority = 60
conditions = { labels = ["bug"] }
provider = "beta"

[[routing.rules]]
name = "anything-code"
priority = 50
conditions = { specialization = "code" }
provider = "gamma"
""")
    task = {"labels": ["bug"], "specialization": "code"}
    router = make_router(config)
    assert router.route(task, now=NOW).rule == "bugs"
    explanation = router.explain(task, now=NOW)
    assert [(t.rule.name, t.status) for t in explanation.traces] == [("bugs", "matched"),
                                                                      ("anything-code", "matched")]
    rendered = explanation.render().splitlines()
    assert "  [  60] bugs: MATCH (first match wins)" in rendered
    assert "  [  50] anything-code: MATCH" in rendered


def test_disabled_rule_is_skipped_even_when_it_matches() -> None:
    config = make_config("""
[[routing.rules]]
name = "switched-off"
enabled = false
priority = 99
conditions = { labels = ["bug"] }
provider = "gamma"

[[routing.rules]]
name = "bugs"
priority = 10
conditions = { labels = ["bug"] }
provider = "beta"
""")
    router = make_router(config)
    assert router.route({"labels": ["bug"]}, now=NOW).rule == "bugs"
    explanation = router.explain({"labels": ["bug"]}, now=NOW)
    assert explanation.to_dict()["rules"][0] == {"name": "switched-off", "priority": 99, "status": "disabled"}
    assert "  [  99] switched-off: disabled" in explanation.render().splitlines()


def test_a_rule_without_priority_counts_as_50() -> None:
    config = make_config("""
[[routing.rules]]
name = "unprioritised"
conditions = { labels = ["bug"] }
provider = "gamma"

[[routing.rules]]
name = "just-below"
priority = 49
conditions = { labels = ["bug"] }
provider = "beta"

[[routing.rules]]
name = "just-above"
priority = 51
conditions = { labels = ["bug"], retry_count = 1 }
provider = "beta"
""")
    assert route(config, {"labels": ["bug"]}).rule == "unprioritised"
    assert route(config, {"labels": ["bug"], "retry_count": 1}).rule == "just-above"


def test_no_rule_matches_uses_the_defaults() -> None:
    config = make_config("""
[[routing.rules]]
name = "bugs"
conditions = { labels = ["bug"] }
provider = "beta"
""", routing='default_model = "big"\n')
    decision = route(config, {"title": "hello"})
    assert (decision.rule, decision.via, decision.provider, decision.model) == ("default", "default", "alpha", "big")
    assert decision.reasons[3] == "no rule matched: defaults used"
    assert decision.reasons[4] == "alpha: model big as chosen"


def test_all_conditions_of_a_rule_must_hold() -> None:
    config = make_config("""
[[routing.rules]]
name = "urgent-bugs"
conditions = { labels = ["bug"], priority = "critical", retry_count = { lt = 2 } }
provider = "beta"
""")
    assert route(config, {"labels": ["bug"], "priority": "critical"}).rule == "urgent-bugs"
    assert route(config, {"labels": ["bug"], "priority": "high"}).rule == "default"
    assert route(config, {"labels": ["bug"], "priority": "critical", "retry_count": 2}).rule == "default"
    assert route(config, {"labels": ["feature"], "priority": "critical"}).rule == "default"


def test_labels_match_case_insensitively() -> None:
    config = make_config("""
[[routing.rules]]
name = "bugs"
conditions = { labels = ["Bug"] }
provider = "beta"
""")
    assert route(config, {"labels": ["BUG"]}).rule == "bugs"
    assert route(config, {"labels": [{"name": "bug", "color": "d73a4a"}]}).rule == "bugs"


def test_hour_range_is_read_in_the_routing_timezone() -> None:
    rules = """
[[routing.rules]]
name = "nights"
conditions = { hour_range = [22, 6] }
provider = "gamma"
"""
    config = make_config(rules)
    berlin = make_config(rules, timezone="Europe/Berlin")
    at_2130_utc = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)  # 22:30 in Berlin, still 21:30 in UTC
    assert route(config, {}, now=at_2130_utc).rule == "default"
    assert route(berlin, {}, now=at_2130_utc).rule == "nights"
    # A naive time is taken as already being in the routing timezone.
    assert route(berlin, {}, now=datetime(2026, 11, 18, 5, 59)).rule == "nights"
    assert route(berlin, {}, now=datetime(2026, 11, 18, 6, 0)).rule == "default"
    decision = route(berlin, {}, now=at_2130_utc)
    assert decision.to_dict()["at"] == "2026-11-18T22:30:00+01:00"


def test_now_defaults_to_the_injected_clock() -> None:
    config = make_config("""
[[routing.rules]]
name = "weekends"
conditions = { schedule = "* * * * 6,0" }
provider = "gamma"
""")
    saturday = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert make_router(config, clock=lambda: saturday).route({}).rule == "weekends"
    assert make_router(config, clock=lambda: NOW).route({}).rule == "default"


# -- overrides -------------------------------------------------------------------------------------------

OVERRIDE_RULES = """
[[routing.rules]]
name = "everything-to-beta"
priority = 1000
provider = "beta"
"""


def test_route_label_wins_over_every_rule() -> None:
    config = make_config(OVERRIDE_RULES)
    decision = route(config, {"labels": ["bug", "route:gamma"]})
    assert (decision.rule, decision.via, decision.provider, decision.model) == ("override", "override", "gamma", "g1")
    assert decision.override_source == 'label "route:gamma"'
    assert decision.reasons[3] == 'override label "route:gamma"'


def test_route_label_with_a_model_and_any_case() -> None:
    config = make_config(OVERRIDE_RULES)
    decision = route(config, {"labels": ["Route:Alpha/small"]})
    assert plan_of(decision) == [("alpha", "small"), ("beta", "b1"), ("gamma", "g1")]
    assert decision.plan[0].model_reason == "model small as chosen"


def test_an_override_names_a_provider_and_model_in_any_case_as_check_compares_them() -> None:
    # adws check refuses names equal under casefold ("straße", "STRASSE"), so an override is read the same way.
    providers = PROVIDERS + '\n[providers."straße"]\ncommand_template = ["s"]\nprompt = "stdin"\n' \
        '[providers."straße".models."Maß"]\ncontext_window = 1000\n'
    config = make_config(providers=providers, chain='["alpha", "beta", "gamma", "straße"]')
    decision = route(config, {"labels": ["route:STRASSE/MASS"]})
    assert (decision.provider, decision.model) == ("straße", "Maß")


def test_force_attribute_wins_over_rules_and_over_the_label() -> None:
    config = make_config(OVERRIDE_RULES)
    decision = route(config, {"labels": ["route:gamma"], "attrs": {"force": "alpha/big"}})
    assert (decision.rule, decision.provider, decision.model) == ("override", "alpha", "big")
    assert decision.override_source == "attrs.force"


def test_override_names_are_declarable() -> None:
    config = make_config(OVERRIDE_RULES, routing="""
[routing.intake]
override_label_prefix = "via:"
force_attr = ""
""")
    assert route(config, {"labels": ["via:gamma"]}).provider == "gamma"
    # The default prefix and attribute are now ordinary data.
    assert route(config, {"labels": ["route:gamma"], "attrs": {"force": "gamma"}}).rule == "everything-to-beta"


@pytest.mark.parametrize(("task", "message"), [
    ({"labels": ["route:gama"]},
     'invalid task: label "route:gama": unknown provider "gama" (did you mean "gamma"?); '
     "providers: alpha, beta, gamma"),
    ({"labels": ["route:nowhere"]},
     'invalid task: label "route:nowhere": unknown provider "nowhere"; providers: alpha, beta, gamma'),
    ({"labels": ["route:"]}, 'invalid task: label "route:": unknown provider ""; providers: alpha, beta, gamma'),
    ({"attrs": {"force": "beta/b11"}},
     'invalid task: attrs.force: provider "beta" has no model "b11" (did you mean "b1"?); its models: b1, b2'),
    ({"attrs": {"force": "beta/x"}}, 'invalid task: attrs.force: provider "beta" has no model "x"; its models: b1, b2'),
    ({"attrs": {"force": 7}}, 'invalid task: attrs.force: expected "provider[/model]", got 7'),
])
def test_bad_override_is_a_task_error(task: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskError) as caught:
        route(make_config(OVERRIDE_RULES), task)
    assert str(caught.value) == message


def _outcome(router: ModelRouter, given: Task | dict[str, Any]) -> tuple[Any, ...]:
    """What route() decides for `given`, or ("error", message)."""
    try:
        d = router.route(given, now=NOW)
    except TaskError as exc:
        return ("error", str(exc))
    return (d.rule, d.via, d.provider, d.model, d.override_source, d.view.task_id, d.view.labels, d.view.priority,
            d.view.specialization, d.view.retry_count, d.view.context_tokens, d.view.sources)


@pytest.mark.parametrize("task", [
    {"labels": ["bug", "route:gamma"]}, {"labels": ["  Route:Alpha/small "]}, {"labels": ["route:gamma"],
    "attrs": {"force": "alpha/big"}}, {"attrs": {"force": "beta"}}, {"labels": ["route:gama"]},
    {"labels": ["bug"], "priority": "urgentt"}, {"labels": ["route:gamma"], "specialization": "cod"},
    {"labels": ["routes:gamma", "bug"]},
])
def test_a_task_and_its_dict_route_alike(task: dict[str, Any]) -> None:
    # route() reads a Task's fields and a usual dict's fields on separate paths; overrides and errors included.
    outcome = functools.partial(_outcome, make_router(make_config(OVERRIDE_RULES)))
    assert outcome(task) == outcome(Task.from_dict(task))


def test_a_malformed_task_lists_its_config_problems_too() -> None:
    # A negative retry_count used to hide the unknown priority, specialization and override: all in one error.
    config = make_config(OVERRIDE_RULES)
    with pytest.raises(TaskError) as caught:
        route(config, {"title": "x", "retry_count": -1, "specialization": "cod", "priority": "urgentt",
                       "labels": ["route:gama", 3]})
    problems = caught.value.problems
    assert problems[:2] == ["labels[1]: expected a label name or an object with a name, got an integer",
                            "retry_count: must be >= 0, got -1"]
    assert problems[2].startswith('priority: unknown value "urgentt"')
    assert problems[3].startswith('specialization: unknown value "cod" (did you mean "code"?)')
    assert problems[4].startswith('label "route:gama": unknown provider "gama" (did you mean "gamma"?)')
    assert len(problems) == 5
    with pytest.raises(TaskError) as caught:  # the same through the engine's explain and prepare
        make_router(config).explain({"retry_count": "a", "priority": 9})
    assert caught.value.problems == ["retry_count: expected an integer, got a string 'a'",
                                     "priority: 9 is out of range 0-3"]


# -- routing.enabled = false -----------------------------------------------------------------------------


def test_disabled_routing_uses_the_defaults_and_explain_still_shows_the_rules() -> None:
    config = make_config("""
[[routing.rules]]
name = "bugs"
conditions = { labels = ["bug"] }
provider = "beta"
""", routing="enabled = false\n")
    router = make_router(config)
    decision = router.route({"labels": ["bug"]}, now=NOW)
    assert (decision.rule, decision.via, decision.provider) == ("default", "disabled", "alpha")
    assert "routing is disabled: defaults used" in decision.reasons
    explanation = router.explain({"labels": ["bug"]}, now=NOW)
    assert explanation.to_dict()["routing_enabled"] is False
    assert [(t.rule.name, t.status) for t in explanation.traces] == [("bugs", "matched")]
    lines = explanation.render().splitlines()
    assert "rules (routing disabled: shown, not applied):" in lines
    assert "  [  50] bugs: MATCH" in lines  # matched, but not "first match wins": nothing was applied


# -- the plan down the chain -----------------------------------------------------------------------------


def test_plan_continues_down_the_chain_from_the_target() -> None:
    config = make_config("""
[[routing.rules]]
name = "to-beta"
provider = "beta"
""")
    decision = route(config, {})
    assert plan_of(decision) == [("beta", "b1"), ("gamma", "g1")]  # down, never back up to alpha


def test_a_target_outside_the_chain_is_followed_by_the_whole_chain() -> None:
    providers = PROVIDERS + """
[providers.delta]
command_template = ["delta-cli"]
prompt = "stdin"
"""
    config = make_config("""
[[routing.rules]]
name = "to-delta"
provider = "delta"
model = "d-model"
""", providers=providers)
    decision = route(config, {})
    assert plan_of(decision) == [("delta", "d-model"), ("alpha", "big"), ("beta", "b1"), ("gamma", "g1")]


def test_a_rule_chain_replaces_the_fall_through_order() -> None:
    config = make_config("""
[[routing.rules]]
name = "skip-beta"
provider = "alpha"
chain = ["gamma"]
""")
    assert [step.provider for step in route(config, {}).plan] == ["alpha", "gamma"]


def test_fallback_false_keeps_only_the_target() -> None:
    config = make_config("""
[[routing.rules]]
name = "alpha-only"
provider = "alpha"
fallback = false
""")
    assert plan_of(route(config, {})) == [("alpha", "big")]


def test_per_tier_models_and_variables() -> None:
    config = make_config("""
[[routing.rules]]
name = "chosen"
provider = "alpha"
model = "small"
models = { beta = "b2" }
vars = { effort = "max" }
""")
    decision = route(config, {})
    assert plan_of(decision) == [("alpha", "small"), ("beta", "b2"), ("gamma", "g1")]
    assert [step.model_reason for step in decision.plan] == [
        "model small as chosen", "model b2 as chosen", "best general score 0 among models that hold the task"]
    # Rule variables win over model and provider variables, in every tier.
    assert dict(decision.plan[0].vars) == {"effort": "max"}
    assert dict(decision.vars) == {"effort": "max"}


def test_variables_come_from_provider_then_model() -> None:
    config = make_config()
    decision = route(config, {"context_tokens": 10})
    assert decision.model == "big"
    assert dict(decision.vars) == {"effort": "high"}
    decision = route(config, {"specialization": "code", "context_tokens": 10})
    assert decision.model == "small"
    assert dict(decision.vars) == {"effort": "low"}


# -- the model within a tier -----------------------------------------------------------------------------


def test_model_by_specialization_score() -> None:
    config = make_config()
    code = route(config, {"specialization": "code", "context_tokens": 500})
    assert code.model == "small"
    assert code.plan[0].model_reason == "best code score 90 among models that hold the task"
    general = route(config, {"context_tokens": 500})
    assert general.model == "big"
    assert general.plan[0].model_reason == "best general score 80 among models that hold the task"


def test_model_that_cannot_hold_the_task_gives_way_to_one_that_can() -> None:
    decision = route(make_config(), {"specialization": "code", "context_tokens": 1001})
    assert decision.model == "big"
    assert decision.plan[0].model_reason == "best code score 70 among models that hold the task"


def test_provider_scores_stand_in_for_models_without_their_own() -> None:
    decision = route(make_config("""
[[routing.rules]]
name = "to-beta"
provider = "beta"
"""), {"specialization": "docs"})
    # b2 scores docs 95; b1 has no docs score and beta none either, so b1 falls back to beta's general 70.
    assert plan_of(decision)[0] == ("beta", "b2")
    decision = route(make_config("""
[[routing.rules]]
name = "to-beta"
provider = "beta"
"""), {"specialization": "code"})
    # Both score code 80 through the provider's table: the lower latency wins.
    assert plan_of(decision)[0] == ("beta", "b1")


def test_equal_score_and_latency_keep_file_order() -> None:
    providers = """
[providers.alpha]
command_template = ["alpha-cli"]
prompt = "stdin"
[providers.alpha.models.first]
context_window = 1000
[providers.alpha.models.second]
context_window = 1000
[providers.beta]
command_template = ["beta-cli"]
prompt = "stdin"
[providers.gamma]
command_template = ["gamma-cli"]
prompt = "stdin"
"""
    decision = route(make_config(providers=providers), {})
    assert plan_of(decision) == [("alpha", "first"), ("beta", None), ("gamma", None)]


def test_tier_whose_models_are_all_too_small_is_skipped_with_that_reason() -> None:
    decision = route(make_config(), {"context_tokens": 60000})
    assert plan_of(decision) == [("alpha", "big")]
    assert skips_of(decision) == [
        ("beta", "context too small: no model holds the task (largest window 50000)"),
        ("gamma", "context too small: no model holds the task (largest window 8000)"),
    ]


def test_a_chosen_model_that_is_too_small_skips_its_tier() -> None:
    decision = route(make_config("""
[[routing.rules]]
name = "small-please"
provider = "alpha"
model = "small"
"""), {"context_tokens": 5000})
    assert plan_of(decision) == [("beta", "b1"), ("gamma", "g1")]
    assert skips_of(decision) == [("alpha", "context too small: small holds 1000 tokens")]
    assert decision.rule == "small-please"
    assert decision.provider == "beta"


def test_context_estimated_from_the_prompt_decides_the_model() -> None:
    config = make_config()
    decision = route(config, {"specialization": "code"}, prompt="x" * 4 * 2000)
    assert decision.view.context_tokens == 2000
    assert decision.model == "big"
    assert decision.reasons[2] == "context_tokens 2000 (estimated from the prompt)"


# -- what gets skipped -----------------------------------------------------------------------------------


def test_skip_reasons_for_unusable_providers() -> None:
    providers = """
[providers.alpha]
command_template = ["alpha-cli"]
prompt = "stdin"
enabled = false
[providers.beta]
command_template = ["beta-cli"]
prompt = "stdin"
[providers.gamma]
command_template = ["gamma-cli"]
prompt = "stdin"
api_key_env = "GAMMA_KEY"
requires_api_key = true
[providers.delta]
command_template = ["/nonexistent/delta-cli"]
prompt = "stdin"
"""
    config = make_config(providers=providers, chain='["alpha", "beta", "gamma", "delta"]')

    def which(name: str) -> str | None:
        return None if name == "beta-cli" else f"/bin/{name}"

    decision = make_router(config, which=which).route({}, now=NOW)
    assert decision.plan == []
    assert (decision.provider, decision.model, decision.account) == (None, None, None)
    assert decision.reasons[-1] == "nothing in the plan is usable"
    assert [skip.to_dict() for skip in decision.skipped] == [
        {"provider": "alpha", "reason": "disabled in config"},
        {"provider": "beta", "reason": "command 'beta-cli' not on PATH"},
        {"provider": "gamma", "reason": "API-key variable GAMMA_KEY is not set"},
        {"provider": "delta", "reason": "executable /nonexistent/delta-cli not found or not executable"},
    ]
    with_key = make_router(config, which=which, environ={"GAMMA_KEY": "sk-test"}).route({}, now=NOW)
    assert [step.provider for step in with_key.plan] == ["gamma"]


def test_setting_an_api_key_between_routes_is_noticed() -> None:
    """Plans are cached; the cache must not hide a key that appears (or disappears) later."""
    providers = PROVIDERS.replace('[providers.beta]\n', '[providers.beta]\napi_key_env = "BETA_KEY"\n'
                                  'requires_api_key = true\n')
    config = make_config(providers=providers)
    environ: dict[str, str] = {}
    router = make_router(config, environ=environ)
    assert [s.provider for s in router.route({}, now=NOW).plan] == ["alpha", "gamma"]
    environ["BETA_KEY"] = "sk-test"
    assert [s.provider for s in router.route({}, now=NOW).plan] == ["alpha", "beta", "gamma"]
    del environ["BETA_KEY"]
    assert skips_of(router.route({}, now=NOW)) == [("beta", "API-key variable BETA_KEY is not set")]


ACCOUNT_PROVIDERS = PROVIDERS + """
[[providers.alpha.accounts]]
name = "a1"
[[providers.alpha.accounts]]
name = "a2"
enabled = false
[[providers.alpha.accounts]]
name = "a3"
api_key_env = "A3_KEY"
[[providers.alpha.accounts]]
name = "a4"
"""


def test_unusable_accounts_are_listed_with_their_account() -> None:
    decision = route(make_config(providers=ACCOUNT_PROVIDERS), {})
    assert decision.account == "a1"
    assert decision.plan[0].accounts == ("a1", "a4")
    assert [skip.to_dict() for skip in decision.skipped] == [
        {"provider": "alpha", "reason": "account disabled", "account": "a2"},
        {"provider": "alpha", "reason": "credentials missing: A3_KEY is not set", "account": "a3"},
    ]
    step = decision.to_dict()["plan"][0]
    assert step == {"provider": "alpha", "model": "big", "account": "a1", "accounts": ["a1", "a4"]}


def test_a_cooldown_written_after_a_decision_changes_the_next_one() -> None:
    config = make_config(providers=ACCOUNT_PROVIDERS)
    store = MemoryStore(None)
    router = make_router(config, store=store)
    assert router.route({}, now=NOW).account == "a1"
    until = NOW + timedelta(hours=1)
    store.set_cooldown("alpha", "a1", Cooldown(until, "rate limited"))
    decision = router.route({}, now=NOW)
    assert decision.account == "a4"
    assert decision.skipped[0].to_dict() == {"provider": "alpha", "reason": "cooling down: rate limited",
                                             "account": "a1", "until": until.isoformat()}
    store.set_cooldown("alpha", "a4", Cooldown(until, "quota exhausted"))
    spent = router.route({}, now=NOW)
    assert [s.provider for s in spent.plan] == ["beta", "gamma"]
    assert spent.skipped[-1].to_dict() == {
        "provider": "alpha", "reason": f"no usable account; the first is back at {until.isoformat()}",
        "until": until.isoformat()}
    # Once the cooldown is over the account is back, with no write to the store in between.
    assert router.route({}, now=until).account == "a1"


# -- the decision as data --------------------------------------------------------------------------------


def test_decision_to_dict() -> None:
    decision = route(make_config("""
[[routing.rules]]
name = "bugs"
conditions = { labels = ["bug"] }
provider = "beta"
"""), {"id": "T-1", "labels": ["bug"], "title": "Crash on start"})
    assert decision.to_dict() == {
        "provider": "beta",
        "model": "b1",
        "account": None,
        "rule": "bugs",
        "reasons": [
            "no priority (none given; no default_priority declared)",
            'specialization "general" (default)',
            "context_tokens 3 (estimated from title and body)",
            'rule "bugs" (priority 50) matched',
            "beta: best general score 70 among models that hold the task",
        ],
        "plan": [{"provider": "beta", "model": "b1", "account": None, "accounts": []},
                 {"provider": "gamma", "model": "g1", "account": None, "accounts": []}],
        "skipped": [],
        "task": {"id": "T-1", "priority": None, "specialization": "general", "context_tokens": 3,
                 "context_estimated": True},
        "at": "2026-11-18T13:00:00+00:00",
    }


def test_changing_a_returned_plan_does_not_leak_into_the_next_decision() -> None:
    router = make_router(make_config())
    first = router.route({}, now=NOW)
    first.plan.clear()
    first.skipped.append(Skip("alpha", "scribbled on by the caller"))
    second = router.route({}, now=NOW)
    assert [s.provider for s in second.plan] == ["alpha", "beta", "gamma"]
    assert second.skipped == []


def test_explain_names_the_first_failing_condition_of_each_rule() -> None:
    config = make_config("""
[[routing.rules]]
name = "urgent-bugs"
priority = 70
conditions = { labels = ["bug"], priority = { gte = "high" } }
provider = "beta"

[[routing.rules]]
name = "retries"
priority = 60
conditions = { retry_count = { gte = 2 } }
provider = "gamma"
""")
    explanation = make_router(config).explain({"labels": ["bug"], "priority": "low", "retry_count": 1}, now=NOW)
    assert explanation.to_dict()["rules"] == [
        {"name": "urgent-bugs", "priority": 70, "status": "failed", "condition": "priority",
         "task_value": "'low'", "rule_value": ">= 'high'"},
        {"name": "retries", "priority": 60, "status": "failed", "condition": "retry_count",
         "task_value": "1", "rule_value": ">= 2"},
    ]
    assert explanation.to_dict()["decision"]["rule"] == "default"


# -- caching ---------------------------------------------------------------------------------------------


def test_availability_is_looked_up_once_per_executable_across_many_routes() -> None:
    calls: list[str] = []

    def which(name: str) -> str | None:
        calls.append(name)
        return f"/bin/{name}"

    config = make_config("""
[[routing.rules]]
name = "bugs"
conditions = { labels = ["bug"] }
provider = "beta"
""")
    router = make_router(config, which=which)
    # Varied tasks, so that plans are built afresh rather than served from the plan cache.
    for i in range(200):
        router.route({"labels": ["bug"] if i % 3 else [], "context_tokens": i * 397,
                      "specialization": ("code", "docs", "general")[i % 3]}, now=NOW + timedelta(minutes=i))
    assert sorted(calls) == ["alpha-cli", "beta-cli", "gamma-cli"]


def test_engine_passes_its_which_function_through_and_caches_it() -> None:
    calls: list[str] = []

    def which(name: str) -> str | None:
        calls.append(name)
        return f"/bin/{name}"

    engine = Engine(load_config(ROOT / "config.toml"), store=MemoryStore(None), which=which, environ={})
    titles = ["Fix the parser", "Write the README", "Investigate the leak", "Design doc for queues", "Hello"]
    for i in range(100):
        engine.route({"title": titles[i % 5], "context_tokens": 1000 * i, "retry_count": i % 4}, now=NOW)
    # opencode serves two tiers (antigravity and opencode): still one lookup.
    assert sorted(calls) == ["cline", "copilot", "ollama", "opencode"]


def test_cached_and_fresh_routers_agree() -> None:
    config = load_config(ROOT / "config.toml")
    warm = make_router(config)
    tasks = [
        {"title": "Fix the parser", "labels": ["bug"]},
        {"title": "Fix the parser", "labels": ["bug"], "context_tokens": 250000},
        {"title": "Fix the parser", "labels": ["bug", "priority:P0"]},
        {"title": "Tidy", "labels": ["priority:P3"]},
        {"title": "Docs", "labels": ["docs"], "context_tokens": 210000},
        {"title": "Docs", "labels": ["docs"], "context_tokens": 9000},
    ]
    for _ in range(2):
        for task in tasks:
            assert warm.route(task, now=NOW).to_dict() == make_router(config).route(task, now=NOW).to_dict()


# -- the rule index --------------------------------------------------------------------------------------


def test_rule_index_buckets() -> None:
    config = make_config("""
[[routing.rules]]
name = "any-label"
conditions = { labels = ["bug", "crash"] }
provider = "beta"

[[routing.rules]]
name = "all-labels"
conditions = { labels = { all = ["ready", "area:*"] } }
provider = "beta"

[[routing.rules]]
name = "glob-label"
conditions = { labels = ["area:*"] }
provider = "beta"

[[routing.rules]]
name = "spec"
conditions = { specialization = ["docs", "code"] }
provider = "beta"

[[routing.rules]]
name = "prio"
conditions = { priority = { gte = "high" } }
provider = "beta"

[[routing.rules]]
name = "none-only"
conditions = { labels = { none = ["wip"] } }
provider = "beta"

[[routing.rules]]
name = "off"
enabled = false
conditions = { labels = ["bug"] }
provider = "beta"
""")
    index = RuleIndex(config.rules, linear_below=0)  # a small config is scanned linearly unless told otherwise
    names = [r.name for r in index.rules]
    assert "off" not in names
    assert RuleIndex(config.rules).candidates(make_router(config).prepare({}, NOW)) == index.rules
    assert {names[i] for i in index.by_label["bug"]} == {"any-label"}
    assert {names[i] for i in index.by_label["crash"]} == {"any-label"}
    assert {names[i] for i in index.by_label["ready"]} == {"all-labels"}
    assert {names[i] for i in index.by_spec["docs"]} == {"spec"}
    assert {names[i] for i in index.by_priority[3]} == {"prio"}
    assert 1 not in index.by_priority
    assert {names[i] for i in index.always} == {"glob-label", "none-only"}
    view = make_router(config).prepare({"labels": ["bug", "ready"], "priority": "critical"}, NOW)
    assert [r.name for r in index.candidates(view)] == ["any-label", "all-labels", "glob-label", "prio",
                                                        "none-only"]



def test_the_index_remembers_candidates_of_tasks_alike_but_not_of_tasks_with_attrs() -> None:
    shipped = load_config(ROOT / "config.toml")
    router = make_router(shipped)
    index, fresh = router.index, RuleIndex(shipped.rules)
    assert not index.small
    tasks = [{"title": "a", "labels": ["bug"]}, {"title": "b", "labels": ["Bug"]}, {"labels": ["docs", "ready"]},
             {"labels": ["bug"], "retry_count": 40}, {"labels": ["bug"], "attrs": {"offline": True}}]
    views = [router.prepare(task, NOW) for task in tasks]
    first = [index.candidate_entries(view) for view in views]
    assert first[0] is index.candidate_entries(views[1])  # alike: labels are compared lowercased
    assert [index.candidate_entries(view) for view in views] == first == [fresh.candidate_entries(v) for v in views]
    assert index.candidate_entries(views[4]) is not first[4]  # attrs: gathered each time
    assert len(index._memo) == 3
    assert [r.name for r, _ in first[4]][:1] == ["offline-local"]


# -- explain, as a maintainer reads it (snapshots) -------------------------------------------------------

EXPLAINED = {
    "p0-bug-on-a-wednesday": ({"number": 101, "title": "Login fails", "labels": ["bug", "priority:P0"]},
                              datetime(2026, 11, 18, 13, 0, tzinfo=UTC), None),
    "low-priority-at-night": ({"id": "T-9", "title": "Tidy imports", "labels": ["priority:P3"]},
                              datetime(2026, 11, 18, 22, 30, tzinfo=UTC), None),
    "huge-prompt-with-ag-1-cooling-down": ({"title": "Review the whole repository"},
                                           datetime(2026, 11, 18, 9, 0, tzinfo=UTC), "x" * 1_000_000),
    "override-on-a-saturday": ({"title": "Bump dependencies", "labels": ["dependencies", "route:opencode"]},
                               datetime(2026, 11, 21, 10, 0, tzinfo=UTC), None),
}


@pytest.mark.parametrize("name", list(EXPLAINED))
def test_explain_snapshot(name: str, snapshot: SnapshotAssertion) -> None:
    config = load_config(ROOT / "config.toml")
    store = MemoryStore(None)
    store.set_cooldown("antigravity", "ag-1", Cooldown(datetime(2026, 11, 18, 12, 0, tzinfo=UTC),
                                                       "rate limited: resets at 12:00 UTC"))
    task, now, prompt = EXPLAINED[name]
    explanation = make_router(config, store=store).explain(task, now=now, prompt=prompt)
    assert explanation.render() == snapshot


def test_refresh_notices_a_newly_installed_program() -> None:
    installed = {"alpha-cli", "gamma-cli"}

    def which(name: str) -> str | None:
        return f"/bin/{name}" if name in installed else None

    router = make_router(make_config(), which=which)
    assert skips_of(router.route({}, now=NOW)) == [("beta", "command 'beta-cli' not on PATH")]
    installed.add("beta-cli")
    assert router.route({}, now=NOW).skipped  # looked up once, and cached
    router.refresh()
    decision = router.route({}, now=NOW)
    assert (decision.skipped, [s.provider for s in decision.plan]) == ([], ["alpha", "beta", "gamma"])


@pytest.mark.parametrize(("task_id", "number"), [
    (None, None), ("abc", None), (None, 5), ("abc", 5), ("", 5), ("#5", None), (None, 0)])
def test_a_decision_carries_the_tasks_key_whatever_its_shape(task_id: str | None, number: int | None) -> None:
    """route() writes Task.key's rule out on its hot path (for a Task and for a dict alike): the view it decides
    on, and so the plan cache and sticky accounts, carry the key Task.key gives."""
    engine = Engine(load_config(ROOT / "config.toml"), store=MemoryStore(None), which=lambda name: "/bin/" + name,
                    environ={})
    fields: dict[str, Any] = {"title": "Null pointer in parser", "labels": ["bug"]}
    if task_id is not None:
        fields["id"] = task_id
    if number is not None:
        fields["number"] = number
    key = Task.from_dict(fields).key
    assert engine.route(Task.from_dict(fields), now=NOW).view.task_id == key
    assert engine.route(dict(fields), now=NOW).view.task_id == key


_ODD_VALUES = st.sampled_from([None, "", "x", "Bug", "code", "high", "urgentt", 0, 1, -1, 7, True, False, 1.5,
                               [], {}, ["bug"], "route:gamma", 10**6])
_TASK_KEYS = st.sampled_from(["id", "number", "title", "body", "priority", "retry_count", "specialization",
                              "context_tokens", "labels"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TASK_KEYS, _ODD_VALUES, max_size=6))
def test_any_dict_routes_as_its_task_does(task: dict[str, Any]) -> None:
    """route() checks a dict's scalar fields on its own fast path (common_fields writes out _plain_scalars'
    checks): whatever the types, a dict is decided as its Task is, or refused with every problem Task.from_dict
    finds (route also checks the priority against the config's words, so it may name more)."""
    outcome = functools.partial(_outcome, make_router(make_config(OVERRIDE_RULES)))

    try:
        as_task = Task.from_dict(task)
    except TaskError as exc:
        kind, message = outcome(task)
        assert kind == "error" and all(problem in message for problem in exc.problems), (message, exc.problems)
        return
    assert outcome(task) == outcome(as_task)
