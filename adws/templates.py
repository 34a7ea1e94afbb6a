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
from contextvars import ContextVar
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


# Bound of what one operator in a template may build: a repeated string or list (`"x" * 10**9`) of at most this
# many items, a power of at most this many bits. The sandbox already bounds `range()` (jinja2's MAX_RANGE,
# 100,000); these are its siblings, which would otherwise hold `adws check` for minutes and gigabytes.
MAX_REPEAT = 1_000_000
MAX_POWER_BITS = 100_000
# The items all `range()` calls of one render may make together: nested loops (`range(100000)` in
# `range(100000)`, 10^10 steps that build nothing) would otherwise hold `adws check` for hours.
MAX_RANGE_STEPS = 10_000_000


_PRINTF_SIZES = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d+))?")


def _bound_width(width: Any) -> None:
    from jinja2.exceptions import SecurityError

    if isinstance(width, int) and width > MAX_REPEAT:
        raise SecurityError(f"a width of more than {MAX_REPEAT:,} characters")


def _bound_printf(spec: Any) -> None:
    """Refuse a %-format whose width or precision (`%0999999999d`) would build a huge string."""
    if isinstance(spec, str) and "%" in spec:
        for match in _PRINTF_SIZES.finditer(spec):
            for digits in match.groups():
                if digits and len(digits) <= 12:
                    _bound_width(int(digits))
                elif digits:
                    _bound_width(MAX_REPEAT + 1)


# What the render under way was given (its variables, as `_size` counts them: a prompt's, a task body's length).
# A template may make MAX_REPEAT characters more than that: a long prompt or issue body with text around it
# renders (`{{ task.title }}\n\n{{ task.body }}`), while a value doubled in a loop, or task text repeated, still
# stops, at MAX_REPEAT past what was given. Outside a render (0) the bound is MAX_REPEAT.
_GIVEN: ContextVar[int] = ContextVar("adws_template_given", default=0)
# The `range()` steps the render under way has made (a one-item list: a counter the render's calls share).
_RANGE_STEPS: ContextVar[list[int] | None] = ContextVar("adws_template_range_steps", default=None)


def _counted_range(safe_range: Any) -> Any:
    """jinja2's sandboxed `range` (at most MAX_RANGE items a call), whose items all calls of one render count
    together, refused past MAX_RANGE_STEPS."""
    @functools.wraps(safe_range)
    def counted(*args: int) -> range:
        made: range = safe_range(*args)
        steps = _RANGE_STEPS.get()
        if steps is not None:
            steps[0] += len(made)
            if steps[0] > MAX_RANGE_STEPS:
                from jinja2.exceptions import SecurityError

                raise SecurityError(f"range() calls of more than {MAX_RANGE_STEPS:,} items in all (nested loops)")
        return made
    return counted


def _given_size(variables: Mapping[str, Any]) -> int:
    """The characters of the strings a render is given (its variables, and the lists and dicts in them), each object
    counted once however often it is referenced, and at most 64 × MAX_REPEAT: what `_GIVEN` holds. A step per
    object (never per character); a container that holds itself is walked once."""
    total, seen, stack = 0, set(), list(variables.values())
    while stack and total <= 64 * MAX_REPEAT:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return min(total, 64 * MAX_REPEAT)


def _allowed() -> int:
    """How many characters (or items) a result may have in the render under way (see _GIVEN)."""
    return MAX_REPEAT + _GIVEN.get()


def _refuse(what: str) -> None:
    from jinja2.exceptions import SecurityError

    raise SecurityError(f"{what} would build more than {MAX_REPEAT:,} characters beyond what the template was given")


def _concatenated(longest: int, size: int) -> None:
    """Refuse a concatenation (`+`, `~`) of `size` items whose longest part has `longest`, when it grows past
    what the render allows (`_allowed`)."""
    if size > _allowed() and size > longest:
        from jinja2.exceptions import SecurityError

        raise SecurityError(f"a concatenation of more than {MAX_REPEAT:,} items beyond what the template was given")


def _grows(before: int, after: int, what: str) -> None:
    """Refuse an operation that would turn `before` characters into more than the render allows (`_allowed`) and
    more than it had."""
    if after > _allowed() and after > before:
        _refuse(what)


