"""Errors that adws reports to its users.

Every error here is meant to be printed as-is: it names the place and says what to change.
Nothing in adws should let a traceback reach a maintainer for a mistake in config or task input.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file, with where it is."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class AdwsError(Exception):
    """Base class: anything adws raises on purpose."""


class ConfigError(AdwsError):
    """The config file cannot be used. Holds every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1 and not self.problems[0].where:
            # The file as a whole (missing, not TOML): one line reads better than a list of one.
            return f"{head}{self.problems[0].message}"
        count = len(self.problems)
        lines = [f"{head}{count} problem{'s' if count != 1 else ''} in config"]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


class TaskError(AdwsError):
    """The task given to route()/run() is malformed (bad priority, negative retry count, ...)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid task: " + "; ".join(self.problems))


class UsageError(AdwsError):
    """A command-line argument is wrong (a bad --at, two inputs on stdin, ...)."""


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


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for a near miss, else ''."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{matches[0]}"?)' if matches else ""
