"""Gemini CLI: `gemini -p --output-format json` (one object) and `--output-format stream-json`."""

from __future__ import annotations

import re
from datetime import datetime

from adws.attempt import OutcomeClass, ParsedOutput
from adws.parsers._base import (
    MAX_MESSAGE,
    Acc,
    Record,
    integer,
    json_records,
    obj,
    string,
    typed_parser,
    with_status,
)

_GEMINI_KEYS = frozenset({"response", "stats", "error", "session_id"})

# Exit codes of Gemini CLI's fatal errors (google-gemini/gemini-cli packages/core/src/utils/errors.ts, FatalError
# subclasses): each names what failed. Authentication is the account's; a broken sandbox or config stops every
# task on this machine, so the tier is unavailable (and counts for its circuit breaker); bad input and the turn
# limit are this task's own failures; 130 is a cancellation (SIGINT) from outside.
FATAL_EXIT_CLASSES: dict[int, OutcomeClass] = {
    41: OutcomeClass.AUTH,  # FatalAuthenticationError
    42: OutcomeClass.ERROR,  # FatalInputError
    44: OutcomeClass.UNAVAILABLE,  # FatalSandboxError
    52: OutcomeClass.UNAVAILABLE,  # FatalConfigError
    53: OutcomeClass.ERROR,  # FatalTurnLimitedError
    54: OutcomeClass.ERROR,  # FatalToolExecutionError
    55: OutcomeClass.UNAVAILABLE,  # FatalUntrustedWorkspaceError: headless in a folder not trusted (no work done)
    130: OutcomeClass.CRASHED,  # FatalCancellationError
}
# The fatal errors' class names, as the stream-json result's `error.type` gives them.
_FATAL_TYPES = {
    "FatalAuthenticationError": 41,
    "FatalInputError": 42,
    "FatalSandboxError": 44,
    "FatalConfigError": 52,
    "FatalTurnLimitedError": 53,
    "FatalToolExecutionError": 54,
    "FatalUntrustedWorkspaceError": 55,
    "FatalCancellationError": 130,
}


# The error classes Gemini CLI names in the error dump it writes to stderr ("... TerminalQuotaError: You exceeded
# your current quota ..."), from its classifyGoogleError (packages/core/src/utils/googleQuotaErrors.ts): a terminal
# quota is a daily or zero limit the CLI does not retry; a retryable one is a per-minute limit.
STDERR_ERROR_NAMES: dict[str, OutcomeClass] = {
    "TerminalQuotaError": OutcomeClass.QUOTA_EXHAUSTED,
    "RetryableQuotaError": OutcomeClass.RATE_LIMITED,
}


# The server has no room for the model right now: Google's 503 "The model is overloaded. Please try again later."
# and Code Assist's 429 MODEL_CAPACITY_EXHAUSTED "No capacity available for model X on the server" (gemini-cli
# #24159, #25179). Gemini CLI files both under its quota errors (classifyGoogleError: a 503 is a
# RetryableQuotaError), but neither the account nor the task is at fault, and no reset is announced: like Claude's
# "529 Overloaded" (corpus claude-stream-overloaded-529) it is an `error`, and the next tier runs the task.
_SERVER_BUSY = re.compile(r"\bmodel is overloaded\b|\bno capacity available for model\b", re.IGNORECASE)
# What Gemini CLI reports when its own safeguards stop a run it then ends as a success (nonInteractiveCli.ts:
# LoopDetected, a stream `error` event of severity warning; MaxSessionTurns, severity error; both also in JSON
# mode's `warnings`): the work is not done, as with Claude's error_max_turns, so the run is an `error`.
_STOPPED = frozenset({"Loop detected, stopping execution", "Maximum session turns exceeded"})


def _server_busy(acc: Acc) -> None:
    if acc.error_message and _SERVER_BUSY.search(acc.error_message):
        acc.declare(OutcomeClass.ERROR)


def _stopped(acc: Acc, message: str) -> None:
    acc.fail(message, replace=True)
    acc.declare(OutcomeClass.ERROR)


