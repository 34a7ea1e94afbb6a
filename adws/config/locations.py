"""Turn a location inside the config file into words a maintainer can find.

`("routing", "rules", 3, "conditions", "retry_count", "gte")` with rule 3 named "docs-haiku" becomes
`routing.rules[3] (name="docs-haiku") → conditions → retry_count → gte`: TOML table headers are dotted as the
maintainer wrote them, keys inside a table follow arrows.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from adws.errors import Loc, Problem, suggest, toml_value  # noqa: F401  (suggest: re-exported)

# Table headers a maintainer writes as [a.b.c] or [[a.b]]. "*" is any key (a provider or model name), "#" is an
# index into an array of tables.
_HEADERS: tuple[tuple[str, ...], ...] = (
    ("routing",),
    ("routing", "rules", "#"),
    ("routing", "intake"),
    ("routing", "intake", "specialization_labels"),
    ("routing", "intake", "specialization_keywords"),
    ("routing", "retry"),
    ("routing", "circuit_breaker"),
    ("routing", "actions"),
    ("providers", "*"),
    ("providers", "*", "models", "*"),
    ("providers", "*", "accounts", "#"),
    ("providers", "*", "accounts", "#", "quota"),
    ("providers", "*", "quota"),
    ("providers", "*", "failure_patterns", "#"),
    ("state",),
    ("audit",),
    ("run",),
    ("scenarios", "#"),
    ("llm",),
)


def _header_length(loc: Loc) -> int:
    """How many leading parts of loc form a table header (the longest header that is a prefix of loc)."""
    best = 0
    for header in _HEADERS:
        if len(header) > len(loc):
            continue
        ok = True
        for want, got in zip(header, loc, strict=False):
            if want == "#":
                ok = isinstance(got, int)
            elif want == "*":
                ok = isinstance(got, str)
            else:
                ok = want == got
            if not ok:
                break
        if ok:
            best = max(best, len(header))
    return best


def _name_of(raw: Any, loc: Loc) -> str | None:
    """The `name` of the table at loc in the raw document, if it has one (rules, accounts, scenarios)."""
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(node, Mapping):
        name = node.get("name")
        if isinstance(name, str):
            return name
    return None


def _key(part: str | int) -> str:
    text = str(part)
    # Keys with dots, spaces or control characters are quoted (and escaped), as TOML would need them.
    if isinstance(part, str) and (not text or any(c in text for c in ' ."') or not text.isprintable()):
        return toml_value(text)
    return text


def format_loc(loc: Loc, raw: Any = None) -> str:
    """Render loc for humans; `raw` (the parsed TOML document) supplies the names of indexed tables."""
    if not loc:
        return "(top level)"
    split = _header_length(loc)
    head = ""
    for i, part in enumerate(loc[:split] if split else loc[:1]):
        if isinstance(part, int):
            head += f"[{part}]"
            name = _name_of(raw, loc[: i + 1])
            if name is not None:
                head += f" (name={toml_value(name)})"  # escaped: a name may hold a quote or a control character
        else:
            head += ("." if head else "") + _key(part)
    rest: list[str] = []
    for part in loc[max(split, 1) :]:
        if isinstance(part, int) and rest:
            rest[-1] += f"[{part}]"
        else:
            rest.append(_key(part))
    return " → ".join([head, *rest])


def _unwrap(annotation: Any) -> list[Any]:
    """The types an annotation may hold, with Optional/Union flattened."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def fields_at(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """The keys allowed in the table at loc, following the schema from `model`; None if it is not a model."""
    current: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for ann in current:
            origin = typing.get_origin(ann)
            args = typing.get_args(ann)
            if isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(part, str):
                for name, info in ann.model_fields.items():
                    if part in (name, info.alias):
                        following.extend(_unwrap(info.annotation))
            elif origin is dict and args:
                following.extend(_unwrap(args[1]))
            elif origin is list and args and isinstance(part, int):
                following.extend(_unwrap(args[0]))
        current = following
    for ann in current:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return [info.alias or name for name, info in ann.model_fields.items()]
    return None


def problem_at(loc: Loc, raw: Any, message: str, *, line_loc: Loc | None = None) -> Problem:
    """A problem at loc, in words; `line_loc` (default: loc) is where its line is looked up (an unknown key is
    reported on its table but found on its own line)."""
    return Problem(format_loc(loc, raw), message, loc if line_loc is None else line_loc)
