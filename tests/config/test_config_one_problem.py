"""One problem, one message: a single broken value anywhere in a sound config is reported once, on its own line.

The loader leaves a broken provider, rule, scenario or setting out and cross-checks the rest; a later check that
refers to what was left out (a rule's `vars` read only by a left-out provider's template, a scoring weight or a
default model of a left-out provider, a scenario expecting a rule without a readable name) must stay silent.
The tests break every key of the shipped config and of tests/data/configs/every_part.toml in turn, and each
entry of every inline table, with a value no key accepts (a TOML local time).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import time
from pathlib import Path

import pytest

from adws.config.load import load_file
from adws.errors import ConfigError, toml_value
from tests.config.test_config import BASE, problems_of
from tests.helpers import DATA, ROOT

_KEY_LINE = re.compile(r'^(\s*)((?:[A-Za-z0-9_-]+|"[^"]*")(?:\.(?:[A-Za-z0-9_-]+|"[^"]*"))*)\s*=\s*(.*)$')
NO_KEY_TAKES_THIS = time(7, 32)  # a TOML local time: no key of a config accepts one


def broken_variants(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, what was broken, the text with it broken) for every `key = value` line of `text` and every entry of
    an inline table on such a line. Lines keep their numbers (a multi-line value's other lines become empty)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        key = _KEY_LINE.match(lines[i])
        if key is None:
            i += 1
            continue
        end = i  # the value may go on over more lines (an array): read on until it parses
        while True:
            try:
                value = tomllib.loads("v = " + "\n".join([key.group(3), *lines[i + 1:end + 1]]))["v"]
                break
            except tomllib.TOMLDecodeError:
                end += 1

        def variant(new: object, start: int = i, stop: int = end, match: re.Match[str] = key) -> str:
            replaced = f"{match.group(1)}{match.group(2)} = {toml_value(new)}"
            return "\n".join([*lines[:start], replaced, *[""] * (stop - start), *lines[stop + 1:]]) + "\n"

        yield i + 1, key.group(2), variant(NO_KEY_TAKES_THIS)
        if isinstance(value, dict):
            for entry in value:
                yield i + 1, f"{key.group(2)}.{entry}", variant({**value, entry: NO_KEY_TAKES_THIS})
        i = end + 1


def _not_one_problem_on_its_line(path: Path) -> tuple[int, list[str]]:
    """How many variants were tried, and a description of each that did not give exactly one problem on the
    broken line."""
    failures = []
    variants = list(broken_variants(path.read_text(encoding="utf-8")))
    for line, what, text in variants:
        try:
            load_file(path.name, text.encode())
        except ConfigError as exc:
            problems = exc.problems
        else:
            problems = []
        if [p.line for p in problems] != [line]:
            shown = "".join(f"\n    {p.line}: {p}" for p in problems) or " accepted"
            failures.append(f"line {line}, {what}:{shown}")
    return len(variants), failures


@pytest.mark.parametrize("path", [ROOT / "config.toml", DATA / "configs" / "every_part.toml"],
                         ids=["shipped", "every_part"])
def test_one_broken_value_anywhere_is_one_problem_on_its_line(path: Path) -> None:
    load_file(path)  # sound as it is
    tried, failures = _not_one_problem_on_its_line(path)
    assert tried > 100
    assert failures == []


SHIPPED = (ROOT / "config.toml").read_text(encoding="utf-8")
NEED = "need = { tokens = 30000, learned_runs = 40, margin_percent = 10 }"


@pytest.mark.parametrize(("old", "new", "expected"), [
    (NEED, "need = { tokns = 30000 }",
     'providers.antigravity → need: unknown key "tokns" (did you mean "tokens"?)'),
    (NEED, "need = { tokens = 30000, context_multiple = 1.5 }",
     "providers.antigravity → need: give `tokens` (a fixed figure) or `context_multiple`, not both"),
    ("hard_block_percent = 95", "hard_block_percent = 150",
     "providers.antigravity.quota → hard_block_percent: must be <= 100, got 150"),
    ('env = { ADWS_TIER = "antigravity" }', "env = { ADWS_TIER = 5 }",
     "providers.antigravity → env → ADWS_TIER: expected a string, got 5"),
    # Every store keeps the newest 1,000 runs per group (adws.state.base.RUNS_KEPT).
    (NEED, "need = { tokens = 30000, learned_runs = 1001 }",
     "providers.antigravity → need → learned_runs: must be <= 1000, got 1001: the state store keeps the "
     "newest 1,000 successful runs per provider and specialization"),
], ids=["typo in need", "need with both bases", "hard block above 100", "env value not a string",
        "learned_runs above what Redis keeps"])
def test_a_broken_part_of_the_shipped_first_tier_is_one_problem(old: str, new: str, expected: str) -> None:
    # The rules' thinking_budget, the scoring weights and the chain all name the broken tier: none is a problem.
    assert SHIPPED.count(old) == 1
    assert problems_of(SHIPPED.replace(old, new)) == [expected]


@pytest.mark.parametrize(("text", "expected"), [
    (BASE.replace('default_provider = "cline"', 'default_provider = 5\ndefault_model = "qwen"'),
     "routing → default_provider: expected a string, got 5"),
    (BASE + '[llm]\nprovider = 5\nmodel_default = "qwen"\n', "llm → provider: expected a string, got 5"),
    (BASE.replace('default_provider = "cline"\nchain = ["cline", "local"]', 'chain = "local"\ndefault_model = "qwen"'),
     'routing → chain: expected an array, got "local"'),
    (BASE + '[state]\nbackend = 5\nurl = "redis://localhost"\n', "state → backend: expected a string, got 5"),
    (BASE.replace('chain = ["cline", "local"]', 'chain = ["cline", "local"]\nrules = 5')
     + '[[scenarios]]\nname = "s"\ntask = { title = "x" }\nexpect = { rule = "r" }\n',
     "routing → rules: expected an array, got 5"),
], ids=["default model of a broken default_provider", "model_default of a broken [llm] provider",
        "default model of the first tier of a broken chain", "keys of a broken state backend",
        "rule a scenario expects in a broken rules array"])
def test_what_a_left_out_setting_decided_is_not_judged(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_a_rule_vars_problem_names_the_rule_of_the_file_when_an_earlier_rule_is_left_out() -> None:
    text = BASE + '[[routing.rules]]\nname = "a"\nprovider = "cline"\npriority = "x"\n' \
        '[[routing.rules]]\nname = "b"\nprovider = "local"\nvars = { modle = 1 }\n'
    assert problems_of(text) == [
        'routing.rules[0] (name="a") → priority: expected an integer, got "x"',
        'routing.rules[1] (name="b") → vars → modle: no command template reads "modle" (did you mean "model"?), '
        "so it would have no effect"]


def test_a_rule_variable_no_template_reads_is_still_found_beside_a_left_out_provider() -> None:
    # cline is left out for its timeout, but its template can still be read: it does not read "modle".
    text = BASE.replace('prompt = "arg"', 'prompt = "arg"\ntimeout = -1') + \
        '[[routing.rules]]\nname = "r"\nprovider = "local"\nvars = { modle = 1 }\n'
    assert problems_of(text) == [
        "providers.cline → timeout: must be > 0, got -1",
        'routing.rules[0] (name="r") → vars → modle: no command template reads "modle" (did you mean "model"?), '
        "so it would have no effect"]


def test_a_left_out_provider_without_a_command_reads_what_no_one_knows() -> None:
    # The command is the missing part: the variable may well be what it was going to read.
    text = BASE.replace('command_template = ["cline", "-y", "{{ prompt }}"]\n', "") + \
        '[[routing.rules]]\nname = "r"\nprovider = "local"\nvars = { budget = 1 }\n'
    assert problems_of(text) == ['providers.cline: missing required key "command_template"']


def test_learned_runs_up_to_what_every_backend_keeps_loads() -> None:
    from adws.state.base import RUNS_KEPT

    assert RUNS_KEPT == 1000  # every backend reads this one constant: the check cannot drift from the stores
    from adws.config.load import compile_config, parse_toml

    config = compile_config(parse_toml(SHIPPED.replace(NEED, "need = { tokens = 30000, learned_runs = 1000 }")),
                            "t.toml", base_dir=str(ROOT))
    assert config.providers["antigravity"].need.learned_runs == 1000  # type: ignore[union-attr]