def _gemini_error(error: Record, acc: Acc) -> None:
    # handleError writes `code` = the fatal error's exit code for a FatalError, else the API error's HTTP
    # status: a code below 100 or in the table is an exit code, never a status to show as "HTTP 41".
    code = integer(error.get("code"))
    fatal = FATAL_EXIT_CLASSES.get(code) or FATAL_EXIT_CLASSES.get(_FATAL_TYPES.get(string(error.get("type")) or "", 0))
    status = code if code >= 100 and code not in FATAL_EXIT_CLASSES else 0
    acc.fail(with_status(string(error.get("message")) or string(error.get("type")) or "error", status), replace=True)
    acc.rate_limited = acc.rate_limited or status == 429
    acc.declare(fatal)
    _server_busy(acc)


def parse_json(stdout: str, now: datetime) -> ParsedOutput:
    """One object with `response`, `stats` and, when the request failed, `error`. (In JSON mode the CLI
    prints a failure's error object on stderr, where the classifier's patterns read it.)"""
    acc = Acc(now)
    for record in json_records(stdout, acc.beside):
        if not _GEMINI_KEYS & record.keys():
            continue
        acc.recognised += 1
        try:
            _gemini_object(record, acc)
        except Exception:  # see typed_parser: one odd record must not lose the rest
            acc.notes.append("skipped a malformed Gemini object")
    return acc.result()


def _gemini_object(record: Record, acc: Acc) -> None:
    if isinstance(record.get("response"), str):
        acc.final_text = record["response"]
        acc.is_error = False if acc.is_error is None else acc.is_error
    # `prompt` already includes the cached tokens; thoughts are billed as output.
    models = [obj(obj(m).get("tokens")) for m in obj(obj(record.get("stats")).get("models")).values()]
    if models:
        acc.total_usage(
            sum(integer(t.get("prompt")) for t in models),
            sum(integer(t.get("candidates")) + integer(t.get("thoughts")) for t in models),
        )
    if isinstance(record.get("error"), dict):
        _gemini_error(record["error"], acc)
    warnings = record.get("warnings")
    stopped = [w for w in warnings if w in _STOPPED] if isinstance(warnings, list) else []
    if stopped and acc.is_error is not True:
        _stopped(acc, stopped[-1])


def _gemini_message(record: Record, acc: Acc) -> None:
    if record.get("role") == "assistant":
        acc.add_text("", string(record.get("content")) or "")


def _gemini_stream_error(record: Record, acc: Acc) -> None:
    # Non-fatal by the docs: the `result` record gives the verdict; this only keeps the message, and notes a
    # safeguard that stopped the run (_STOPPED) for the result to read.
    message = string(record.get("message")) or ""
    if message in _STOPPED:
        acc.notes.append(message)
    if record.get("severity") != "warning" and not acc.error_message:
        acc.error_message = (message or "error")[:MAX_MESSAGE]


def _gemini_result(record: Record, acc: Acc) -> None:
    acc.final_text = acc.answer()
    acc.is_error = record.get("status") != "success"
    if acc.is_error:
        error = obj(record.get("error"))
        acc.fail(string(error.get("message")) or acc.error_message or string(error.get("type")) or "error")
        acc.declare(FATAL_EXIT_CLASSES.get(_FATAL_TYPES.get(string(error.get("type")) or "", 0)))
        _server_busy(acc)
    else:
        stopped = [note for note in acc.notes if note in _STOPPED]
        if stopped:
            _stopped(acc, stopped[-1])
    stats = obj(record.get("stats"))
    if stats:  # input_tokens includes `cached` (the docs call it a breakdown of input_tokens)
        acc.total_usage(integer(stats.get("input_tokens")), integer(stats.get("output_tokens")))


parse_stream = typed_parser(
    {"message": _gemini_message, "error": _gemini_stream_error, "result": _gemini_result},
    needs={
        "message": frozenset({"role"}),
        "error": frozenset({"severity"}),
        "result": frozenset({"status"}),
        "init": frozenset({"session_id", "model"}),
    },
    other=lambda kind: kind in {"init", "tool_use", "tool_result"},
)
