"""Regular expressions written by users (attrs `regex` conditions, provider `failure_patterns`).

They run on text adws does not control (task attributes, agent output), so they run on RE2 (google-re2), whose
matching time is linear in the text: `(a+)+$` over 30 characters takes microseconds instead of minutes.
RE2 refuses what it cannot run in linear time (backreferences, lookaround); such a regex is a load error.
adws's own fixed patterns keep Python's `re`.

Differences from Python's `re` a maintainer may meet (RE2 syntax, https://github.com/google/re2/wiki/Syntax):
`\\b`, `\\w` and `\\d` are ASCII-only; `$` matches only at the very end (not before a final newline) unless
`(?m)`; no `(?=...)`, `(?!...)`, `(?<=...)` or `\\1`.

A regex that compiled before (a config read back from the compiled-config cache, see `already_checked`) is
compiled again only at its first search, so `adws route` loads RE2 only when a regex is actually searched. A
validation after a config edit takes RE2's verdict on a regex the edit left as it was from the remembered checks
(`remembering`, adws.config.verdicts), and compiles it at its first search too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from adws.dataclass_cache import dataclass
from adws.errors import toml_value


class Match(Protocol):
    def start(self) -> int: ...
    def end(self) -> int: ...


class Searcher(Protocol):
    """What the classifier and conditions need of a compiled regex: Python's `re.Pattern` and `UserRegex`."""

    @property
    def pattern(self) -> str: ...
    def search(self, text: str) -> Match | None: ...


def _options(ignore_case: bool) -> Any:
    import re2  # on first use: a config without regexes never loads RE2 (a few ms of `adws route` start-up)

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own parse errors to stderr; ours is the message
    options.case_sensitive = not ignore_case
    return options


