"""What a run produced: one `Attempt` record per try, and the `Result` of the whole walk through the plan."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adws.attempt import Usage
from adws.dataclass_cache import dataclass, field
from adws.decision import Decision

# A run whose plan was empty (every tier skipped): the message points a program at the JSON's `decision.skipped`.
NOTHING_TO_RUN = "nothing to run: every tier was skipped (see decision.skipped)"


def for_a_person(message: str, skipped: str) -> str:
    """A result's `message` (also a `task_finished` event's reason) as a person is shown it: the empty plan's
    message points a program at `decision.skipped`, a field of the JSON; a person is pointed at `skipped`, where
    the reasons are shown to them (`"the skipped lines above"`). Any other message is as it was."""
    return f"nothing to run: every tier was skipped (why: {skipped})" if message == NOTHING_TO_RUN else message


@dataclass(slots=True)
class Attempt:
    """One try on one provider and account: its verdict, what it cost and what the walk did next."""

    provider: str
    model: str | None
    account: str | None
    outcome: str
    reason: str
    exit_code: int | None
    signal: int | None
    duration_ms: int
    usage: Usage | None
    command: list[str]
    started_at: datetime
    action: str
    reset_at: datetime | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None
    verify: dict[str, Any] | None = None  # adws.verify.Verification.to_dict(), when a verify command ran
    patch: str | None = None  # the failed attempt's changes, saved by the workdir policy
    workdir: str | None = None  # the directory it ran in
    waited_seconds: float = 0.0  # waited for the announced reset before retrying this account (wait_for_reset)

    def to_dict(self) -> dict[str, Any]:
        usage = None
        if self.usage is not None:
            u = self.usage
            usage = {"requests": u.requests, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                     "cost_usd": round(u.cost_usd, 6), "estimated": u.estimated}
        return {
            "provider": self.provider, "model": self.model, "account": self.account, "outcome": self.outcome,
            "reason": self.reason, "exit_code": self.exit_code, "signal": self.signal,
            "duration_ms": self.duration_ms, "usage": usage, "command": self.command,
            "started_at": self.started_at.isoformat(), "action": self.action,
            "reset_at": self.reset_at.isoformat() if self.reset_at else None,
            "stdout_path": self.stdout_path, "stderr_path": self.stderr_path,
            "verify": self.verify, "patch": self.patch, "workdir": self.workdir,
            "waited_seconds": self.waited_seconds,
        }


@dataclass(slots=True)
class Result:
    """The whole run: success, every attempt in order, the final text and where the files are."""

    success: bool
    decision: Decision
    attempts: list[Attempt] = field(default_factory=list)
    final_text: str | None = None
    output_file: str | None = None
    run_dir: str | None = None
    message: str = ""
    handoff: dict[str, Any] | None = None  # where the success is (workdir, worktree, branch): adws.workdir
    retry_at: datetime | None = None  # when a spent plan has capacity again, where known (adws.retry)
    retryable: bool = False  # False after success or a permanent failure (bad credentials, config)
    # What of the run could not be recorded (state store, output file, audit log): each says what was lost.
    warnings: list[str] = field(default_factory=list)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def provider(self) -> str | None:
        return self.last.provider if self.last else self.decision.provider

    @property
    def model(self) -> str | None:
        return self.last.model if self.last else self.decision.model

    @property
    def account(self) -> str | None:
        return self.last.account if self.last else self.decision.account

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success, "provider": self.provider, "model": self.model, "account": self.account,
            "rule": self.decision.rule, "message": self.message, "final_text": self.final_text,
            "output_file": self.output_file, "run_dir": self.run_dir, "handoff": self.handoff,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None, "retryable": self.retryable,
            "attempts": [a.to_dict() for a in self.attempts],
            "decision": self.decision.to_dict(), "warnings": list(self.warnings),
        }