def _replaced_size(text: str | bytes, old: Any, new: Any, count: Any) -> int:
    """The length of `text.replace(old, new, count)`, computed without building it."""
    if isinstance(text, bytes):
        if not isinstance(old, bytes) or not isinstance(new, bytes):
            return len(text)  # bytes.replace takes bytes only: the call itself fails
    else:
        old, new = str(old), str(new)
    found = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _size(value: Any, budget: int = 8 * MAX_REPEAT) -> int:
    """About how many characters `value` becomes as text (what str(), a filter or an output makes of it), counted
    without building it and only until past `budget`: a string's length; a list, tuple, set, dict or namespace()
    the sizes of its items (and keys) plus two a piece (quotes, separators), however deeply nested and however
    often one item is referenced (`[s, s]` is twice `s`); a number its digits; anything else 0 (its str() is
    short, or refused as it is made)."""
    from jinja2.utils import Namespace

    total, stack = 0, [value]
    while stack and total <= budget:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, dict):
            total += 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 * len(item) + 2
            stack.extend(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, float):
            total += 24
    return total


def _part(value: Any) -> int:
    """The longest text `value` holds as one piece, which a result may repeat once however long (a long value
    passed on alone): a string's length, or the longest string among a list's, tuple's, dict's or namespace's
    items (one level); 0 for anything else."""
    from jinja2.utils import Namespace

    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return max((len(item) for item in value if isinstance(item, str)), default=0)
    return 0


def _built(what: str, inputs: Iterable[Any], build: Any) -> Any:
    """`build()`, the result of a builtin that makes text or a list from `inputs` (a format, a conversion of a list
    to text, ...), refused when it would be longer than MAX_REPEAT and than the longest part of its inputs
    (`_part`): so a value doubled in a loop stops at the bound whatever builtin doubles it, and a long value passed
    on is kept. Inputs that would make far more than that (`_size`: a list of a thousand references to a long
    string, turned into text) are refused before anything is built; the rest is measured once built."""
    inputs = list(inputs)
    longest = max((_part(value) for value in inputs), default=0)
    most = 4 * MAX_REPEAT + longest + _GIVEN.get()
    if sum(_size(value, most) for value in inputs) > most:
        _refuse(what)
    result = build()
    if isinstance(result, (str, bytes, list, tuple)):
        _grows(longest, len(result), what)
    return result


def _joined(items: list[Any], separator: Any, what: str) -> None:
    """Refuse a join of `items` with `separator` whose result passes MAX_REPEAT and its longest item: the items
    count as much as the separators (`[s, s]|join` doubles `s`)."""
    sizes = [_size(item, 4 * MAX_REPEAT) for item in items]
    total = sum(sizes) + max(len(items) - 1, 0) * len(str(separator))
    _grows(max([_part(item) for item in items] + [len(str(separator))]), total, what)


def _listed(values: Any, what: str) -> list[Any]:
    """`list(values)` for a builtin that reads all of an iterable first (`join`, `sum`, `list`, `sort`, `unique`):
    a generator (`range(5000)|map('center', 1000000)`) is read one item at a time and refused once what it made
    would be far past the bound (4 × MAX_REPEAT beyond what the template was given), never made whole first. A
    list or tuple exists already: it is measured where it is used."""
    if isinstance(values, (list, tuple)):
        return list(values)
    most, total, out = 4 * MAX_REPEAT + _GIVEN.get(), 0, []
    for item in values:
        total += _size(item, most)
        if total > most:
            _refuse(what)
        out.append(item)
    return out


