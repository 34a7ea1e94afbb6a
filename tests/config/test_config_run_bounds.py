"""What `adws check` accepts must be able to run (issue 9, second round): every duration and number bounded,
every template rendered against a complete sample at load, every command with a program, names the override
syntax can tell apart. Each refused config gets one exact line naming its place."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adws.attempt import Usage
from adws.config.schema import Config
from adws.errors import RenderError, UsageError
from adws.insight.records import parse_since
from adws.quota import MAX_WINDOW, QuotaLimits, burn_rate, parse_window
from adws.templates import render_one
from tests.helpers import config_problems

X = '[providers.x]\ncommand_template = ["x", "{{ prompt_file }}"]\n'
RULE = '[[routing.rules]]\nname = "r"\nprovider = "x"\n'

BEYOND = " beyond what the template was given"  # what every growth bound's message ends with


def P(name: str) -> str:
    """A provider table named `name` (quoted, so any name can be written)."""
    return f'[providers."{name}"]\ncommand_template = ["x"]\nprompt = "stdin"\n'


# name -> (config text, every problem `adws check` reports)
REFUSED: dict[str, tuple[str, list[str]]] = {
    # --- durations: each key has a documented bound; nothing longer reaches a date it would overflow
    "breaker cooldown of 9999999d": (
        X + '[routing.circuit_breaker]\ncooldown = "9999999d"\nfailure_threshold = 1\n',
        ['routing.circuit_breaker → cooldown: invalid window "9999999d": must be at most 30d']),
    "quota window of 2000000d": (
        X + '[providers.x.quota]\ntokens = 1000\nwindow = "2000000d"\n',
        ['providers.x.quota → window: invalid window "2000000d": must be at most 366d']),
    "quota window past a C int of days": (
        X + '[providers.x.quota]\ntokens = 1000\nwindow = "99999999999d"\n',
        ['providers.x.quota → window: invalid window "99999999999d": must be at most 366d']),
    "quota window one day past a year": (
        X + '[providers.x.quota]\ntokens = 1000\nwindow = "367d"\n',
        ['providers.x.quota → window: invalid window "367d": must be at most 366d']),
    "pool window": (
        X + '[providers.x.quota.pools.p]\nmodels = ["*"]\ntokens = 1000\nwindow = "400d"\n',
        ['providers.x.quota → pools → p → window: invalid window "400d": must be at most 366d']),
    "history_window of 9999999d": (
        X + '[routing.intake]\nhistory_window = "9999999d"\n',
        ['routing.intake → history_window: invalid window "9999999d": must be at most 366d']),
    "usage_sync_interval past a month": (
        X + 'usage_command = ["u"]\nusage_sync_interval = "31d"\n',
        ['providers.x → usage_sync_interval: invalid window "31d": must be at most 30d']),
    # --- pool limits are bounded like the quota's own
    "pool tokens past a C long": (
        X + '[providers.x.quota.pools.p]\nmodels = ["*"]\ntokens = 9223372036854775807\nreset = "0 0 1 * *"\n',
        ["providers.x.quota → pools → p → tokens: must be <= 1000000000000000, got 9223372036854775807"]),
    "pool cost_usd of 1e308": (
        X + '[providers.x.quota.pools.p]\nmodels = ["*"]\ncost_usd = 1e308\nreset = "0 0 1 * *"\n',
        ["providers.x.quota → pools → p → cost_usd: must be <= 1000000000000, got 1e+308"]),
    "pool requests": (
        X + '[providers.x.quota.pools.p]\nmodels = ["*"]\nrequests = 1000000000001\nreset = "0 0 1 * *"\n',
        ["providers.x.quota → pools → p → requests: must be <= 1000000000000, got 1000000000001"]),
    # --- every number bounded: verify_timeout like timeout (a week), the need's figures
    "verify_timeout = 9e9": (X + 'verify = ["/bin/true"]\nverify_timeout = 9e9\n',
                             ["providers.x → verify_timeout: must be <= 604800, got 9000000000"]),
    "a rule's need of 10^10 tokens": (
        X + RULE + "need = { tokens = 10000000000 }\n",
        ['routing.rules[0] (name="r") → need → tokens: must be <= 1000000000, got 10000000000']),
    "need context_multiple = 1e300": (X + "need = { context_multiple = 1e300 }\n",
                                      ["providers.x → need → context_multiple: must be <= 1000, got 1e+300"]),
    "need min_runs past what the store keeps": (X + "need = { tokens = 5, min_runs = 100000 }\n",
                                                ["providers.x → need → min_runs: must be <= 1000, got 100000"]),
    # --- a template growing a value in a loop fails at load, against the sample (`+`, `~`, a list grown in place)
    "a string doubled by ~ in a loop": (
        '[providers.x]\ncommand_template = ["x", "{% set ns = namespace(s=task.title) %}{% for i in range(64) %}'
        '{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"]\nprompt = "stdin"\n',
        ["providers.x → command_template[1]: template '{% set ns = namespace(s=task.title) %}{% for i in range(64) %}"
         "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}' cannot be rendered (a sample task): a concatenation of "
         "more than 1,000,000 items" + BEYOND]),
    "a list doubled by + in a loop": (
        X + 'prompt_suffix = "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}'
        '{% endfor %}{{ ns.l | length }}"\n',
        ["providers.x → prompt_suffix: template '{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = "
         "ns.l + ns.l %}{% endfor %}{{ ns.l | length }}' cannot be rendered (a sample task, after a failed attempt): "
         "a concatenation of more than 1,000,000 items" + BEYOND]),
    "a list grown by append": (
        X + 'prompt_suffix = "{% set l = [] %}{% for i in range(99999) %}{{ l.append(i) }}{% endfor %}"\n',
        ["providers.x → prompt_suffix: template '{% set l = [] %}{% for i in range(99999) %}{{ l.append(i) }}"
         "{% endfor %}' cannot be rendered (a sample task, after a failed attempt): access to attribute 'append' of "
         "'list' object is unsafe."]),
    # --- prompt_suffix and verify are rendered against the sample, as command_template is
    "prompt_suffix {{ task.titel }}": (
        X + 'prompt_suffix = "{{ task.titel }}"\n',
        ["providers.x → prompt_suffix: template '{{ task.titel }}' cannot be rendered (a sample task, after a failed "
         "attempt): 'dict object' has no attribute 'titel' (did you mean \"title\"?)"]),
    "prompt_suffix {{ previous.outcom }}": (
        X + 'prompt_suffix = "{{ previous.outcom }}"\n',
        ["providers.x → prompt_suffix: template '{{ previous.outcom }}' cannot be rendered (a sample task, after a "
         "failed attempt): 'dict object' has no attribute 'outcom'"]),
    "prompt_suffix {{ model.__class__ }}": (
        X + 'prompt_suffix = "{{ model.__class__ }}"\nmodels.m = { context_window = 1000 }\n',
        ["providers.x → prompt_suffix: template '{{ model.__class__ }}' cannot be rendered (model 'm', a sample "
         "task, after a failed attempt): access to attribute '__class__' of 'str' object is unsafe."]),
    "prompt_suffix comparing a number a task may lack": (
        X + 'prompt_suffix = "{% if task.number > 5 %}x{% endif %}"\n',
        ["providers.x → prompt_suffix: template '{% if task.number > 5 %}x{% endif %}' cannot be rendered (a task "
         "with no optional fields, after a failed attempt): '>' not supported between instances of 'NoneType' and "
         "'int'"]),
    "prompt_suffix slicing a patch an attempt may lack": (
        X + 'prompt_suffix = "{{ previous.patch[:10] }}"\n',
        ["providers.x → prompt_suffix: template '{{ previous.patch[:10] }}' cannot be rendered (a sample task, "
         "after an attempt with no model, account or patch): 'NoneType' object is not subscriptable"]),
    "prompt_suffix reading what it is not given": (
        X + 'prompt_suffix = "{{ prompt_file }}"\n',
        ['providers.x → prompt_suffix: template \'{{ prompt_file }}\' uses unknown variable "prompt_file"; declare '
         "it in the provider's `vars` or use one of: model, previous, provider, task, workdir"]),
    "a rule's prompt_suffix": (
        X + RULE + 'prompt_suffix = "{{ previous.outcom }}"\n',
        ["routing.rules[0] (name=\"r\") → prompt_suffix: template '{{ previous.outcom }}' cannot be rendered (a "
         "sample task, after a failed attempt): 'dict object' has no attribute 'outcom'"]),
    "verify {{ task.titel }}": (
        X + 'verify = ["/bin/true", "{{ task.titel }}"]\n',
        ["providers.x → verify[1]: template '{{ task.titel }}' cannot be rendered (a sample task): 'dict object' "
         "has no attribute 'titel' (did you mean \"title\"?)"]),
    "verify {{ model.__class__ }}": (
        X + 'verify = ["/bin/true", "{{ model.__class__ }}"]\nmodels.m = { context_window = 1000 }\n',
        ["providers.x → verify[1]: template '{{ model.__class__ }}' cannot be rendered (model 'm', a sample task): "
         "access to attribute '__class__' of 'str' object is unsafe."]),
    "verify {{ task.number * 2 }}": (
        X + 'verify = ["{{ task.number * 2 }}"]\n',
        ["providers.x → verify[0]: template '{{ task.number * 2 }}' cannot be rendered (a task with no optional "
         "fields): unsupported operand type(s) for *: 'NoneType' and 'int'"]),
    "a rule's verify {{ task.titel }}": (
        X + RULE + 'verify = ["{{ task.titel }}"]\n',
        ["routing.rules[0] (name=\"r\") → verify[0]: template '{{ task.titel }}' cannot be rendered (a sample "
         "task): 'dict object' has no attribute 'titel' (did you mean \"title\"?)"]),
    "a provider's verify with a rule's vars of another type": (
        '[providers.x]\ncommand_template = ["x", "{{ prompt_file }}"]\nvars = { n = 1 }\nverify = ["t", '
        '"{{ n + 1 }}"]\n' + RULE + 'vars = { n = "a" }\n',
        ["routing.rules[0] (name=\"r\") → vars: provider \"x\": template '{{ n + 1 }}' cannot be rendered (a sample "
         "task): can only concatenate str (not \"int\") to str"]),
    # --- every command has a program
    "verify = [\"\"]": (X + 'verify = [""]\n', ["providers.x → verify[0]: the program to run is empty"]),
    "a rule's verify = [\"\"]": (X + RULE + 'verify = [""]\n',
                                  ['routing.rules[0] (name="r") → verify[0]: the program to run is empty']),
    "verify rendering to nothing": (X + "verify = [\"{{ '' }}\"]\n",
                                    ["providers.x → verify: renders to an empty command (a sample task)"]),
    "usage_command = [\"\"]": (X + 'usage_command = [""]\n',
                                ["providers.x → usage_command[0]: the program to run is empty"]),
    "an account's usage_command = [\" \"]": (
        X + '[[providers.x.accounts]]\nname = "a"\nusage_command = [" "]\n',
        ['providers.x.accounts[0] (name="a") → usage_command[0]: the program to run is empty']),
    "usage_command rendering to nothing": (X + "usage_command = [\"{{ '' }}\"]\n",
                                           ["providers.x → usage_command: renders to an empty command"]),
    "usage_command {{ account.__class__ }}": (
        X + 'usage_command = ["u", "{{ account.__class__ }}"]\n',
        ["providers.x → usage_command[1]: template '{{ account.__class__ }}' cannot be rendered: access to "
         "attribute '__class__' of 'str' object is unsafe."]),
    # --- names an override can tell apart
    "providers a and A": (
        P("a") + P("A"),
        ['providers.A: provider "A" differs from "a" only in case, and an override names a provider in any case: '
         "rename one"]),
    "providers STRASSE and straße (casefold)": (
        P("STRASSE") + P("straße"),
        ['providers.straße: provider "straße" differs from "STRASSE" only in case, and an override names a provider in '
         "any case: rename one"]),
    "an empty provider name": (P("a") + P(""), ['providers."": a provider name must not be empty or blank']),
    "a provider name with /": (
        P("a/b"),
        ['providers.a/b: provider name "a/b" holds "/", which separates provider and model in an override '
         '("route:PROVIDER/MODEL", attrs.force): rename it']),
    "a provider name with spaces around it": (
        P(" a") + P("b"),
        ['providers." a": provider name " a" has spaces around it, which an override does not read: write "a"']),
    "a model id with spaces around it": (
        P("a") + '[providers.a.models." m"]\ncontext_window = 5\n',
        ['providers.a.models." m": model id " m" is empty or has spaces around it, which an override '
         '("route:PROVIDER/MODEL") does not read: write it without them']),
    # --- a rule's own chain
    "a rule chain listing a tier twice": (
        P("a") + P("b") + '[[routing.rules]]\nname = "r"\nchain = ["a", "a"]\n',
        ['routing.rules[0] (name="r") → chain[1]: "a" appears twice in the chain']),
    "a rule chain repeating the rule's provider": (
        P("a") + P("b") + '[[routing.rules]]\nname = "r"\nprovider = "a"\nchain = ["a", "b"]\n',
        ['routing.rules[0] (name="r") → chain[0]: "a" is the rule\'s own provider, tried first: its chain lists '
         "the tiers after it"]),
    # --- scoring weights that would overflow a score
    "scoring weights of 1e308": (
        X + '[routing.scoring]\nquota = 1e308\nlatency = 1e308\nfit = 1e308\norder = "by_score"\n',
        ["routing → scoring → quota: must be <= 1000, got 1e+308", "routing → scoring → latency: must be <= 1000, "
         "got 1e+308", "routing → scoring → fit: must be <= 1000, got 1e+308"]),
    "a provider's scoring weight": (X + "[routing.scoring.providers.x]\ncost = 1001\n",
                                    ["routing → scoring → providers → x → cost: must be <= 1000, got 1001"]),
    # --- intake entries that could never take effect
    "priority labels differing in case": (
        X + '[routing.intake]\npriority_labels = { "P1" = "high", "p1" = "low" }\n',
        ['routing.intake → priority_labels → p1: "p1" is "P1" in another case, and labels are read in any case: '
         "keep one"]),
    "specialization labels differing in case": (
        X + '[routing.intake]\nspecialization_labels = { "bug" = "code", "BUG" = "docs" }\n',
        ['routing.intake.specialization_labels → BUG: "BUG" is "bug" in another case, and labels are read in any '
         "case: keep one"]),
    "priority_numbers = []": (
        X + "[routing.intake]\npriority_numbers = []\n",
        ['routing.intake → priority_numbers: empty: list the priority of P0, P1, ... (e.g. ["critical", "high", '
         '"normal", "low"]), or leave it out for that']),
    "a priority twice in priority_numbers": (
        X + '[routing.intake]\npriority_numbers = ["low", "low"]\n',
        ['routing.intake → priority_numbers[1]: "low" is already P0; each number names another priority']),
    "default_specialization = \"\"": (X + '[routing.intake]\ndefault_specialization = ""\n',
                                        ["routing.intake → default_specialization: must not be empty"]),
    "an empty priority label": (X + '[routing.intake]\npriority_labels = { "" = "high" }\n',
                                ['routing.intake → priority_labels → "": a label must not be empty']),
    "an empty specialization a label gives": (
        X + '[routing.intake]\nspecialization_labels = { "bug" = "" }\n',
        ["routing.intake.specialization_labels → bug: the specialization must not be empty"]),
    "a model scoring an empty specialization": (
        X + '[providers.x.models.m]\ncontext_window = 5\nspecializations = { "" = 5 }\n',
        ['providers.x.models.m → specializations → "": a specialization must not be empty']),
    "an action for success": (
        X + '[routing.actions]\nsuccess = "retry"\n',
        ['routing.actions → success: a success always stops the walk, so "retry" would have no effect: remove it']),
    "a provider's action for success": (
        X + '[providers.x.actions]\nsuccess = "next_tier"\n',
        ['providers.x → actions → success: a success always stops the walk, so "next_tier" would have no effect: '
         "remove it"]),
    # --- a scenario's time must leave room for the periods around it
    "a scenario at the year 1": (
        X + '[[scenarios]]\nname = "far"\ntask = { title = "x" }\nat = "0001-01-01T00:00:00Z"\n'
        'expect = { provider = "x" }\n',
        ['scenarios[0] (name="far") → at: 0001-01-01T00:00:00+00:00 is outside the times adws routes at (the years '
         '1971 to 2998: state stores keep 1970 to 3000)']),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_one_exact_line(name: str) -> None:
    text, expected = REFUSED[name]
    assert config_problems(text) == expected


@pytest.mark.parametrize("text", ["9999999d", "99999999999d", "999999w", "3661d", "9" * 5000 + "h"])
def test_parse_window_refuses_what_no_date_can_take(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_window(text)
    assert str(info.value) == f'invalid window "{text}": must be at most 3660d'


def test_parse_window_takes_its_bound_and_leading_zeros() -> None:
    assert parse_window("3660d") == MAX_WINDOW
    assert parse_window("0" * 5000 + "5h") == timedelta(hours=5)
    assert parse_window("30d", timedelta(days=30)) == timedelta(days=30)
    with pytest.raises(ValueError, match=r'^invalid window "30d1s": must be at most 30d$'):
        parse_window("30d1s", timedelta(days=30))


@pytest.mark.parametrize("value", ["9999999d", "999999w", "9" * 40 + "s"])
def test_stats_since_refuses_a_span_before_any_date(value: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_since(value, datetime(2026, 11, 18, tzinfo=UTC))
    assert str(info.value) == f"--since: a span of at most 3660d (ten years), or an ISO 8601 time; got {value!r}"


def _pattern(model: str, key: str) -> str:
    pattern = Config.model_json_schema(by_alias=True)["$defs"][model]["properties"][key]
    pattern = pattern.get("pattern") or next(a["pattern"] for a in pattern["anyOf"] if "pattern" in a)
    assert isinstance(pattern, str)
    return pattern


@pytest.mark.parametrize(("model", "key"), [("BreakerConfig", "cooldown"), ("QuotaConfig", "window"),
                                            ("PoolConfig", "window"), ("IntakeConfig", "history_window"),
                                            ("ProviderConfig", "usage_sync_interval")])
def test_the_schema_bounds_every_duration_key(model: str, key: str) -> None:
    pattern = _pattern(model, key)
    for fine in ("10m", "1h30m", " 5h ", "2w", "1d12h", "00005h"):
        assert re.search(pattern, fine), fine
    for bad in ("9999999d", "99999999999d", "0h", "", "5 h", "30m1h", "1.5h", "-5h"):
        assert not re.search(pattern, bad), bad


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("limits", [QuotaLimits(cost_usd=100_000.0), QuotaLimits(requests=100_000_000),
                                    QuotaLimits(tokens=10**15), QuotaLimits(cost_usd=10.0**12),
                                    QuotaLimits(tokens=9223372036854775807), QuotaLimits(cost_usd=1e308)])
def test_a_generous_limit_lasts_until_the_reset_instead_of_overflowing(limits: QuotaLimits) -> None:
    # One small run at the start of a monthly period: at that rate the limit is centuries (or infinitely) away.
    usage = Usage(input_tokens=10, output_tokens=5, requests=1, cost_usd=0.000001)
    reset = NOW + timedelta(days=30)
    burn = burn_rate(usage, limits, NOW - timedelta(days=1), NOW, reset)
    assert burn is not None and burn.exhausts_at is None and not burn.exhausts_before_reset
    assert "; lasts until the reset (capacity back in 30d 0h00m)" in burn.describe(NOW)
    rolling = burn_rate(usage, limits, NOW - timedelta(days=1), NOW, None)
    assert rolling is not None and rolling.exhausts_at is None
    assert rolling.describe(NOW).endswith("; lasts until the reset")


def test_an_exhaustion_within_reach_is_still_projected() -> None:
    usage = Usage(input_tokens=500, output_tokens=0, requests=1)
    burn = burn_rate(usage, QuotaLimits(tokens=1000), NOW - timedelta(hours=1), NOW, NOW + timedelta(days=1))
    assert burn is not None and burn.exhausts_at == NOW + timedelta(hours=1)


def test_alert_thresholds_are_bounded_in_the_schema_as_in_check() -> None:
    defs = Config.model_json_schema(by_alias=True)["$defs"]
    for model in ("QuotaConfig", "PoolConfig"):
        assert defs[model]["properties"]["alert_percent"]["items"] == {"type": "number", "exclusiveMinimum": 0,
                                                                      "maximum": 100}
    assert config_problems(X + '[providers.x.quota]\ntokens = 5\nwindow = "5h"\nalert_percent = [150]\n') == [
        "providers.x.quota → alert_percent[0]: must be within 0-100, got 150"]


def test_a_rule_var_read_only_by_verify_or_a_suffix_has_an_effect() -> None:
    from adws.config.load import compile_config, parse_toml

    text = ('[providers.x]\ncommand_template = ["x", "{{ prompt_file }}"]\nvars = { n = 1, s = "" }\n'
            'verify = ["t", "{{ n + 1 }}"]\nprompt_suffix = "{{ s }}"\n' + RULE + 'vars = { n = 2, s = "x" }\n'
            '[[routing.rules]]\nname = "own"\nprovider = "x"\nvars = { w = "-v" }\nverify = ["t", "{{ w }}"]\n')
    config = compile_config(parse_toml(text))
    assert [rule.name for rule in config.rules] == ["r", "own"]


def test_the_schema_weight_bound_is_scorings() -> None:
    from adws.scoring import MAX_WEIGHT

    weights = Config.model_json_schema(by_alias=True)["$defs"]["WeightsConfig"]["properties"]
    assert {weights[key]["maximum"] for key in ("quota", "latency", "fit", "cost")} == {MAX_WEIGHT}


def test_no_score_is_nan_even_from_a_nan_reading() -> None:
    import json
    import math

    from adws.scoring import ScoringSpec, TierFacts, Weights, score_tiers

    facts = TierFacts(provider="x", model="m", percent_used=float("nan"), latency_ms=None, specialization="code",
                      specialization_score=50, context_tokens=0, context_window=None, cost_per_1k_tokens=0.0)
    [score] = score_tiers([facts], ScoringSpec(Weights(1000, 1000, 1000, 1000)))
    assert math.isfinite(score.total)
    json.dumps(score.to_dict(), allow_nan=False)


# --- a template cannot multiply task data without limit (adws.templates)

TABS = {"task": {"body": "\t" * 3000}}
XS = {"task": {"body": "x" * 3000}}


@pytest.mark.parametrize(("source", "variables", "reason"), [
    ("{{ task.body.expandtabs(1000000) | length }}", TABS, "expandtabs(1000000) would build more than 1,000,000 "
     "characters" + BEYOND),
    ('{{ task.body.replace("x", task.body) }}', XS, "replace() would build more than 1,000,000 characters" + BEYOND),
    ('{{ task.body | replace("x", task.body) }}', XS, "replace would build more than 1,000,000 characters" + BEYOND),
    ("{{ task.body | list | join(task.body) }}", XS, "join would build more than 1,000,000 characters" + BEYOND),
    ("{{ task.body.join(task.body) }}", XS, "join() would build more than 1,000,000 characters" + BEYOND),
    ("{{ task.body | indent(task.body) }}", {"task": {"body": "a\n" * 3000}},
     "indent would build more than 1,000,000 characters" + BEYOND),
    ("{{ task.body | wordwrap(1, wrapstring=task.body) }}", {"task": {"body": "a " * 3000}},
     "wordwrap would build more than 1,000,000 characters" + BEYOND),
    ('{{ [1] | batch(1000000000, "x") | list }}', {},
     "batch(1000000000) would build more than 1,000,000 characters" + BEYOND),
    ("{{ lipsum(100000) }}", {}, "lipsum(100000, max=100) would build more than 1,000,000 characters" + BEYOND),
    ('{{ {"a": 1} | tojson(1000000000) }}', {},
     "tojson(1000000000) would build more than 1,000,000 characters" + BEYOND),
    ('{{ "{:>999999999}".format(1) }}', {}, "a width of more than 1,000,000 characters"),
    ('{{ "{:{}}".format(1, 999999999) }}', {}, "a width of more than 1,000,000 characters"),
    ('{{ "{x:>999999999}".format_map({"x": 1}) }}', {}, "a width of more than 1,000,000 characters"),
    # The width inside the mapping, inside a list, as a string, or on a Markup string: checked as resolved.
    ('{{ "{x:{w}}".format_map({"x": 1, "w": 100000000}) }}', {}, "a width of more than 1,000,000 characters"),
    ('{{ "{0:{1[0]}}".format(1, [100000000]) }}', {}, "a width of more than 1,000,000 characters"),
    ('{{ "{:{}}".format(1, "100000000") }}', {}, "a width of more than 1,000,000 characters"),
    ('{{ ("{:>99999999}" | safe).format(1) }}', {}, "a width of more than 1,000,000 characters"),
    ('{{ "{:.99999999f}".format(1.5) }}', {}, "a width of more than 1,000,000 characters"),
])
def test_a_template_building_past_the_bound_is_refused_before_it_builds(source: str, variables: dict[str, Any],
                                                                         reason: str) -> None:
    with pytest.raises(RenderError) as info:
        render_one(source, variables)
    assert str(info.value) == f"cannot render {source!r}: {reason}"


@pytest.mark.parametrize(("source", "variables", "expected"), [
    ("{{ task.body.expandtabs(4) | length }}", TABS, "12000"),
    ('{{ task.body.replace("x", "yy") | length }}', XS, "6000"),
    ('{{ ["a", "b"] | join(",") }}|{{ "-".join(["a", "b"]) }}', {}, "a,b|a-b"),
    ('{{ "{:>5}|{}".format(1, 10**9) }}', {}, "    1|1000000000"),
    ('{{ "{a}-{b:>{w}}".format_map({"a": 1, "b": 2, "w": 3}) }}', {}, "1-  2"),
    ('{{ task.body | indent(2, first=true) }}', {"task": {"body": "a\nb"}}, "  a\n  b"),
])
def test_ordinary_uses_of_those_methods_and_filters_still_render(source: str, variables: dict[str, Any],
                                                                 expected: str) -> None:
    assert render_one(source, variables) == expected


def test_a_render_failure_without_a_message_still_has_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from adws import templates

    class Exhausting:
        def render(self, variables: Any) -> str:
            raise MemoryError

    monkeypatch.setattr(templates, "_compiled", lambda source: Exhausting())
    with pytest.raises(RenderError) as info:
        render_one("{% if a %}b{% endif %}", {"a": 1})
    assert str(info.value) == "cannot render '{% if a %}b{% endif %}': MemoryError"
