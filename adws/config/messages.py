"""Maintainer-facing messages for what pydantic refuses: TOML words, the place, a "did you mean".

pydantic's own texts speak Python ("Input should be a valid boolean"); these speak the file
(`expected true or false, got "yes"`), and name the key's table the way the maintainer wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from adws.config.locations import fields_at, problem_at
from adws.config.schema import Config
from adws.errors import Loc, Problem, suggest, toml_value

# What each pydantic type error expected, in TOML words. Several of them for one place come from a union.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "datetime_type": "a date-time",
    "datetime_parsing": "a date-time",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}
# The tags pydantic appends to a location for each member of a union of plain types.
_UNION_TAGS = frozenset({"str", "int", "float", "bool"})


def _choices(err: Mapping[str, Any]) -> list[str]:
    return re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))


def _message(err: Mapping[str, Any]) -> str:
    kind, given, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {toml_value(given, brief=True)}"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"must be {sign} {toml_value(ctx.get(key), brief=True)}, got {toml_value(given, brief=True)}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind in ("enum", "literal_error"):
        choices = _choices(err)
        hint = suggest(given, choices) if isinstance(given, str) else ""
        listed = ", ".join(f'"{c}"' for c in choices[:-1]) + f' or "{choices[-1]}"' if len(choices) > 1 else \
            ", ".join(f'"{c}"' for c in choices)
        return f"expected {listed}, got {toml_value(given, brief=True)}{hint}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error") or isinstance(given, (dict, list)):
        return message
    return f"{message}, got {toml_value(given, brief=True)}"


def pydantic_problems(exc: ValidationError, raw: Any) -> list[Problem]:
    # Entries are problems, or the location of a union whose member errors are merged into one problem.
    entries: list[Problem | Loc] = []
    unions: dict[Loc, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        if loc and loc[-1] == "[key]":
            # A dict key of the wrong kind (an outcome class in `actions`): reported like an unknown key.
            key, table = loc[-2], loc[:-2]
            choices = _choices(err)
            entries.append(problem_at(table, raw, f'unknown key "{key}"{suggest(str(key), choices)}'
                                      + (f"; allowed: {', '.join(choices)}" if choices else ""), line_loc=loc[:-1]))
        elif kind == "extra_forbidden" and loc:
            entries.append(_unknown_key(loc, err.get("input"), raw))
        elif loc == ("providers",) and kind in ("missing", "too_short"):
            entries.append(problem_at((), raw, "no providers: declare at least one [providers.NAME] table "
                                   "with its command_template"))
        elif kind == "missing" and loc:
            entries.append(problem_at(loc[:-1], raw, f'missing required key "{loc[-1]}"'))
        elif len(loc) > 1 and loc[-1] in _UNION_TAGS and kind in _EXPECTED:
            if loc[:-1] not in unions:
                entries.append(loc[:-1])
            unions.setdefault(loc[:-1], []).append(_EXPECTED[kind])
        else:
            entries.append(problem_at(loc, raw, _message(err)))
    return [entry if isinstance(entry, Problem) else _union_problem(entry, unions[entry], raw) for entry in entries]


def _union_problem(loc: Loc, expected: list[str], raw: Any) -> Problem:
    words = [w for w in dict.fromkeys(expected) if not (w == "an integer" and "a number" in expected)]
    words = ["a boolean" if w == "true or false" else w for w in words]
    text = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    return problem_at(loc, raw, f"expected {text}, got {toml_value(_at(raw, loc), brief=True)}")


def _at(raw: Any, loc: Loc) -> Any:
    node = raw
    for part in loc:
        node = node[part]
    return node


# Top-level tables as a maintainer writes them, for the message about an unknown one.
_SECTIONS = ("[routing]", "[[routing.rules]]", "[providers.NAME]", "[state]", "[audit]", "[run]", "[[scenarios]]",
             "[llm]")


def _unknown_key(loc: Loc, given: Any, raw: Any) -> Problem:
    key, table = str(loc[-1]), loc[:-1]
    allowed = fields_at(Config, table) or []
    hint = suggest(key, allowed)
    if not table:
        what = f"unknown section [{key}]" if isinstance(given, dict) else f'unknown top-level key "{key}"'
        return problem_at(table, raw, f"{what}{hint}; the sections are {', '.join(_SECTIONS)}", line_loc=loc)
    # With a near miss the suggestion says it all; without one, the list of keys does.
    return problem_at(table, raw, f'unknown key "{key}"{hint or "; allowed: " + ", ".join(allowed)}',
                      line_loc=loc)