# str methods a template may call that build more text than they are given, and how much (checked before the call).
def _bound_str_method(text: str | bytes, name: str, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call `text.name(*args)` (a str's method, or the same of bytes: `'x'.encode()`) that would build too
    much; returns the arguments to call with (an iterable given to `join` is read into a list once, to measure
    it)."""
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _bound_width(args[0])
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            tabs = text.count(b"\t") if isinstance(text, bytes) else text.count("\t")
            _grows(len(text), len(text) + tabs * size, f"expandtabs({size})")
    elif name == "replace" and len(args) >= 2:
        _grows(len(text), _replaced_size(text, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count")),
               "replace()")
    elif name == "join" and args:
        items = _listed(args[0], "join()")
        _joined(items, text, "join()")
        return (items, *args[1:])
    return args  # str.format and format_map: bounded field by field (BoundedSandbox.wrap_str_format)


def _bound_spec(spec: str) -> None:
    """Refuse a format spec, as resolved (nested `{:{}}` fields filled in), whose width or precision is huge."""
    for digits in re.findall(r"\d+", spec):
        _bound_width(int(digits) if len(digits) <= 12 else MAX_REPEAT + 1)


def _bounded_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """Jinja's filters that build more text or items than they are given, each refusing to build too much."""
    import inspect

    def guard(name: str, check: Any) -> Any:
        original = filters[name]
        signature = inspect.signature(original)

        @functools.wraps(original)  # keeps jinja's pass_eval_context / pass_environment mark
        def bounded(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check(bound.arguments)
            return original(*bound.args, **bound.kwargs)

        return bounded

    def replace(a: dict[str, Any]) -> None:
        text = str(a["s"])
        _grows(len(text), _replaced_size(text, a["old"], a["new"], a["count"]), "replace")

    def join(a: dict[str, Any]) -> None:
        a["value"] = _listed(a["value"], "join")
        if a["attribute"] is None:
            _joined(a["value"], a["d"], "join")
        else:
            _grows(0, max(len(a["value"]) - 1, 0) * len(str(a["d"])), "join")

    def indent(a: dict[str, Any]) -> None:
        text, width = str(a["s"]), a["width"]
        per_line = width if isinstance(width, int) else len(str(width))
        _grows(len(text), len(text) + (text.count("\n") + 1) * per_line, "indent")

    def wordwrap(a: dict[str, Any]) -> None:
        text, width = str(a["s"]), a["width"]
        if isinstance(width, int) and width > 0:
            breaks = len(text) // width + 1
            _grows(len(text), len(text) + breaks * len(str(a["wrapstring"] or "\n")), "wordwrap")

    def counted(key: str, what: str) -> Any:
        def check(a: dict[str, Any]) -> None:
            if isinstance(a[key], int) and a[key] > MAX_REPEAT:
                _refuse(f"{what}({a[key]})")
        return check

    def sum_(a: dict[str, Any]) -> None:
        a["iterable"] = items = _listed(a["iterable"], "sum")
        start = a["start"]
        if a["attribute"] is None and isinstance(start, (str, list, tuple)):  # a concatenation, not a sum of numbers
            sized = [item for item in items if isinstance(item, (str, list, tuple))]
            _grows(max([len(start)] + [len(item) for item in sized]),
                   len(start) + sum(len(item) for item in sized), "sum")

    def listed(what: str) -> Any:  # a filter that makes a list of all its input first
        def check(a: dict[str, Any]) -> None:
            a["value"] = _listed(a["value"], what)
        return check

    checks = {"replace": replace, "join": join, "indent": indent, "wordwrap": wordwrap, "sum": sum_,
              "sort": listed("sort"), "unique": listed("unique"),
              "batch": counted("linecount", "batch"), "slice": counted("slices", "slice"),
              "tojson": counted("indent", "tojson")}
    return {name: guard(name, check) for name, check in checks.items() if name in filters}


# Filters that never make text or a longer list of their input: not measured (a list of many references may pass
# through them). Every other filter's result is bounded by `_built`.
_NOT_BUILDING = frozenset({"abs", "attr", "batch", "bool", "count", "d", "default", "dictsort", "first", "float",
                           "groupby", "int", "items", "last", "length", "list", "map", "max", "min", "random",
                           "reject", "rejectattr", "reverse", "round", "select", "selectattr", "slice", "sort",
                           "unique", "wordcount"})


def _results_bounded(filters: dict[str, Any]) -> dict[str, Any]:
    """Every filter that can make text or a list longer than its input (`string`, `format`, `tojson`, `pprint`,
    `xmlattr`, `urlencode`, `escape`, `sum`, `join`, ...), bounded by its result (`_built`), its specific bound kept."""
    from jinja2 import Environment
    from jinja2.nodes import EvalContext
    from jinja2.runtime import Context

    def bound(name: str, original: Any) -> Any:
        @functools.wraps(original)  # keeps jinja's pass_eval_context / pass_environment mark
        def bounded(*args: Any, **kwargs: Any) -> Any:
            # Not the environment, context or eval context jinja passes first.
            values = [a for a in (*args, *kwargs.values()) if not isinstance(a, (Environment, Context, EvalContext))]
            return _built(name, values, lambda: original(*args, **kwargs))
        return bounded

    return {name: bound(name, f) for name, f in filters.items() if name not in _NOT_BUILDING}


def _bounded_lipsum(lipsum: Any) -> Any:
    def bounded(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
        if isinstance(n, int) and isinstance(max, int) and n * max > MAX_REPEAT // 10:
            _refuse(f"lipsum({n}, max={max})")
        return lipsum(n, html, min, max)
    return bounded


@functools.cache
def _environment() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.compiler import CodeGenerator, Frame, optimizeconst
    from jinja2.exceptions import SecurityError
    from jinja2.nodes import Concat
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
    from markupsafe import Markup

    class _CheckedFormatter(SandboxedFormatter):
        def format_field(self, value: Any, format_spec: str) -> Any:
            _bound_spec(format_spec)
            return super().format_field(value, format_spec)

    class _CheckedEscapeFormatter(SandboxedEscapeFormatter):  # a Markup string's (`"..."|safe`)
        def format_field(self, value: Any, format_spec: str) -> Any:
            _bound_spec(format_spec)
            return super().format_field(value, format_spec)

    class _BoundedConcat(CodeGenerator):
        """Jinja's code generator with `a ~ b ~ ...` going through `BoundedSandbox.concat_checked`, which refuses a
        result past the bound before it joins it (the sandbox intercepts no `~` of its own)."""

        @optimizeconst  # as jinja2's own: a concatenation of constants is folded at compile time
        def visit_Concat(self, node: Concat, frame: Frame) -> None:
            # The join jinja2's own visit_Concat picks (markup_join under autoescape), handed over with the parts.
            if frame.eval_ctx.volatile:
                join = "(markup_join if context.eval_ctx.volatile else str_join)"
            else:
                join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
            self.write(f"environment.concat_checked({join}, (")
            for part in node.nodes:
                self.visit(part, frame)
                self.write(", ")
            self.write("))")

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        """The sandbox, with `*`, `**`, `%` and `+` bounded (jinja2's documented hook: intercepted_binops/call_binop)
        and `~` too (`_BoundedConcat`). Immutable: a template cannot grow a list or dict in place (`append`,
        `extend`, `update`, ...), which no size check would see; `{% set ns.x = ... %}` on a namespace still works,
        through the bounded operators."""

        intercepted_binops = frozenset({"*", "**", "%", "+"})
        code_generator_class = _BoundedConcat

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            center, format_ = self.filters["center"], self.filters["format"]

            def bounded_center(value: Any, width: int = 80) -> Any:
                _bound_width(width)
                return center(value, width)

            def bounded_format(value: Any, *args: Any, **kwargs: Any) -> Any:
                _bound_printf(value)
                return format_(value, *args, **kwargs)

            # `list` reads all of its input: a generator of long strings is refused as it is read (`_listed`).
            self.filters.update(center=bounded_center, format=bounded_format,
                                list=lambda value: _listed(value, "list"))
            self.filters.update(_bounded_filters(self.filters))
            self.filters.update(_results_bounded(self.filters))
            self.finalize = self._finalized
            self.globals["lipsum"] = _bounded_lipsum(self.globals["lipsum"])
            self.globals["range"] = _counted_range(self.globals["range"])

        def wrap_str_format(self, value: Any) -> Any:
            """jinja2's sandboxing of `str.format` / `format_map` (its documented hook, which every such call goes
            through), with formatters that check each field's spec as resolved, nested fields and a
            format_map's mapping included, before building it."""
            if super().wrap_str_format(value) is None:  # not a str's format or format_map
                return None
            text = value.__self__
            formatter = (_CheckedEscapeFormatter(self, escape=text.escape) if isinstance(text, Markup)
                         else _CheckedFormatter(self))
            is_format_map = value.__name__ == "format_map"

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if is_format_map:  # as jinja2's own wrapper
                    if kwargs or len(args) != 1:
                        raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                    mapping: Any = args[0]
                    return _built("format_map()", (text, mapping),
                                  lambda: type(text)(formatter.vformat(text, (), mapping)))
                return _built("format()", (text, *args, *kwargs.values()),
                              lambda: type(text)(formatter.vformat(text, args, kwargs)))

            return functools.update_wrapper(wrapper, value)

        def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            """A call from a template: a str method that would build too much is refused before it runs."""
            method = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format in a function of its own
            receiver = getattr(method, "__self__", None)
            if isinstance(receiver, (str, bytes)) and not isinstance(method, type):
                name = getattr(method, "__name__", "")
                args = _bound_str_method(receiver, name, args, kwargs)
                return _built(f"{name}()", (receiver, *args, *kwargs.values()),
                              lambda: super(BoundedSandbox, self).call(context, obj, *args, **kwargs))
            return super().call(context, obj, *args, **kwargs)

        def _finalized(self, value: Any) -> Any:
            """An output `{{ value }}` (jinja2's finalize hook): a list or dict whose text would be far past the
            bound (a thousand references to a long string) is refused before str() makes it."""
            if not isinstance(value, str):
                _built("an output", (value,), lambda: None)
            return value

        def concat(self, parts: Iterable[str]) -> str:
            """The join of a template's output, of a `{% set %}` block and of a macro (jinja2 calls
            `environment.concat` for each), made as the template yields it and refused as soon as it passes
            MAX_REPEAT characters and its longest part: nested loops writing a character each, or a block
            capture doubling a value, stop there; one long value written out (`{{ prompt }}`) is kept."""
            out, total, longest, allowed = [], 0, 0, _allowed()
            for part in parts:
                out.append(part)
                total += len(part)
                longest = max(longest, len(part))
                if total > allowed and total > longest:
                    _refuse("the template's output")
            return "".join(out)

        def concat_checked(self, join: Any, parts: tuple[Any, ...]) -> Any:
            """`join(parts)` (the `~` of a template), refused when it would build more than MAX_REPEAT characters
            and more than its longest part: a loop doubling a string (`{% set ns.s = ns.s ~ ns.s %}`) stops at the
            bound, a long value passed on alone is left as it is."""
            # Measured, not str()-ed: a part that is a list of many references to a long string is refused before
            # its text is made.
            _concatenated(max((_part(part) for part in parts), default=0), sum(_size(part) for part in parts))
            return join(parts)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "+":
                for kind in (str, bytes, list, tuple):
                    if isinstance(left, kind) and isinstance(right, kind):
                        _concatenated(max(len(left), len(right)), len(left) + len(right))
            elif operator == "%":
                _bound_printf(left)
                if isinstance(left, str):  # a printf: bounded by its result, as format()
                    return _built("%", (left, right), lambda: super(BoundedSandbox, self).call_binop(
                        context, operator, left, right))
            elif operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) \
                            and len(seq) * times > MAX_REPEAT:
                        raise SecurityError(f"a repetition of more than {MAX_REPEAT:,} items")
            elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and abs(left) > 1 and abs(left).bit_length() * right > MAX_POWER_BITS:
                raise SecurityError(f"a power of more than {MAX_POWER_BITS:,} bits")
            return super().call_binop(context, operator, left, right)

    # autoescape off: these are argv elements, not HTML. keep_trailing_newline so content is exact.
    return BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _plain(source: str) -> bool:
    """Text that Jinja renders to itself: no Jinja syntax starts without "{" (line statements are off), and the
    only change Jinja makes to plain text is to line breaks ("\\r\\n" and "\\r" become "\\n"). Most argv
    elements ("--json", "-p") are such text: they need neither jinja2 nor a compiled template."""
    return "{" not in source and "\r" not in source


# `{{ name }}` alone: what most argv elements with a variable are (`{{ prompt }}`, `{{ model }}`).
_ONE_NAME = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MISSING = object()
# Names Jinja reads as something else than a variable: constants, operators, the template itself.
_NOT_VARIABLES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if",
                            "else", "self"})
# The environment's globals (jinja2.defaults.DEFAULT_NAMESPACE): Jinja does not count them as variables a
# template reads, so a template naming one is left to Jinja.
JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})

