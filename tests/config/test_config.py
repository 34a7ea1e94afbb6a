"""The config loader: every broken file under tests/data/configs/broken is refused with exact messages, a file
with several problems lists all of them at once, and the older format (tests/data/configs/legacy.toml) loads
and routes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adws.availability import Availability
from adws.config import load_config
from adws.config.load import compile_config, parse_toml, read_toml
from adws.config.locations import fields_at, format_loc
from adws.config.schema import Config, RuleConfig
from adws.errors import ConfigError, Problem, edit_distance, is_typo, suggest, toml_value
from adws.router import ModelRouter
from tests.helpers import DATA, ROOT, config_problems

CONFIGS = DATA / "configs"
BROKEN = CONFIGS / "broken"
LEGACY = CONFIGS / "legacy.toml"

SECTIONS = "[routing], [[routing.rules]], [providers.NAME], [state], [audit], [run], [[scenarios]], [llm]"
TEMPLATE_VARIABLES = ("account, config_dir, home, model, output_file, previous, prompt, prompt_file, provider, "
                      "run_dir, task, workdir")
OUTCOMES = ("success, rate_limited, quota_exhausted, auth, context_overflow, timeout, crashed, error, bad_output, "
            "unavailable, verify_failed")

# file name (without .toml) -> every problem, in the order `adws check` prints them.
BROKEN_CASES: dict[str, list[str]] = {
    "unknown_key_provider": ['providers.cline: unknown key "enabeld" (did you mean "enabled"?)'],
    "unknown_key_rule": ['routing.rules[0] (name="bugs"): unknown key "priorty" (did you mean "priority"?)'],
    "unknown_key_no_suggestion": [
        'routing.rules[0] (name="bugs"): unknown key "colour"; allowed: name, priority, enabled, description, '
        "conditions, provider, model, account, models, chain, fallback, vars, verify, workdir, prompt_suffix, "
        "order, need",
    ],
    "unknown_section": [f"(top level): unknown section [logging]; the sections are {SECTIONS}"],
    "unknown_condition": [
        'routing.rules[0] (name="retries") → conditions → retry_cont: unknown condition "retry_cont" '
        '(did you mean "retry_count"?); allowed: priority, labels, retry_count, hour_range, schedule, '
        "specialization, context_tokens, attrs, attrs.NAME",
    ],
    "unknown_operator": [
        'routing.rules[0] (name="retries") → conditions → retry_count → gtee: unknown operator "gtee" '
        '(did you mean "gte"?); allowed: eq, ne, gt, gte, lt, lte',
    ],
    "hour_out_of_range": [
        'routing.rules[0] (name="night") → conditions → hour_range[1]: hour must be within 0-24, got 25',
    ],
    "hour_range_empty": [
        'routing.rules[0] (name="never") → conditions → hour_range: empty range [5, 5]: start equals end '
        "(use [0, 24] for all day)",
    ],
    "context_tokens_empty": [
        'routing.rules[0] (name="mid-size") → conditions → context_tokens: empty range [10, 5]: min is above max',
    ],
    "operators_empty": [
        'routing.rules[0] (name="impossible") → conditions → retry_count: empty range: no integer satisfies '
        "> 5 and < 3",
    ],
    "bad_cron_condition": [
        'routing.rules[0] (name="weeknights") → conditions → schedule[1]: bad cron expression "* 0-5 * * 1-8": '
        'the day-of-week field "1-8" is not valid (0-7 or sun-sat)',
    ],
    "bad_cron_quota": [
        'providers.cline.quota → reset: bad cron expression "0 0 * *": expected 5 fields '
        "(minute hour day-of-month month day-of-week), got 4",
    ],
    "bad_attr_regex": [
        'routing.rules[0] (name="infra") → conditions → attrs → repo → regex: bad regex "^acme/(infra": '
        "missing ), unterminated subpattern at position 6",
    ],
    "bad_failure_pattern": [
        'providers.cline.failure_patterns[0] → regex: bad regex "rate (limit": missing ), unterminated '
        "subpattern at position 5",
    ],
    "wrong_types": [
        'routing.rules[0] (name="bugs") → priority: expected an integer, got "high"',
        'providers.cline → enabled: expected true or false, got "yes"',
        'providers.cline → timeout: expected a number, got "30m"',
        'providers.cline.models.integrated → context_window: expected an integer, got "262K"',
    ],
    "duplicate_rule_names": [
        'routing.rules[1] (name="bugs") → name: duplicate rule name "bugs" (first at routing.rules[0])',
    ],
    "unknown_provider_in_rule": [
        'routing.rules[0] (name="bugs") → provider: unknown provider "clin" (did you mean "cline"?); '
        "providers: cline",
    ],
    "unknown_account": [
        'routing.rules[0] (name="bugs") → account: provider "cline" has no account "wrok" (did you mean "work"?); '
        "its accounts: work, personal",
    ],
    "unknown_model": [
        'routing.rules[0] (name="bugs") → model: provider "cline" has no model "opus"; its models: integrated',
        'routing.rules[0] (name="bugs") → models → cline: provider "cline" has no model "integrate" '
        '(did you mean "integrated"?); its models: integrated',
    ],
    "unknown_chain_entry": [
        'routing → chain[1]: unknown provider "locl" (did you mean "local"?); providers: cline, local',
        'routing.rules[0] (name="bugs") → chain[0]: unknown provider "opencode"; providers: cline, local',
    ],
    "default_missing_provider": [
        'routing → default_provider: unknown provider "antigravity"; providers: cline',
    ],
    "default_missing_model": [
        'llm → model_default: provider "cline" has no model "integrate" (did you mean "integrated"?); '
        "its models: integrated",
    ],
    "template_syntax": [
        "providers.cline → command_template[2]: template '{{ prompt ' does not parse: unexpected end of template, "
        "expected 'end of print statement'",
    ],
    "template_unknown_variable": [
        "providers.cline → command_template[2]: template '{{ promt }}' uses unknown variable \"promt\" "
        f"(did you mean \"prompt\"?); declare it in the provider's `vars` or use one of: {TEMPLATE_VARIABLES}",
        "providers.cline → command_template[3]: template '--thinking={{ thinking }}' uses unknown variable "
        f"\"thinking\"; declare it in the provider's `vars` or use one of: {TEMPLATE_VARIABLES}",
        # No "prompt = arg but no element uses {{ prompt }}": that only follows from the misspelt variable.
    ],
    "template_unknown_filter": [
        "providers.cline → command_template[2]: template '{{ prompt | shout }}' does not parse: "
        "No filter named 'shout'",
    ],
    "bad_output_format": [
        'providers.cline → output_format: unknown output format "claude-jsn" (did you mean "claude-json"?); '
        "known: claude-stream-json, claude-json, copilot-json, opencode-json, gemini-json, gemini-stream-json, "
        "cline-json, codex-json, text",
    ],
    "bad_account_strategy": [
        'providers.cline → account_strategy: unknown account strategy "roundrobin" (did you mean "round_robin"?); '
        "known: least_used, round_robin, fill_first, sticky, best_fit",
    ],
    "bad_prompt_mode": [
        'providers.local → prompt: expected "stdin", "arg" or "file", got "stdn" (did you mean "stdin"?)',
    ],
    "bad_action_key": [
        f'routing.actions: unknown key "rate_limted" (did you mean "rate_limited"?); allowed: {OUTCOMES}',
        'routing.actions → timeout: expected "next_account", "next_tier", "retry" or "stop", got "skip"',
    ],
    "bad_timezone": ['routing → timezone: unknown timezone "Europe/Berln" (did you mean "Europe/Berlin"?)'],
    "quota_both": [
        "providers.cline.quota: give `reset` (a cron expression) or `window` (a rolling period), not both",
    ],
    "quota_neither": [
        'providers.cline.quota: the quota needs a period: give `reset` (a cron expression such as "0 0 * * 0") '
        'or `window` (a rolling period such as "5h")',
    ],
    "scenario_bad_task": [
        'scenarios[0] (name="bug") → task: unknown field "titel" (did you mean "title"?)',
        'scenarios[0] (name="bug") → task → retry_count: must be >= 0, got -1',
    ],
    "unknown_specialization": [
        'routing.rules[0] (name="docs") → conditions → specialization: unknown specialization "reasonin" '
        '(did you mean "reasoning"?); known: architecture, code, docs, fast_response, general, large_document, '
        "reasoning",
    ],
    "many_problems": [
        'providers.cline: unknown key "enabeld" (did you mean "enabled"?)',
        'routing.rules[0] (name="retries") → conditions → retry_count → gtee: unknown operator "gtee" '
        '(did you mean "gte"?); allowed: eq, ne, gt, gte, lt, lte',
        'routing → timezone: unknown timezone "Mars/Olympus_Mons": use an IANA name such as "UTC" or '
        '"Europe/Berlin"',
        'providers.local.quota → reset: bad cron expression "0 0 * * 8": the day-of-week field "8" is not valid '
        "(0-7 or sun-sat)",
        'routing.rules[1] (name="offline") → provider: unknown provider "locl" (did you mean "local"?); '
        "providers: cline, local",
        'scenarios[0] (name="offline") → expect → rule: unknown rule "ofline" (did you mean "offline"?)',
    ],
}


def problems_in(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(problem) for problem in info.value.problems]


@pytest.mark.parametrize("name", sorted(BROKEN_CASES))
def test_broken_config_is_refused_with_exact_messages(name: str) -> None:
    assert problems_in(BROKEN / f"{name}.toml") == BROKEN_CASES[name]


def test_every_broken_file_has_its_expected_messages() -> None:
    files = {path.stem for path in BROKEN.glob("*.toml")} - {"not_toml"}
    assert files == set(BROKEN_CASES)
    assert len(files) >= 25


def test_a_file_with_problems_in_many_sections_reports_them_all_in_one_render() -> None:
    path = BROKEN / "many_problems.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    # Each line names the file and the line of its place, as compilers do: `config.toml:42: routing.rules[3] …`.
    # In the file's order, whatever order the checks found them in (`problems` keeps that).
    lines = (19, 8, 3, 28, 14, 33)
    found = sorted(zip(lines, BROKEN_CASES["many_problems"], strict=True))
    assert info.value.render() == "\n".join(
        [f"{path}: 6 problems in config", *(f"  {path}:{n}: {text}" for n, text in found)])
    assert str(info.value) == info.value.render()
    sections = {re.split(r"[.\[ ]", problem.where)[0] for problem in info.value.problems}
    assert sections == {"providers", "routing", "scenarios"}


def test_toml_syntax_error_is_one_line_naming_the_place() -> None:
    path = BROKEN / "not_toml.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [Problem("", "not valid TOML: Illegal character '\\n' (at line 3, column 50)")]
    assert info.value.render() == f"{path}: not valid TOML: Illegal character '\\n' (at line 3, column 50)"


def test_missing_file() -> None:
    path = CONFIGS / "no-such-file.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == ["config file not found"]
    assert info.value.render() == f"{path}: config file not found"


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_toml(tmp_path)  # a directory
    assert info.value.render() == f"{tmp_path}: cannot read config file: [Errno 21] Is a directory: '{tmp_path}'"


# --- more broken configs, inline: each snippet is appended to a small valid file ------------------------------

# A minimal valid provider table that the broken snippets below extend.
X = '[providers.x]\ncommand_template = ["x"]\nprompt = "stdin"\n'

BASE = """
[routing]
default_provider = "cline"
chain = ["cline", "local"]

