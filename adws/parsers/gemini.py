"""Gemini CLI: `gemini -p --output-format json` (one object) and `--output-format stream-json`."""

from __future__ import annotations

from datetime import datetime

from adws.attempt import ParsedOutput
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


def _gemini_error(error: Record, acc: Acc) -> None:
    code = integer(error.get("code"))
    acc.fail(with_status(string(error.get("message")) or string(error.get("type")) or "error", code), replace=True)
    acc.rate_limited = acc.rate_limited or code == 429


def parse_json(stdout: str, now: datetime) -> ParsedOutput:
    """One object with `response`, `stats` and, when the request failed, `error`. (In JSON mode the CLI
    prints a failure's error object on stderr, where the classifier's patterns read it.)"""
    acc = Acc(now)
    for record in json_records(stdout):
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


def _gemini_message(record: Record, acc: Acc) -> None:
    if record.get("role") == "assistant":
        acc.add_text("", string(record.get("content")) or "")


def _gemini_stream_error(record: Record, acc: Acc) -> None:
    # Non-fatal by the docs: the `result` record gives the verdict; this only keeps the message.
    if record.get("severity") != "warning" and not acc.error_message:
        acc.error_message = (string(record.get("message")) or "error")[:MAX_MESSAGE]


def _gemini_result(record: Record, acc: Acc) -> None:
    acc.final_text = acc.answer()
    acc.is_error = record.get("status") != "success"
    if acc.is_error:
        error = obj(record.get("error"))
        acc.fail(string(error.get("message")) or acc.error_message or string(error.get("type")) or "error")
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
