"""Hostile and careless configs (issue 9): each is refused at load with one exact line naming its place, never
accepted to crash at run time, never a traceback or a hang. Also nested attribute paths (issue 15) and the JSON
Schema agreeing with `adws check`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from adws.config.load import compile_config, load_file, parse_toml
from adws.config.schema import Config
from adws.errors import ConfigError
from adws.router import ModelRouter
from tests.helpers import ROOT, config_problems

X = '[providers.x]\ncommand_template = ["x", "{{ prompt_file }}"]\n'
RULE = '[[routing.rules]]\nname = "r"\nprovider = "x"\n'
LINEAR = "adws matches user regexes in linear time with RE2, which has no backreferences, lookahead or lookbehind"

# name -> (config text, every problem `adws check` reports)
HOSTILE: dict[str, tuple[str, list[str]]] = {
    "timeout = inf": (X + "timeout = inf\n", ["providers.x → timeout: expected a finite number, got inf"]),
    "timeout = 1e12 with max_concurrency": (X + "timeout = 1e12\nmax_concurrency = 2\n",
                                            ["providers.x → timeout: must be <= 604800, got 1000000000000"]),
    "chars_per_token = 1e-320": (X + "[routing.intake]\nchars_per_token = 1e-320\n",
                                 ["routing.intake → chars_per_token: must be >= 0.1, got 1e-320"]),
    "infinite backoff": (X + "[routing.retry]\nbackoff_seconds = inf\nmax_backoff_seconds = 1e300\n"
                         "backoff_factor = 1e10\n",
                         ["routing.retry → backoff_seconds: expected a finite number, got inf",
                          "routing.retry → backoff_factor: must be <= 100, got 10000000000",
                          "routing.retry → max_backoff_seconds: must be <= 86400, got 1e+300"]),
    "command_template = [\"\"]": ('[providers.x]\ncommand_template = [""]\nprompt = "stdin"\n',
                                  ["providers.x → command_template[0]: the program to run is empty"]),
    "env value with NUL": (X + 'env = { A = "a\\u0000b" }\n',
                           ["providers.x → env → A: holds a NUL character, which no program or environment can "
                            "carry"]),
    "NUL in a rule's vars (it would reach argv and blame the task text)": (
        '[providers.x]\ncommand_template = ["x", "{{ flag }}", "{{ prompt_file }}"]\nvars = { flag = "" }\n' + RULE
        + 'vars = { flag = "-\\u0000" }\n',
        ['routing.rules[0] (name="r") → vars → flag: holds a NUL character, which no program or environment can '
         "carry"]),
    "NUL in an account name (it becomes ADWS_ACCOUNT)": (
        X + '[[providers.x.accounts]]\nname = "a\\u0000"\n',
        ['providers.x.accounts[0] (name="a\\u0000") → name: holds a NUL character, which no program or '
         "environment can carry"]),
    "env name with =": (X + 'env = { "A=B" = "x" }\n',
                        ["providers.x → env → A=B: an environment variable name must be non-empty and without `=`"]),
    "{{ task.titel }}": ('[providers.x]\ncommand_template = ["x", "{{ task.titel }}", "{{ prompt_file }}"]\n',
                         ["providers.x → command_template[1]: template '{{ task.titel }}' cannot be rendered "
                          "(a sample task): 'dict object' has no attribute 'titel' (did you mean \"title\"?)"]),
    "{{ task.attrs.repo }}, which a task may lack": (
        '[providers.x]\ncommand_template = ["x", "--repo={{ task.attrs.repo }}", "{{ prompt_file }}"]\n',
        ["providers.x → command_template[1]: template '--repo={{ task.attrs.repo }}' cannot be rendered (a sample "
         "task): 'dict object' has no attribute 'repo'; give a default for what a task may lack (`| default(\"\")`)"]),
    "{{ model.__class__ }}": ('[providers.x]\ncommand_template = ["x", "{{ model.__class__ }}", '
                              '"{{ prompt_file }}"]\nmodels.m = { context_window = 1000 }\n',
                              ["providers.x → command_template[1]: template '{{ model.__class__ }}' cannot be "
                               "rendered (model 'm', a sample task): access to attribute '__class__' of 'str' "
                               "object is unsafe."]),
    "{{ model }} in a tier that declares no models": (
        '[providers.x]\ncommand_template = ["x", "--model", "{{ model }}", "{{ prompt_file }}"]\n',
        ["providers.x → command_template[2]: uses {{ model }} but the provider declares no models, so a run that "
         "reaches it as a fall-through tier has no model to give; declare [providers.x.models.ID] or take "
         "{{ model }} out"]),
    "{{ task.number + 1 }} on a task without a number": (
        '[providers.x]\ncommand_template = ["x", "{{ task.number + 1 }}", "{{ prompt_file }}"]\n',
        ["providers.x → command_template[1]: template '{{ task.number + 1 }}' cannot be rendered (a task with no "
         "optional fields): unsupported operand type(s) for +: 'NoneType' and 'int'"]),
    "rule vars of another type than the template compares": (
        '[providers.x]\ncommand_template = ["x", "{% if budget > 1000 %}--think{% endif %}", "{{ prompt_file }}"]\n'
        'vars = { budget = 0 }\n' + RULE + 'vars = { budget = "high" }\n',
        ['routing.rules[0] (name="r") → vars: provider "x": template \'{% if budget > 1000 %}--think{% endif %}\' '
         "cannot be rendered (a sample task): '>' not supported between instances of 'str' and 'int'"]),
    "unquoted TOML date in a condition": (
        X + RULE + 'conditions = { "attrs.due" = 2026-12-05 }\n',
        ['routing.rules[0] (name="r") → conditions → "attrs.due": 2026-12-05 is a TOML date, and a task from JSON '
         'never holds one: write it as a string, "2026-12-05"']),
    "TOML date in an in-list": (
        X + RULE + 'conditions = { "attrs.due" = { in = [2026-12-05] } }\n',
        ['routing.rules[0] (name="r") → conditions → "attrs.due" → in: 2026-12-05 is a TOML date, and a task from '
         'JSON never holds one: write it as a string, "2026-12-05"']),
    "nan bound": (X + RULE + 'conditions = { "attrs.size" = { gt = nan } }\n',
                  ['routing.rules[0] (name="r") → conditions → "attrs.size" → gt: expected a number, got nan']),
    "backreference in an attrs regex": (
        X + RULE + 'conditions = { "attrs.repo" = { regex = "(a)\\\\1" } }\n',
        ['routing.rules[0] (name="r") → conditions → "attrs.repo" → regex: bad regex "(a)\\\\1": invalid escape '
         f"sequence: \\1 ({LINEAR})"]),
    "lookahead in a failure pattern": (
        X + 'failure_patterns = [{ regex = "(?=limit)", class = "rate_limited" }]\n',
        [f'providers.x.failure_patterns[0] → regex: bad regex "(?=limit)": invalid perl operator: (?= ({LINEAR})']),
    "an empty part in an attribute path": (
        X + RULE + 'conditions = { "attrs.author..login" = "x" }\n',
        ['routing.rules[0] (name="r") → conditions → "attrs.author..login": "attrs.author..login" has an empty '
         "part in its path; write attrs.NAME or attrs.NAME.FIELD"]),
    # One problem, one message: no "no command template reads t" after the template that reads it is broken.
    "a Jinja syntax error is reported once": (
        '[providers.x]\ncommand_template = ["x", "{{ prompt_file }", "{% if t %}-t{% endif %}"]\n'
        'vars = { t = false }\n' + RULE + 'vars = { t = true }\n',
        ["providers.x → command_template[1]: template '{{ prompt_file }' does not parse: unexpected '}'"]),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_config_is_refused_with_one_exact_line(name: str) -> None:
    text, expected = HOSTILE[name]
    assert config_problems(text) == expected


@pytest.mark.parametrize("text", [
    X + "[providers.x.vars]\na = " + "[" * 500 + "]" * 500 + "\n",
    X + RULE + 'conditions = { "attrs.a" = ' + "{ b = " * 500 + "1" + " }" * 500 + " }\n",
    X + "[providers.x.vars]\na = " + "[" * 40 + "]" * 40 + "\n",
])
def test_a_config_nested_hundreds_deep_is_one_line_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_config(parse_toml(text))
    [problem] = info.value.problems
    assert problem.where == "" and "a config needs at most 32 levels of tables and arrays" in problem.message


def test_catastrophic_regexes_run_in_linear_time() -> None:
    # `(a+)+$` takes Python's re exponential time in the length of a near miss; RE2 answers at once.
    text = X + 'failure_patterns = [{ regex = "(a+)+$", class = "error" }]\n' + RULE + \
        'conditions = { "attrs.name" = { regex = "(a+)+$" } }\n'
    config = compile_config(parse_toml(text))
    hostile = "a" * 5000 + "!"
    assert config.providers["x"].failure_patterns[0].regex.search(hostile) is None
    router = ModelRouter(config)
    assert router.route({"attrs": {"name": hostile}}).rule == "default"
    assert router.route({"attrs": {"name": "aaaa"}}).rule == "r"
    assert router.route({"attrs": {"name": "\ud800aa"}}).rule == "r"  # a lone surrogate is not a crash


def test_failure_patterns_are_compiled_once_at_load_and_carried_by_the_provider() -> None:
    config = compile_config(parse_toml(X + 'failure_patterns = [{ regex = "Overloaded", class = "unavailable" }]\n'
                                       "[providers.x.actions]\nunavailable = \"retry\"\n[routing.actions]\n"
                                       'error = "stop"\n'))
    provider = config.providers["x"]
    assert provider.failure_patterns[0].regex.search("server OVERLOADED") is not None  # case-insensitive
    assert len(provider.failure_patterns) > 1  # the built-in patterns follow the provider's own
    assert provider.actions["unavailable"] == "retry" and provider.actions["error"] == "stop"  # type: ignore[index]
    assert provider.actions["timeout"] == "next_tier"  # type: ignore[index]


# --- nested attribute paths (issue 15) ------------------------------------------------------------------------

GH_CONFIG = X + RULE + ('conditions = { "attrs.author.login" = "octocat", '
                         '"attrs.milestone.title" = { regex = "^v2" } }\n')


def test_dotted_attribute_paths_match_nested_github_fields() -> None:
    router = ModelRouter(compile_config(parse_toml(GH_CONFIG)))
    issue = {"number": 7, "title": "x", "author": {"login": "octocat", "is_bot": False},
             "milestone": {"title": "v2.1"}}
    assert router.route(issue).rule == "r"
    assert router.route({**issue, "author": {"login": "hubot"}}).rule == "default"
    assert router.route({**issue, "milestone": None}).rule == "default"
    # A number indexes a list: gh prints assignees as a list of objects.
    first = ModelRouter(compile_config(parse_toml(X + RULE + 'conditions = { "attrs.assignees.0.login" = "a" }\n')))
    assert first.route({"assignees": [{"login": "a"}, {"login": "b"}]}).rule == "r"
    assert first.route({"assignees": []}).rule == "default"
    # A flat key holding the dots is taken first, so coordinators that flatten keep working.
    assert router.route({"attrs": {"author.login": "octocat", "milestone": {"title": "v2"}}}).rule == "r"


def test_explain_shows_the_value_found_at_the_path() -> None:
    router = ModelRouter(compile_config(parse_toml(GH_CONFIG)))
    trace = router.explain({"author": {"login": "hubot"}}, now=datetime(2026, 1, 1, tzinfo=UTC)).traces[0]
    assert (trace.condition, trace.actual, trace.expected) == ("attrs.author.login", "'hubot' at author.login",
                                                               "== 'octocat'")
    trace = router.explain({"title": "no author"}).traces[0]
    assert trace.actual == "(missing) at author.login"


# --- line numbers ----------------------------------------------------------------------------------------------

def test_config_errors_carry_the_line_of_their_place(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(X + "timeout = inf\n\n" + RULE + '\n[[routing.rules]]\nname = "s"\nprovider = "x"\n'
                    '[routing.rules.conditions]\n"attrs.a" = { regx = "b" }\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert [(p.line, str(p)) for p in info.value.problems] == [
        (3, "providers.x → timeout: expected a finite number, got inf"),
        (13, 'routing.rules[1] (name="s") → conditions → "attrs.a" → regx: unknown operator "regx" (did you mean '
             '"regex"?); allowed: eq, ne, gt, gte, lt, lte, in, not_in, regex, exists'),
    ]
    assert info.value.render().splitlines()[2] == f"  {path}:13: " + str(info.value.problems[1])


# --- the JSON Schema agrees with `adws check` ------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = Config.model_json_schema(by_alias=True)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", [ROOT / "config.toml", ROOT / "tests/data/configs/legacy.toml"])
def test_shipped_and_older_format_configs_validate_against_the_schema(
        validator: jsonschema.Draft202012Validator, path: Path) -> None:
    raw = parse_toml(path.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(json.loads(json.dumps(raw, default=str)))) == []


@pytest.mark.parametrize("snippet", [
    RULE + 'conditions = { retry_cont = 1 }\n',  # unknown condition key
    RULE + 'conditions = { retry_count = { gtee = 1 } }\n',  # unknown operator
    RULE + 'conditions = { "attrs.a" = { regx = "b" } }\n',  # unknown attrs operator
    RULE + 'conditions = { priority = "urgent" }\n',  # not a priority
    'output_format = "claude-jsn"\n',
    'account_strategy = "roundrobin"\n',
    '[state]\nbackend = "sqlit"\n',
    '[routing.actions]\nrate_limted = "next_tier"\n',
    '[routing.actions]\ntimeout = "skip"\n',
    'failure_patterns = [{ regex = "x", class = "ratelimited" }]\n',
])
def test_known_bad_keys_fail_the_schema_and_check(validator: jsonschema.Draft202012Validator, snippet: str) -> None:
    raw = parse_toml(X + snippet)
    assert list(validator.iter_errors(raw)) != []
    with pytest.raises(ConfigError):
        compile_config(raw)


def test_old_one_string_command_template_is_in_the_schema(validator: jsonschema.Draft202012Validator) -> None:
    raw: dict[str, Any] = {"providers": {"x": {"command_template": "x --flag {prompt_file}"}}}
    assert list(validator.iter_errors(raw)) == []


def test_task_error_lists_every_problem_of_the_task_at_once() -> None:
    from adws.errors import TaskError

    router = ModelRouter(compile_config(parse_toml(X)))
    with pytest.raises(TaskError) as info:
        router.route({"priority": "urgentt", "specialization": "codee", "labels": ["route:y"]})
    assert info.value.problems == [
        'priority: unknown value "urgentt"; use critical, high, normal, low, P0-P3 or 0-3',
        'specialization: unknown value "codee" (did you mean "code"?); known: architecture, code, docs, '
        "fast_response, general, large_document, reasoning",
        'label "route:y": unknown provider "y"; providers: x']
    assert str(info.value) == "invalid task: " + "; ".join(info.value.problems)  # one message listing them all
    with pytest.raises(TaskError) as info:
        router.route({"title": 5, "retry_count": -1, "labels": "bug", "colour": "red"})
    assert info.value.problems == [
        'unknown field "colour" (fields of your own go under "attrs")', "labels: expected an array, got a string",
        "title: expected a string, got an integer",
        "retry_count: must be >= 0, got -1"]


def test_a_broken_intake_section_does_not_make_its_specializations_unknown_elsewhere() -> None:
    text = X + ('[routing.intake]\nspecialization_labels = { "sec" = "security" }\ndefault_priorty = "low"\n'
                + RULE + 'conditions = { specialization = "security" }\n')
    assert config_problems(text) == ['routing.intake: unknown key "default_priorty" (did you mean "default_priority"?)']


def test_a_file_whose_every_provider_is_broken_still_gets_the_rest_checked() -> None:
    # Its only provider left out for a type error, the file used to stop there: the timezone's and the default
    # provider's typos surfaced one edit later. Now one run names them all.
    text = ('[routing]\ntimezone = "Europe/Berln"\ndefault_provider = "x2"\n'
            '[providers.x]\ncommand_template = ["x"]\n[providers.x.models.m]\ncontext_window = "8000"\n')
    assert config_problems(text) == [
        'providers.x.models.m → context_window: expected an integer, got "8000"',
        'routing → timezone: unknown timezone "Europe/Berln" (did you mean "Europe/Berlin"?)',
        'routing → default_provider: unknown provider "x2" (did you mean "x"?); providers: x',
    ]