[providers.cline]
command_template = ["cline", "-y", "{{ prompt }}"]
prompt = "arg"
[providers.cline.models.integrated]
context_window = 262000

[providers.local]
command_template = ["ollama", "run", "{{ model }}"]
prompt = "stdin"
[providers.local.models.qwen]
context_window = 8000
"""

INLINE_CASES: list[tuple[str, str, list[str]]] = [
    ("a rule variable no template reads", '[[routing.rules]]\nname = "r"\nprovider = "local"\n'
     'vars = { modle = "x" }\n',
     ['routing.rules[0] (name="r") → vars → modle: no command template reads "modle" (did you mean "model"?), '
      "so it would have no effect"]),
    ("a specialization label that is a near miss", '[routing.intake.specialization_labels]\n"docs" = "doc"\n',
     ['routing.intake.specialization_labels → docs: unknown specialization "doc" (did you mean "docs"?); a new '
      "one needs a name that is not a near miss of a known one"]),
    # "datase" is two letters from both; the one sharing its longer start is "datasets", unless the label says.
    ("a specialization label's own name is the likeliest fix", "[providers.cline.specializations]\n"
     'database = 80\ndatasets = 80\n[routing.intake.specialization_labels]\n"kind:database" = "datase"\n'
     '"db" = "datase"\n',
     ['routing.intake.specialization_labels → kind:database: unknown specialization "datase" (did you mean '
      '"database"?); a new one needs a name that is not a near miss of a known one',
      'routing.intake.specialization_labels → db: unknown specialization "datase" (did you mean "datasets"?); a new '
      "one needs a name that is not a near miss of a known one"]),
    ("a typo two characters away from a long specialization", "[providers.cline.specializations]\n"
     "archtecture = 80\nlarg_documnt = 70\n",
     ['providers.cline → specializations → archtecture: unknown specialization "archtecture" (did you mean '
      '"architecture"?); a new one needs a name that is not a near miss of a known one',
      'providers.cline → specializations → larg_documnt: unknown specialization "larg_documnt" (did you mean '
      '"large_document"?); a new one needs a name that is not a near miss of a known one']),
    ("a rule naming a score refused as a typo is not a second problem", "[providers.cline.specializations]\n"
     'cod = 60\n[[routing.rules]]\nname = "r"\nprovider = "cline"\nconditions = { specialization = "cod" }\n',
     ['providers.cline → specializations → cod: unknown specialization "cod" (did you mean "code"?); a new one needs '
      "a name that is not a near miss of a known one"]),
    ("a keyword specialization that is a near miss", '[routing.intake.specialization_keywords]\n'
     'reasonin = ["why"]\n',
     ['routing.intake.specialization_keywords → reasonin: unknown specialization "reasonin" (did you mean '
      '"reasoning"?); a new one needs a name that is not a near miss of a known one']),
    ("a provider score for a near miss of a known specialization", "[providers.cline.specializations]\n"
     "cod = 60\ncode = 90\n",
     ['providers.cline → specializations → cod: unknown specialization "cod" (did you mean "code"?); a new one needs '
      "a name that is not a near miss of a known one"]),
    ("a model score for a near miss of a known specialization", "[providers.local.models.qwen.specializations]\n"
     "fast_respons = 92\n",
     ['providers.local.models.qwen → specializations → fast_respons: unknown specialization "fast_respons" (did you '
      'mean "fast_response"?); a new one needs a name that is not a near miss of a known one']),
    ("a score for a near miss of a specialization intake introduces", "[routing.intake.specialization_labels]\n"
     '"area:ui" = "frontend"\n[providers.local.models.qwen.specializations]\nfrontnd = 92\n',
     ['providers.local.models.qwen → specializations → frontnd: unknown specialization "frontnd" (did you mean '
      '"frontend"?); a new one needs a name that is not a near miss of a known one']),
    ("a cron alias as a schedule condition", '[[routing.rules]]\nname = "r"\nprovider = "cline"\n'
     'conditions = { schedule = ["@daily", "@dialy"] }\n',
     ['routing.rules[0] (name="r") → conditions → schedule[0]: "@daily" is the moment "0 0 * * *", so as a condition '
      'it holds one minute in each period; a schedule takes the 5 fields of the minutes it holds in (e.g. '
      '"* * * * *" every day, "* 9-17 * * 1-5" working hours)']),
    ("an unknown alias as a schedule condition", '[[routing.rules]]\nname = "r"\nprovider = "cline"\n'
     'conditions = { schedule = "@dialy" }\n',
     ['routing.rules[0] (name="r") → conditions → schedule: "@dialy" is not a cron expression; a schedule takes the '
      '5 fields of the minutes it holds in (e.g. "* * * * *" every day, "* 9-17 * * 1-5" working hours)']),
    ("a regex that matches every text", '[[routing.rules]]\nname = "r"\nprovider = "cline"\n'
     'conditions = { attrs = { a = { regex = "" }, b = { regex = ".*" }, c = { regex = "^$" } } }\n',
     ['routing.rules[0] (name="r") → conditions → attrs → a → regex: regex "" matches every text, so it asks nothing '
      "of the value; to ask only that the attribute is there, write `exists = true`",
      'routing.rules[0] (name="r") → conditions → attrs → b → regex: regex ".*" matches every text, so it asks '
      "nothing of the value; to ask only that the attribute is there, write `exists = true`"]),
    ("a label glob with an unclosed set", '[[routing.rules]]\nname = "r"\nprovider = "cline"\n'
     'conditions = { labels = { any = ["x", "area:docs["] } }\n[routing.intake.specialization_labels]\n'
     '"type:[!]doc" = "docs"\n"a[[]b" = "docs"\n',
     ['routing.rules[0] (name="r") → conditions → labels → any[1]: "[" without its "]" in the label glob '
      '"area:docs[": "[...]" matches one of the characters inside; for a "[" itself write "[[]"',
      'routing.intake.specialization_labels → type:[!]doc: "[" without its "]" in the label glob "type:[!]doc": '
      '"[...]" matches one of the characters inside; for a "[" itself write "[[]"']),
    ("an empty rule chain", '[[routing.rules]]\nname = "r"\nprovider = "cline"\nchain = []\n',
     ['routing.rules[0] (name="r") → chain: empty: the rule would fall through to no tier; write `fallback = false` '
      "to try only its target, or leave `chain` out to fall down routing.chain"]),
    ("an alert threshold given twice", X + '[providers.x.quota]\nrequests = 5\nwindow = "5h"\n'
     "alert_percent = [95, 80, 95]\n",
     ["providers.x.quota → alert_percent[2]: 95 is already in the list"]),
    ("rule without a target", '[[routing.rules]]\nname = "a"\n',
     ['routing.rules[0] (name="a"): the rule has no target: give `provider`, `model` or `chain`']),
    ("empty rule name", '[[routing.rules]]\nname = ""\nprovider = "cline"\n',
     ['routing.rules[0] (name="") → name: must not be empty']),
    ("rule model nobody declares", '[[routing.rules]]\nname = "r"\nmodel = "gpt-5"\n',
     ['routing.rules[0] (name="r") → model: no provider declares model "gpt-5"; give `provider` too']),
    ("rule account on a provider without accounts", '[[routing.rules]]\nname = "r"\nmodel = "qwen"\naccount = "x"\n',
     ['routing.rules[0] (name="r") → account: provider "local" has no account "x"; it declares no '
      "[[providers.local.accounts]]"]),
    ("string where a boolean belongs", '[[routing.rules]]\nname = "r"\nprovider = "cline"\nenabled = "yes"\n',
     ['routing.rules[0] (name="r") → enabled: expected true or false, got "yes"']),
    ("number where a string belongs", '[[routing.rules]]\nname = "r"\nprovider = 5\n',
     ['routing.rules[0] (name="r") → provider: expected a string, got 5']),
    ("float where an integer belongs", '[[routing.rules]]\nname = "r"\nprovider = "cline"\npriority = 1.5\n',
     ['routing.rules[0] (name="r") → priority: expected an integer, got 1.5']),
    ("retry settings out of bounds", "[routing.retry]\nmax_retries = 11\nbackoff_factor = 0.5\n",
     ["routing.retry → max_retries: must be <= 10, got 11", "routing.retry → backoff_factor: must be >= 1, got 0.5"]),
    ("vars of the wrong kind", "[providers.cline.vars]\na = [1]\nb = { c = 1 }\n",
     ["providers.cline → vars → a: expected a string, a number or a boolean, got an array",
      "providers.cline → vars → b: expected a string, a number or a boolean, got a table"]),
    ("score above 100", "[providers.local.models.qwen.specializations]\ncode = 120\n",
     ["providers.local.models.qwen → specializations → code: must be <= 100, got 120"]),
    ("provider score below 0", "[providers.cline.specializations]\ncode = -1\n",
     ["providers.cline → specializations → code: must be >= 0, got -1"]),
    ("empty command", "[providers.x]\ncommand_template = []\n",
     ["providers.x → command_template: must not be empty"]),
    ("provider without command", '[providers.x]\nprompt = "stdin"\n',
     ['providers.x: missing required key "command_template"']),
    ("templated program", '[providers.x]\ncommand_template = ["{{ model }}-cli"]\nprompt = "stdin"\n',
     ["providers.x → command_template: the program to run must be a fixed name or path, not a template"]),
    ("unknown variable in env", X + 'env = { HOME = "{{ hmoe }}" }\n',
     [f"providers.x → env → HOME: template '{{{{ hmoe }}}}' uses unknown variable \"hmoe\" (did you mean "
      f"\"home\"?); declare it in the provider's `vars` or use one of: {TEMPLATE_VARIABLES}"]),
    ("prompt by argument but no element reads it",
     '[providers.x]\ncommand_template = ["x", "--prompt-file", "{{ prompt_file }}"]\nprompt = "arg"\n',
     ['providers.x → prompt: prompt = "arg" but no command_template element uses {{ prompt }}']),
    ("prompt by file (the default) but no element names the file", '[providers.x]\ncommand_template = ["x"]\n',
     ['providers.x → prompt: prompt = "file" (the default) but no command_template element or env value uses '
      '{{ prompt_file }}; name the file in the command, or set prompt = "stdin" or "arg"']),
    ("requires_api_key without the variable", X + 'requires_api_key = true\n',
     ["providers.x → requires_api_key: requires_api_key = true needs `api_key_env` (the variable's name)"]),
    ("duplicate account", X + '[[providers.x.accounts]]\nname = "a"\n'
     '[[providers.x.accounts]]\nname = "a"\n',
     ['providers.x.accounts[1] (name="a") → name: duplicate account name "a"']),
    ("accounts differing only in case", X + '[[providers.x.accounts]]\nname = "work"\n'
     '[[providers.x.accounts]]\nname = "Work"\n',
     ['providers.x.accounts[1] (name="Work") → name: account name "Work" differs from "work" only in case or '
      'surrounding whitespace: rename one']),
    ("accounts differing only in case by casefold", X + '[[providers.x.accounts]]\nname = "STRASSE"\n'
     '[[providers.x.accounts]]\nname = "straße"\n',
     ['providers.x.accounts[1] (name="straße") → name: account name "straße" differs from "STRASSE" only in case or '
      'surrounding whitespace: rename one']),
    ("accounts differing only in surrounding whitespace", X + '[[providers.x.accounts]]\nname = "work"\n'
     '[[providers.x.accounts]]\nname = " work "\n',
     ['providers.x.accounts[1] (name=" work ") → name: account name " work " differs from "work" only in case or '
      'surrounding whitespace: rename one']),
    ("bad quota window", X + '[providers.x.quota]\nrequests = 5\n'
     'window = "5 hours"\n',
     ['providers.x.quota → window: invalid window "5 hours": expected numbers with units w, d, h, m, s in that '
      'order, e.g. "5h", "30m", "7d", "1h30m"']),
    ("quota without a limit", X + '[providers.x.quota]\nwindow = "5h"\n',
     ["providers.x.quota: give at least one limit: `tokens`, `requests` or `cost_usd`"]),
    ("account quota with a bad timezone", X + '[[providers.x.accounts]]\n'
     'name = "a"\nquota = { tokens = 5, reset = "@dialy", timezone = "Utc/Nowhere" }\n',
     ['providers.x.accounts[0] (name="a").quota → reset: bad cron expression "@dialy": unknown alias '
      '(did you mean "@daily"?); known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly',
      'providers.x.accounts[0] (name="a").quota → timezone: unknown timezone "Utc/Nowhere": use an IANA name '
      'such as "UTC" or "Europe/Berlin"']),
    ("unknown outcome class in a failure pattern", '[[providers.cline.failure_patterns]]\nregex = "429"\n'
     'class = "ratelimited"\n',
     ['providers.cline.failure_patterns[0] → class: expected "success", "rate_limited", "quota_exhausted", "auth", '
      '"context_overflow", "timeout", "crashed", "error", "bad_output", "unavailable" or "verify_failed", '
      'got "ratelimited" '
      '(did you mean "rate_limited"?)']),
    ("breaker cooldown", '[routing.circuit_breaker]\ncooldown = "soon"\n',
     ['routing.circuit_breaker → cooldown: invalid window "soon": expected numbers with units w, d, h, m, s in '
      'that order, e.g. "5h", "30m", "7d", "1h30m"']),
    ("unknown state backend", '[state]\nbackend = "sqlit"\n',
     ['state → backend: unknown state backend "sqlit" (did you mean "sqlite"?); known: sqlite, memory, redis']),
    ("scenario without a timezone", '[[scenarios]]\nname = "s"\ntask = { title = "x" }\n'
     'at = "2026-11-22T10:00:00"\nexpect = { provider = "cline" }\n',
     ['scenarios[0] (name="s") → at: give a timezone offset (e.g. 2026-11-22T10:00:00Z)']),
    ("scenario time that is not ISO 8601", '[[scenarios]]\nname = "s"\ntask = { title = "x" }\nat = "tomorrow"\n'
     'expect = { provider = "cline" }\n',
     ['scenarios[0] (name="s") → at: expected an ISO 8601 date-time such as "2026-11-22T10:00:00Z", got '
      '"tomorrow"']),
    ("scenario expects what does not exist", '[[scenarios]]\nname = "s"\ntask = { title = "x", labels = [5] }\n'
     'expect = { provider = "cline", model = "integratd", account = "a", plan = ["cline", "opencode"] }\n'
     '[[scenarios]]\nname = "s"\ntask = { title = "x" }\nexpect = { model = "gpt-5" }\n',
     ['scenarios[0] (name="s") → task → labels[0]: expected a label name or an object with a name, got an integer',
      'scenarios[0] (name="s") → expect → model: provider "cline" has no model "integratd" (did you mean '
      '"integrated"?); its models: integrated',
      'scenarios[0] (name="s") → expect → account: provider "cline" has no account "a"',
      'scenarios[0] (name="s") → expect → plan[1]: unknown provider "opencode"; providers: cline, local',
      'scenarios[1] (name="s") → name: duplicate scenario name "s"',
      'scenarios[1] (name="s") → expect → model: no provider declares model "gpt-5"']),
    ("section name typo", "[sate]\n",
     [f'(top level): unknown section [sate] (did you mean "state"?); the sections are {SECTIONS}']),
    ("many condition mistakes in one rule",
     '[[routing.rules]]\nname = "r"\nprovider = "cline"\nconditions = { priority = "urgent", labels = [], '
     'hour_range = [22], context_tokens = 5, attrs = { a = { exists = "yes" } } }\n',
     ['routing.rules[0] (name="r") → conditions → priority: unknown priority "urgent"; allowed: critical, high, '
      "normal, low",
      'routing.rules[0] (name="r") → conditions → labels: expected a non-empty list of labels, got []',
      'routing.rules[0] (name="r") → conditions → hour_range: expected [start, end] with two hours, got [22]',
      'routing.rules[0] (name="r") → conditions → context_tokens: expected [min, max] or a table with '
      "gt/gte/lt/lte, got 5",
      'routing.rules[0] (name="r") → conditions → attrs → a → exists: expected true or false, got "yes"']),
]


def problems_of(text: str) -> list[str]:
    return config_problems(text, "t.toml")


@pytest.mark.parametrize(("snippet", "expected"), [case[1:] for case in INLINE_CASES],
                         ids=[case[0] for case in INLINE_CASES])
def test_inline_broken_config(snippet: str, expected: list[str]) -> None:
    assert problems_of(BASE + snippet) == expected


def test_base_of_inline_cases_is_valid() -> None:
    config = compile_config(parse_toml(BASE), "t.toml")
    assert config.default_provider == "cline"
    assert config.chain == ("cline", "local")


def test_an_empty_routing_chain_is_refused_rather_than_read_as_file_order() -> None:
    assert problems_of(BASE.replace('chain = ["cline", "local"]', "chain = []")) == [
        "routing → chain: empty: leave `chain` out for the providers in file order, or list the tiers in their order"]


def test_alert_thresholds_may_come_in_any_order() -> None:
    config = compile_config(parse_toml(BASE + X + '[providers.x.quota]\nrequests = 5\nwindow = "5h"\n'
                                       "alert_percent = [95, 80]\n"))
    quota = config.providers["x"].quota
    assert quota is not None and quota.alert_percent == (80.0, 95.0)


def test_one_label_may_be_written_without_a_list() -> None:
    config = compile_config(parse_toml(BASE + '[[routing.rules]]\nname = "r"\nprovider = "local"\n'
                                       'conditions = { labels = "Chore" }\n'))
    router = ModelRouter(config, availability=Availability(which=lambda name: "/bin/" + name))
    assert router.route({"title": "x", "labels": ["chore"]}, now=WEDNESDAY_1PM).rule == "r"
    assert router.route({"title": "x", "labels": ["chores"]}, now=WEDNESDAY_1PM).rule == "default"


def test_chain_listing_a_tier_twice() -> None:
    text = BASE.replace('chain = ["cline", "local"]', 'chain = ["cline", "local", "cline"]')
    assert problems_of(text) == ['routing → chain[2]: "cline" appears twice in the chain']


def test_missing_providers() -> None:
    assert problems_of("[routing]\n") == [
        "(top level): no providers: declare at least one [providers.NAME] table with its command_template"]
    assert problems_of("[providers]\n") == [
        "(top level): no providers: declare at least one [providers.NAME] table with its command_template"]


def test_unknown_top_level_key() -> None:
    # A bare key must come before the first table, or TOML puts it in that table.
    assert problems_of('timezone = "UTC"\n' + BASE) == [
        f'(top level): unknown top-level key "timezone"; the sections are {SECTIONS}']


def test_section_of_the_wrong_type() -> None:
    assert problems_of('routing = 5\n[providers.a]\ncommand_template = ["a"]\nprompt = "stdin"\n') == [
        "routing: expected a table, got 5"]


def test_references_to_a_broken_provider_are_not_a_second_problem() -> None:
    # cline is left out for its typo, but a rule, the chain and the default naming it are not "unknown provider".
    text = BASE.replace('prompt = "arg"', 'prompt = "arg"\ntimout = 5') + \
        '[[routing.rules]]\nname = "r"\nprovider = "cline"\nmodel = "integrated"\n' \
        '[[routing.rules]]\nname = "s"\nprovider = "nope"\n'
    assert problems_of(text) == [
        'providers.cline: unknown key "timout" (did you mean "timeout"?)',
        'routing.rules[1] (name="s") → provider: unknown provider "nope"; providers: cline, local',
    ]


def test_a_score_table_may_name_a_specialization_of_its_own() -> None:
    # Not a near miss of a known one: a task may give it (`specialization = "frontend"`), and rules may name it.
    config = compile_config(parse_toml(BASE + "[providers.cline.specializations]\nfrontend = 90\n"
                                       '[[routing.rules]]\nname = "r"\nprovider = "cline"\n'
                                       'conditions = { specialization = "frontend" }\n'))
    assert "frontend" in config.intake.known_specializations


@pytest.mark.parametrize("name", ["codegen", "reason", "generalist", "reasoner", "documents", "frontend", "ux"])
def test_a_name_of_its_own_that_shares_a_known_ones_start_is_allowed(name: str) -> None:
    # Not a typo of a known name (`code`, `reasoning`, `general`, `docs`; `ui`, which intake introduces, is too
    # short for one letter to be a slip): a score table, a label and a rule may all name it.
    config = compile_config(parse_toml(BASE + f"[providers.cline.specializations]\n{name} = 90\n"
                                       f'[routing.intake.specialization_labels]\n"area:ui" = "ui"\n"x" = "{name}"\n'
                                       f'[[routing.rules]]\nname = "r"\nprovider = "cline"\n'
                                       f'conditions = {{ specialization = "{name}" }}\n'))
    assert name in config.intake.known_specializations


@pytest.mark.parametrize(("word", "known", "typo"), [
    ("cod", "code", True), ("coed", "code", True), ("fast_respons", "fast_response", True),
    ("archtecture", "architecture", True), ("larg_documnt", "large_document", True), ("genral", "general", True),
    ("codegen", "code", False), ("reason", "reasoning", False), ("reasoner", "reasoning", False),
    ("generalist", "general", False), ("gnrl", "general", False), ("code", "code", False), ("ux", "ui", False),
])
def test_a_typo_is_a_small_edit_of_a_known_name(word: str, known: str, typo: bool) -> None:
    assert is_typo(word, known) is typo


@pytest.mark.parametrize(("a", "b", "distance"), [
    ("", "", 0), ("", "abc", 3), ("code", "code", 0), ("cod", "code", 1), ("coed", "code", 1), ("ocde", "code", 1),
    ("codegen", "code", 3), ("ca", "abc", 3),  # optimal string alignment: no part is edited twice
])
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == edit_distance(b, a) == distance


def test_specializations_a_left_out_provider_scores_are_still_declared() -> None:
    # cline is left out for its typo; the names it scores are not unknown to intake or to a rule.
    text = BASE.replace('prompt = "arg"', 'prompt = "arg"\ntimout = 5\nspecializations = { coding = 90 }') + \
        '[routing.intake]\nspecialization_labels = { "dev" = "coding" }\n' \
        '[[routing.rules]]\nname = "r"\nprovider = "local"\nconditions = { specialization = "coding" }\n'
    assert problems_of(text) == ['providers.cline: unknown key "timout" (did you mean "timeout"?)']


def test_scores_are_not_judged_against_a_left_out_intake() -> None:
    text = BASE + '[routing.intake]\nspecialization_labels = { "area:ui" = "frontend" }\nchars_per_token = 0\n' \
        "[providers.cline.specializations]\nfrontnd = 90\n"
    assert problems_of(text) == ["routing.intake → chars_per_token: must be >= 0.1, got 0"]


def test_rule_numbers_stay_those_of_the_file_when_an_earlier_rule_is_broken() -> None:
    text = BASE + '[[routing.rules]]\nname = "a"\nprovider = "cline"\npriority = "x"\n' \
        '[[routing.rules]]\nname = "b"\nprovider = "clne"\n'
    assert problems_of(text) == [
        'routing.rules[0] (name="a") → priority: expected an integer, got "x"',
        'routing.rules[1] (name="b") → provider: unknown provider "clne" (did you mean "cline"?); '
        "providers: cline, local",
    ]


def test_scenario_expecting_a_broken_rule_is_not_a_second_problem() -> None:
    text = BASE + '[[routing.rules]]\nname = "r"\nprovider = "cline"\nenabled = 1\n' \
        '[[scenarios]]\nname = "s"\ntask = { title = "x" }\nexpect = { rule = "r" }\n'
    assert problems_of(text) == ['routing.rules[0] (name="r") → enabled: expected true or false, got 1']


def test_llm_table_is_checked_even_when_routing_shadows_it() -> None:
    text = BASE + '[llm]\nprovider = "claude"\nmodel_default = "sonnet"\n'
    assert problems_of(text) == ['llm → provider: unknown provider "claude"; providers: cline, local']


def test_llm_model_default_applies_only_to_its_own_provider() -> None:
    # [routing] names cline; [llm] names local and its model: local's model is not cline's default.
    config = compile_config(parse_toml(BASE + '[llm]\nprovider = "local"\nmodel_default = "qwen"\n'))
    assert (config.default_provider, config.default_model) == ("cline", None)
    only_llm = BASE.replace('default_provider = "cline"\n', "") + '[llm]\nprovider = "local"\nmodel_default = "qwen"\n'
    config = compile_config(parse_toml(only_llm))
    assert (config.default_provider, config.default_model) == ("local", "qwen")


def test_routing_defaults_win_over_llm() -> None:
    text = BASE.replace('default_provider = "cline"', 'default_provider = "local"\ndefault_model = "qwen"') + \
        '[llm]\nprovider = "cline"\nmodel_default = "integrated"\n'
    config = compile_config(parse_toml(text))
    assert (config.default_provider, config.default_model) == ("local", "qwen")


def test_default_provider_is_the_first_tier_when_nothing_names_one() -> None:
    config = compile_config(parse_toml(BASE.replace('default_provider = "cline"\n', "").replace(
        'chain = ["cline", "local"]', 'chain = ["local", "cline"]')))
    assert (config.default_provider, config.default_model, config.chain) == ("local", None, ("local", "cline"))


def test_rule_without_priority_counts_as_50_and_rules_sort_stably() -> None:
    text = BASE + "".join(f'[[routing.rules]]\nname = "{name}"\nprovider = "cline"\n{extra}'
                          for name, extra in [("a", ""), ("b", "priority = 60\n"), ("c", ""), ("d", "priority = 10\n")])
    config = compile_config(parse_toml(text))
    assert [(rule.name, rule.priority) for rule in config.rules] == [("b", 60), ("a", 50), ("c", 50), ("d", 10)]


def test_rule_target_from_model_alone() -> None:
    config = compile_config(parse_toml(BASE + '[[routing.rules]]\nname = "r"\nmodel = "qwen"\n'))
    assert (config.rules[0].provider, config.rules[0].model) == ("local", "qwen")


def test_the_shipped_config_loads() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.default_provider == "antigravity"
    assert config.chain == ("antigravity", "copilot", "cline", "opencode", "local")
    assert config.timezone == "Europe/Berlin"


def test_every_error_site_gets_a_did_you_mean_only_for_near_misses() -> None:
    assert problems_of(BASE + '[[routing.rules]]\nname = "r"\nprovider = "cline"\nmodle = "x"\n') == [
        'routing.rules[0] (name="r"): unknown key "modle" (did you mean "model"?)']


# --- locations -----------------------------------------------------------------------------------------------

RAW: dict[str, Any] = {"routing": {"rules": [{"name": "a"}, {"name": "b"}, {"name": "docs-haiku"}, {"name": "c"}]},
                       "providers": {"my.provider": {"accounts": [{"name": "work"}]}},
                       "scenarios": [{"name": "s", "expect": {}}]}


@pytest.mark.parametrize(("loc", "text"), [
    ((), "(top level)"),
    (("routing", "rules", 3, "conditions", "retry_count", "gte"),
     'routing.rules[3] (name="c") → conditions → retry_count → gte'),
    (("routing", "rules", 2), 'routing.rules[2] (name="docs-haiku")'),
    (("routing", "timezone"), "routing → timezone"),
    (("routing", "intake", "priority_labels", "priority:P0"), 'routing.intake → priority_labels → priority:P0'),
    (("providers", "my.provider", "command_template", 2), 'providers."my.provider" → command_template[2]'),
    (("providers", "my.provider", "accounts", 0, "quota", "reset"),
     'providers."my.provider".accounts[0] (name="work").quota → reset'),
    (("providers", "x", "models", "claude-sonnet-4.6", "context_window"),
     'providers.x.models."claude-sonnet-4.6" → context_window'),
    (("scenarios", 0, "expect", "rule"), 'scenarios[0] (name="s") → expect → rule'),
    (("llm", "model_default"), "llm → model_default"),
])
def test_format_loc(loc: tuple[str | int, ...], text: str) -> None:
    assert format_loc(loc, RAW) == text


def test_format_loc_without_the_document_has_no_names() -> None:
    assert format_loc(("routing", "rules", 3, "conditions")) == "routing.rules[3] → conditions"


def test_fields_at_follows_the_schema() -> None:
    assert fields_at(Config, ("routing", "rules", 0)) == list(RuleConfig.model_fields)
    assert fields_at(Config, ("providers", "x", "failure_patterns", 0)) == ["regex", "class"]
    assert fields_at(Config, ("routing", "timezone")) is None


# --- the older format ----------------------------------------------------------------------------------------

WEDNESDAY_1PM = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)
WEDNESDAY_11PM = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)


@pytest.fixture
def legacy_router() -> ModelRouter:
    return ModelRouter(load_config(LEGACY), availability=Availability(which=lambda name: "/bin/" + name))


def test_legacy_config_loads() -> None:
    config = load_config(LEGACY)
    assert [(rule.name, rule.priority) for rule in config.rules] == [
        ("urgent-bugs", 50), ("retries-to-gemini", 50), ("night-docs", 50), ("first-retry", 50)]
    assert config.chain == ("claude", "gemini", "ollama")
    assert config.enabled is True


def test_legacy_placeholders_become_jinja() -> None:
    providers = load_config(LEGACY).providers
    # One string, split into words (never given to a shell).
    assert providers["claude"].command == (
        "claude", "-p", "--model", "{{ model }}", "--output-format", "json", "--output", "{{ output_file }}",
        "{{ prompt_file }}")
    assert providers["claude"].executable == "claude"
    assert providers["gemini"].command == ("gemini", "--model={{ model }}", "--prompt-file", "{{ prompt_file }}")
    assert providers["ollama"].command == ("ollama", "run", "{{ model }}")


def test_legacy_defaults_come_from_llm() -> None:
    config = load_config(LEGACY)
    assert (config.default_provider, config.default_model) == ("claude", "sonnet")


@pytest.mark.parametrize(("task", "now", "rule", "plan"), [
    ({"title": "Hello"}, WEDNESDAY_1PM, "default", [("claude", "sonnet"), ("gemini", None), ("ollama", None)]),
    ({"title": "Login fails", "labels": ["bug", "priority:P0"]}, WEDNESDAY_1PM, "urgent-bugs",
     [("claude", "opus"), ("gemini", None), ("ollama", None)]),
    ({"title": "Login fails", "labels": ["bug"]}, WEDNESDAY_1PM, "default",
     [("claude", "sonnet"), ("gemini", None), ("ollama", None)]),
    ({"title": "Flaky", "retry_count": 2}, WEDNESDAY_1PM, "retries-to-gemini", [("gemini", None), ("ollama", None)]),
    ({"title": "Flaky", "retry_count": 1}, WEDNESDAY_1PM, "first-retry",
     [("claude", "haiku"), ("gemini", None), ("ollama", None)]),
    ({"title": "Update README", "labels": ["Documentation"]}, WEDNESDAY_11PM, "night-docs", [("ollama", "llama3")]),
    ({"title": "Update README", "labels": ["Documentation"]}, WEDNESDAY_1PM, "default",
     [("claude", "sonnet"), ("gemini", None), ("ollama", None)]),
])
def test_legacy_config_routes(legacy_router: ModelRouter, task: dict[str, Any], now: datetime, rule: str,
                              plan: list[tuple[str, str | None]]) -> None:
    decision = legacy_router.route(task, now=now)
    assert decision.rule == rule
    assert [(step.provider, step.model) for step in decision.plan] == plan
    assert decision.skipped == []


def test_legacy_task_without_priority_matches_no_priority_condition() -> None:
    # The older router: a task without a priority matched no priority condition (issue 11, item 8). Only a
    # declared default_priority gives it one.
    rule = ('[[routing.rules]]\nname = "normal-work"\nconditions = { priority = ["high", "normal"] }\n'
            'provider = "gemini"\n[[routing.rules]]\nname = "not-low"\nconditions = { priority = { ne = "low" } }\n'
            'provider = "gemini"\n')
    text = LEGACY.read_text(encoding="utf-8") + rule
    router = ModelRouter(compile_config(parse_toml(text)), availability=Availability(which=lambda name: "/bin/" + name))
    assert router.route({"title": "Hello"}, now=WEDNESDAY_1PM).rule == "default"
    assert router.route({"title": "Hello", "labels": ["priority:P2"]}, now=WEDNESDAY_1PM).rule == "normal-work"
    declared = text.replace("[routing]\n", '[routing.intake]\ndefault_priority = "normal"\n\n[routing]\n', 1)
    router = ModelRouter(compile_config(parse_toml(declared)),
                         availability=Availability(which=lambda name: "/bin/" + name))
    assert router.route({"title": "Hello"}, now=WEDNESDAY_1PM).rule == "normal-work"


def test_legacy_string_command_with_an_unclosed_quote_is_reported() -> None:
    text = '[providers.x]\ncommand_template = "x --name \'oops"\n'
    assert problems_of(text) == [
        'providers.x → command_template: cannot split "x --name \'oops" into words (No closing quotation); write the '
        "command as an array with one string per argument"]


LOCAL_COMMAND = 'command_template = ["ollama", "run", "{{ model }}"]'


@pytest.mark.parametrize(("command", "words"), [
    ("ollama run {{ model }}", ("ollama", "run", "{{ model }}")),
    ("x --v={{ 'hi' if budget > 1 else 'lo' }} \"a b\" {% if budget %}-q{% endif %}",
     ("x", "--v={{ 'hi' if budget > 1 else 'lo' }}", "a b", "{% if budget %}-q{% endif %}")),
    ("claude -p --model {model} {prompt_file}", ("claude", "-p", "--model", "{{ model }}", "{{ prompt_file }}")),
    ("x a\ue0000\ue001b", ("x", "a\ue0000\ue001b")),  # the marker character itself, in a command without tags
], ids=["expression with spaces", "quotes and statements", "older placeholders", "the hold marker as text"])
def test_a_command_written_as_one_string_keeps_each_jinja_tag_in_one_word(command: str, words: tuple[str, ...]) -> None:
    text = BASE.replace(LOCAL_COMMAND, f"command_template = {toml_value(command)}") + \
        "[providers.local.vars]\nbudget = 1\n"
    assert compile_config(parse_toml(text)).providers["local"].command == words


def test_a_tag_cut_by_splitting_a_one_string_command_says_how_it_was_split() -> None:
    text = BASE.replace(LOCAL_COMMAND, 'command_template = "ollama run {{ model"')
    assert problems_of(text) == [
        "providers.local → command_template[2]: template '{{' does not parse: unexpected 'end of template'; "
        "command_template is one string, split on whitespace into words (shell rules, each whole {{ … }} or "
        "{% … %} kept in one word), and word 3 is '{{': write the command as an array with one string per argument"]


def test_legacy_routing_disabled_uses_the_defaults() -> None:
    text = LEGACY.read_text(encoding="utf-8").replace("enabled = true", "enabled = false")
    router = ModelRouter(compile_config(parse_toml(text)), availability=Availability(which=lambda name: "/bin/" + name))
    decision = router.route({"title": "Login fails", "labels": ["bug", "priority:P0"]}, now=WEDNESDAY_1PM)
    assert decision.rule == "default"
    assert [(step.provider, step.model) for step in decision.plan] == [
        ("claude", "sonnet"), ("gemini", None), ("ollama", None)]


@pytest.mark.parametrize(("word", "choices", "meant", "hint"), [
    ("documents", ["large_document", "docs"], (), "docs"),  # difflib alone: large_document; typos keep the start
    ("documents", ["large_document", "docs"], ("large_document",), "large_document"),  # what the place names wins
    ("documents", ["large_document", "docs"], ("architecture",), "docs"),  # ... only when it is a near miss
    ("colour", ["code"], ("code",), ""),  # never a name that is not a near miss
    ("Code", ["code", "cod"], ("cod",), "code"),  # a choice differing only in case first
])
def test_a_suggestion_is_what_the_maintainer_most_likely_meant(word: str, choices: list[str], meant: tuple[str, ...],
                                                               hint: str) -> None:
    assert suggest(word, choices, meant) == (f' (did you mean "{hint}"?)' if hint else "")


def test_timezone_in_the_wrong_case_gets_a_suggestion() -> None:
    assert problems_of(BASE.replace('[routing]\n', '[routing]\ntimezone = "europe/berlin"\n', 1)) == [
        'routing → timezone: unknown timezone "europe/berlin" (did you mean "Europe/Berlin"?)']


def test_attr_instead_of_attrs_gets_a_suggestion() -> None:
    text = BASE + '[[routing.rules]]\nname = "r"\nprovider = "local"\nconditions = { "attr.offline" = true }\n'
    [problem] = problems_of(text)
    assert problem.startswith('routing.rules[0] (name="r") → conditions → "attr.offline": unknown condition '
                              '"attr.offline" (did you mean "attrs.offline"?); allowed: ')


def test_a_bad_class_does_not_hide_a_bad_regex_in_the_same_pattern() -> None:
    text = X + 'failure_patterns = [{ regex = "(oops", class = "rate-limited" }]\n'
    assert problems_of(text) == [
        'providers.x.failure_patterns[0] → class: expected "success", "rate_limited", "quota_exhausted", "auth", '
        '"context_overflow", "timeout", "crashed", "error", "bad_output", "unavailable" or "verify_failed", '
        'got "rate-limited" '
        '(did you mean "rate_limited"?)',
        'providers.x.failure_patterns[0] → regex: bad regex "(oops": missing ), unterminated subpattern at '
        "position 0",
    ]


def test_cron_expressions_that_never_fire_are_refused() -> None:
    text = BASE + ('[[routing.rules]]\nname = "r"\nprovider = "local"\nconditions = { schedule = "0 0 30 2 *" }\n'
                   '[providers.local.quota]\ntokens = 5\nreset = "* * 31 4 *"\n')
    assert problems_of(text) == [
        'routing.rules[0] (name="r") → conditions → schedule: "0 0 30 2 *" never fires: no date matches it '
        "(failed to find next date)",
        'providers.local.quota → reset: "* * 31 4 *" never fires: no date matches it (failed to find next date)',
    ]


def test_tables_left_out_default_to_what_validating_them_empty_gives() -> None:
    """A table's default is `Model.model_construct` (no validator is built for it): it must be exactly the
    model validated from an empty table, validators included."""
    from pydantic import BaseModel

    from adws.config import schema

    found = 0
    for model in vars(schema).values():
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for info in model.model_fields.values():
            factory = info.default_factory
            if getattr(factory, "__name__", "") == "model_construct":
                owner = factory.__self__  # type: ignore[union-attr]
                made, validated = factory(), owner.model_validate({})  # type: ignore[call-arg]
                assert made == validated and made.model_fields_set == validated.model_fields_set == set()
                found += 1
    assert found >= 8


def test_the_output_formats_config_accepts_are_the_parsers() -> None:
    from adws.config.schema import OUTPUT_FORMATS
    from adws.parsers import PARSERS

    assert list(OUTPUT_FORMATS) == list(PARSERS)


def test_validating_a_config_imports_no_parser() -> None:
    """Config validation names the output formats without importing the parsers (start-up of a first run)."""
    import subprocess
    import sys

    code = ("import sys; from adws.config.load import load_file; load_file('config.toml'); "
            "print(sorted(m for m in sys.modules if m.startswith('adws.parsers')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
