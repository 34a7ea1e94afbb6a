"""Command templates: one Jinja template per argv element, rendered in a sandbox with strict undefined.

Never a shell: each element becomes exactly one argv entry, so task text (an issue titled `{{ 7*7 }}` or
`; rm -rf ~`) arrives in argv literally. An element that renders empty is dropped, which lets a template say
`{% if thinking_budget %}--thinking={{ thinking_budget }}{% endif %}`.

Older configs wrote `{prompt_file}`; such elements are translated to `{{ prompt_file }}` first.
jinja2 is imported lazily: routing never renders, and `adws route` should start fast.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from adws.errors import RenderError

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

# Variables every template may use. Rule, model and provider `vars` add to these.
BUILTIN_VARIABLES = frozenset({
    "prompt", "prompt_file", "output_file", "model", "provider", "account", "task", "workdir", "run_dir",
    "home", "config_dir", "previous",
})
# `previous` before the first attempt of a run: every field there, all empty (adws.manager fills it later).
NO_PREVIOUS: dict[str, None] = dict.fromkeys(("provider", "model", "account", "outcome", "reason", "patch"))

_LEGACY = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_.]*)\}(?!\})")


def from_legacy(element: str) -> str:
    """`--file={prompt_file}` -> `--file={{ prompt_file }}`; Jinja elements are left alone."""
    if "{{" in element or "{%" in element:
        return element
    return _LEGACY.sub(r"{{ \1 }}", element)


@functools.cache
def _environment() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # autoescape off: these are argv elements, not HTML. keep_trailing_newline so content is exact.
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def check_template(source: str, allowed: Iterable[str]) -> str | None:
    """Why `source` cannot be used (syntax error, unknown variable), or None when it is fine."""
    from jinja2 import TemplateSyntaxError, meta, nodes

    env = _environment()
    try:
        # Finding the variables runs Jinja's code generator, which is where an unknown filter or test is refused
        # (TemplateAssertionError, a TemplateSyntaxError): both steps must be guarded.
        ast = env.parse(source)
        used = meta.find_undeclared_variables(ast)
    except TemplateSyntaxError as exc:
        return f"template {source!r} does not parse: {(exc.message or 'syntax error').rstrip('.')}"
    # Inside `{% if %}` Jinja defers unknown filters and tests to render time; find them now.
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", env.filters) if isinstance(node, nodes.Filter) else ("test", env.tests)
        if node.name not in known:
            return f"template {source!r} does not parse: No {kind} named {node.name!r}"
    allowed_set = set(allowed)
    unknown = sorted(used - allowed_set)
    if unknown:
        from adws.errors import suggest

        names = ", ".join(f'"{u}"{suggest(u, allowed_set)}' for u in unknown)
        several = len(unknown) > 1
        return (f"template {source!r} uses unknown variable{'s' if several else ''} {names}; "
                f"declare {'them' if several else 'it'} in the provider's `vars` or use one of: "
                f"{', '.join(sorted(allowed_set))}")
    return None


@functools.lru_cache(maxsize=1024)
def variables_of(source: str) -> frozenset[str] | None:
    """The variables a template reads; None when it does not parse (check_template says why)."""
    from jinja2 import TemplateError, meta

    try:
        return frozenset(meta.find_undeclared_variables(_environment().parse(source)))
    except TemplateError:
        return None


@functools.lru_cache(maxsize=512)
def _compiled(source: str) -> Any:
    return _environment().from_string(source)


def render_one(source: str, variables: Mapping[str, Any]) -> str:
    try:
        return str(_compiled(source).render(variables))
    except Exception as exc:
        # A template is code from the config file: besides Jinja's own errors (undefined, sandbox refusals) it
        # can divide by zero or add a string to a number. Every one of them is the config's mistake, reported
        # as such, never a traceback.
        raise RenderError(f"cannot render {source!r}: {exc}") from None


def render_argv(sources: Sequence[str], variables: Mapping[str, Any]) -> list[str]:
    """Render each element; drop the ones that come out empty."""
    return [text for text in (render_one(s, variables) for s in sources) if text != ""]


def render_env(sources: Mapping[str, str], variables: Mapping[str, Any]) -> dict[str, str]:
    return {name: render_one(value, variables) for name, value in sources.items()}
