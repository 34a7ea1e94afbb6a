"""OpenCode: `opencode run --format json` (JSONL: step_start, text, tool_use, step_finish, error)."""

from __future__ import annotations

from adws.attempt import OutcomeClass
from adws.parsers._base import Acc, Record, integer, number, obj, string, typed_parser, with_status

# The `name` of a session error (anomalyco/opencode packages/opencode/src/session/message-v2.ts). APIError carries
# a status and the provider's text, which the patterns read; MessageOutputLengthError is the answer cut at the
# output limit (the task's failure, not the account's).
_ERROR_NAMES = {
    "ContextOverflowError": OutcomeClass.CONTEXT_OVERFLOW,
    "ProviderAuthError": OutcomeClass.AUTH,
    "MessageOutputLengthError": OutcomeClass.ERROR,
}


def _opencode_text(record: Record, acc: Acc) -> None:
    part = obj(record.get("part"))
    acc.add_text(string(part.get("messageID")) or "", string(part.get("text")) or "")
    # No dedicated final record: `run` is known to exit before its last step_finish, so the text counts.
    acc.final_text = acc.answer() if acc.texts else acc.final_text


def _opencode_step_finish(record: Record, acc: Acc) -> None:
    part = obj(record.get("part"))
    tokens = obj(part.get("tokens"))
    cache = obj(tokens.get("cache"))
    acc.add_usage(
        integer(tokens.get("input")) + integer(cache.get("read")) + integer(cache.get("write")),
        integer(tokens.get("output")) + integer(tokens.get("reasoning")),
        number(part.get("cost")),
    )


def _opencode_error(record: Record, acc: Acc) -> None:
    error = obj(record.get("error"))
    data = obj(error.get("data"))
    status = integer(data.get("statusCode"))
    acc.fail(with_status(string(data.get("message")) or string(error.get("name")) or "error", status))
    acc.rate_limited = acc.rate_limited or status == 429
    acc.declare(_ERROR_NAMES.get(string(error.get("name")) or ""))


parse = typed_parser(
    {"text": _opencode_text, "step_finish": _opencode_step_finish, "error": _opencode_error},
    needs={kind: frozenset({"part"}) for kind in ("text", "step_finish", "step_start", "tool_use")}
    | {"error": frozenset({"error"})},
    other=lambda kind: kind in {"step_start", "tool_use", "reasoning"},
)
