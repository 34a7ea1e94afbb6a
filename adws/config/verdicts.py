"""Remembered template checks: what Jinja said about a template, kept across config edits.

Checking a template that is more than text and `{{ name }}` placeholders (`{% if thinking_budget %}...`) needs
jinja2, whose import costs more than the rest of a config's checks. An edit elsewhere in the file leaves such a
template's answers as they were, so `adws.config.load_config` keeps them in one file of the config cache
directory, `template-checks.json`, and a validation asks it first. The same file keeps croniter's verdict on
each cron expression and RE2's on each user regex, so an edit that leaves them as they were needs neither.

Each answer is filed under a SHA-256 over everything it depends on: the kind of question, the template's text,
the variables it may read or is rendered with (their `repr`, which tells `1`, `1.0`, `True` and `"1"` apart),
the adws code and the installed jinja2, markupsafe, croniter, dateutil and RE2 files (path, size, modification
time), and the Python version. So an answer is only ever found for exactly the inputs it was computed from. The
file is read and written as a compiled-config entry is (`adws.config.read_sealed`/`write_sealed`: the user's
own, nobody else's to write, no symlink, sealed); an answer of the wrong shape for its question is ignored and
computed again. An unusable file costs one Jinja check per template, never a wrong answer.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterator

_FORMAT = "adws-template-checks/1"
_NAME = "template-checks"
_MOST = 512  # answers kept: those of the last validation, then older ones up to this many
T = TypeVar("T")


@functools.cache
def _library_stamp() -> str:
    """Changes whenever an installed file of jinja2 (and markupsafe), croniter (and dateutil) or RE2, in any of
    their subpackages, changes (found without importing them)."""
    from importlib.machinery import PathFinder

    from adws.config import tree_stamp

    parts = []
    for name in ("jinja2", "markupsafe", "croniter", "dateutil", "re2"):
        spec = PathFinder.find_spec(name)
        locations = list(spec.submodule_search_locations or ()) if spec is not None else []
        for location in locations:
            parts += tree_stamp(location, (".py", ".so", ".pyd"))
        if not locations:
            parts.append(f"{name}: not found")
    return "\n".join(sorted(parts))


class Verdicts:
    """The remembered answers read from the cache (`known`) and those this validation used (`used`)."""

    def __init__(self, known: dict[str, Any]) -> None:
        from adws.config import _code_stamp, digest_of

        self.known = known
        # What every answer depends on, hashed once: each answer's key continues from a copy of it.
        self._base = digest_of(_FORMAT, sys.version, _code_stamp(), _library_stamp())
        self.used: dict[str, Any] = {}
        self.computed = False  # some answer was not known: the file is worth writing again

    def answer(self, kind: str, inputs: str, compute: Callable[[], T], check: Callable[[Any], T | None],
               none_ok: bool = False) -> T:
        """`compute()`, or its remembered answer for (`kind`, `inputs`). `check` turns a stored JSON value into
        the answer (None when the value is not of the answer's shape); answers are stored as they are, so
        `compute` must return JSON data (str, None, lists of str). `none_ok`: None is an answer of this kind
        (a template check's "no problem"); otherwise a stored null is of the wrong shape and computed again."""
        from adws.config import feed

        key = feed(self._base.copy(), kind, inputs).hexdigest()
        if key in self.known:
            stored = self.known[key]
            found = check(stored)
            if found is not None or (stored is None and none_ok):
                self.used[key] = stored
                return found  # type: ignore[return-value]  # None is a stored answer (no problem)
        value = compute()
        self.used[key] = value
        self.computed = True
        return value


_CURRENT: ContextVar[Verdicts | None] = ContextVar("adws_template_verdicts", default=None)


def remembered(kind: str, inputs: Callable[[], str], compute: Callable[[], T],
               check: Callable[[Any], T | None], *, none_ok: bool = False) -> T:
    """`compute()`, answered from the remembered checks when a `remembering` block is open (see
    `Verdicts.answer`)."""
    verdicts = _CURRENT.get()
    if verdicts is None:
        return compute()
    return verdicts.answer(kind, inputs(), compute, check, none_ok)


def _path() -> Path:
    from adws.config import cache_dir

    return cache_dir() / f"{_NAME}.json"


def _read() -> dict[str, Any]:
    from adws.config import read_sealed

    payload = read_sealed(_path(), _NAME, _FORMAT)
    if payload is None:
        return {}
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    if type(data) is not dict or not all(type(key) is str for key in data):
        return {}
    return data


@contextmanager
def remembering() -> Iterator[Verdicts]:
    """Template checks inside answer from the file of remembered checks; the answers used are written back
    (with older ones, up to `_MOST`) when some had to be computed."""
    from adws import cron, userregex

    verdicts = Verdicts(_read())

    def cron_memo(expr: str, compute: Callable[[], list[Any] | str]) -> list[Any] | str:
        return verdicts.answer("cron", repr(expr), compute, cron.remembered_answer)

    def regex_memo(question: str, compute: Callable[[], str | None]) -> str | None:
        return verdicts.answer("regex", question, compute, userregex.remembered_answer, none_ok=True)

    token = _CURRENT.set(verdicts)
    try:
        with cron.remembering(cron_memo), userregex.remembering(regex_memo):
            yield verdicts
    finally:
        _CURRENT.reset(token)
        # Also when the validation failed: each answer holds whatever the config's outcome, and a config being
        # fixed is validated again and again (an interruption, which is no Exception, writes nothing).
        failure = sys.exc_info()[1]
        if failure is None or isinstance(failure, Exception):
            _write(verdicts)


def _write(verdicts: Verdicts) -> None:
    """Store the answers `verdicts` used, with older ones up to `_MOST`."""
    if verdicts.computed:
        from adws.config import write_sealed

        kept = dict(verdicts.used)
        for key, value in verdicts.known.items():
            if len(kept) >= _MOST:
                break
            kept.setdefault(key, value)
        payload = json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
        write_sealed(_path(), _NAME, _FORMAT, payload)
