"""Plain data shared by the runner, the output parsers, the classifier and the state store.

Kept free of imports from the rest of adws so every layer can depend on it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from adws.dataclass_cache import dataclass, field


class OutcomeClass(enum.StrEnum):
    """How one attempt ended. Each class has a declared action (see config `actions`)."""

    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    AUTH = "auth"
    CONTEXT_OVERFLOW = "context_overflow"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    ERROR = "error"
    BAD_OUTPUT = "bad_output"
    UNAVAILABLE = "unavailable"
    VERIFY_FAILED = "verify_failed"  # the agent said it succeeded; the declared `verify` command said no


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and money one attempt consumed. `estimated` is True when the output did not report it."""

    requests: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def consumed(self) -> bool:
        """Whether it books anything: a request, a token or a cent. A refused attempt's estimate books nothing."""
        return bool(self.requests or self.input_tokens or self.output_tokens or self.cost_usd)

    def for_ledger(self) -> Usage:
        """The row the ledger keeps: an estimate of nothing is exact (zero), so it does not make the account's
        totals read as estimated (`~` in `adws quota`, "includes estimates" in `adws stats`). The attempt itself
        keeps `estimated`: its figures did not come from the CLI."""
        return self if self.consumed or not self.estimated else Usage(0, 0, 0, 0.0, estimated=False)


@dataclass(slots=True)
class RunOutcome:
    """What the subprocess runner observed. Says nothing about success: that is the classifier's job."""

    argv: list[str]  # already redacted: safe to log
    exit_code: int | None  # None when the process never started or was killed by a signal
    signal: int | None  # the signal that ended the process, if any
    timed_out: bool
    duration_ms: int
    stdout_path: str | None
    stderr_path: str | None
    stdout_tail: str  # last bytes of stdout, decoded with errors="replace"
    stderr_tail: str
    stdout_bytes: int  # total bytes the child wrote, including what the cap dropped
    stderr_bytes: int
    truncated: bool  # True when the output cap dropped bytes from a file
    spawn_error: str | None = None  # e.g. "executable not found: claude"
    idle_timed_out: bool = False  # timed_out because no output came for `idle_timeout` (then timed_out is True)
    idle_ms: int = 0  # the silence that ended it, in ms (only with idle_timed_out)
    interrupted: str | None = None  # the signal that stopped adws while the child ran ("SIGTERM"); it was ended


@dataclass(slots=True)
class ParsedOutput:
    """What a provider-specific parser understood of an attempt's output."""

    final_text: str | None = None
    is_error: bool | None = None  # the agent's own verdict, where its format has one
    error_message: str | None = None
    usage: Usage | None = None  # None when the output did not report usage
    reset_at: datetime | None = None  # an announced limit reset (timezone-aware)
    rate_limited: bool = False  # the output carried a rate-limit event / rejection
    well_formed: bool = True  # False when the declared format could not be read at all
    notes: list[str] = field(default_factory=list)
    # The account's real usage as the CLI reported it in passing: (window, percent used, its reset), e.g. Claude
    # Code's allowed_warning ("seven_day", 82.0, ...). Recorded as observations (adws.observe).
    usage_readings: list[tuple[str, float, datetime | None]] = field(default_factory=list)
    # The class a structured field of the output names (Copilot errorType, Gemini's fatal exit code, OpenCode's
    # error name, Claude's terminal_reason, Cline's errorClass): read before any pattern over text.
    declared: OutcomeClass | None = None
    requests: int | None = None  # requests the CLI reports the attempt used (Copilot premiumRequests)
    # The part of stdout that reports on the run rather than carrying the agent's transcript, for the classifier's
    # patterns: for a JSON format the lines beside its records (an npm warning, a plain-text error) and the messages
    # of its error records after the first (which is error_message), for plain text its last lines. None: all of
    # stdout (a JSON format none of whose records was read).
    report_text: str | None = None


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one attempt."""

    outcome: OutcomeClass
    reason: str
    reset_at: datetime | None = None
