"""Verify, then escalate: the command a provider or rule declares (`verify = [...]`) to check an attempt's work.

It runs after an attempt the agent reported as successful, in the directory the attempt ran in, through the
same subprocess runner as the agents (own process group, timeout, escalation, capped logs). Its logs go to
`verify/` inside the attempt's directory, beside the agent's own. A non-zero exit, a timeout or a command that
cannot start makes the attempt's outcome `verify_failed`, whose declared action (default `next_tier`) the walk
then takes like any other class. The pattern is the verify-then-escalate dispatcher's: the agent's own word is
not the test of the work.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adws.attempt import RunOutcome
from adws.dataclass_cache import dataclass
from adws.errors import RenderError
from adws.runner import RunRequest
from adws.templates import render_argv

if TYPE_CHECKING:
    from adws.compiled import ProviderSpec
    from adws.decision import Decision

__all__ = ["DEFAULT_VERIFY_TIMEOUT", "VERIFY_DIR", "Verification", "declared", "verify"]

VERIFY_DIR = "verify"
DEFAULT_VERIFY_TIMEOUT = 600.0  # seconds: a project's test suite, not an agent session
_TAIL_SHOWN = 300  # characters of the verifier's output quoted in the reason


@dataclass(frozen=True, slots=True)
class Verification:
    """How the verify command ended. `passed` is True only for exit code 0."""

    passed: bool
    reason: str  # "verify passed" or why not, with the end of its output
    command: list[str]  # redacted argv
    exit_code: int | None
    duration_ms: int
    stdout_path: str | None
    stderr_path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "command": self.command, "exit_code": self.exit_code,
                "duration_ms": self.duration_ms, "stdout_path": self.stdout_path, "stderr_path": self.stderr_path}


def declared(decision: Decision, provider: ProviderSpec) -> tuple[str, ...]:
    """The verify command (argv templates) a successful attempt on `provider` must pass: the rule's, else the
    provider's; empty when none is declared. The manager reads the same two fields in the same order."""
    rule = decision.matched
    if rule is not None and rule.verify is not None:
        return rule.verify
    return provider.verify


def verify(templates: Sequence[str], variables: Mapping[str, Any], *, cwd: str | Path, attempt_dir: str | Path,
           env: Mapping[str, str], timeout: float, runner: Callable[[RunRequest], RunOutcome],
           secrets: Sequence[str] = (), grace: float = 5.0) -> Verification:
    """Render `templates` (argv, one Jinja template per element) with `variables`, run it in `cwd`, judge it.

    Raises RenderError when the command cannot be built (the config's mistake, reported as such), and
    KeyboardInterrupt (named after the signal) when adws was stopped while it ran (adws.interrupts; the runner has
    ended its processes): a stop is never a verdict on the work. A cancellable runner's RunCancelled (adws.aio)
    propagates as it is.
    """
    argv = render_argv(templates, variables)
    if not argv:
        raise RenderError(f"verify {list(templates)!r} renders to an empty command")
    out_dir = Path(attempt_dir) / VERIFY_DIR
    outcome = runner(RunRequest(argv=argv, env=env, cwd=cwd, out_dir=out_dir, timeout=timeout, grace=grace,
                                secrets=secrets))
    if outcome.interrupted is not None:
        raise KeyboardInterrupt(outcome.interrupted)
    shown = " ".join(outcome.argv)
    if outcome.spawn_error:
        reason = f"verify `{shown}` could not start: {outcome.spawn_error}"
    elif outcome.timed_out:
        reason = f"verify `{shown}` timed out after {timeout:g} s"
    elif outcome.signal is not None:
        reason = f"verify `{shown}` killed by {signal.Signals(outcome.signal).name}"
    elif outcome.exit_code != 0:
        tail = (outcome.stdout_tail + outcome.stderr_tail).strip()[-_TAIL_SHOWN:]
        last = tail.splitlines()[-1] if tail else ""
        reason = f"verify `{shown}` exited {outcome.exit_code}" + (f": {last}" if last else "")
    else:
        return Verification(True, "verify passed", outcome.argv, 0, outcome.duration_ms, outcome.stdout_path,
                            outcome.stderr_path)
    return Verification(False, reason, outcome.argv, outcome.exit_code, outcome.duration_ms, outcome.stdout_path,
                        outcome.stderr_path)
