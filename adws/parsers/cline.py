"""Cline CLI: `cline --json` (2.x/3.x: agent_event, run_result) and the 1.x vocabulary (say/ask)."""

from __future__ import annotations

from adws.attempt import OutcomeClass
from adws.parsers._base import Acc, Record, integer, loads, number, obj, string, typed_parser

_CLINE_REQUEST_SAYS = frozenset({"api_req_started", "api_req_finished", "deleted_api_reqs"})
# What makes an api_req_* text a report of figures: 2.x prints api_req_started once, when it is created and
# holds only the request text; an object without these keys reports nothing (not zero).
_CLINE_FIGURES = frozenset({"tokensIn", "tokensOut", "cacheReads", "cacheWrites", "cost", "totalCost"})
# The `errorClass` of an agent error event (cline/cline sdk agent runtime, ProviderErrorClass).
_ERROR_CLASSES = {
    "context_window_exceeded": OutcomeClass.CONTEXT_OVERFLOW,
    "auth": OutcomeClass.AUTH,
    "rate_limit": OutcomeClass.RATE_LIMITED,
}


def _cline_say(record: Record, acc: Acc) -> None:
    say, text = string(record.get("say")) or "", string(record.get("text")) or ""
    if say == "completion_result":
        acc.final_text = text
        acc.is_error = False if acc.is_error is None else acc.is_error
    elif say in _CLINE_REQUEST_SAYS:  # the figures travel as a JSON string inside `text`
        info = obj(loads(text))
        cached = integer(info.get("cacheReads")) + integer(info.get("cacheWrites"))
        cost = number(info.get("cost")) or number(info.get("totalCost"))
        if _CLINE_FIGURES & info.keys():
            acc.add_usage(integer(info.get("tokensIn")) + cached, integer(info.get("tokensOut")), cost)
    elif say == "error":
        acc.fail(text or "error")
    elif say == "text":
        acc.add_text("", text)


def _cline_ask(record: Record, acc: Acc) -> None:
    if record.get("ask") in {"api_req_failed", "mistake_limit_reached"}:
        acc.fail(string(record.get("text")) or str(record.get("ask")))


def _cline_agent_event(record: Record, acc: Acc) -> None:
    event = obj(record.get("event"))
    kind = event.get("type")
    if kind == "usage":
        cached = integer(event.get("cacheReadTokens")) + integer(event.get("cacheWriteTokens"))
        inputs = integer(event.get("inputTokens")) + cached
        acc.add_usage(inputs, integer(event.get("outputTokens")), number(event.get("cost")))
    elif kind == "error":
        error = event.get("error")
        acc.fail(string(obj(error).get("message")) or string(error) or "error")
        acc.rate_limited = acc.rate_limited or event.get("errorClass") == "rate_limit"
        acc.declare(_ERROR_CLASSES.get(string(event.get("errorClass")) or ""))
    elif kind == "content_end" and event.get("contentType") == "text":
        acc.add_text("", string(event.get("text")) or "")


def _cline_run_result(record: Record, acc: Acc) -> None:
    reason = string(record.get("finishReason")) or "unknown"
    acc.final_text = string(record.get("text")) or acc.answer()
    usage = obj(record.get("usage"))
    if usage:
        cached = integer(usage.get("cacheReadTokens")) + integer(usage.get("cacheWriteTokens"))
        acc.total_usage(
            integer(usage.get("inputTokens")) + cached,
            integer(usage.get("outputTokens")),
            number(usage.get("totalCost")),
        )
    if reason == "completed":
        acc.is_error = False if acc.is_error is None else acc.is_error
    else:
        acc.fail(string(record.get("text")) or string(record.get("message")) or f"finish reason {reason}")


def _cline_aborted(record: Record, acc: Acc) -> None:
    acc.fail(f"run aborted: {string(record.get('reason')) or 'no reason given'}")


parse = typed_parser(
    {
        "say": _cline_say,
        "ask": _cline_ask,
        "agent_event": _cline_agent_event,
        "run_result": _cline_run_result,
        "run_aborted": _cline_aborted,
    },
    needs={
        "say": frozenset({"say"}),
        "ask": frozenset({"ask"}),
        "agent_event": frozenset({"event"}),
        "run_result": frozenset({"finishReason"}),
    },
    other=lambda kind: kind in {"task_started", "hook_event", "run_abort_requested"},
)