# Text and `{{ name }}` placeholders only: no other "{", no "\r" (the shape of nearly every argv element and env
# value: `--model={{ model }}`, `{{ home }}/.local/share`). Jinja parses such a template without fail, reads
# exactly the names in it, and renders it to its text with each placeholder replaced by its value's str().
_NAMES_ONLY = re.compile(r"(?:[^{\r]|\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\})*")


def _names_only(source: str) -> list[str] | None:
    """The placeholders' names, in order, when `source` is text and `{{ name }}` placeholders only and no name
    is one Jinja reads as something else (`none`, `self`, ...); None otherwise (Jinja must look at it)."""
    if _NAMES_ONLY.fullmatch(source) is None:
        return None
    names = _ONE_NAME.findall(source)
    return None if any(name in _NOT_VARIABLES or name in JINJA_GLOBALS for name in names) else names


def needs_jinja(source: str) -> bool:
    """Whether `check_template` and `variables_of` need Jinja for `source` (they answer text and `{{ name }}`
    placeholders without it)."""
    return not _plain(source) and _names_only(source) is None


def renders_without_jinja(source: str, variables: Mapping[str, Any]) -> bool:
    """Whether `render_one(source, variables)` knows its answer without Jinja: plain text, or text and
    `{{ name }}` placeholders whose values are all strings."""
    return not needs_jinja(source) and all(type(variables.get(name)) is str for name in _ONE_NAME.findall(source))


