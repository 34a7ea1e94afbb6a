"""Errors that adws reports to its users.

Every error here is meant to be printed as-is: it names the place and says what to change.
Nothing in adws should let a traceback reach a maintainer for a mistake in config or task input.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time
from typing import Any

from adws.dataclass_cache import dataclass, field, replace

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file, with where it is: `where` in words, `loc` as keys, `line` in the file
    (1-based; None where the file has no line for it, or it was not read from a file)."""

    where: str
    message: str
    loc: Loc = field(default=(), compare=False)
    line: int | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def at_line(self, line: int | None) -> Problem:
        return replace(self, line=line)


class AdwsError(Exception):
    """Base class: anything adws raises on purpose."""


class ConfigError(AdwsError):
    """The config file cannot be used. Holds every problem found, not just the first. `unreadable`: the file
    itself could not be read (missing, a directory, no permission, over its size bound), so nothing in it was
    judged: `adws check` exits 2 for it (a usage error), 1 for a file read and found invalid."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None, *, unreadable: bool = False) -> None:
        self.problems = list(problems)
        self.source = source
        self.unreadable = unreadable
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1 and not self.problems[0].where:
            # The file as a whole (missing, not TOML): one line reads better than a list of one.
            return f"{head}{self.problems[0].message}"
        lines = [f"{head}{count(len(self.problems), 'problem')} in config"]
        # `file:line: ...` as compilers print it, so editors and terminals can jump to the place; in the file's
        # order (the checks find them pass by pass), those without a line last, each group as found.
        shown = sorted(self.problems, key=lambda p: (p.line is None, p.line or 0))
        lines.extend(f"  {self.source}:{p.line}: {p}" if p.line is not None and self.source else f"  {p}"
                     for p in shown)
        return "\n".join(lines)


class TaskError(AdwsError):
    """The task given to route()/run() is malformed (bad priority, negative retry count, ...).

    `problems`: one string per problem; the message is "invalid task: " and the problems joined by "; ".
    """

    head = "invalid task: "  # what the message blames; PromptError and MissingWorkdirError name their own thing

    def __init__(self, problems: Iterable[str], partial: Any = None) -> None:
        self.problems = list(problems)
        # The Task built from the fields that passed (None when none could be built), so that the checks
        # which need the config (priority names, specialization, override label) can still list their problems.
        self.partial = partial
        super().__init__(self.head + "; ".join(self.problems))


class PromptError(TaskError):
    """The prompt given to run() cannot be used (it is empty, or its file cannot be read). Each problem names the
    prompt itself ("prompt: empty; ..."): the task is not what is wrong. A TaskError, as run() raised for an
    empty prompt before this class existed, so `except TaskError` still catches it."""

    head = ""


class WorkdirError(AdwsError):
    """The working directory cannot be used: it is not a directory, or the `[run] workdir` policy cannot use
    it (not git, uncommitted changes, git failed). Also importable from adws.workdir, where it was first."""


class MissingWorkdirError(WorkdirError, TaskError):
    """The workdir given to run() is not a directory (nothing ran). Its message names the workdir, not the task; a
    TaskError too, as run() raised one for it before this class existed."""

    head = ""


class ArgumentError(AdwsError, TypeError, ValueError):
    """A Python API call got an argument it cannot use: the wrong type (a string for `now`, `prompt=...`) or an
    impossible value (`concurrency=0`). The message names the argument, what it takes and what it got.

    A TypeError and a ValueError too, so code that catches Python's own errors for such mistakes catches it."""


class UsageError(AdwsError):
    """A command-line argument is wrong (a bad --at, two inputs on stdin, ...)."""


class Interrupted(KeyboardInterrupt):
    """`Engine.run` was stopped (Ctrl-C, SIGTERM, SIGHUP) after the run began: `result` holds every attempt made,
    the interrupted one included, already recorded in the state store and the audit log. `signal` names the
    signal ("SIGTERM"). Being a KeyboardInterrupt, it unwinds callers that do not know it. `adws_result` is the
    same result, under the name every stop that carries one uses (RunCancelled's, run_many's reading)."""

    def __init__(self, signal: str, result: object) -> None:
        super().__init__(signal)
        self.signal = signal
        self.result = self.adws_result = result


