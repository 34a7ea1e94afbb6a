"""The verdict on one attempt: its OutcomeClass, a short human reason, and until when a limit lasts.

`classify` reads what the runner observed (RunOutcome) and what the output parser understood (ParsedOutput),
plus declared regex patterns over the output tail. Decision order, first rule that applies wins:

1. the process never started (`spawn_error`)                       → unavailable
2. it ran past its timeout, or went silent past its idle timeout    → timeout
3. a signal ended it (or an exit status 128 + N of a fatal signal N), or it left no exit code
                                                                     → crashed
4. a clean success — exit 0, output well formed, a final result, not flagged `is_error` — is a success
   whatever its text says: the agent's answer may legitimately discuss rate limits or HTTP 401s, so
   patterns are not run over it (and an informational rate-limit event does not undo a finished answer).
5. a finished result with a non-zero exit: the output holds the format's final-result record and it says
   success in so many words (`is_error: false`, `status: success`, a completed turn) → success, with the
   exit code in the reason. Claude Code exits 1 after a complete run when, say, an MCP server failed to
   start; the work is done and running it again elsewhere would redo it. Formats without a final-result
   record (OpenCode, plain text) never get here: their text alone does not prove the run finished.
6. a class a structured field of the output names (`ParsedOutput.declared`: Copilot's errorType/errorCode,
   Claude's terminal_reason, OpenCode's error name, Cline's errorClass, Gemini's fatal exit codes)
                                                                     → that class
7. declared patterns, in the order given (provider patterns first, then DEFAULT_PATTERNS: build the list
   with `pattern_chain`), over the parsed error message, then the stderr tail, then the part of stdout that
   reports on the run (`ParsedOutput.report_text`: never the agent's transcript, which may quote any error
   text); the first source with a match decides                     → the pattern's class
   When the parser saw a structured rate-limit signal, only limit patterns count (they say which limit).
8. the parser saw a structured rate-limit signal (`rate_limited`)   → rate_limited
9. exit 0 but the result says `is_error`                            → error
10. exit 0 without a readable final result                          → bad_output
11. any other exit code                                             → error

Rate limit or quota? Both mean "this account cannot run now". When the reset time is known, distance
decides: a reset within QUOTA_HORIZON (6 h, longer than Claude's five-hour window) is a rate limit, a reset
further away (a weekly or monthly quota) is exhaustion. Without a reset time the matched class stands.

`reset_at` is given for limit verdicts only: the parser's structured reset, else the first reset time
`find_reset_time` finds in the same sources, in the same order.

What the attempt books (`booked_usage`): the usage the CLI reported, with the request count it reported; an
attempt turned away before doing any work (a limit, a quota, a failed login) books no tokens and no request
unless the CLI reports some; anything else without reported figures books an estimate marked `estimated`.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from adws.attempt import Classification, OutcomeClass, ParsedOutput, RunOutcome, Usage
from adws.dataclass_cache import dataclass, replace
from adws.errors import suggest
from adws.userregex import CompiledOnFirstSearch, Match, Searcher

QUOTA_HORIZON = timedelta(hours=6)
LIMIT_CLASSES = frozenset({OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED})
# A CLI that goes silent past `idle_timeout` is ended like one that overran `timeout`, and gets the same class.
# Silence says nothing about which account or task is at fault (OpenCode sleeps through a long retry-after of a
# spent quota, but a model can also think for minutes), so the account does not cool down: `timeout` is not a
# limit class. It counts for the circuit breaker as any timeout; `actions.timeout = "next_account"` on a provider
# whose silences are known to be its accounts' limits moves to another account instead of the next tier.
IDLE_TIMEOUT_CLASS = OutcomeClass.TIMEOUT
# Turned away before doing any work: such an attempt books no tokens and no request unless the CLI reports some.
REJECTED_CLASSES = frozenset(
    {OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXHAUSTED, OutcomeClass.AUTH, OutcomeClass.UNAVAILABLE}
)
_SNIPPET = 160  # reasons are one line in a table, not a log


@dataclass(frozen=True, slots=True)
class Pattern:
    """A declared regex over the output tail, and the class an attempt gets when it matches."""

    regex: Searcher  # Python's re for the built-in patterns (compiled at first search); RE2 (adws.userregex) for
    # a config's, compiled at load
    outcome: OutcomeClass


def compile_pattern(regex: str, outcome: str) -> Pattern:
    """Build a Pattern from config text. Matching is case-insensitive (CLIs vary their capitals; write
    `(?-i:...)` for a case-sensitive part). Raises ValueError with a message meant for the config user."""
    try:
        outcome_class = OutcomeClass(outcome)
    except ValueError:
        names = sorted(member.value for member in OutcomeClass)
        raise ValueError(f'unknown outcome class "{outcome}"{suggest(outcome, names)}; expected one of: '
                         f"{', '.join(names)}") from None
    try:
        compiled = re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"invalid regex {regex!r}: {exc.msg}{where}") from None
    if compiled.search("") is not None:
        raise ValueError(f"regex {regex!r} matches empty text, so it would match every output")
    return Pattern(compiled, outcome_class)


def _builtin(regex: str, outcome: str) -> Pattern:
    """A built-in pattern, compiled as `compile_pattern` would compile it, at its first search: every process
    that loads a config holds these, and only one that classifies an attempt searches them
    (tests/test_classify.py checks that each passes `compile_pattern`)."""
    return Pattern(CompiledOnFirstSearch(regex, lambda: re.compile(regex, re.IGNORECASE)), OutcomeClass(outcome))


# Status codes only count next to a word that makes them a status: "duration_ms": 429 is not a rate limit.
_STATUS = r"\b(?:http|status(?:_?code)?|code|error)\W{0,4}"
DEFAULT_PATTERNS: tuple[Pattern, ...] = tuple(
    _builtin(regex, outcome)
    for regex, outcome in (
        # Context first: its messages are the most specific and never mention limits of an account.
        # Anthropic/Claude, OpenAI, Mistral, vLLM ("maximum context length is N tokens"), Gemini ("input token count
        # (N) exceeds"), Copilot ("prompt token count of N exceeds"), Codex, Cline.
        (r"prompt is too long|input is too long|maximum context", "context_overflow"),
        (r"context[ _-]length[ _-]exceeded|context window (?:exceeded|is full)", "context_overflow"),
        (r"exceeds? the (?:model'?s )?context window|token count\b[^\n]{0,60}\bexceeds", "context_overflow"),
        # vLLM ("longer than the maximum model length"), sglang ("longer than the model's context length"),
        # llama.cpp server ("exceeds the available context size", exceed_context_size_error), Ollama ("exceeded max
        # context length", "input length exceeds the context length"), Anthropic via OpenCode ("exceed context
        # limit"), Codex ("ran out of room in the model's context window").
        (
            r"(?:longer than|greater than|exceeds?|exceeded) (?:the )?"
            r"(?:(?:model'?s|available|maximum|max|allowed) ){0,2}"
            r"(?:context (?:length|size|limit)|model length|input length)|exceed_context_size"
            r"|too long to fit into the model",
            "context_overflow",
        ),
        (r"ran out of room in the model'?s context window", "context_overflow"),
        # Cloudflare refusing the machine's network (Codex's CLOUDFLARE_BLOCKED_MESSAGE, "... restricted region
        # (status 403 Forbidden)"): no credential is at fault, and no account can run from here. Before the 403 below.
        (r"access blocked by cloudflare|connecting from a restricted region", "unavailable"),
        # Credentials: wrong, missing or expired, in each CLI's words (Claude "Missing API key · Run /login",
        # "OAuth token has expired"; Gemini "API Key not found", "set an Auth method"; Copilot "No authentication
        # information found"; Codex "refresh token has expired ... sign in again"; OpenAI "Incorrect API key").
        (r"invalid[ _-]?(?:x-)?api[ _-]?key|incorrect api key", "auth"),
        (
            r"api[ _-]?key (?:is )?(?:not valid|invalid|missing|not found|expired|not set)|"
            r"(?:missing|no|expired) api[ _-]?key|not logged in|not authenticated",
            "auth",
        ),
        (
            r"please (?:run /login|log ?in|sign ?in|re-?authenticate|authenticate)|\brun /login\b"
            r"|authentication[ _](?:failed|error|required)|(?:must|need to) (?:be )?(?:log(?:ged)?|sign(?:ed)?) ?in"
            r"|(?:log ?in|sign[ -]?in) required|session (?:has )?expired"
            r"|no authentication information|set an auth method|invalid authentication credentials"
            r"|failed to (?:log ?in|sign in|authenticate)|not (?:enabled|authorized) for this account",
            "auth",
        ),
        # The account or its organisation is refused outright (Anthropic "This organization has been disabled.",
        # "Your organization has disabled Claude subscription access for Claude Code"): another account may run.
        (
            r"organi[sz]ation has (?:been disabled|disabled\b)|account (?:has been )?(?:disabled|suspended)",
            "auth",
        ),
        (
            r"(?:oauth |access |refresh |auth(?:entication)? )?(?:token|credentials?|login) (?:has |have |is )?"
            r"(?:expired|been revoked|revoked)|sign in again|log ?in again"
            r"|(?:auth(?:entication)?|access|oauth|api|bearer|github|refresh|session) token (?:is )?"
            r"(?:invalid|not valid|expired|invalid or has expired)"
            r"|(?:invalid|expired) (?:oauth |access |auth(?:entication)? |api |bearer |refresh )token",
            "auth",
        ),
        (rf"unauthori[sz]ed|{_STATUS}40[13]\b|\b40[13] forbidden", "auth"),
        # Quota before rate: "exceeded your current quota" often arrives as a 429 too.
        (r"quota (?:exceeded|exhausted)|(?:exceeded|exhausted) your (?:\w+ )?quota", "quota_exhausted"),
        (
            r"insufficient[_ ](?:quota|balance|credits?|funds)|credit balance (?:is )?too low|out of credits"
            r"|credits? (?:have|has) (?:been )?(?:exhausted|used up|run out)"
            r"|you have no quota|(?:exceeded|used up|reached) your (?:[\w-]+ ){0,3}(?:allowance|entitlement)",
            "quota_exhausted",
        ),
        # Model names carry dots: "You have reached your daily gemini-2.5-pro quota limit."
        (r"(?:weekly|monthly|daily)(?: [\w.-]+){0,2}? (?:usage |quota )?limit", "quota_exhausted"),
        (r"upgrade to (?:plus|pro) to continue|to use codex with your chatgpt plan", "quota_exhausted"),
        (
            r"usage limit|hit your (?:\w+ )?limit|exhausted your capacity|resource[_ ](?:has been )?exhausted"
            r"|reached your (?:[\w.-]+ ){0,3}limit|session limit"
            r"|(?:\d+[- ]hour|hourly|request|message|token) limit (?:reached|exceeded)",
            "rate_limited",
        ),
        # Copilot's "Sorry, you have exceeded your Copilot token usage" names no period and no reset.
        (r"(?:exceeded|reached) your (?:[\w-]+ ){0,3}token usage", "rate_limited"),
        (rf"rate[ -]limit|rate_limit_error|too many requests|{_STATUS}429\b", "rate_limited"),
        # Last: the agent's server cannot be reached at all (Ollama's "could not connect to ollama app, is it
        # running?", Go's and Node's refused connection). No account is at fault and no task can run on this tier
        # until it is back; any limit or login wording above, if also present, says more.
        (
            r"could not connect to (?:the )?ollama|connect: connection refused|\bECONNREFUSED\b"
            r"|failed to connect to (?:the )?(?:server|ollama)",
            "unavailable",
        ),
    )
)


def booked_usage(verdict: Classification, parsed: ParsedOutput, estimate: Callable[[], Usage]) -> Usage:
    """What one attempt books against its account: tokens, cost and requests.

    - The CLI reported usage: book it as reported, with the request count it reported
      (Copilot's `premiumRequests`), else one request, or none when the attempt was rejected
      (REJECTED_CLASSES) and the reported figures are all zero.
    - Rejected without reported usage: nothing (zero tokens, `requests` as reported or 0), marked `estimated`
      since no figure came from the CLI. One refused call must not eat a 50-a-month quota.
    - Otherwise `estimate()` (prompt and output sizes), marked `estimated`, with the reported request count.
    """
    rejected = verdict.outcome in REJECTED_CLASSES
    reported = parsed.usage
    if reported is not None:
        idle = rejected and reported.total_tokens == 0 and reported.cost_usd == 0
        requests = parsed.requests if parsed.requests is not None else (0 if idle else reported.requests)
        return replace(reported, requests=requests)
    if rejected:
        return Usage(requests=parsed.requests or 0, estimated=True)
    estimated = replace(estimate(), estimated=True)
    return estimated if parsed.requests is None else replace(estimated, requests=parsed.requests)


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
        if outcome.idle_timed_out:
            return Classification(IDLE_TIMEOUT_CLASS, f"no output for {_seconds(outcome.idle_ms)} (idle_timeout)")
        return Classification(OutcomeClass.TIMEOUT, f"timed out after {_seconds(outcome.duration_ms)}")
    killer = outcome.signal if outcome.signal is not None else _signal_from_exit(outcome.exit_code)
    if killer is not None or outcome.exit_code is None:
        return Classification(OutcomeClass.CRASHED, _killed_reason(killer))

    exit_code = outcome.exit_code
    has_result = parsed.well_formed and parsed.final_text is not None
    if exit_code == 0 and has_result and parsed.is_error is not True:
        return Classification(OutcomeClass.SUCCESS, "exit 0 with a final result")
    if has_result and parsed.is_error is False and parsed.declared is None:
        return Classification(OutcomeClass.SUCCESS, f"exit {exit_code} after a complete, successful result (kept)")

    status = _status(exit_code, parsed, outcome)
    if parsed.declared is not None:
        detail = _snippet(parsed.error_message or "") or f"the output declares {parsed.declared.value}"
        return _limited(parsed.declared, f"{status}: {detail}", outcome, parsed, now, declared=True)
    for text in _sources(outcome, parsed):
        for pattern in patterns:
            if parsed.rate_limited and pattern.outcome not in LIMIT_CLASSES:
                continue  # a structured 429 is a limit: the text may only say which one
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
    detail = _snippet(parsed.error_message or _last_line(outcome.stderr_tail) or _last_line(_report(outcome, parsed)))
    return Classification(OutcomeClass.ERROR, f"{status}: {detail}" if detail else status)


def _limited(
    outcome_class: OutcomeClass,
    reason: str,
    outcome: RunOutcome,
    parsed: ParsedOutput,
    now: datetime,
    *,
    declared: bool = False,
) -> Classification:
    """A limit verdict with its reset; the reset's distance decides rate limit or quota (QUOTA_HORIZON).
    One exception: a quota the CLI itself *declared* exhausted stays exhausted, and a near "retry in 34s"
    beside it is a retry hint, not the quota's reset (Gemini CLI's TerminalQuotaError carries Google's
    per-request retry delay although its daily or zero quota is not back in 34 s), so it is dropped."""
    if outcome_class not in LIMIT_CLASSES:
        return Classification(outcome_class, reason)
    # Imported here: adws.compiled imports this module for `Pattern`, and the parsers package (every CLI's
    # parser) would otherwise be a cost of every `adws route` start-up.
    from adws.parsers import find_reset_time

    reset_at = parsed.reset_at or next(
        filter(None, (find_reset_time(text, now) for text in _sources(outcome, parsed))), None
    )
    if reset_at is not None:
        far = reset_at - now > QUOTA_HORIZON
        if declared and outcome_class is OutcomeClass.QUOTA_EXHAUSTED and not far:
            return Classification(outcome_class, reason)
        outcome_class = OutcomeClass.QUOTA_EXHAUSTED if far else OutcomeClass.RATE_LIMITED
    return Classification(outcome_class, reason, reset_at)


def _sources(outcome: RunOutcome, parsed: ParsedOutput) -> tuple[str, ...]:
    """What the patterns and the reset search read, most telling first: the CLI's own error message (from its
    error and result records), its stderr, then the part of stdout that reports on the run (`report_text`).
    Never the agent's transcript — tool results, command output, its answer, the prompt echoed back — which may
    quote any error text at all."""
    return (parsed.error_message or "", outcome.stderr_tail, _report(outcome, parsed))


def _report(outcome: RunOutcome, parsed: ParsedOutput) -> str:
    return outcome.stdout_tail if parsed.report_text is None else parsed.report_text


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


# A shell, npx or another wrapper reports its child's death by fatal signal N as exit status 128 + N (POSIX
# `sh`, "Exit Status for Commands"). Only the signals that end a process from outside or by a fault count: a CLI
# exits 128 + N on purpose for nothing else, and Gemini CLI's `process.exit(HTTP status)` never lands here
# (status & 255 of a 4xx/5xx is 144-255 or 0-87).
FATAL_SIGNAL_EXITS: frozenset[int] = frozenset(
    128 + number
    for number in (
        signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGILL, signal.SIGABRT, signal.SIGBUS,
        signal.SIGFPE, signal.SIGKILL, signal.SIGSEGV, signal.SIGPIPE, signal.SIGTERM,
    )
)


def _signal_from_exit(exit_code: int | None) -> int | None:
    # subprocess reports death by signal N as exit code -N; a runner may pass that on as is.
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    return exit_code - 128 if exit_code in FATAL_SIGNAL_EXITS else None


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