def is_plain(source: str) -> bool:
    """Whether `source` renders to itself without Jinja, whatever the variables (`render_one` skips Jinja)."""
    return _plain(source)


def check_template(source: str, allowed: Iterable[str]) -> str | None:
    """Why `source` cannot be used (syntax error, unknown variable), or None when it is fine."""
    if _plain(source):
        return None
    names = _names_only(source)
    if names is not None:  # parses; reads these names: only the unknown-variable check is left
        return _unknown_variables(source, set(names), allowed)
    return _check_with_jinja(source, allowed)


def _check_with_jinja(source: str, allowed: Iterable[str]) -> str | None:
    """check_template's answer from Jinja's own parser and code generator (for any template)."""
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
    return _unknown_variables(source, used, allowed)


def _unknown_variables(source: str, used: set[str], allowed: Iterable[str]) -> str | None:
    """The error for the variables in `used` that are not in `allowed` (None when there are none)."""
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
    if _plain(source):
        return frozenset()
    names = _names_only(source)
    if names is not None:
        return frozenset(names)
    from jinja2 import TemplateError, meta

    try:
        return frozenset(meta.find_undeclared_variables(_environment().parse(source)))
    except TemplateError:
        return None


@functools.lru_cache(maxsize=512)
def _compiled(source: str) -> Any:
    return _environment().from_string(source)


