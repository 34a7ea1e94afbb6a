"""Command templates: older `{placeholder}` elements become Jinja, templates are checked at load with exact
messages, and rendering keeps task text literal, drops empty elements and refuses sandbox escapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adws.config.load import compile_config, parse_toml
from adws.errors import ConfigError, RenderError
from adws.templates import (
    BUILTIN_VARIABLES,
    _given_size,
    check_template,
    from_legacy,
    render_argv,
    render_env,
    render_one,
)

ALLOWED = sorted(BUILTIN_VARIABLES)
ONE_OF = ", ".join(ALLOWED)

BEYOND = " beyond what the template was given"  # what every growth bound's message ends with


@pytest.mark.parametrize(("element", "jinja"), [
    ("{prompt_file}", "{{ prompt_file }}"),
    ("--file={prompt_file}", "--file={{ prompt_file }}"),
    ("{model}:{account}", "{{ model }}:{{ account }}"),
    ("--title={task.title}", "--title={{ task.title }}"),
    ("--out", "--out"),
    ("{{ model }}", "{{ model }}"),  # already Jinja: left alone
    ("{model} {{ prompt }}", "{model} {{ prompt }}"),  # an element with Jinja in it is not translated
    ("{% if model %}-m{% endif %}", "{% if model %}-m{% endif %}"),
    ('--json={"a": 1}', '--json={"a": 1}'),  # not a placeholder: JSON stays as it is
    ("{ model }", "{ model }"),
    ("{1st}", "{1st}"),
    ("{}", "{}"),
])
def test_from_legacy(element: str, jinja: str) -> None:
    assert from_legacy(element) == jinja


def test_legacy_placeholders_render_like_the_older_format() -> None:
    sources = [from_legacy(e) for e in ["claude", "-p", "--model", "{model}", "--output", "{output_file}",
                                        "{prompt_file}"]]
    assert render_argv(sources, {"model": "sonnet", "output_file": "/run/out.json", "prompt_file": "/run/p.md"}) == [
        "claude", "-p", "--model", "sonnet", "--output", "/run/out.json", "/run/p.md"]


@pytest.mark.parametrize("source", [
    "plain",
    "{{ prompt }}",
    "--model={{ model }}",
    "{{ task.title }}",
    "{% if thinking_budget %}--thinking={{ thinking_budget }}{% endif %}",
    "{% set n = 1 %}{{ n }}{% for label in task.labels %}{{ label }}{% endfor %}",
    "{{ prompt | length }}",
])
def test_check_template_accepts(source: str) -> None:
    assert check_template(source, [*ALLOWED, "thinking_budget"]) is None


@pytest.mark.parametrize(("source", "allowed", "message"), [
    ("{{ promt }}", ALLOWED,
     f"template '{{{{ promt }}}}' uses unknown variable \"promt\" (did you mean \"prompt\"?); declare it in the "
     f"provider's `vars` or use one of: {ONE_OF}"),
    ("{{ a }}{{ b }}", ["x"],
     "template '{{ a }}{{ b }}' uses unknown variables \"a\", \"b\"; declare them in the provider's `vars` or use "
     "one of: x"),
    ("{% if thinking_budget %}--t{% endif %}", ALLOWED,
     "template '{% if thinking_budget %}--t{% endif %}' uses unknown variable \"thinking_budget\"; declare it in "
     f"the provider's `vars` or use one of: {ONE_OF}"),
    ("{{ prompt ", ALLOWED,
     "template '{{ prompt ' does not parse: unexpected end of template, expected 'end of print statement'"),
    ("{{ prompt }", ALLOWED, "template '{{ prompt }' does not parse: unexpected '}'"),
    ("{% for x in y %}", ["y"],
     "template '{% for x in y %}' does not parse: Unexpected end of template. Jinja was looking for the following "
     "tags: 'endfor' or 'else'. The innermost block that needs to be closed is 'for'"),
    ("{{ prompt | shout }}", ALLOWED, "template '{{ prompt | shout }}' does not parse: No filter named 'shout'"),
    # Inside {% if %} Jinja itself would only notice at render time.
    ("{% if prompt is shouting %}x{% endif %}", ALLOWED,
     "template '{% if prompt is shouting %}x{% endif %}' does not parse: No test named 'shouting'"),
    ("{% if prompt | shout %}x{% endif %}", ALLOWED,
     "template '{% if prompt | shout %}x{% endif %}' does not parse: No filter named 'shout'"),
])
def test_check_template_refuses(source: str, allowed: list[str], message: str) -> None:
    assert check_template(source, allowed) == message


VARIABLES: dict[str, Any] = {
    "prompt": "Fix the bug", "prompt_file": "/run/prompt.md", "model": "sonnet", "provider": "claude",
    "account": None, "thinking_budget": 0, "task": {"title": "{{ 7*7 }}", "number": 7, "labels": ["bug"]},
}


def test_render_argv_drops_elements_that_render_empty() -> None:
    sources = ["claude", "-p", "{% if thinking_budget %}--thinking={{ thinking_budget }}{% endif %}", "{{ prompt }}",
               "{{ account or '' }}", " "]
    assert render_argv(sources, VARIABLES) == ["claude", "-p", "Fix the bug", " "]  # whitespace is not empty
    assert render_argv(sources, {**VARIABLES, "thinking_budget": 16000, "account": "work"}) == [
        "claude", "-p", "--thinking=16000", "Fix the bug", "work", " "]


@pytest.mark.parametrize("text", ["{{ 7*7 }}", "; rm -rf ~", "$(reboot)", "`id`", "{% raw %}", "a\nb", "'\"", ""])
def test_task_text_reaches_argv_literally(text: str) -> None:
    variables = {**VARIABLES, "prompt": text, "task": {"title": text}}
    assert render_argv(["agent", "{{ prompt }}", "--title={{ task.title }}"], variables) == [
        "agent", *([text] if text else []), f"--title={text}"]


def test_issue_titled_like_a_template_is_not_evaluated() -> None:
    assert render_argv(["{{ task.title }}"], VARIABLES) == ["{{ 7*7 }}"]


def test_no_html_escaping_and_trailing_newline_kept() -> None:
    assert render_one("{{ prompt }}", {"prompt": "<b>&amp;</b> \"q\"\n"}) == "<b>&amp;</b> \"q\"\n"
    assert render_one("x\n", {}) == "x\n"


@pytest.mark.parametrize(("source", "message"), [
    ("{{ ''.__class__.__mro__ }}",
     "cannot render \"{{ ''.__class__.__mro__ }}\": access to attribute '__class__' of 'str' object is unsafe."),
    ("{{ task.__class__ }}", "cannot render '{{ task.__class__ }}': access to attribute '__class__' of 'dict' "
                             "object is unsafe."),
    ("{{ prompt.__len__() }}", "cannot render '{{ prompt.__len__() }}': access to attribute '__len__' of 'str' "
                               "object is unsafe."),
    ("{{ prompt | attr('__class__') }}", "cannot render \"{{ prompt | attr('__class__') }}\": access to attribute "
                                         "'__class__' of 'str' object is unsafe."),
    ("{{ lipsum.__globals__ }}", "cannot render '{{ lipsum.__globals__ }}': access to attribute '__globals__' of "
                                 "'function' object is unsafe."),
    ("{{ range(10**6) | list }}", "cannot render '{{ range(10**6) | list }}': Range too big. The sandbox blocks "
                                  "ranges larger than MAX_RANGE (100000)."),
])
def test_sandbox_refuses(source: str, message: str) -> None:
    with pytest.raises(RenderError) as info:
        render_argv(["agent", source], VARIABLES)
    assert str(info.value) == message


@pytest.mark.parametrize(("source", "message"), [
    ("{{ nope }}", "cannot render '{{ nope }}': 'nope' is undefined"),
    ("{{ task.nope }}", "cannot render '{{ task.nope }}': 'dict object' has no attribute 'nope'"),
    ("{{ 1 / 0 }}", "cannot render '{{ 1 / 0 }}': division by zero"),
    ("{{ prompt + 1 }}", "cannot render '{{ prompt + 1 }}': can only concatenate str (not \"int\") to str"),
    ("{{ prompt | shout }}", "cannot render '{{ prompt | shout }}': No filter named 'shout'."),
])
def test_every_render_failure_is_a_render_error(source: str, message: str) -> None:
    with pytest.raises(RenderError) as info:
        render_one(source, VARIABLES)
    assert str(info.value) == message


def test_render_env() -> None:
    env = render_env({"XDG_DATA_HOME": "{{ home }}/.local/share/{{ account }}", "TIER": "one"},
                     {"home": "/home/u", "account": "ag-1"})
    assert env == {"XDG_DATA_HOME": "/home/u/.local/share/ag-1", "TIER": "one"}


@pytest.mark.parametrize(("source", "why"), [
    ('{{ "x" * 1000000000 }}', "a repetition of more than 1,000,000 items"),
    ("{{ 10**9 * [1] }}", "a repetition of more than 1,000,000 items"),
    ("{{ 2 ** 1000000 }}", "a power of more than 100,000 bits"),
    ('{{ "x" | center(1000000000) }}', "a width of more than 1,000,000 characters"),
    ('{{ "%0999999999d" | format(1) }}', "a width of more than 1,000,000 characters"),
    ('{{ "%.99999999999999f" % 1 }}', "a width of more than 1,000,000 characters"),
    ('{{ "%(a)9999999s" % {"a": 1} }}', "a width of more than 1,000,000 characters"),
    # Grown step by step in a loop, each step within every other bound: doubled by ~ or +, or grown in place.
    ('{% set ns = namespace(s="x") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}',
     "a concatenation of more than 1,000,000 items" + BEYOND),
    ('{% set ns = namespace(s="x") %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}',
     "a concatenation of more than 1,000,000 items" + BEYOND),
    ('{% set ns = namespace(l=[0]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}',
     "a concatenation of more than 1,000,000 items" + BEYOND),
    ('{% set ns = namespace(t=(0,)) %}{% for i in range(40) %}{% set ns.t = ns.t + ns.t %}{% endfor %}',
     "a concatenation of more than 1,000,000 items" + BEYOND),
    ("{% set l = [0] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}",
     "access to attribute 'extend' of 'list' object is unsafe."),
    ("{% set l = [] %}{% for i in range(99999) %}{{ l.append(i) }}{% endfor %}",
     "access to attribute 'append' of 'list' object is unsafe."),
    ("{% set d = {} %}{{ d.update(a=1) }}", "access to attribute 'update' of 'dict' object is unsafe."),
])
def test_templates_cannot_build_huge_values(source: str, why: str) -> None:
    # Siblings of the sandbox's own range() bound: each would take minutes and gigabytes, at `adws check` time.
    with pytest.raises(RenderError) as caught:
        render_one(source, {})
    assert str(caught.value) == f"cannot render {source!r}: {why}"


def _doubled(step: str) -> str:
    return ('{% set ns = namespace(s=model, l=[model]) %}{% for i in range(40) %}' + step +
            '{% endfor %}{{ ns.s | length }}')


# Every builtin that makes a value longer than its inputs, doubling one in a loop: before, only +, ~ and * were
# bounded, and each of these ran on (the join to 577 MB in 9.6 s at `adws check`). Each now stops at the bound.
GROWN_BY_BUILTINS = {
    "join of a list": (_doubled("{% set ns.s = [ns.s, ns.s]|join %}"), "join"),
    "join with a separator": (_doubled("{% set ns.s = [ns.s, ns.s]|join('-') %}"), "join"),
    "str.join": (_doubled("{% set ns.s = ''.join([ns.s, ns.s]) %}"), "join()"),
    "format filter": (_doubled("{% set ns.s = '%s%s'|format(ns.s, ns.s) %}"), "format"),
    "str.format": (_doubled("{% set ns.s = '{}{}'.format(ns.s, ns.s) %}"), "format()"),
    "str.format_map": (_doubled("{% set ns.s = '{a}{a}'.format_map({'a': ns.s}) %}"), "format_map()"),
    "printf %": (_doubled("{% set ns.s = '%s%s' % (ns.s, ns.s) %}"), "%"),
    "sum of lists": (_doubled("{% set ns.l = [ns.l, ns.l]|sum(start=[]) %}"), "sum"),
    "string of a tuple": (_doubled("{% set ns.s = (ns.s, ns.s)|string %}"), "string"),
    "tojson": (_doubled("{% set ns.s = [ns.s, ns.s]|tojson %}"), "tojson"),
    "escape": (_doubled("{% set ns.s = (ns.s ~ '&')|escape|replace(';', '&') %}"), "escape"),
    "a {% set %} block": (_doubled("{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}"), "the template's output"),
    "nested range loops, no operator": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "the template's output"),
    "a list of many references written out": ("{{ [model * 1000] * 100000 }}", "an output"),
    "a list of many references in a ~": ("{{ ([model * 1000] * 100000) ~ '' }}",
                                          "a concatenation of more than 1,000,000 items" + BEYOND),
}


@pytest.mark.parametrize("case", list(GROWN_BY_BUILTINS))
def test_a_value_doubled_by_any_builtin_is_refused_at_the_bound(case: str) -> None:
    source, what = GROWN_BY_BUILTINS[case]
    with pytest.raises(RenderError) as caught:
        render_one(source, {"model": "claude-sonnet-4"})
    why = what if what.startswith("a concatenation") else \
        f"{what} would build more than 1,000,000 characters{BEYOND}"
    assert str(caught.value) == f"cannot render {source!r}: {why}"


def test_a_config_whose_template_doubles_by_join_fails_check_naming_its_place(tmp_path: Path) -> None:
    # The reviewer's config: before, `adws check` passed it after 9.6 s and 577 MB.
    source = ("{% set ns = namespace(s=model) %}{% for i in range(24) %}{% set ns.s = [ns.s, ns.s]|join %}"
              "{% endfor %}{{ ns.s }}")
    config = (f'[providers.x]\ncommand_template = ["x", {json.dumps(source)}]\nprompt = "stdin"\n'
              '[providers.x.models.m]\ncontext_window = 1000\n')
    with pytest.raises(ConfigError) as caught:
        compile_config(parse_toml(config), "t", base_dir=str(tmp_path))
    assert str(caught.value).endswith(
        f"providers.x → command_template[1]: template {source!r} cannot be rendered (model 'm', a sample task): join "
        "would build more than 1,000,000 characters" + BEYOND)


def test_bounded_operators_still_work_at_ordinary_sizes() -> None:
    assert render_one('{{ "ab" * 3 }}|{{ 3 * [0] | length }}|{{ 2 ** 10 }}|{{ "%05d" % 42 }}|{{ "x" | center(5) }}'
                      '|{{ "%s-%s" | format(1, 2) }}|{{ 10 % 3 }}', {}) == "ababab|3|1024|00042|  x  |1-2|1"
    assert render_one('{{ "a" ~ "b" ~ 3 }}|{{ "a" + "b" }}|{{ [1] + [2] }}|{{ (1,) + (2,) }}|{{ 1 + 2.5 }}'
                      '|{% set ns = namespace(s="x") %}{% for i in range(19) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}'
                      '{{ ns.s | length }}|{% autoescape true %}{{ "<" ~ x }}{% endautoescape %}', {"x": "<b>"}) == (
        "ab3|ab|[1, 2]|(1, 2)|3.5|524288|&lt;&lt;b&gt;")


def test_a_long_value_given_may_be_written_with_text_around_it_but_not_repeated() -> None:
    # What a render is given counts towards what it may build: a 2 MB prompt or issue body with a title, a prefix
    # or a JSON quoting around it renders (run-many's --prompt-template, `--prompt={{ prompt }}`), as it did
    # before the bounds; written out three times, or doubled in a loop, it is refused 1,000,000 past the given.
    long = "y" * 2_000_000
    assert render_one("{{ prompt ~ '' }}", {"prompt": long}) == long
    assert render_one("{{ 'p: ' ~ prompt }}", {"prompt": long}) == "p: " + long
    task = {"task": {"title": "t", "body": long}}
    assert render_one("{{ task.title }}\n\n{{ task.body }}\n", task) == f"t\n\n{long}\n"
    assert render_one("{{ prompt|tojson }}", {"prompt": long}) == f'"{long}"'
    assert render_one("{{ 'p: %s' % prompt }}", {"prompt": long}) == f"p: {long}"
    assert render_one("{{ 'q: {}'.format(prompt) }}", {"prompt": long}) == f"q: {long}"
    with pytest.raises(RenderError) as info:
        render_one("{{ prompt }}{{ prompt }}", {"prompt": long})
    assert str(info.value).endswith("the template's output would build more than 1,000,000 characters" + BEYOND)
    with pytest.raises(RenderError) as info:
        render_one("{% set ns = namespace(s=prompt) %}{% for i in range(8) %}{% set ns.s = ns.s ~ ns.s %}"
                   "{% endfor %}{{ ns.s | length }}", {"prompt": long})
    assert str(info.value).endswith("a concatenation of more than 1,000,000 items" + BEYOND)


_SHAPES = {"prompt": "hi {{ x }}\r\n", "model": "m", "n": 3, "true": "T", "self": "S", "d": {"a": 1}, "e": ""}


@pytest.mark.parametrize("source", [
    "/bin/echo", "--out", "trail\n", "plain}}", "a\rb",  # no tag: the text itself (a CR is Jinja's to turn)
    "{{ prompt }}", "{{prompt}}", "{{  model\t}}", "{{ e }}",  # one string variable: its value, as it is
    "{{ n }}", "{{ d }}", "{{ true }}", "{{ self }}",  # not a string, or not a variable: Jinja decides
    "x {{ model }}", "{{- model -}}", "{#c#}", "{% if n %}y{% endif %}",
])
def test_render_one_answers_what_jinja_answers(source: str) -> None:
    from adws.templates import _compiled

    assert render_one(source, _SHAPES) == str(_compiled(source).render(_SHAPES))


def test_a_missing_variable_is_refused_on_the_short_path_too() -> None:
    with pytest.raises(RenderError, match="'missing' is undefined"):
        render_one("{{ missing }}", _SHAPES)


@pytest.mark.parametrize("source", ["", "--json", "-p", "trailing newline\n", "two\nlines", "%} and }} and #}",
                                    "# not a comment", "100%", "ünïcödé ✓", "  spaced  ", "{", "{{ x }}", "a\r\nb",
                                    "{# c #}", "--flag=}"])
def test_text_without_jinja_syntax_needs_no_jinja_and_means_the_same(source: str) -> None:
    """Plain argv elements skip jinja2 (start-up time); what Jinja itself says of them must not change."""
    from jinja2 import TemplateError, meta

    from adws import templates

    env = templates._environment()
    try:
        expected_vars: frozenset[str] | None = frozenset(meta.find_undeclared_variables(env.parse(source)))
    except TemplateError:
        expected_vars = None
    assert templates.variables_of(source) == expected_vars
    if expected_vars == frozenset():
        assert render_one(source, {}) == env.from_string(source).render({})
        assert check_template(source, set()) is None


# Names-only templates (text and `{{ name }}`) are checked, read and rendered without Jinja: the answers must be
# Jinja's. Names include ones Jinja treats specially elsewhere (loop, caller, range) and keywords.
_TRICKY_NAMES = ["model", "prompt", "home", "missing", "loop", "caller", "super", "varargs", "kwargs", "range",
                 "for", "block", "endif", "_x", "dict", "lipsum", "none", "self", "not", "true", "if", "task", "n"]
_TEXT = st.text(alphabet=st.characters(blacklist_characters="{\r", blacklist_categories=("Cs",)), max_size=6)
_PLACEHOLDER = st.builds(lambda a, name, b: f"{{{{{a}{name}{b}}}}}", st.sampled_from(["", " ", "  ", "\t", "\n"]),
                         st.sampled_from(_TRICKY_NAMES), st.sampled_from(["", " ", "\n "]))
_NAMES_ONLY = st.lists(st.one_of(_TEXT, _PLACEHOLDER), min_size=1, max_size=5).map("".join)


@settings(max_examples=300, deadline=None)
@given(_NAMES_ONLY)
def test_names_only_templates_mean_what_jinja_says(source: str) -> None:
    from jinja2 import TemplateError, meta

    from adws import templates

    env = templates._environment()
    try:
        expected: frozenset[str] | None = frozenset(meta.find_undeclared_variables(env.parse(source)))
    except TemplateError:
        expected = None
    assert templates.variables_of(source) == expected
    for allowed in (set(), {"model", "prompt", "home", "task"}, set(_TRICKY_NAMES)):
        assert check_template(source, allowed) == templates._check_with_jinja(source, allowed)
    variables: dict[str, Any] = {"model": "sonnet", "prompt": "say {{ x }}", "home": "/home/u", "loop": "L",
                                 "range": "R", "_x": "", "n": 3, "task": {"a": 1}}
    try:
        jinja: str | None = str(env.from_string(source).render(variables))
    except Exception:
        jinja = None
    if jinja is None:
        with pytest.raises(RenderError):
            render_one(source, variables)
    else:
        assert render_one(source, variables) == jinja


@pytest.mark.parametrize("source", ["--model={{ model }}", "{{ home }}/.local/share/x", "{{model}}:{{ prompt }}!",
                                    "a }} b {{ model }} %} #}"])
def test_names_only_templates_take_the_short_path(source: str) -> None:
    from adws import templates

    assert templates._names_only(source) is not None
    assert check_template(source, {"model", "prompt", "home"}) is None


@pytest.mark.parametrize("source", ["{{ model|upper }}", "{{- model }}", "{{ none }}", "{{ a.b }}", "{ {{ model }}",
                                    "{{ model }}\r\n", "{% if x %}{% endif %}", "{{ ünï }}"])
def test_other_templates_go_to_jinja(source: str) -> None:
    from adws import templates

    assert templates._names_only(source) is None


def test_the_globals_the_short_path_leaves_to_jinja_are_jinjas() -> None:
    from adws import templates

    assert set(templates._environment().globals) == templates.JINJA_GLOBALS


def test_renders_without_jinja_says_when_render_one_needs_no_jinja() -> None:
    from adws.templates import renders_without_jinja

    assert renders_without_jinja("--json", {})
    assert renders_without_jinja("--model={{ model }}/{{ account }}", {"model": "m", "account": "a"})
    assert not renders_without_jinja("--model={{ model }}", {"model": 1})  # Jinja says how a number prints
    assert not renders_without_jinja("--model={{ model }}", {})  # Jinja says what is missing
    assert not renders_without_jinja("{% if x %}y{% endif %}", {"x": "1"})
    assert not renders_without_jinja("{{ none }}", {"none": "n"})  # a name Jinja reads as a constant


def test_what_a_render_was_given_is_counted_once_per_object_and_through_cycles() -> None:
    # attrs may hold itself (a Python caller's dict): counting it must end, and one string referenced many times
    # is given once, so a list of references does not raise the allowance.
    looped: dict[str, object] = {"s": "x" * 10}
    looped["self"] = looped
    long = "y" * 1000
    assert _given_size({"task": {"attrs": looped}, "refs": [long] * 1000}) == 10 + 1000


@pytest.mark.parametrize(("source", "what"), [
    # A generator of long strings, read whole by the builtin before it measured anything (4 GB, MemoryError).
    ("{{ range(5000)|map('center', 1000000)|join|length }}", "join"),
    ("{{ range(5000)|map('center', 1000000)|sum(start='')|length }}", "sum"),
    ("{{ ''.join(range(5000)|map('center', 1000000))|length }}", "join()"),
    ("{{ range(5000)|map('center', 1000000)|unique|length }}", "unique"),
    ("{{ range(5000)|map('center', 1000000)|sort|length }}", "sort"),
    ("{{ range(1000)|map('center', 1000000)|list|length }}", "list"),  # 1 GB held, and passed
])
def test_a_generator_of_long_strings_is_refused_as_it_is_read(source: str, what: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_one(source, {})
    assert str(caught.value) == f"cannot render {source!r}: {what} would build more than 1,000,000 characters{BEYOND}"


@pytest.mark.parametrize(("source", "why"), [
    ("{{ ('x'.encode() * 1000000000)|length }}", "a repetition of more than 1,000,000 items"),  # 1 GB in 0.5 s
    ("{{ 'x'.encode().ljust(1000000000)|length }}", "a width of more than 1,000,000 characters"),
    ("{% set ns = namespace(b='x'.encode()) %}{% for i in range(40) %}{% set ns.b = ns.b + ns.b %}{% endfor %}"
     "{{ ns.b|length }}", "a concatenation of more than 1,000,000 items" + BEYOND),
])
def test_bytes_are_bounded_as_strings_are(source: str, why: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_one(source, {})
    assert str(caught.value) == f"cannot render {source!r}: {why}"


def test_lists_and_bytes_at_ordinary_sizes_still_work() -> None:
    assert render_one("{{ range(10)|map('upper')|list|length }}|{{ 'abc'|list }}|{{ ['b', 'a']|sort|join(',') }}"
                      "|{{ [1, 1, 2]|unique|list }}|{{ 'ab'.encode().replace('a'.encode(), 'c'.encode()) }}", {}) == \
        "10|['a', 'b', 'c']|a,b|[1, 2]|b'cb'"


def test_nested_range_loops_that_build_nothing_are_stopped() -> None:
    # 10^10 steps writing nothing: no output bound is reached, and `adws check` would render it for hours.
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
    with pytest.raises(RenderError) as caught:
        render_one(source, {})
    assert str(caught.value) == (f"cannot render {source!r}: range() calls of more than 10,000,000 items in all "
                                 "(nested loops)")
    # Each render counts afresh, and ordinary loops are untouched.
    assert render_one("{% for i in range(3) %}{% for j in range(100000) %}{% endfor %}{{ i }}{% endfor %}", {}) == "012"
