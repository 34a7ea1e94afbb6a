from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from adws.cli import main
from adws.config import load_config
from adws.insight.lint import lint


def rule(name: str, priority: int, conditions: str, provider: str = "alpha", extra: str = "") -> str:
    return (f'[[routing.rules]]\nname = "{name}"\npriority = {priority}\nconditions = {conditions}\n'
            f'provider = "{provider}"\n{extra}\n')


def findings(path: Path, **kw: object) -> list[tuple[str, str, str]]:
    return [(f.code, f.place, f.message) for f in lint(load_config(path), environ={}, **kw)  # type: ignore[arg-type]
            if f.code != "ADWS301"]


@pytest.mark.parametrize(("earlier", "later"), [
    ('{ labels = ["bug"] }', '{ labels = ["bug"], priority = "high" }'),
    ('{ labels = { any = ["bug", "incident"] } }', '{ labels = { all = ["bug", "ready"] } }'),
    ('{ priority = { gte = "high" } }', '{ priority = "critical", specialization = "code" }'),
    ('{ retry_count = { gte = 2 } }', '{ retry_count = { gt = 3 } }'),
    ('{ context_tokens = [1000, 50000] }', '{ context_tokens = { gt = 1000, lt = 20000 } }'),
    ('{ hour_range = [8, 18] }', '{ hour_range = [9, 12] }'),
    ('{ hour_range = [22, 6] }', '{ schedule = "30 23 * * *" }'),
    ('{ "attrs.team" = { in = ["a", "b"] } }', '{ "attrs.team" = "a" }'),
    ('{ "attrs.size" = { gte = 10 } }', '{ "attrs.size" = { gt = 10, lt = 20 } }'),
])
def test_shadowed_rules_are_errors(write_config: Callable[..., Path], earlier: str, later: str) -> None:
    path = write_config(rule("wide", 90, earlier) + rule("narrow", 80, later, "beta"))
    assert findings(path)[0] == ("ADWS101", 'routing.rules[1] (name="narrow")',
                                 'can never fire: rule "wide" (priority 90) matches every task it matches')


@pytest.mark.parametrize(("earlier", "later"), [
    ('{ labels = ["bug"] }', '{ labels = ["feature"] }'),
    ('{ labels = { any = ["bug"], none = ["wip"] } }', '{ labels = ["bug"] }'),  # a bug marked wip gets through
    ('{ priority = "critical" }', '{ priority = { gte = "high" } }'),
    ('{ retry_count = { gte = 2 } }', '{ retry_count = { gte = 1 } }'),
    ('{ hour_range = [9, 12] }', '{ hour_range = [8, 18] }'),
    ('{ schedule = "* * * * 6,0" }', '{ hour_range = [10, 11] }'),
    ('{ "attrs.team" = "a" }', '{ "attrs.team" = { ne = "b" } }'),
    ('{ "attrs.flag" = true }', '{ "attrs.flag" = { exists = true } }'),
    ('{ specialization = "code" }', '{ labels = ["bug"] }'),  # a task may give its specialization directly
])
def test_rules_that_can_fire_are_not_shadowed(write_config: Callable[..., Path], earlier: str, later: str) -> None:
    path = write_config(rule("first", 90, earlier) + rule("second", 80, later, "beta"))
    assert [f for f in findings(path) if f[0].startswith("ADWS1")] == []


def test_a_regex_cannot_be_decided(write_config: Callable[..., Path]) -> None:
    path = write_config(rule("infra", 90, '{ "attrs.repo" = { regex = "^acme/" } }')
                        + rule("core", 80, '{ "attrs.repo" = "acme/core" }', "beta"))
    assert findings(path) == [("ADWS102", 'routing.rules[1] (name="core")',
                               'cannot decide whether rule "infra" matches every task it matches: '
                               "attrs.repo (a regex)")]


def test_a_regex_counterexample_still_decides(write_config: Callable[..., Path]) -> None:
    # "core" also needs no label, "infra" needs bug: a task without the label proves "core" can fire.
    path = write_config(rule("infra", 90, '{ "attrs.repo" = { regex = "^acme/" }, labels = ["bug"] }')
                        + rule("core", 80, '{ "attrs.repo" = "acme/core" }', "beta"))
    assert findings(path) == []


def test_equal_priority_overlap_is_a_warning(write_config: Callable[..., Path]) -> None:
    path = write_config(rule("bugs", 50, '{ labels = ["bug"] }') + rule("urgent", 50, '{ priority = "critical" }',
                                                                         "beta"))
    assert findings(path) == [("ADWS103", 'routing.rules[1] (name="urgent")',
                               'overlaps rule "bugs" of equal priority 50: a task both match goes to "bugs" only '
                               "because it comes first in the file")]
    disjoint = write_config(rule("bugs", 50, '{ labels = ["bug"] }') + rule("docs", 50, '{ labels = { all = ["docs"], '
                                                                          'none = ["bug"] } }', "beta"),
                            name="disjoint.toml")
    assert findings(disjoint) == []


def test_rules_reaching_only_disabled_providers(write_config: Callable[..., Path]) -> None:
    rules = rule("gamma-only", 50, '{ labels = ["x"] }', "gamma", "fallback = false")
    path = write_config(rules, extra="")
    text = path.read_text().replace('[providers.gamma]\n', '[providers.gamma]\nenabled = false\n')
    path.write_text(text)
    assert ("ADWS201", 'routing.rules[0] (name="gamma-only")',
            'rule "gamma-only" reaches only providers that cannot run: gamma (disabled)') in findings(path)