@dataclass(frozen=True, slots=True)
class UserRegex:
    """A compiled user regex. `search` as `re.Pattern.search`: the first match anywhere, or None."""

    pattern: str
    ignore_case: bool
    compiled: Any  # re2._Regexp: no type stubs

    def search(self, text: str) -> Match | None:
        try:
            return self.compiled.search(text)  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            # A lone surrogate (valid in JSON) cannot be encoded for RE2: it becomes U+FFFD, one character
            # for one, so match positions still index the original text.
            return self.compiled.search(  # type: ignore[no-any-return]
                text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    def __reduce__(self) -> tuple[Any, ...]:
        return compile_user_regex, (self.pattern, self.ignore_case)


_CHECKED: ContextVar[bool] = ContextVar("adws_regex_checked", default=False)
# Verdicts made before, for a validation (adws.config.verdicts): given the question (the `repr` of source,
# ignore_case, allow_empty and a False allow_universal) and the function that asks RE2, the answer — None when the
# regex is accepted, else the message of the ValueError that refused it — from memory, or by calling the function.
Memo = Callable[[str, Callable[[], "str | None"]], "str | None"]
_MEMO: ContextVar[Memo | None] = ContextVar("adws_regex_memo", default=None)


@contextmanager
def remembering(memo: Memo) -> Iterator[None]:
    """`compile_user_regex` inside takes RE2's verdict on a regex from `memo` (see `Memo`): an accepted regex is
    then compiled at its first search, as inside `already_checked`, so a validation whose regexes were all
    remembered does not load RE2."""
    token = _MEMO.set(memo)
    try:
        yield
    finally:
        _MEMO.reset(token)


def remembered_answer(value: Any) -> str | None:
    """A stored refusal as `remembering`'s memo gives it, or None (which a memo stores for an accepted regex)."""
    return value if type(value) is str else None


@contextmanager
def already_checked() -> Iterator[None]:
    """UserRegexes built inside compile at their first search instead of now: for sources that compiled with
    the same options before (the compiled-config cache stores only validated configs)."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


class CompiledOnFirstSearch:
    """A regex compiled at its first search: `compile()` gives the compiled regex (anything with `search`).

    `search` is an attribute, not a method: the first call replaces it with the compiled regex's own `search`,
    so later searches cost what they cost on the compiled regex itself. `pattern` is the source."""

    __slots__ = ("_compile", "pattern", "search")

    def __init__(self, pattern: str, compile: Callable[[], Any]) -> None:
        self.pattern = pattern
        self._compile = compile
        self.search: Callable[[str], Match | None] = self._compile_and_search

    def _compile_and_search(self, text: str) -> Match | None:
        compiled = self._compile()
        self.search = compiled.search
        return compiled.search(text)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"CompiledOnFirstSearch({self.pattern!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _same, (self._compile(),)  # pickled as the compiled regex (a `compile` may be a lambda)


def _same(value: Any) -> Any:
    return value


def _compile_checked(source: str, ignore_case: bool) -> Any:
    """RE2's compiled regex of a source that compiled before (ValueError all the same if it does not)."""
    import re2

    try:
        return re2.compile(source, _options(ignore_case))
    except re2.error as exc:
        raise ValueError(bad_regex(source, _why(source, exc))) from None


def compile_user_regex(source: str, ignore_case: bool = False, *, allow_empty: bool = True,
                       allow_universal: bool = True) -> UserRegex:
    """Compile a user's regex for linear-time matching. Raises ValueError with the one wording adws uses for a
    bad regex: `bad regex "SOURCE": WHY`. Inside `already_checked()` nothing is checked and RE2 compiles the
    regex at its first search; inside `remembering(memo)` the verdict comes from the memo, and a remembered
    acceptance is compiled at its first search as well. `allow_empty=False` refuses a regex that matches empty text
    (it would match every output); `allow_universal=False` only one that matches every text (`""`, `.*`: as a
    condition it asks nothing)."""
    if _CHECKED.get():
        return _compiled_on_first_search(source, ignore_case)
    memo = _MEMO.get()
    if memo is None:
        return _compile(source, ignore_case, allow_empty, allow_universal)
    compiled: list[UserRegex] = []

    def verdict() -> str | None:
        try:
            compiled.append(_compile(source, ignore_case, allow_empty, allow_universal))
        except ValueError as exc:
            return str(exc)
        return None

    key = (source, ignore_case, allow_empty) if allow_universal else (source, ignore_case, allow_empty, False)
    refusal = memo(repr(key), verdict)
    if refusal is not None:
        raise ValueError(refusal)
    return compiled[0] if compiled else _compiled_on_first_search(source, ignore_case)


def _compiled_on_first_search(source: str, ignore_case: bool) -> UserRegex:
    return UserRegex(source, ignore_case, CompiledOnFirstSearch(source, lambda: _compile_checked(source, ignore_case)))


# Texts a regex that matches every text matches: the empty one, a letter, a space, a line break. A regex that
# finds a match in each (`""`, `.*`, `x*`, `$`) is taken to match anything.
_ANY_TEXT = ("", "a", " ", "\n")


def _compile(source: str, ignore_case: bool, allow_empty: bool, allow_universal: bool = True) -> UserRegex:
    """`compile_user_regex` asking RE2 itself."""
    import re2

    try:
        compiled = re2.compile(source, _options(ignore_case))
    except re2.error as exc:
        raise ValueError(bad_regex(source, _why(source, exc))) from None
    regex = UserRegex(source, ignore_case, compiled)
    if not allow_empty and compiled.search("") is not None:
        raise ValueError(f"regex {toml_value(source)} matches empty text, so it would match every output")
    if not allow_universal and all(compiled.search(text) is not None for text in _ANY_TEXT):
        raise ValueError(f"regex {toml_value(source)} matches every text, so it asks nothing of the value; to ask "
                         "only that the attribute is there, write `exists = true`")
    return regex


def bad_regex(source: str, why: str) -> str:
    return f"bad regex {toml_value(source)}: {why}"


def _why(source: str, exc: Exception) -> str:
    """Python's wording when Python also refuses the regex (it names the position); otherwise RE2's, with why."""
    try:
        re.compile(source)
    except re.error as py_exc:
        where = f" at position {py_exc.pos}" if py_exc.pos is not None else ""
        return f"{py_exc.msg}{where}"
    except (RecursionError, OverflowError):  # Python's parser has limits of its own on hostile input
        pass
    detail = exc.args[0] if exc.args else exc
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return (f"{text} (adws matches user regexes in linear time with RE2, which has no backreferences, "
            "lookahead or lookbehind)")
