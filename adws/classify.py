"""The verdict on one attempt: its OutcomeClass, a short human reason, and until when a limit lasts.

`classify` reads what the runner observed (RunOutcome) and what the output parser understood (ParsedOutput),
plus declared regex patterns over the output tail. Decision order, first rule that applies wins:

1. the process never started (`spawn_error`)                       → unavailable
2. it ran past its timeout (`timed_out`)                            → timeout
3. a signal ended it, or it left no exit code                       → crashed
4. a clean success — exit 0, output well formed, a final result, not flagged `is_error` — is a success
   whatever its text says: the agent's answer may legitimately discuss rate limits or HTTP 401s, so
   patterns are not run over it (and an informational rate-limit event does not undo a finished answer).
5. declared patterns, in the order given (provider patterns first, then DEFAULT_PATTERNS: build the list
   with `pattern_chain`), each searched in the parsed error message, then the stderr tail, then the
   stdout tail                                                       → the pattern's class
6. the parser saw a structured rate-limit signal (`rate_limited`)   → rate_limited
7. exit 0 but the result says `is_error`                            → error
8. exit 0 without a readable final result                           → bad_output
9. any other exit code                                              → error

Rate limit or quota? Both mean "this account cannot run now". When the reset time is known, distance
decides: a reset within QUOTA_HORIZON (6 h, longer than Claude's five-hour window) is a rate limit, a reset
further away (a weekly or monthly quota) is exhaustion. Without a reset time the matched class stands.

`reset_at` is given for limit verdicts only: the parser's structured reset, else the first reset time
`find_reset_time` finds in the error message, the stderr tail, then the stdout tail.
"""

from __future__ import annotations

import difflib
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adws.attempt import Classification, OutcomeClass, ParsedOutput, RunOutcome
from adws.parsers import find_reset_time
from adws.userregex import Match, Searcher

QUOTA_HORIZON = timedelta(hours=6)
LIMIT_CLASSES = frozenset({OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED})
_SNIPPET = 160  # reasons are one line in a table, not a log


@dataclass(frozen=True, slots=True)
class Pattern:
    """A declared regex over the output tail, and the class an attempt gets when it matches."""

    regex: Searcher  # Python's re for the built-in patterns; RE2 (adws.userregex) for a config's, compiled at load
    outcome: OutcomeClass


def compile_pattern(regex: str, outcome: str) -> Pattern:
    """Build a Pattern from config text. Matching is case-insensitive (CLIs vary their capitals; write
    `(?-i:...)` for a case-sensitive part). Raises ValueError with a message meant for the config user."""
    try:
        outcome_class = OutcomeClass(outcome)
    except ValueError:
        names = sorted(member.value for member in OutcomeClass)
        close = difflib.get_close_matches(outcome, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown outcome class {outcome!r}{hint}; expected one of: {', '.join(names)}") from None
    try:
        compiled = re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"invalid regex {regex!r}: {exc.msg}{where}") from None
    if compiled.search("") is not None:
        raise ValueError(f"regex {regex!r} matches empty text, so it would match every output")
    return Pattern(compiled, outcome_class)


# Status codes only count next to a word that makes them a status: "duration_ms": 429 is not a rate limit.
_STATUS = r"\b(?:http|status(?:_?code)?|code|error)\W{0,4}"
DEFAULT_PATTERNS: tuple[Pattern, ...] = tuple(
    compile_pattern(regex, outcome)
    for regex, outcome in (
        # Context first: its messages are the most specific and never mention limits of an account.
        (r"prompt is too long|input is too long|maximum context", "context_overflow"),
        (r"context[ _-]length[ _-]exceeded|context window (?:exceeded|is full)", "context_overflow"),
        (r"exceeds? the (?:model'?s )?context window|token count\b[^\n]{0,60}\bexceeds", "context_overflow"),
        (r"invalid[ _-]?(?:x-)?api[ _-]?key|incorrect api key", "auth"),
        (r"api[ _-]?key (?:is )?(?:not valid|invalid|missing)|not logged in", "auth"),
        (
            r"please (?:run /login|log ?in|re-?authenticate)|authentication[ _](?:failed|error|required)",
            "auth",
        ),
        (rf"unauthori[sz]ed|{_STATUS}40[13]\b|\b40[13] forbidden", "auth"),
        # Quota before rate: "exceeded your current quota" often arrives as a 429 too.
        (r"quota (?:exceeded|exhausted)|(?:exceeded|exhausted) your (?:\w+ )?quota", "quota_exhausted"),
        (r"insufficient[_ ]quota|credit balance is too low|out of credits", "quota_exhausted"),
        (r"(?:weekly|monthly|daily) (?:usage )?limit", "quota_exhausted"),
        (
            r"usage limit|hit your (?:\w+ )?limit|exhausted your capacity|resource[_ ]exhausted",
            "rate_limited",
        ),
        (rf"rate[ -]limit|rate_limit_error|too many requests|{_STATUS}429\b", "rate_limited"),
    )
)


