"""Checks of the Python API's arguments at the boundary (Engine, load, ModelRouter, run_many).

A wrong type given to a public call (`prompt=...`, `now="2026-11-18T23:30"`, a number for `workdir`) is an
`ArgumentError` naming the argument, what it takes and what it got, raised before anything runs, rather than
an AttributeError from deep inside. Each check returns the value it accepted, so a caller writes
`prompt = checked_prompt(prompt)`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adws.errors import ArgumentError

__all__ = ["FIRST_YEAR", "LAST_YEAR", "checked_callable", "checked_count", "checked_flag", "checked_mapping",
           "checked_now", "checked_path", "checked_prompt", "checked_seconds", "checked_workdir", "got",
           "time_problem"]

# The years a routing time (`now=`, --at, a scenario's `at`, simulate's days) may fall in, in its own timezone. The
# state stores keep times from 1970 to 3000 (adws.state.base.EARLIEST/LATEST); routing looks at most about a year
# back from its time (history_window, a rolling window, a yearly quota period) and ahead of it (the next reset), so
# a year's margin inside the stores' range keeps every time it computes in range: datetime arithmetic and cron
# search never reach the years 1 or 9999, where they overflow.
FIRST_YEAR = 1971
LAST_YEAR = 2998


# The most digits an integer adws takes may have: Python's own limit for reading and printing one
# (sys.int_info.default_max_str_digits), so what `adws route --task-json` reads as JSON is what a Python caller
# may pass. Beyond it an integer cannot even be printed (ValueError), in a message or in the audit log.
INT_DIGITS_MOST = 4300
_INT_BOUND = 10**INT_DIGITS_MOST


def shown(value: Any) -> str:
    """A short repr of `value` for a message: at most 60 characters; an integer too long to print (see
    INT_DIGITS_MOST) by its size; a container holding itself by its type."""
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT_BOUND < value < _INT_BOUND:
        return f"an integer of more than {INT_DIGITS_MOST} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an integer inside, too long to print; a container holding itself
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def got(value: object) -> str:
    """`value` for "got ..." in a message: its type and a short repr (`shown`); `...` (Ellipsis) named as a
    placeholder."""
    if value is Ellipsis:
        return "... (Ellipsis: a placeholder, not a value)"
    if value is None or isinstance(value, bool):
        return repr(value)
    return f"{type(value).__name__} {shown(value)}"


def checked_prompt(prompt: object, *, optional: bool = False) -> str | None:
    """`prompt` when it is a string (None too when `optional`). Raises ArgumentError otherwise.
    (That the text is not empty is run()'s check: a PromptError.)"""
    if isinstance(prompt, str) or (optional and prompt is None):
        return prompt
    raise ArgumentError(f"prompt: expected the prompt's text (a str{', or None' if optional else ''}), "
                        f"got {got(prompt)}")


def time_problem(moment: datetime) -> str | None:
    """Why `moment` cannot be a routing time (its year, in its own timezone, is outside FIRST_YEAR..LAST_YEAR),
    or None."""
    if FIRST_YEAR <= moment.year <= LAST_YEAR:
        return None
    from adws.state.base import EARLIEST, LATEST  # here: what only this message needs is not loaded at start-up

    return (f"{moment.isoformat()} is outside the times adws routes at (the years {FIRST_YEAR} to {LAST_YEAR}: "
            f"state stores keep {EARLIEST.year} to {LATEST.year})")


def checked_now(now: object) -> datetime | None:
    """`now` when it is a datetime or None. A string is refused, not parsed: the API takes datetimes (a naive one
    is read in the routing timezone, see ModelRouter.route), and a string's offset or its absence is a decision
    the caller should see made. A datetime outside the years FIRST_YEAR..LAST_YEAR is refused too (see
    `time_problem`). Raises ArgumentError."""
    if now is None:
        return now
    if isinstance(now, datetime):
        problem = time_problem(now)
        if problem:
            raise ArgumentError(f"now: {problem}")
        return now
    hint = (" (parse it with datetime.fromisoformat(...); without an offset it is read in the routing timezone)"
            if isinstance(now, str) else "")
    raise ArgumentError(f"now: expected a datetime or None, got {got(now)}{hint}")


def checked_workdir(workdir: object) -> str | os.PathLike[str]:
    """`workdir` when it is a non-empty str or an os.PathLike of str (a pathlib.Path). Raises ArgumentError.
    (That it is a directory is run()'s check: a MissingWorkdirError.)"""
    _path_text("workdir", workdir, "a directory's path")
    return workdir  # type: ignore[return-value]  # _path_text returned, so a str or an os.PathLike of str


def checked_seconds(name: str, value: object, *, optional: bool = True) -> float | None:
    """A duration in seconds: an int or float >= 0 (inf allowed), or None when `optional`. Raises ArgumentError."""
    if value is None and optional:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value) and value >= 0:
        return float(value)
    raise ArgumentError(f"{name}: expected seconds, a number >= 0{' or None' if optional else ''}, got {got(value)}")


def checked_count(name: str, value: object, *, minimum: int) -> int:
    """An int >= `minimum` (not a bool). Raises ArgumentError."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    raise ArgumentError(f"{name}: expected an integer >= {minimum}, got {got(value)}")


def checked_callable(name: str, value: Any, *, what: str, optional: bool = True) -> Any:
    """`value` when it is callable (or None, when `optional`); `what` says what it is called with. Raises
    ArgumentError."""
    if callable(value) or (optional and value is None):
        return value
    raise ArgumentError(f"{name}: expected a callable (called with {what}){' or None' if optional else ''}, "
                        f"got {got(value)}")


def checked_flag(name: str, value: object) -> bool:
    """A bool (True/False, not "yes" or 1). Raises ArgumentError."""
    if isinstance(value, bool):
        return value
    raise ArgumentError(f"{name}: expected True or False, got {got(value)}")


def checked_mapping(name: str, value: object) -> Mapping[str, str] | None:
    """A mapping (os.environ, a dict) or None. Raises ArgumentError."""
    if value is None or isinstance(value, Mapping):
        return value
    raise ArgumentError(f"{name}: expected a mapping of names to values (a dict, os.environ) or None, "
                        f"got {got(value)}")


def checked_path(name: str, value: object) -> str:
    """A file's path (a non-empty str or an os.PathLike of str) as a str. Raises ArgumentError."""
    return _path_text(name, value, "a file's path")


def _path_text(name: str, value: object, what: str) -> str:
    """`value` (a non-empty str or an os.PathLike of str) as a str; else ArgumentError saying `name` expected
    `what` (a file's path, a directory's path). One check serves checked_workdir and checked_path. A PathLike of
    bytes is refused: the engine joins and prints these paths as text."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if isinstance(text, str) and text:
        return text
    raise ArgumentError(f"{name}: expected {what} (a non-empty str or a pathlib.Path), got {got(value)}")
