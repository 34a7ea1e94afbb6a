"""GitHub Copilot CLI: `copilot -p PROMPT --output-format json` (JSONL session events)."""

from __future__ import annotations

import math

from adws.attempt import OutcomeClass
from adws.parsers._base import Acc, Record, integer, number, obj, string, text_of, typed_parser, with_status

# session.error `errorType` (github/copilot-sdk nodejs/src/generated/session-events.ts, ErrorData: "authentication",
# "authorization", "quota", "rate_limit", "context_limit", "query"). "query" is a failed request: no class of its own.
_ERROR_TYPES = {
    "authentication": OutcomeClass.AUTH,
    "authorization": OutcomeClass.AUTH,
    "quota": OutcomeClass.QUOTA_EXHAUSTED,
    "rate_limit": OutcomeClass.RATE_LIMITED,
    "context_limit": OutcomeClass.CONTEXT_OVERFLOW,
}
# `errorCode` refines the type where it says more: a weekly rate limit is a quota period, not a burst.
_ERROR_CODES = {
    "user_weekly_rate_limited": OutcomeClass.QUOTA_EXHAUSTED,
    "quota_exceeded": OutcomeClass.QUOTA_EXHAUSTED,
    "session_quota_exceeded": OutcomeClass.QUOTA_EXHAUSTED,
    "billing_not_configured": OutcomeClass.QUOTA_EXHAUSTED,
    "model_max_prompt_tokens_exceeded": OutcomeClass.CONTEXT_OVERFLOW,
}


def _copilot_message(record: Record, acc: Acc) -> None:
    if record.get("agentId"):  # a sub-agent's message, not the answer
        return
    data = obj(record.get("data"))
    acc.add_text(string(data.get("messageId")) or "", text_of(data.get("content")))


def _copilot_usage(record: Record, acc: Acc) -> None:
    # inputTokens is already the whole prompt, cache reads included (they are a breakdown of it).
    data = obj(record.get("data"))
    acc.add_usage(integer(data.get("inputTokens")), integer(data.get("outputTokens")))


def _copilot_shutdown(record: Record, acc: Acc) -> None:
    metrics = obj(obj(record.get("data")).get("modelMetrics")).values()
    usages = [obj(obj(metric).get("usage")) for metric in metrics]
    if usages:
        inputs = sum(integer(u.get("inputTokens")) for u in usages)
        acc.total_usage(inputs, sum(integer(u.get("outputTokens")) for u in usages))


def _copilot_error(record: Record, acc: Acc) -> None:
    data = obj(record.get("data"))
    status = integer(data.get("statusCode"))
    kind = string(data.get("errorType")) or ""
    acc.fail(with_status(string(data.get("message")) or kind or "session error", status))
    acc.rate_limited = acc.rate_limited or status == 429 or "rate" in kind.lower()
    acc.declare(_ERROR_CODES.get(string(data.get("errorCode")) or "") or _ERROR_TYPES.get(kind))


def _copilot_result(record: Record, acc: Acc) -> None:
    acc.final_text = acc.answer()
    usage = obj(record.get("usage"))
    if "premiumRequests" in usage:  # what the call cost against the monthly allowance (0 when it was rejected)
        # A model with a multiplier below 1 reports a fraction; requests are whole, so round up: a quota is
        # better reached early than overrun.
        acc.requests = math.ceil(number(usage.get("premiumRequests")))
    exit_code = integer(record.get("exitCode"))
    if exit_code:
        acc.fail(f"exit code {exit_code}")
    elif acc.is_error is None:
        acc.is_error = False


parse = typed_parser(
    {
        "assistant.message": _copilot_message,
        "assistant.usage": _copilot_usage,
        "session.shutdown": _copilot_shutdown,
        "session.error": _copilot_error,
        "result": _copilot_result,
    },
    needs={"result": frozenset({"exitCode"})},
    other=lambda kind: "." in kind,  # the SDK's session-event vocabulary is large and growing
)