def pattern_chain(provider_patterns: Sequence[Pattern] = ()) -> tuple[Pattern, ...]:
    """The patterns `classify` should use for a provider: its own first, then the defaults."""
    return (*provider_patterns, *DEFAULT_PATTERNS)


def classify(
    outcome: RunOutcome, parsed: ParsedOutput, patterns: Sequence[Pattern], *, now: datetime
) -> Classification:
    """The verdict on one attempt (see the module docstring for the order of the rules)."""
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    if outcome.spawn_error is not None:
        return Classification(OutcomeClass.UNAVAILABLE, f"could not start: {outcome.spawn_error}")
    if outcome.timed_out:
        return Classification(OutcomeClass.TIMEOUT, f"timed out after {_seconds(outcome.duration_ms)}")
    killer = outcome.signal if outcome.signal is not None else _signal_from_exit(outcome.exit_code)
    if killer is not None or outcome.exit_code is None:
        return Classification(OutcomeClass.CRASHED, _killed_reason(killer))

    exit_code = outcome.exit_code
    has_result = parsed.well_formed and parsed.final_text is not None
    if exit_code == 0 and has_result and parsed.is_error is not True:
        return Classification(OutcomeClass.SUCCESS, "exit 0 with a final result")

    status = _status(exit_code, parsed, outcome)
    sources = (parsed.error_message or "", outcome.stderr_tail, outcome.stdout_tail)
    for pattern in patterns:
        for text in sources:
            match = pattern.regex.search(text)
            if match is not None:
                return _limited(pattern.outcome, f"{status}: {_line_at(text, match)}", outcome, parsed, now)
    if parsed.rate_limited:
        detail = _snippet(parsed.error_message or "") or "rate-limit rejection in the output"
        return _limited(OutcomeClass.RATE_LIMITED, f"{status}: {detail}", outcome, parsed, now)
    if exit_code == 0 and parsed.is_error:
        detail = _snippet(parsed.error_message or "")
        return Classification(OutcomeClass.ERROR, f"{status}: {detail}" if detail else status)
    if exit_code == 0:
        return Classification(OutcomeClass.BAD_OUTPUT, status)
    detail = _snippet(parsed.error_message or _last_line(outcome.stderr_tail) or _last_line(outcome.stdout_tail))
    return Classification(OutcomeClass.ERROR, f"{status}: {detail}" if detail else status)


def _limited(
    outcome_class: OutcomeClass, reason: str, outcome: RunOutcome, parsed: ParsedOutput, now: datetime
) -> Classification:
    if outcome_class not in LIMIT_CLASSES:
        return Classification(outcome_class, reason)
    reset_at = parsed.reset_at or next(
        filter(None, (find_reset_time(text, now) for text in _reset_sources(outcome, parsed))), None
    )
    if reset_at is not None:
        far = reset_at - now > QUOTA_HORIZON
        outcome_class = OutcomeClass.QUOTA_EXHAUSTED if far else OutcomeClass.RATE_LIMITED
    return Classification(outcome_class, reason, reset_at)


def _reset_sources(outcome: RunOutcome, parsed: ParsedOutput) -> tuple[str, ...]:
    return (parsed.error_message or "", outcome.stderr_tail, outcome.stdout_tail)


def _status(exit_code: int, parsed: ParsedOutput, outcome: RunOutcome) -> str:
    """How the attempt ended, in the words every reason starts with."""
    if exit_code != 0:
        return f"exit {exit_code}"
    if parsed.is_error:
        return "exit 0 but result is_error"
    if not outcome.stdout_tail.strip():
        return "exit 0 but no output"
    if not parsed.well_formed:
        return "exit 0 but the output is unreadable"
    if parsed.final_text is None:
        return "exit 0 but no final result"
    return "exit 0"


def _signal_from_exit(exit_code: int | None) -> int | None:
    # subprocess reports death by signal N as exit code -N; a runner may pass that on as is.
    return -exit_code if exit_code is not None and exit_code < 0 else None


def _killed_reason(number: int | None) -> str:
    if number is None:
        return "ended without an exit code"
    try:
        return f"killed by {signal.Signals(number).name}"
    except ValueError:
        return f"killed by signal {number}"


def _seconds(duration_ms: int) -> str:
    return f"{duration_ms / 1000:g}s"


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET else flat[: _SNIPPET - 1] + "…"


def _line_at(text: str, match: Match) -> str:
    """The line that matched, cut around the match when it is long (a JSON line can be kilobytes)."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    end = end if end != -1 else len(text)
    if end - start > _SNIPPET:
        start = max(start, match.start() - _SNIPPET // 3)
    return _snippet(text[start:end])


def _last_line(text: str) -> str:
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")