def render_one(source: str, variables: Mapping[str, Any]) -> str:
    """`source` rendered with `variables`. Raises RenderError for any failure (the config's mistake).

    Two shapes skip Jinja (tens of microseconds a render, several renders an attempt) because its answer is
    known: plain text (`_plain`) is itself, and `{{ name }}` of a string variable is that string. Anything else,
    and any name that is missing or not a string, is rendered by Jinja as before.
    """
    if _plain(source):
        return source
    single = _ONE_NAME.fullmatch(source)
    if single is not None and single.group(1) not in _NOT_VARIABLES:
        value = variables.get(single.group(1), _MISSING)
        if type(value) is str:
            return value
    elif single is None and _names_only(source) is not None:
        text = _substitute(source, variables)
        if text is not None:
            return text
    given, steps = _GIVEN.set(_given_size(variables)), _RANGE_STEPS.set([0])
    try:
        return str(_compiled(source).render(variables))
    except Exception as exc:
        # A template is code from the config file: besides Jinja's own errors (undefined, sandbox refusals) it
        # can divide by zero or add a string to a number. Every one of them is the config's mistake, reported
        # as such, never a traceback.
        # Never a blank reason: a MemoryError (or any exception) without a message is named by its type.
        raise RenderError(f"cannot render {source!r}: {str(exc) or type(exc).__name__}") from None
    finally:
        _GIVEN.reset(given)
        _RANGE_STEPS.reset(steps)


def _substitute(source: str, variables: Mapping[str, Any]) -> str | None:
    """A `_names_only` template with each placeholder replaced by its string value, as Jinja renders it; None
    when some name is missing or its value is not a str (Jinja then renders, or says what is wrong)."""
    values = []
    for name in _ONE_NAME.findall(source):
        value = variables.get(name, _MISSING)
        if type(value) is not str:
            return None
        values.append(value)
    if sum(map(len, values)) > MAX_REPEAT:  # possibly past the bound (`{{ prompt }}{{ prompt }}`): Jinja judges
        return None
    pieces = iter(values)
    return _ONE_NAME.sub(lambda _: next(pieces), source)


def render_argv(sources: Sequence[str], variables: Mapping[str, Any]) -> list[str]:
    """Render each element; drop the ones that come out empty."""
    return [text for text in (render_one(s, variables) for s in sources) if text != ""]


def render_env(sources: Mapping[str, str], variables: Mapping[str, Any]) -> dict[str, str]:
    return {name: render_one(value, variables) for name, value in sources.items()}