def test_unreachable_chain_tier(write_config: Callable[..., Path]) -> None:
    rules = rule("only-alpha", 50, '{ labels = ["x"] }', "alpha", 'chain = ["beta"]')
    path = write_config(rules)
    # The default plan reaches every tier; pin the default to the end of the chain so gamma stays only in
    # routing.chain... then make alpha's default plan stop before gamma by disabling fall-through elsewhere.
    text = path.read_text().replace('default_provider = "alpha"', 'default_provider = "beta"').replace(
        'chain = ["alpha", "beta", "gamma"]', 'chain = ["gamma", "alpha", "beta"]')
    path.write_text(text)
    assert ("ADWS203", "routing.chain[0]", 'tier "gamma" is in no plan: no rule targets it or falls through to it, '
            "and the default plan does not reach it") in findings(path)


def test_quota_room(write_config: Callable[..., Path]) -> None:
    tight = write_config(alpha_tokens=100000, hard=90)
    assert findings(tight, typical_tokens=20000) == [
        ("ADWS401", "providers.alpha.quota", "the hard block at 90% leaves 10,000 of 100,000 tokens; a typical task "
         "(20,000) started just under it overruns the quota")]
    small = write_config(alpha_tokens=10000, hard=90, name="small.toml")
    assert findings(small, typical_tokens=20000) == [
        ("ADWS402", "providers.alpha.quota", "the hard block at 90% stops at 9,000 tokens, less than one typical task "
         "(20,000 tokens)")]


def test_scenario_coverage(write_config: Callable[..., Path]) -> None:
    extra = '[[scenarios]]\nname = "a bug"\ntask = { labels = ["bug"] }\nexpect = { rule = "bugs" }\n'
    path = write_config(rule("bugs", 50, '{ labels = ["bug"] }') + rule("docs", 40, '{ labels = ["docs"] }'),
                        extra=extra)
    found = [(f.code, f.place) for f in lint(load_config(path), environ={}) if f.code == "ADWS301"]
    assert found == [("ADWS301", 'routing.rules[1] (name="docs")')]


def test_the_shipped_config_has_no_errors(shipped_config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(shipped_config_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["error"] == 0
    assert {f["code"] for f in data["findings"]} <= {"ADWS401", "ADWS102", "ADWS202"}


def test_cli_exit_1_on_errors(write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(rule("wide", 90, '{ labels = ["bug"] }') + rule("narrow", 80, '{ labels = ["bug"] }'))
    assert main(["lint", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ('routing.rules[1] (name="narrow"): ADWS101 error: can never fire: rule "wide" (priority 90) '
                      "matches every task it matches")
    assert out[-1].endswith("1 error(s), 2 warning(s), 0 info(s)")


def test_rules_together_can_shadow(write_config: Callable[..., Path]) -> None:
    path = write_config(rule("bugs", 90, '{ labels = ["bug"] }') + rule("features", 85, '{ labels = ["feature"] }')
                        + rule("either", 80, '{ labels = ["bug", "feature"], priority = "high" }', "beta"))
    assert findings(path) == [("ADWS101", 'routing.rules[2] (name="either")',
                               'can never fire: rules "bugs", "features" together match every task it matches')]


def test_rules_together_by_priority_and_hours(write_config: Callable[..., Path]) -> None:
    path = write_config(rule("top", 90, '{ priority = { gte = "high" }, labels = ["x"] }')
                        + rule("rest", 85, '{ priority = { lte = "normal" }, labels = ["x"] }')
                        + rule("any-x", 80, '{ labels = ["x"] }', "beta"))
    assert findings(path)[0][2] == 'can never fire: rules "top", "rest" together match every task it matches'
    days = write_config(rule("day", 90, "{ hour_range = [6, 22] }") + rule("night", 85, "{ hour_range = [22, 6] }")
                        + rule("always-bug", 80, '{ labels = ["bug"] }', "beta"), name="hours.toml")
    assert findings(days)[0][2] == 'can never fire: rules "day", "night" together match every task it matches'


def test_rules_together_that_leave_a_gap_do_not_shadow(write_config: Callable[..., Path]) -> None:
    path = write_config(rule("day", 90, "{ hour_range = [6, 20] }") + rule("night", 85, "{ hour_range = [22, 6] }")
                        + rule("any", 80, '{ labels = ["bug"] }', "beta"))
    assert [f for f in findings(path) if f[0] == "ADWS101"] == []


def test_keys_missing_here_are_a_warning(write_config: Callable[..., Path]) -> None:
    rules = rule("beta-only", 50, '{ labels = ["x"] }', "beta", "fallback = false")
    path = write_config(rules)
    path.write_text(path.read_text().replace('[providers.beta]\n', '[providers.beta]\napi_key_env = "BETA_KEY"\n'
                                             'requires_api_key = true\n'))
    assert ("ADWS202", 'routing.rules[0] (name="beta-only")',
            'rule "beta-only" reaches only providers without their API key here: beta (BETA_KEY not set)') \
        in findings(path)
    assert [f for f in lint(load_config(path), environ={"BETA_KEY": "k"}) if f.code == "ADWS202"] == []