class RenderError(AdwsError):
    """A provider command could not be built for this task (e.g. the prompt is too long for argv)."""


class RunCancelled(BaseException):
    """A run was cancelled (`await engine.arun(...)` cancelled): the agent's process group is ended.

    A BaseException, like KeyboardInterrupt and asyncio.CancelledError, so no `except Exception` swallows it.
    `outcome` is what the runner saw of the ended attempt (None when no attempt was running); the manager
    turns it into `attempt`, recorded in the Result and the audit log with the outcome "error".
    """

    def __init__(self, outcome: object = None) -> None:
        super().__init__("the run was cancelled")
        self.outcome = outcome
        self.attempt: object = None


# The modules of adws's declared dependencies (pyproject.toml's `dependencies` and the `redis` extra), each with the
# distribution that installs it: tests/test_errors_dependencies.py checks this against pyproject.toml.
DEPENDENCY_MODULES: dict[str, str] = {
    "pydantic": "pydantic", "jinja2": "jinja2", "croniter": "croniter", "tzdata": "tzdata",
    "ahocorasick_rs": "ahocorasick-rs", "stringzilla": "stringzilla", "re2": "google-re2",
    "matplotlib": "matplotlib", "rich": "rich", "redis": "redis",
}


def missing_dependency(exc: ImportError) -> str | None:
    """The one line to show for `exc` when it is the import of one of adws's own dependencies failing (adws's code
    run on a Python where it was not installed, `python3 tools/show-routing.py` outside the virtualenv, or an
    editable install older than a dependency), else None (a bug, to be raised as it is). It names every
    dependency this Python lacks, not only the one met first: one install mends them all."""
    module = (exc.name or "").partition(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or module not in DEPENDENCY_MODULES:
        return None
    others = [m for m in DEPENDENCY_MODULES if m not in (module, *OPTIONAL_MODULES) and not _importable(m)]
    if others:
        names = ", ".join(f"{DEPENDENCY_MODULES[m]!r}" for m in (module, *others))
        head = f"the packages {names} are not installed for {sys.executable}"
    else:
        head = f"the package {DEPENDENCY_MODULES[module]!r} (module {module}) is not installed for {sys.executable}"
    # An editable install made before a dependency was added keeps running the new code without it: say so.
    return (f"{head}: install adws with its dependencies again (`python3 -m pip install .`, or `-e .` for an "
            "editable install, in a virtualenv: see the README) and run it with that Python")


OPTIONAL_MODULES = ("redis",)  # pyproject's extras: a missing one is named only when it is the one imported


def _importable(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except ValueError:  # a module set to None in sys.modules (its import fails): as good as missing
        return False


def set_or_unset(env: Mapping[str, str], variable: str, name_a: str, unset_means: str,
                 error: type[AdwsError] = AdwsError) -> str | None:
    """`env[variable]`, or None when it is unset. Set but empty, it raises `error`: a mistake
    (`ADWS_STATE_PATH=$UNSET`) that, taken as unset, would use the very default the variable was set to avoid.
    The one rule of ADWS_CONFIG, ADWS_CACHE_DIR, ADWS_STATE_PATH and ADWS_STATE_URL."""
    value = env.get(variable)
    if value == "":
        raise error(f"{variable} is set but empty: name {name_a}, or unset it to use {unset_means}")
    return value


def count(n: int, noun: str) -> str:
    """`1 rule`, `2 rules`, `0 rules`: a count with its noun (regular English plurals only: add "s"). Here, not
    in adws.views, so that `adws check` words its counts without importing the views."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def suggest(word: str, choices: Iterable[str], meant: Iterable[str] = ()) -> str:
    """' (did you mean "x"?)' for a near miss, else ''. A choice that differs only in case ("utc" for "UTC")
    comes first: difflib alone does not see those. Among the near misses (difflib's ratio >= 0.6), the one the
    maintainer most likely meant wins: first one named in `meant` (what the place says, e.g. the label a
    specialization is given for: `"lang:ruby" = "rusy"` means "ruby", not "rust"), then the one sharing the
    longest start of at least 3 characters (typos keep the start: "documents" is nearer "docs" than
    "large_document"), then difflib's best."""
    import difflib  # only on the error path: not a cost of every start-up

    options = list(choices)
    same_case = [c for c in options if c.lower() == word.lower() and c != word]
    if same_case:
        return f' (did you mean "{same_case[0]}"?)'
    return _likeliest(word, difflib.get_close_matches(word, options, n=max(len(options), 1), cutoff=0.6), meant)


def suggest_typo(word: str, choices: Iterable[str], meant: Iterable[str] = ()) -> str:
    """' (did you mean "x"?)' when `word` is a typo of a choice (`is_typo`), else '': for a place where a name of
    one's own is allowed, so that only a name a slip away from a known one is refused ("cod" for "code", not
    "codegen"). Several typos are ranked as `suggest` ranks near misses, the nearest (then the first in
    alphabetical order) standing for difflib's best."""
    close = sorted((c for c in set(choices) if is_typo(word, c)), key=lambda c: (edit_distance(word, c), c))
    return _likeliest(word, close, meant)


def is_typo(word: str, known: str) -> bool:
    """Whether `word` is most likely a slip for `known`: a different text within Damerau-Levenshtein distance 1
    of a `known` of 4 to 7 characters, 2 of one of 8 or more. A known name under 4 characters has no typos:
    one character changed is a third of it or more, as likely a name of its own ("ux" beside "ui")."""
    if word == known or len(known) < 4:
        return False
    limit = 2 if len(known) >= 8 else 1
    return abs(len(word) - len(known)) <= limit and edit_distance(word, known) <= limit


def edit_distance(a: str, b: str) -> int:
    """The Damerau-Levenshtein distance of `a` and `b` in its optimal string alignment form: the fewest
    insertions, deletions and substitutions of one character and swaps of two adjacent ones that turn `a` into
    `b`, no part edited twice (Wagner-Fischer's table with Damerau's swap; "archtecture" -> "architecture" 1,
    "fast_respnose" -> "fast_response" 1, "codegen" -> "code" 3). O(len(a) x len(b)) time."""
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:  # two adjacent characters swapped
                current[j] = min(current[j], before[j - 2] + 1)
        before, previous = previous, current
    return previous[-1]


def _likeliest(word: str, close: list[str], meant: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the one of `close` (near misses, best first) the maintainer most likely meant
    (see `suggest`), '' when there is none."""
    if not close:
        return ""
    in_place = [c for c in meant if c in close]

    def shared_start(choice: str) -> int:
        n = next((i for i, (a, b) in enumerate(zip(word, choice, strict=False)) if a != b), min(len(word), len(choice)))
        return n if n >= 3 else 0

    best = in_place[0] if in_place else max(close, key=shared_start)  # max keeps difflib's order among equals
    return f' (did you mean "{best}"?)'


def toml_value(value: Any, *, brief: bool = False) -> str:
    """A value as it is written in TOML, for messages: `"text"`, `true`, `[1, 2]`, `{ a = 1 }`, `inf`.

    `brief` is for "got ..." after a type mismatch: arrays and tables are named ("an array", "a table") rather
    than printed, a float with an integer value prints as the integer it was most likely written as, and a
    TOML date says that it is one.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML basic strings escape as JSON does
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return str(int(value)) if brief and value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return f"the date-time {value.isoformat()}" if brief else value.isoformat()
    if isinstance(value, (list, tuple, frozenset, set)):
        if brief:
            return "an array"
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return "[" + ", ".join(toml_value(v) for v in items) + "]"
    if isinstance(value, Mapping):
        if brief:
            return "a table"
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }" \
            if value else "{}"
    return type(value).__name__ if brief else str(value)


def toml_key(key: str) -> str:
    """A key as TOML needs it written: bare when it can be, quoted otherwise (`"attrs.tier"`)."""
    return key if key and key.replace("_", "").replace("-", "").isalnum() and key.isascii() else toml_value(key)


def json_kind(value: Any) -> str:
    """What a value parsed from JSON is, in JSON's own words, for "got ..." in messages: "null", "a boolean",
    "a string", "an integer", "a number", "an array", "an object"; other Python values by their type's name."""
    if isinstance(value, Mapping):
        return "an object"
    return _JSON_KINDS.get(type(value)) or type(value).__name__


_JSON_KINDS = {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "an array",
               tuple: "an array", dict: "an object", type(None): "null"}
