"""OpenAI Codex CLI: `codex exec --json` (JSONL ThreadEvents).

Shapes from openai/codex `codex-rs/exec/src/exec_events.rs` and `event_processor_with_jsonl_output.rs`:
`thread.started {thread_id}`, `turn.started`, `item.started|updated|completed {item: {id, type, ...}}` (the answer
is the last `agent_message` item's `text`; an `error` item is a non-fatal warning), `turn.completed {usage:
{input_tokens, cached_input_tokens, output_tokens}}` (the thread's running total, so the last one wins),
`turn.failed {error: {message}}` and `error {message}` (a critical error; `turn.failed` usually follows).
`codex exec` exits 1 after a failed turn. Its `input_tokens` already include the cached ones (OpenAI's
`cached_input_tokens` is a breakdown of them). It reports no cost and no structured error class: limit, quota
and auth verdicts come from the message text (the CLI's own wordings are among the default patterns).
Its "Try again at 3:28 PM." is the machine's local time (`format_retry_timestamp`: `with_timezone(&Local)`,
codex-rs/core/src/error.rs), so a reset without a zone is read in the host's zone.
"""

from __future__ import annotations

from adws.parsers._base import MAX_MESSAGE, Acc, Record, integer, obj, string, typed_parser
from adws.parsers.reset import host_zone


def _codex_item(record: Record, acc: Acc) -> None:
    item = obj(record.get("item"))
    kind = item.get("type")
    if kind == "agent_message" and record.get("type") == "item.completed":
        acc.add_text(string(item.get("id")) or "", string(item.get("text")) or "")
    elif kind == "error":
        acc.notes.append(f"warning: {(string(item.get('message')) or '')[:200]}")


def _codex_turn_completed(record: Record, acc: Acc) -> None:
    usage = obj(record.get("usage"))
    acc.total_usage(integer(usage.get("input_tokens")), integer(usage.get("output_tokens")))
    acc.final_text = acc.answer()
    acc.is_error = False if acc.is_error is None else acc.is_error


def _codex_turn_failed(record: Record, acc: Acc) -> None:
    acc.fail(string(obj(record.get("error")).get("message")) or "turn failed", replace=True)


def _codex_error(record: Record, acc: Acc) -> None:
    # Not a verdict by itself (a retry may still complete the turn): keep the message for the patterns.
    if not acc.error_message:
        acc.error_message = (string(record.get("message")) or "error")[:MAX_MESSAGE]


parse = typed_parser(
    {
        "item.completed": _codex_item,
        "item.started": _codex_item,
        "turn.completed": _codex_turn_completed,
        "turn.failed": _codex_turn_failed,
        "error": _codex_error,
    },
    needs={
        "item.completed": frozenset({"item"}),
        "item.started": frozenset({"item"}),
        "turn.completed": frozenset({"usage"}),
        "turn.failed": frozenset({"error"}),
        "error": frozenset({"message"}),
        "thread.started": frozenset({"thread_id"}),
    },
    other=lambda kind: kind in {"thread.started", "turn.started", "item.updated", "item.plan.delta"},
    zone=host_zone,
)
