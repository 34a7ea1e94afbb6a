"""Claude Code: `claude -p --output-format stream-json --verbose` (JSONL) and `--output-format json`."""

from __future__ import annotations

from adws.attempt import OutcomeClass
from adws.observe import from_claude_rate_limit
from adws.parsers._base import Acc, Record, integer, number, obj, string, text_of, typed_parser, with_status
from adws.parsers.reset import from_epoch

# `error` of a synthetic assistant turn (the SDK's SDKAssistantMessageError). "invalid_request",
# "server_error" and "unknown" name no class of their own: the text and the exit code decide those.
_ASSISTANT_ERRORS = {
    "rate_limit": OutcomeClass.RATE_LIMITED,
    "authentication_failed": OutcomeClass.AUTH,
    "billing_error": OutcomeClass.QUOTA_EXHAUSTED,
}
# `terminal_reason` of an error result (Claude Code 2.1+). "blocking_limit" is the account's limit refusing
# the turn (also when it refused the auto-compaction that would have saved an over-long prompt: the account,
# not the task, must wait); "api_error" leaves the verdict to `api_error_status` and the text.
_TERMINAL_REASONS = {
    "prompt_too_long": OutcomeClass.CONTEXT_OVERFLOW,
    "blocking_limit": OutcomeClass.RATE_LIMITED,
    "max_turns": OutcomeClass.ERROR,
}
# `subtype` of an error result that names its class by itself (SDKResultMessage: error_max_turns,
# error_during_execution, error_max_budget_usd, ...): the turn limit is the task's own failure.
_SUBTYPES = {"error_max_turns": OutcomeClass.ERROR}


def _claude_tokens(usage: Record) -> tuple[int, int]:
    cached = integer(usage.get("cache_creation_input_tokens")) + integer(usage.get("cache_read_input_tokens"))
    return integer(usage.get("input_tokens")) + cached, integer(usage.get("output_tokens"))


def _claude_assistant(record: Record, acc: Acc) -> None:
    message = obj(record.get("message"))
    key = string(message.get("id")) or f"#{len(acc.per_message)}"
    text = text_of(message.get("content"))
    acc.add_text(key, text)
    usage = obj(message.get("usage"))
    if usage:  # the same message id repeats while it streams: keep its last figures
        acc.per_message[key] = _claude_tokens(usage)
    error = string(record.get("error"))
    if error:  # a synthetic turn reporting an API error ("rate_limit", "authentication_failed", ...)
        acc.fail(text or error)
        acc.rate_limited = acc.rate_limited or error == "rate_limit"
        acc.declare(_ASSISTANT_ERRORS.get(error))


def _claude_rate_limit_event(record: Record, acc: Acc) -> None:
    info = obj(record.get("rate_limit_info"))
    status = string(info.get("status")) or "unknown"
    overage_rejected = info.get("isUsingOverage") is True and info.get("overageStatus") == "rejected"
    reading = from_claude_rate_limit(info)  # allowed_warning with utilization: the account's real usage
    if reading is not None:
        acc.usage_readings.append((reading[2], reading[0], reading[1]))
    if status != "rejected" and not overage_rejected:
        if status != "allowed":  # "allowed_warning" and friends are heartbeats, not rejections
            acc.notes.append(f"rate limit status {status}")
        return
    acc.rate_limited = True
    resets_at = number(info.get("resetsAt"))
    if resets_at:
        acc.reset_at = from_epoch(resets_at)


def _claude_result(record: Record, acc: Acc) -> None:
    subtype = string(record.get("subtype")) or ""
    result = record.get("result")
    acc.final_text = result if isinstance(result, str) else ""
    acc.is_error = record.get("is_error") is True or subtype.startswith("error")
    usage = obj(record.get("usage"))
    if usage:
        acc.total_usage(*_claude_tokens(usage), cost_usd=number(record.get("total_cost_usd")))
    elif "total_cost_usd" in record:
        acc.cost_usd = number(record.get("total_cost_usd"))
    status = integer(record.get("api_error_status"))
    acc.rate_limited = acc.rate_limited or status == 429
    if acc.is_error:
        errors = record.get("errors")
        listed = "; ".join(e for e in errors if isinstance(e, str)) if isinstance(errors, list) else ""
        message = string(record.get("error")) or listed or string(result) or acc.error_message or subtype
        acc.fail(with_status(message, status), replace=True)
        # The terminal reason is the run's own verdict: it outranks a per-turn error seen before it. Before Claude
        # Code 2.1 (no terminal_reason) the subtype says the same of the turn limit.
        reason = _TERMINAL_REASONS.get(string(record.get("terminal_reason")) or "") or _SUBTYPES.get(subtype)
        if reason is not None:
            acc.declared = reason


parse = typed_parser(
    {"assistant": _claude_assistant, "rate_limit_event": _claude_rate_limit_event, "result": _claude_result},
    needs={
        "assistant": frozenset({"message"}),
        "rate_limit_event": frozenset({"rate_limit_info"}),
        "result": frozenset({"subtype", "is_error"}),
    },
    other=lambda kind: kind in {"system", "user", "stream_event"},
)
